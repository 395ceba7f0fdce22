// What the benchmark reports: the figures, the table, and the targets to read off it.

export interface Figure {
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  /** Higher is better (rates); lower is better otherwise. Only used in the explanation. */
  readonly higherIsBetter?: boolean;
  /** Only the proxies have it (CPU of the proxy, memory, start-up): no ratio to direct. */
  readonly proxyOnly?: boolean;
}

export interface Section {
  readonly title: string;
  readonly figures: Figure[];
}

export const FRAME_SIZES = [
  { name: '1080p', width: 1920, height: 1080 },
  { name: '4K', width: 3840, height: 2160 },
] as const;
export const FRAME_MODES = ['vsync', 'free'] as const;
export const FRAME_DAMAGE = [100, 5] as const;

export type FrameSize = (typeof FRAME_SIZES)[number]['name'];
export type FrameMode = (typeof FRAME_MODES)[number];
export type FrameDamage = (typeof FRAME_DAMAGE)[number];

export function frameKey(size: FrameSize, mode: FrameMode, damage: FrameDamage): string {
  return `frame_${size}_${mode}_${damage}`;
}

function frameLabel(size: FrameSize, mode: FrameMode, damage: FrameDamage): string {
  const how = mode === 'vsync' ? 'frame callbacks' : 'unthrottled';
  return `${size}, ${damage === 100 ? 'full' : '5 %'} damage, ${how}`;
}

function frameFigures(cpu: boolean): Figure[] {
  const out: Figure[] = [];
  for (const s of FRAME_SIZES)
    for (const m of FRAME_MODES)
      for (const d of FRAME_DAMAGE)
        out.push({
          key: (cpu ? 'cpu_' : '') + frameKey(s.name, m, d),
          label: frameLabel(s.name, m, d),
          unit: 'ms',
          proxyOnly: cpu,
        });
  return out;
}

export const SECTIONS: Section[] = [
  {
    title: 'Protocol',
    figures: [
      { key: 'roundtrip', label: 'round trip (wl_display.sync)', unit: 'µs' },
      {
        key: 'request_rate',
        label: 'request flood (wl_surface.damage)',
        unit: 'M/s',
        higherIsBetter: true,
      },
      {
        key: 'event_rate',
        label: 'event flood (sync callbacks)',
        unit: 'M/s',
        higherIsBetter: true,
      },
      { key: 'connect', label: 'connect + first registry round trip', unit: 'ms' },
      { key: 'cpu_roundtrip', label: 'proxy CPU per round trip', unit: 'µs', proxyOnly: true },
      { key: 'cpu_request', label: 'proxy CPU per request', unit: 'ns', proxyOnly: true },
      { key: 'cpu_event', label: 'proxy CPU per event', unit: 'ns', proxyOnly: true },
    ],
  },
  { title: 'Frames: time per commit', figures: frameFigures(false) },
  { title: 'Frames: proxy CPU time per commit', figures: frameFigures(true) },
  {
    title: 'Proxy process',
    figures: [
      { key: 'startup', label: 'start-up: spawn → socket accepts', unit: 'ms', proxyOnly: true },
      { key: 'rss_1', label: 'RSS, 1 idle client', unit: 'MB', proxyOnly: true },
      { key: 'rss_20', label: 'RSS, 20 idle clients', unit: 'MB', proxyOnly: true },
      {
        key: 'rss_20_front',
        label: '  of which the process apps connect to',
        unit: 'MB',
        proxyOnly: true,
      },
      { key: 'pss_20', label: 'PSS, 20 idle clients', unit: 'MB', proxyOnly: true },
      { key: 'fds_1', label: 'open fds, 1 idle client', unit: '', proxyOnly: true },
      { key: 'fds_20', label: 'open fds, 20 idle clients', unit: '', proxyOnly: true },
    ],
  },
];

export const FIGURES: Figure[] = SECTIONS.flatMap((s) => s.figures);

