/**
 * The package as a consumer sees it: a project that depends on `virtiofsd-ts` (a symlink to this checkout, built)
 * type-checks the README's library example and both examples (their imports rewritten to 'virtiofsd-ts') with
 * `strict` and `skipLibCheck: false`, so the published declarations must be complete and must not reach internals
 * that are not shipped. Then the README example, compiled, is run and read through the FUSE client.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FuseClient } from '../host/frontend/fuse-client.js';
import { FUSE_ROOT_ID } from '../host/fuse/protocol.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'consumer-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** The README's "Serve your own filesystem" code block. */
function readmeExample(): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  const block = blocks.find((b) => b.includes('serve(fs,'));
  if (block === undefined) throw new Error('README: no ts block calling serve(fs, ...)');
  return block;
}

function project(): string {
  const dir = path.join(tmp, 'project');
  fs.mkdirSync(path.join(dir, 'node_modules', '@types'), { recursive: true });
  fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'virtiofsd-ts'));
  fs.symlinkSync(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module' }));
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
      skipLibCheck: false, types: ['node'], outDir: 'out' },
    include: ['*.ts'],
  }));
  return dir;
}

const dir = project();
const socket = path.join(tmp, 'hello.sock');

test('README example and both examples type-check as a consumer with skipLibCheck false', () => {
  fs.writeFileSync(path.join(dir, 'hello.ts'), readmeExample().replace('/tmp/hello.sock', socket));
  for (const ex of ['memfs', 'tarfs']) {
    const src = fs.readFileSync(path.join(ROOT, 'examples', `${ex}.ts`), 'utf8')
      .replaceAll("'../host/index.js'", "'virtiofsd-ts'");
    fs.writeFileSync(path.join(dir, `${ex}.ts`), src);
  }
  const r = spawnSync(process.execPath, [TSC, '-p', dir], { encoding: 'utf8' });
  assert.is(r.status, 0, `tsc:\n${r.stdout}${r.stderr}`);
});

test('the README example serves its file', async () => {
  const child = spawn(process.execPath, [path.join(dir, 'out', 'hello.js')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  try {
    for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(fs.existsSync(socket), `the example did not listen:\n${out}`);
    const fc = await FuseClient.connect(socket, { depth: 4, timeoutMs: 5000 });
    try {
      await fc.init();
      const e = await fc.lookup(FUSE_ROOT_ID, 'hello.txt');
      const h = await fc.open(e.nodeid, 0);
      const text = new TextDecoder().decode(await fc.read(e.nodeid, h.fh, 0, 4096));
      assert.match(text, /^hello at \d{4}-\d\d-\d\dT/);
      const names = (await fc.readdir(FUSE_ROOT_ID, (await fc.opendir(FUSE_ROOT_ID)).fh, 0)).map((d) => d.name);
      assert.equal(names, ['.', '..', 'hello.txt']);
    } finally {
      fc.close();
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /VM connected/);
  } finally {
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
  }
});

test.run();
