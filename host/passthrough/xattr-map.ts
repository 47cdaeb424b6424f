/**
 * Extended attribute name mapping (virtiofsd's --xattrmap): the guest ("client") and the host ("server") see
 * different names, so a guest's trusted./security. attributes can live in the host's user. namespace, or host
 * attributes can be hidden from the guest.
 *
 * Syntax: a series of rules; each starts (after optional white space) with its separator character, which then
 * ends every field of that rule:
 *
 *   :type:scope:key:prepend:      type = prefix | ok | bad | unsupported, scope = client | server | all
 *   :map:key:prepend:             shorthand, see below
 *
 * The first rule that matches decides (rules are tried in order, separately for each direction):
 * - client scope (GETXATTR/SETXATTR/REMOVEXATTR): matches when the guest's name starts with `key`.
 *   prefix: host name = prepend + name; ok: unchanged; bad: refused with EPERM; unsupported: refused with
 *   EOPNOTSUPP. No matching rule: EPERM.
 * - server scope (LISTXATTR): matches when the host's name starts with `prepend`.
 *   prefix: guest name = the host name without `prepend`; ok: unchanged; bad/unsupported: hidden. No matching rule:
 *   hidden.
 * `:map:key:prepend:` is `:prefix:all:key:prepend:`, `:bad:server::key:` (hide unprefixed host names in the
 * mapped namespace) and `:bad:client:prepend::` (the guest may not use the prefixed names itself); after all the
 * rules, a map adds the catch-all `:ok:all:::` (or `:bad:all:::` when its key is empty, as everything is mapped).
 */
import { byteString, native } from '../native-loader.js';
import { ConfigError } from '../errors.js';

const E = native.constants.errno;

type RuleType = 'prefix' | 'ok' | 'bad' | 'unsupported';

export interface XattrRule {
  type: RuleType;
  client: boolean;
  server: boolean;
  key: string;
  prepend: string;
}

export class XattrMap {
  readonly rules: readonly XattrRule[];

  /**
   * Parses a mapping (text, as typed). Throws ConfigError on a syntax error or an empty mapping. Keys and prefixes
   * are kept as byte strings (UTF-8 bytes), the form xattr names take in the FUSE layer (fuse/names.ts).
   */
  constructor(spec: string) {
    this.rules = parseXattrMap(byteString(spec));
  }

  /** The host name for a guest's name, or -EPERM / -EOPNOTSUPP when the rules refuse it. */
  toHost(name: string): string | number {
    for (const r of this.rules) {
      if (!r.client || !name.startsWith(r.key)) continue;
      switch (r.type) {
        case 'prefix': return r.prepend + name;
        case 'ok': return name;
        case 'bad': return -E.EPERM;
        case 'unsupported': return -E.EOPNOTSUPP;
      }
    }
    return -E.EPERM;
  }

  /** The guest's name for a host name, or null when the guest must not see it. */
  toGuest(name: string): string | null {
    for (const r of this.rules) {
      if (!r.server || !name.startsWith(r.prepend)) continue;
      switch (r.type) {
        case 'prefix': return name.slice(r.prepend.length);
        case 'ok': return name;
        default: return null;
      }
    }
    return null;
  }
}

export function parseXattrMap(spec: string): XattrRule[] {
  const rules: XattrRule[] = [];
  let catchAll: XattrRule | null = null;
  let i = 0;
  const fail = (why: string): never => {
    throw new ConfigError(`xattrmap: ${why} (at offset ${i})`);
  };
  const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  for (;;) {
    while (i < spec.length && isSpace(spec[i])) i++;
    if (i >= spec.length) break;
    const sep = spec[i++];
    const field = (what: string): string => {
      const end = spec.indexOf(sep, i);
      if (end < 0) fail(`missing '${sep}' after the ${what}`);
      const f = spec.slice(i, end);
      i = end + 1;
      return f;
    };
    const type = field('type');
    if (type === 'map') {
      const key = field('key');
      const prepend = field('prepend');
      rules.push({ type: 'prefix', client: true, server: true, key, prepend });
      if (key !== '') {
        rules.push({ type: 'bad', client: false, server: true, key: '', prepend: key });
        rules.push({ type: 'bad', client: true, server: false, key: prepend, prepend: '' });
      }
      const all: XattrRule = { type: key === '' ? 'bad' : 'ok', client: true, server: true, key: '', prepend: '' };
      if (catchAll === null || all.type === 'bad') catchAll = all;
      continue;
    }
    if (type !== 'prefix' && type !== 'ok' && type !== 'bad' && type !== 'unsupported') fail(`unknown type '${type}'`);
    const scope = field('scope');
    if (scope !== 'client' && scope !== 'server' && scope !== 'all') fail(`unknown scope '${scope}'`);
    const key = field('key');
    const prepend = field('prepend');
    rules.push({ type: type as RuleType, client: scope !== 'server', server: scope !== 'client', key, prepend });
  }
  if (catchAll !== null) rules.push(catchAll);
  if (rules.length === 0) throw new ConfigError('xattrmap: no rules');
  return rules;
}