/** Figure values of one configuration; null where it has none (direct has no proxy CPU). */
export type Values = Record<string, number | null>;

export function median(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function format(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return v.toFixed(digits);
}

export function ratio(
  v: number | null | undefined,
  base: number | null | undefined,
): number | null {
  if (v === null || v === undefined || base === null || base === undefined || base === 0)
    return null;
  return v / base;
}

export interface Column {
  readonly id: string;
  readonly title: string;
  readonly values: Values;
}

/** The table: one row per figure, one column per configuration, with the ratio to direct. */
export function renderTable(columns: Column[]): string {
  const direct = columns.find((c) => c.id === 'direct')?.values ?? {};
  const header = ['figure', 'unit', ...columns.map((c) => c.id)];
  const rows: string[][] = [];
  for (const section of SECTIONS) {
    rows.push([section.title]);
    for (const f of section.figures) {
      const cells = columns.map((c) => {
        const v = c.values[f.key];
        const r = f.proxyOnly || c.id === 'direct' ? null : ratio(v, direct[f.key]);
        return r === null ? format(v) : `${format(v)} (${r.toFixed(2)}×)`;
      });
      rows.push([`  ${f.label}`, f.unit, ...cells]);
    }
  }
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.filter((r) => r.length > 1).map((r) => r[i].length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of rows) out.push(r.length === 1 ? r[0] : line(r));
  return out.join('\n');
}

export interface Reference {
  /** One memcpy of a 1920×1080 XRGB8888 frame, out of cache and cache-hot. */
  memcpyColdMs: number;
  memcpyHotMs: number;
}

/** The targets of the issue, read off the figures. Informational: nothing is asserted. */
export function readOffs(columns: Column[], ref: Reference): string[] {
  const byId = new Map(columns.map((c) => [c.id, c.values]));
  const direct = byId.get('direct') ?? {};
  const waypipe = byId.get('waypipe');
  const pct = (v: number | null): string => (v === null ? '—' : `${(v * 100).toFixed(0)} %`);
  const out: string[] = [];
  for (const c of columns) {
    if (!c.id.startsWith('tswl')) continue;
    const v = c.values;
    const added = (x: Values | undefined): number | null =>
      x && x.roundtrip !== null && direct.roundtrip !== null
        ? x.roundtrip - direct.roundtrip
        : null;
    const mine = added(v);
    const theirs = added(waypipe);
    out.push(`${c.id}:`);
    out.push(
      `  round trip: adds ${format(mine)} µs, waypipe adds ${format(theirs)} µs → ` +
        `${format(ratio(mine, theirs))} of waypipe's (target ≤ 0.33)`,
    );
    out.push(
      `  request flood: ${pct(ratio(v.request_rate, direct.request_rate))} of direct, ` +
        `event flood: ${pct(ratio(v.event_rate, direct.event_rate))} of direct (target ≥ 90 %)`,
    );
    out.push(
      `  RSS with 20 idle clients: ${format(v.rss_20_front)} MB in tswl-proxy, ` +
        `${format(v.rss_20)} MB in all its processes (target ≤ 60 MB)`,
    );
    out.push(`  start-up to a listening socket: ${format(v.startup)} ms (target ≤ 150 ms)`);
    const full = frameKey('1080p', 'free', 100);
    const time = v[full] ?? null;
    const base = direct[full] ?? null;
    const extra = time !== null && base !== null ? time - base : null;
    out.push(
      `  full-damage 1080p commit, unthrottled: proxy CPU ${format(v['cpu_' + full])} ms = ` +
        `${format(ratio(v['cpu_' + full], ref.memcpyColdMs))}× one memcpy; time added over ` +
        `direct ${format(extra)} ms = ${format(ratio(extra, ref.memcpyColdMs))}× one memcpy` +
        (c.id === 'tswl-virtio-gpu' ? ' (target ≤ 1.3× over the local link)' : ''),
    );
  }
  return out;
}
