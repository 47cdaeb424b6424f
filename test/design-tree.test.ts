/**
 * DESIGN.md's "Tree" names every source file of the checkout once, and nothing that is not there, so the tree a
 * reader sees is the tree that exists. Its format: a line is `NAMES  description` (two spaces or more before the
 * description); NAMES is a directory (`host/`, nested by indentation, or a path such as `share/qemu/`) and/or the
 * file names in it, separated by single spaces. `*` in a name is a wildcard within its directory; a
 * name has an extension (or is `*`).
 * The files are the ones git tracks under the listed directories, plus new ones it does not ignore.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { skipIf } from './util/prereq.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHECKED = ['assembly', 'bindings', 'host', 'examples', 'test', 'benchmarks', 'scripts', 'share', 'binding.gyp'];

/** The names DESIGN.md's tree lists, as paths from the checkout's root (wildcards kept). */
export function treeEntries(design: string): string[] {
  const block = /^## Tree\n[\s\S]*?^```\n([\s\S]*?)^```/m.exec(design);
  if (block === null) throw new Error('DESIGN.md: no ``` block under "## Tree"');
  const dirs: Array<{ indent: number; dir: string }> = [];
  const entries: string[] = [];
  for (const line of block[1].split('\n')) {
    if (line.trim() === '') continue;
    const indent = line.length - line.trimStart().length;
    const names = line.trim().split(/\s{2,}/)[0].split(' ');
    while (dirs.length > 0 && dirs[dirs.length - 1].indent >= indent) dirs.pop();
    let dir = dirs.length > 0 ? dirs[dirs.length - 1].dir : '';
    if (names[0].endsWith('/')) {
      dir += names.shift();
      dirs.push({ indent, dir });
    }
    for (const name of names) {
      if (!/^[\w*][\w*.-]*\.\w+$|^\*$/.test(name)) throw new Error(`DESIGN.md tree: "${name}" in "${line.trim()}" is not a file name`);
      entries.push(dir + name);
    }
  }
  return entries;
}

const glob = (entry: string): RegExp =>
  new RegExp(`^${entry.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);

test('DESIGN.md\'s tree lists every source file once and no file that does not exist', () => {
  const git = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '--', ...CHECKED],
    { cwd: ROOT, encoding: 'utf8' });
  if (skipIf(git.error ? `needs git (${(git.error as NodeJS.ErrnoException).code})` : undefined,
    git.status !== 0 ? `needs a git checkout (${git.stderr.trim()})` : undefined)) return;
  const files = git.stdout.split('\n').filter((f) => f !== '' && fs.existsSync(path.join(ROOT, f)));
  assert.ok(files.includes('host/index.ts'), `git listed no sources: ${files.length} files`);
  const entries = treeEntries(fs.readFileSync(path.join(ROOT, 'DESIGN.md'), 'utf8'));
  const problems: string[] = [];
  const seen = new Map<string, string[]>();
  for (const e of entries) {
    const re = glob(e);
    const hits = files.filter((f) => re.test(f));
    if (hits.length === 0) problems.push(`listed but not in the checkout: ${e}`);
    for (const f of hits) seen.set(f, [...(seen.get(f) ?? []), e]);
  }
  for (const f of files) {
    const by = seen.get(f) ?? [];
    if (by.length === 0) problems.push(`missing from the tree: ${f}`);
    else if (by.length > 1) problems.push(`listed ${by.length} times: ${f} (${by.join(', ')})`);
  }
  assert.equal(problems, [], problems.join('\n'));
});

test('the tree parser reads nesting, paths, several names on a line and wildcards', () => {
  const design = '## Tree\n\n```\nbinding.gyp  builds\nhost/\n  a.ts b.ts    two\n  fuse/\n    c.ts        one\n' +
    '  d.ts        back one level\nshare/x/\n  y.json  data\nr/ *   all of r\n```\n';
  assert.equal(treeEntries(design), ['binding.gyp', 'host/a.ts', 'host/b.ts', 'host/fuse/c.ts', 'host/d.ts', 'share/x/y.json', 'r/*']);
  assert.throws(() => treeEntries('## Tree\n```\nhost/ a.ts and more\n```\n'), /"and" .* is not a file name/);
});

test.run();
