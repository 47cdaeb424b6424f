/**
 * SVG chart of a guest benchmark: per workload, each backend's result relative to the best of the three
 * (1.0 = best; time rows are inverted so longer bars are always better). Plain SVG, no dependencies.
 */
export interface GuestChartRow {
  label: string;
  unit: string;
  higherBetter: boolean;
  values: Partial<Record<string, number>>;
}

const COLORS: Record<string, string> = { ours: '#2b6cb0', 'ours-poll': '#63b3ed', c: '#c05621', '9p': '#718096' };
const NAMES: Record<string, string> = {
  ours: 'ours (virtiofsd-ts)', 'ours-poll': 'ours --poll-us', c: 'C virtiofsd', '9p': 'virtio-9p',
};
const xml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function guestSvgChart(rows: GuestChartRow[], kinds: string[], title: string): string {
  const left = 280, barW = 380, barH = 12, right = 90, top = 50;
  const rowH = kinds.length * (barH + 2) + 10;
  const width = left + barW + right;
  const height = top + rows.length * rowH + 30;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${xml(title)}</text>`,
  ];
  kinds.forEach((k, i) => {
    const x = left + i * 140;
    out.push(`<rect x="${x}" y="30" width="10" height="10" fill="${COLORS[k] ?? '#000'}"/><text x="${x + 14}" y="39">${xml(NAMES[k] ?? k)}</text>`);
  });
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    if (i % 2 === 1) out.push(`<rect x="0" y="${y - 4}" width="${width}" height="${rowH}" fill="#f4f4f4"/>`);
    out.push(`<text x="10" y="${y + 14}">${xml(`${r.label} (${r.unit})`)}</text>`);
    // Goodness: the value itself when higher is better, its inverse for times.
    const good = (v: number | undefined): number => (v === undefined || v <= 0 ? 0 : r.higherBetter ? v : 1 / v);
    const best = Math.max(...kinds.map((k) => good(r.values[k]))) || 1;
    kinds.forEach((k, j) => {
      const v = r.values[k];
      const w = (good(v) / best) * barW;
      const by = y + j * (barH + 2);
      out.push(`<rect x="${left}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${COLORS[k] ?? '#000'}"/>`);
      out.push(`<text x="${left + w + 4}" y="${by + 10}">${v === undefined ? '—' : xml(String(v))}</text>`);
    });
  });
  out.push(`<text x="10" y="${height - 10}" fill="#555">bars relative to the best backend per row (times inverted: longer is better)</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
