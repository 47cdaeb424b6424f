/** Renders benchmark results: the one text table, the markdown report and a hand-written SVG chart. */

export interface Side {
  opsPerSec: number;
  mbPerSec: number;
  p50Us: number;
  p99Us: number;
  /** requests/s divided by the eventfd floor rate (meta) or MB/s over the io floor (data), 0..1+ */
  floorFraction: number;
  rssMb: number;
  /** ours only: GC events per repetition of this workload, and estimated bytes allocated per request */
  scavenges?: number;
  markCompacts?: number;
  gcPauseMs?: number;
  allocBytesPerRequest?: number;
  requestsPerOp: number;
  /** Daemon CPU seconds per million requests. */
  cpuPerMReq?: number;
}

export interface Row { name: string; kind: 'meta' | 'data'; ours: Side; c: Side }

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmtInt = (x: number): string => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
const fmtPct = (x: number): string => `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
const fmtUs = (x: number): string => (x >= 1000 ? `${(x / 1000).toFixed(1)}ms` : `${x.toFixed(0)}`);

export const COLUMNS = [
  'workload', 'ours ops/s', 'C ops/s', 'ours/C', 'ours MB/s', 'C MB/s', 'ours p50/p99 µs', 'C p50/p99 µs',
  'floor ours', 'floor C', 'ours GC/run (scav/MC)', 'ours B/req', 'RSS MiB ours/C', 'CPU s/1M req ours/C',
];

export function cells(r: Row): string[] {
  const d = r.kind === 'data';
  return [
    r.name,
    fmtInt(r.ours.opsPerSec),
    fmtInt(r.c.opsPerSec),
    `${(r.ours.opsPerSec / r.c.opsPerSec).toFixed(2)}`,
    d ? fmtInt(r.ours.mbPerSec) : '',
    d ? fmtInt(r.c.mbPerSec) : '',
    `${fmtUs(r.ours.p50Us)}/${fmtUs(r.ours.p99Us)}`,
    `${fmtUs(r.c.p50Us)}/${fmtUs(r.c.p99Us)}`,
    fmtPct(r.ours.floorFraction),
    fmtPct(r.c.floorFraction),
    `${(r.ours.scavenges ?? 0).toFixed(1)}/${(r.ours.markCompacts ?? 0).toFixed(1)}`,
    r.ours.allocBytesPerRequest === undefined ? '' : fmtInt(r.ours.allocBytesPerRequest),
    `${r.ours.rssMb.toFixed(0)}/${r.c.rssMb.toFixed(0)}`,
    `${(r.ours.cpuPerMReq ?? 0).toFixed(1)}/${(r.c.cpuPerMReq ?? 0).toFixed(1)}`,
  ];
}

export function textTable(rows: Row[]): string {
  const all = [COLUMNS, ...rows.map(cells)];
  const w = COLUMNS.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ');
  return [line(COLUMNS), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map((r) => line(cells(r)))].join('\n');
}

export function markdownTable(rows: Row[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| ${COLUMNS.map(esc).join(' | ')} |`,
    `| ${COLUMNS.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${cells(r).map(esc).join(' | ')} |`),
  ].join('\n');
}

const xml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Grouped horizontal bars: per workload, ours and C ops/s scaled to the larger of the two; the ratio on the right. */
export function svgChart(rows: Row[], title: string): string {
  const left = 300, barW = 420, rowH = 44, top = 50, right = 150;
  const width = left + barW + right;
  const height = top + rows.length * rowH + 40;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`);
  out.push(`<text x="10" y="22" font-size="15" font-weight="bold">${xml(title)}</text>`);
  out.push(`<rect x="${left}" y="30" width="12" height="10" fill="#2b6cb0"/><text x="${left + 16}" y="39">ours (virtiofsd-ts)</text>`);
  out.push(`<rect x="${left + 150}" y="30" width="12" height="10" fill="#c05621"/><text x="${left + 166}" y="39">C virtiofsd</text>`);
  out.push(`<text x="${left + barW + 10}" y="39">ours / C</text>`);
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const max = Math.max(r.ours.opsPerSec, r.c.opsPerSec) || 1;
    const wo = (r.ours.opsPerSec / max) * barW;
    const wc = (r.c.opsPerSec / max) * barW;
    if (i % 2 === 1) out.push(`<rect x="0" y="${y - 4}" width="${width}" height="${rowH}" fill="#f4f4f4"/>`);
    out.push(`<text x="10" y="${y + 20}">${xml(r.name)}</text>`);
    out.push(`<rect x="${left}" y="${y}" width="${wo.toFixed(1)}" height="16" fill="#2b6cb0"/>`);
    out.push(`<text x="${left + 4}" y="${y + 12}" fill="${wo > 90 ? '#fff' : '#000'}">${xml(fmtInt(r.ours.opsPerSec))}/s</text>`);
    out.push(`<rect x="${left}" y="${y + 18}" width="${wc.toFixed(1)}" height="16" fill="#c05621"/>`);
    out.push(`<text x="${left + 4}" y="${y + 30}" fill="${wc > 90 ? '#fff' : '#000'}">${xml(fmtInt(r.c.opsPerSec))}/s</text>`);
    const ratio = r.ours.opsPerSec / r.c.opsPerSec;
    out.push(`<text x="${left + barW + 10}" y="${y + 22}" font-weight="bold" fill="${ratio >= 1 ? '#276749' : '#9b2c2c'}">${ratio.toFixed(2)}×</text>`);
  });
  out.push(`<text x="10" y="${height - 12}" fill="#555">ops/s, median of repetitions; bars scaled to the faster backend per row</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
