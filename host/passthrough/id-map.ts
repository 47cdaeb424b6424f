/**
 * UID/GID translation between guest and host (virtiofsd's --translate-uid / --translate-gid).
 *
 * A rule is `TYPE:A:B:COUNT` (or `forbid-guest:A:COUNT`); the separator is the first character after the type
 * name that is not a letter, digit, `-` or `_`, and every field uses it:
 *
 *   guest:G:H:N          guest [G, G+N) -> host [H, H+N)                 (guest to host only)
 *   host:H:G:N           host [H, H+N) -> guest [G, G+N)                 (host to guest only)
 *   squash-guest:G:H:N   guest [G, G+N) -> the one host id H
 *   squash-host:H:G:N    host [H, H+N) -> the one guest id G
 *   forbid-guest:G:N     guest [G, G+N) may not be used: the request fails with EPERM
 *   map:G:H:N            guest [G, G+N) <-> host [H, H+N), both directions
 *
 * Each direction is its own table: a rule whose source range intersects one already in the same direction is
 * refused (as virtiofsd refuses it), and ids no rule covers map to themselves, numerically (virtiofsd's
 * semantics; a catch-all `squash-host` sends the rest to an overflow id such as 65534 where that is wanted).
 */
import { ConfigError } from '../errors.js';

/** A guest id the rules forbid. */
export const FORBIDDEN = -1;

const ID_SPACE = 2 ** 32;

type RuleKind = 'guest' | 'host' | 'squash-guest' | 'squash-host' | 'forbid-guest' | 'map';
const FIELD_COUNT: Record<RuleKind, number> = {
  guest: 3, host: 3, 'squash-guest': 3, 'squash-host': 3, 'forbid-guest': 2, map: 3,
};

export interface IdMapRule {
  kind: RuleKind;
  /** The numeric fields in order (2 for forbid-guest, else 3). */
  fields: number[];
  /** The rule as written (for messages). */
  text: string;
}

/** One range of source ids: mapped 1:1 from `to` on, squashed onto `to`, or forbidden. */
interface Range {
  start: number;
  /** Exclusive. */
  end: number;
  how: 'range' | 'squash' | 'fail';
  to: number;
}

/** Parses one rule. Throws ConfigError on an unknown type, a wrong field count or a non-u32 field. */
export function parseIdMapRule(text: string): IdMapRule {
  const m = /^([A-Za-z0-9_-]*)(.?)/.exec(text)!;
  const kind = m[1].toLowerCase();
  const sep = m[2];
  if (!(kind in FIELD_COUNT)) throw new ConfigError(`invalid ID map type '${m[1]}' in '${text}'`);
  if (sep === '') throw new ConfigError(`ID map '${text}' has no fields`);
  const raw = text.slice(m[0].length).split(sep);
  const fields = raw.map((f) => {
    if (!/^[0-9]+$/.test(f) || Number(f) >= ID_SPACE) throw new ConfigError(`invalid value '${f}' in ID map '${text}'`);
    return Number(f);
  });
  const want = FIELD_COUNT[kind as RuleKind];
  if (fields.length !== want) {
    throw new ConfigError(`ID map '${text}': expected ${want} values, got ${fields.length}`);
  }
  return { kind: kind as RuleKind, fields, text };
}

export class IdMap {
  private readonly guestToHost: Range[] = [];
  private readonly hostToGuest: Range[] = [];

  /** Builds the map from rule strings (or parsed rules), in order. Throws ConfigError on a bad or overlapping rule. */
  constructor(rules: Iterable<string | IdMapRule> = []) {
    for (const r of rules) this.add(typeof r === 'string' ? parseIdMapRule(r) : r);
  }

  /** No rules: every id maps to itself (the translation can be skipped altogether). */
  get isIdentity(): boolean {
    return this.guestToHost.length === 0 && this.hostToGuest.length === 0;
  }

  private add(rule: IdMapRule): void {
    const [a, b, count] = rule.fields;
    switch (rule.kind) {
      case 'guest': this.insert(this.guestToHost, rule, a, count, 'range', b); break;
      case 'host': this.insert(this.hostToGuest, rule, a, count, 'range', b); break;
      case 'squash-guest': this.insert(this.guestToHost, rule, a, count, 'squash', b); break;
      case 'squash-host': this.insert(this.hostToGuest, rule, a, count, 'squash', b); break;
      case 'forbid-guest': this.insert(this.guestToHost, rule, a, b, 'fail', 0); break;
      case 'map':
        this.insert(this.guestToHost, rule, a, count, 'range', b);
        this.insert(this.hostToGuest, rule, b, count, 'range', a);
        break;
    }
  }

  private insert(table: Range[], rule: IdMapRule, start: number, count: number, how: Range['how'], to: number): void {
    if (count === 0) throw new ConfigError(`ID map '${rule.text}': empty range`);
    const end = start + count;
    if (end > ID_SPACE || (how === 'range' && to + count > ID_SPACE)) {
      throw new ConfigError(`ID map '${rule.text}': range goes past ${ID_SPACE - 1}`);
    }
    for (const r of table) {
      if (start < r.end && r.start < end) {
        throw new ConfigError(`ID map '${rule.text}': [${start}, ${end}) intersects [${r.start}, ${r.end}) of an earlier rule`);
      }
    }
    table.push({ start, end, how, to });
    table.sort((x, y) => x.start - y.start);
  }

  /** The host id for a guest id, or FORBIDDEN. */
  toHost(guestId: number): number {
    return lookup(this.guestToHost, guestId);
  }

  /** The guest id for a host id (host ids are never forbidden). */
  toGuest(hostId: number): number {
    const r = lookup(this.hostToGuest, hostId);
    return r === FORBIDDEN ? hostId : r;
  }
}

function lookup(table: Range[], id: number): number {
  // Binary search over disjoint ranges sorted by start.
  let lo = 0;
  let hi = table.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = table[mid];
    if (id < r.start) hi = mid - 1;
    else if (id >= r.end) lo = mid + 1;
    else return r.how === 'range' ? r.to + (id - r.start) : r.how === 'squash' ? r.to : FORBIDDEN;
  }
  return id;
}
