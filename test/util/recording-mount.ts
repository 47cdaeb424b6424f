/**
 * The test side of test/util/recording-fs.ts: mounts a recording filesystem over a fresh backing directory in a
 * child process and reads back the FSYNC/FSYNCDIR/FLUSH calls it received. Needs root and /dev/fuse.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SyncRecord } from './recording-fs.js';
import { detach } from './dev-fuse-mount.js';
import { within } from './wait.js';

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'recording-fs.js');

export interface RecordingMount {
  /** Where the recording filesystem is mounted: use it as the share of the code under test. */
  mountpoint: string;
  /** The backing directory (what the recording filesystem passes through to). */
  backing: string;
  /** Every call recorded so far, oldest first. */
  records(): SyncRecord[];
  /** Unmounts, stops the server, removes the directories. */
  stop(): Promise<void>;
}

export async function startRecordingMount(): Promise<RecordingMount> {
  const top = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'recording-fs-')));
  fs.chmodSync(top, 0o755);
  const backing = path.join(top, 'backing');
  const mountpoint = path.join(top, 'mnt');
  const recordFile = path.join(top, 'records.jsonl');
  fs.mkdirSync(backing, { mode: 0o777 });
  fs.chmodSync(backing, 0o777);
  fs.mkdirSync(mountpoint);
  fs.writeFileSync(recordFile, '');
  const child = spawn(process.execPath, [SERVER, backing, mountpoint, recordFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d; });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await within(new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => { out += d; if (out.includes('mounted')) resolve(); });
    child.on('exit', (code) => reject(new Error(`recording-fs exited (${code}) before mounting: ${err}`)));
  }), 20000, `the recording filesystem at ${mountpoint}`);
  return {
    mountpoint,
    backing,
    records: () => fs.readFileSync(recordFile, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l) as SyncRecord),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await within(exited, 10000, 'the recording filesystem to exit').catch(() => child.kill('SIGKILL'));
      detach(mountpoint);
      fs.rmSync(top, { recursive: true, force: true });
    },
  };
}
