/**
 * The package as a consumer sees it: a project that depends on `virtiofsd-ts` (a symlink to this checkout, built)
 * type-checks the README's library example and both examples (their imports rewritten to 'virtiofsd-ts') with
 * `strict` and `skipLibCheck: false`, so the published declarations must be complete and must not reach internals
 * that are not shipped. Then the README example, compiled, is run and read through the FUSE client of the
 * package's second entry point, `virtiofsd-ts/frontend`, as a consumer's compiled code imports it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runtimeArgs } from './util/runtime.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'consumer-test-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** The README's ts code block that contains `marker`. */
function readmeExample(marker = 'serve(fs,'): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  const block = blocks.find((b) => b.includes(marker));
  if (block === undefined) throw new Error(`README: no ts block with ${marker}`);
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

/** A consumer of `virtiofsd-ts/frontend`: reads a backend's root through FuseClient, without a VM. */
const FRONTEND_CLIENT = `import { FuseClient } from 'virtiofsd-ts/frontend';

export async function readRoot(socket: string, name: string): Promise<{ text: string; names: string[] }> {
  const fc = await FuseClient.connect(socket, { depth: 4, timeoutMs: 5000 });
  try {
    await fc.init();
    const e = await fc.lookup(1, name);
    const h = await fc.open(e.nodeid, 0);
    const text = new TextDecoder().decode(await fc.read(e.nodeid, h.fh, 0, 4096));
    const names = (await fc.readdir(1, (await fc.opendir(1)).fh, 0)).map((d) => d.name);
    return { text, names };
  } finally {
    fc.close();
  }
}
`;

const dir = project();
const socket = path.join(tmp, 'hello.sock');

test('README examples, both examples and a frontend client type-check as a consumer with skipLibCheck false', () => {
  fs.writeFileSync(path.join(dir, 'hello.ts'), readmeExample().replace('/tmp/hello.sock', socket));
  fs.writeFileSync(path.join(dir, 'client.ts'), FRONTEND_CLIENT);
  fs.writeFileSync(path.join(dir, 'readme-client.ts'), readmeExample("from 'virtiofsd-ts/frontend'"));
  for (const ex of ['memfs', 'tarfs']) {
    const src = fs.readFileSync(path.join(ROOT, 'examples', `${ex}.ts`), 'utf8')
      .replaceAll("'../host/index.js'", "'virtiofsd-ts'");
    fs.writeFileSync(path.join(dir, `${ex}.ts`), src);
  }
  const r = spawnSync(...runtimeArgs(TSC, ['-p', dir]), { encoding: 'utf8' });
  assert.is(r.status, 0, `tsc:\n${r.stdout}${r.stderr}`);
});

test('the README example serves its file', async () => {
  const child = spawn(...runtimeArgs(path.join(dir, 'out', 'hello.js')), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  try {
    for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(fs.existsSync(socket), `the example did not listen:\n${out}`);
    const client = await import(pathToFileURL(path.join(dir, 'out', 'client.js')).href) as
      { readRoot(socket: string, name: string): Promise<{ text: string; names: string[] }> };
    const { text, names } = await client.readRoot(socket, 'hello.txt');
    assert.match(text, /^hello at \d{4}-\d\d-\d\dT/);
    assert.equal(names, ['.', '..', 'hello.txt']);
    await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /VM connected/);
  } finally {
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
  }
});

test.run();
