// Runs node-gyp: the one npm hands its lifecycle scripts (npm_config_node_gyp), else the one on PATH, else the
// copy bundled with the npm beside this node. node-gyp is no dependency of ours; every npm carries one.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

function nodeGypCommand() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return [process.execPath, fromNpm];
  const onPath = (process.env.PATH ?? '').split(':').map((d) => join(d, 'node-gyp')).find((p) => existsSync(p));
  if (onPath) return [onPath];
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp',
    'bin', 'node-gyp.js');
  if (existsSync(bundled)) return [process.execPath, bundled];
  throw new Error('node-gyp not found (it comes with npm; run this from an npm script)');
}

/**
 * The node installation whose headers node-gyp compiles against: npm's `nodedir` setting, else the running node's
 * own prefix when it has them (`<prefix>/include/node`, as Debian's and NodeSource's packages install them), so that
 * node-gyp need not download headers (nodejs.org may be unreachable). Undefined: node-gyp's own choice.
 */
export function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
}

/** `node-gyp ARGS...` in `cwd` with extra environment; output passes through. Returns the exit status. */
export function runNodeGyp(args, { cwd, env = {}, nodedir = nodeDir() } = {}) {
  const [command, ...pre] = nodeGypCommand();
  const r = spawnSync(command, [...pre, ...args, ...(nodedir ? [`--nodedir=${nodedir}`] : [])], { cwd, env: { ...process.env, ...env },
    stdio: 'inherit' });
  if (r.error) throw r.error;
  return r.status ?? 1;
}
