/**
 * `logLevel` and `logger` of the library's options are applied (process-wide) when a daemon starts: the lines a
 * daemon writes while it starts and stops reach the logger exactly down to the level asked for; `log.enabled`
 * agrees with the threshold for every level.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { serve, VirtiofsDaemon, setLogger, setLogLevel, type LogLevel } from '../host/index.js';
import { log } from '../host/log.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'log-level-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
test.after.each(() => {
  setLogger(null);
  setLogLevel('info');
});

const LISTENING = 'Waiting for vhost-user socket connection'; // info
const NOFILE = 'open-file limit'; // debug, VirtiofsDaemon only

test('VirtiofsDaemon.start: logLevel decides which lines reach the logger', async () => {
  const cases: Array<[LogLevel, boolean, boolean]> = [['debug', true, true], ['info', true, false], ['warn', false, false]];
  for (const [level, info, debug] of cases) {
    const lines: string[] = [];
    setLogLevel('trace'); // whatever was set before, the option decides
    const d = await VirtiofsDaemon.start({ socketPath: path.join(tmp, `${level}.sock`), sharedDir: tmp, logLevel: level,
      logger: (lv, m) => { lines.push(`${lv} ${m}`); } });
    await d.close();
    const seen = lines.join('\n');
    assert.is(seen.includes(LISTENING), info, `${level}: the info line\n${seen}`);
    assert.is(seen.includes(NOFILE), debug, `${level}: the debug line\n${seen}`);
  }
});

test('serve(): logLevel off prints nothing; info prints the listening line', async () => {
  for (const [level, info] of [['off', false], ['info', true]] as const) {
    const lines: string[] = [];
    setLogLevel('trace');
    const d = await serve({}, { socketPath: path.join(tmp, `serve-${level}.sock`), logLevel: level,
      logger: (lv, m) => { lines.push(`${lv} ${m}`); } });
    await d.close();
    assert.is(lines.join('\n').includes(LISTENING), info, `${level}:\n${lines.join('\n')}`);
    if (level === 'off') assert.equal(lines, []);
  }
});

test('log.enabled: a level is on from the threshold up (every pair of levels)', () => {
  const levels: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'off'];
  for (const [t, threshold] of levels.entries()) {
    setLogLevel(threshold);
    for (const [i, level] of levels.slice(0, -1).entries()) {
      assert.is(log.enabled(level), i >= t, `threshold ${threshold}, ${level}`);
    }
  }
});

test.run();
