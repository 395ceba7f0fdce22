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

/** The frame rows of one kind: time per commit, proxy CPU per commit, or bytes copied per commit. */
function frameFigures(kind: '' | 'cpu_' | 'copied_'): Figure[] {
  const out: Figure[] = [];
  for (const s of FRAME_SIZES)
    for (const m of FRAME_MODES)
      for (const d of FRAME_DAMAGE)
        out.push({
          key: kind + frameKey(s.name, m, d),
          label: frameLabel(s.name, m, d),
          unit: kind === 'copied_' ? 'MB' : 'ms',
          proxyOnly: kind !== '',
        });
  return out;
}

/** Bytes a frames client damages per commit (what a proxy that copies damage must copy). */
export function damagedMB(size: FrameSize, damage: FrameDamage): number {
  const s = FRAME_SIZES.find((x) => x.name === size)!;
  const pixels = damage === 100 ? s.width * s.height : (s.width / 4) * (s.height / 5);
  return (pixels * 4) / 1e6;
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
  { title: 'Frames: time per commit', figures: frameFigures('') },
  { title: 'Frames: proxy CPU time per commit', figures: frameFigures('cpu_') },
  {
    title:
      'Frames: bytes copied into host memory per commit (the client damages 8.3/0.41 MB at 1080p, 33/1.7 MB at 4K)',
    figures: frameFigures('copied_'),
  },
  {
    title: 'Proxy process',
    figures: [
      { key: 'startup', label: 'start-up: spawn → socket accepts', unit: 'ms', proxyOnly: true },
      { key: 'rss_1', label: 'RSS, 1 idle client', unit: 'MB', proxyOnly: true },
      { key: 'rss_20', label: 'RSS, 20 idle clients', unit: 'MB', proxyOnly: true },
      {
        key: 'rss_after',
        label: 'RSS, 1 idle client after all the loads',
        unit: 'MB',
        proxyOnly: true,
      },
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
  /** One memcpy of a 1920×1080 XRGB8888 frame, out of cache and cache-hot; of a 3840×2160 one. */
  memcpyColdMs: number;
  memcpyHotMs: number;
  memcpy4KColdMs: number;
}

/** For each tswl configuration, the configuration whose processes relay the same path. */
const FLOOR_OF: Record<string, string> = {
  'tswl-proxy': 'floor',
  'tswl-virtio-gpu': 'floor-2hop',
};

/**
 * The targets of the performance issue, read off the figures of one run: each tswl configuration
 * against its floor (as many minimal C relays as it has relaying processes), and frame costs
 * against a memcpy. Informational: nothing is asserted.
 */
export function readOffs(columns: Column[], ref: Reference): string[] {
  const byId = new Map(columns.map((c) => [c.id, c.values]));
  const direct = byId.get('direct') ?? {};
  const pct = (v: number | null): string => (v === null ? '—' : `${(v * 100).toFixed(0)} %`);
  const x = (v: number | null): string => (v === null ? '—' : `${format(v)}×`);
  const get = (v: Values | undefined, key: string): number | null => v?.[key] ?? null;
  const minus = (a: number | null, b: number | null): number | null =>
    a === null || b === null ? null : a - b;
  const out: string[] = [];
  for (const c of columns) {
    const floorId = FLOOR_OF[c.id];
    if (!floorId) continue;
    const v = c.values;
    const floor = byId.get(floorId);
    const cross = c.id === 'tswl-virtio-gpu';
    out.push(`${c.id} (against ${floorId}):`);
    const added = minus(get(v, 'roundtrip'), get(direct, 'roundtrip'));
    const floorAdded = minus(get(floor, 'roundtrip'), get(direct, 'roundtrip'));
    out.push(
      `  round trip: adds ${format(added)} µs, ${floorId} adds ${format(floorAdded)} µs → ` +
        `${x(ratio(added, floorAdded))} (target ≤ ${cross ? '1.3' : '1.15'}×)`,
    );
    out.push(
      `  request flood: ${pct(ratio(get(v, 'request_rate'), get(floor, 'request_rate')))} of ` +
        `${floorId}'s, event flood: ${pct(ratio(get(v, 'event_rate'), get(floor, 'event_rate')))} ` +
        `(target ≥ ${cross ? '85' : '95'} %)`,
    );
    out.push(
      `  start-up to a listening socket: ${format(v.startup)} ms (target ≤ 100 ms); RSS with 20 ` +
        `idle clients: ${format(v.rss_20_front)} MB in tswl-proxy, ${format(v.rss_20)} MB in ` +
        `all its processes (target ≤ 50 MB); after all the loads, ${format(v.rss_after)} MB ` +
        `against ${format(v.rss_1)} MB before them: ${x(ratio(v.rss_after, v.rss_1))} (target ≤ 1.2×)`,
    );
    if (!cross) continue;
    for (const size of ['1080p', '4K'] as const) {
      const memcpy = size === '1080p' ? ref.memcpyColdMs : ref.memcpy4KColdMs;
      const full = frameKey(size, 'free', 100);
      const small = frameKey(size, 'free', 5);
      const cpuFull = get(v, `cpu_${full}`);
      const time = minus(get(v, full), get(direct, full));
      out.push(
        `  ${size} full damage, unthrottled: CPU ${format(cpuFull)} ms = ` +
          `${x(ratio(cpuFull, memcpy))} one memcpy, time added ${format(time)} ms = ` +
          `${x(ratio(time, memcpy))} one memcpy (targets ≤ 1.3×)`,
      );
      out.push(
        `  ${size} 5 % damage, unthrottled: CPU ${pct(ratio(get(v, `cpu_${small}`), cpuFull))} of ` +
          `full damage's (target ≤ 25 %); copied ${format(get(v, `copied_${small}`))} MB per ` +
          `commit = ${x(ratio(get(v, `copied_${small}`), damagedMB(size, 5)))} what the client ` +
          `damaged (target ≤ 2×)`,
      );
      for (const d of FRAME_DAMAGE) {
        const key = frameKey(size, 'vsync', d);
        const copied = get(v, `copied_${key}`);
        // a memcpy of the bytes copied, at the out-of-cache memcpy's speed for this size
        const budget =
          copied === null ? null : (copied / damagedMB(size, 100)) * memcpy * 1.3 + 0.1;
        out.push(
          `  ${size} ${d === 100 ? 'full' : '5 %'} damage, frame callbacks: CPU ` +
            `${format(get(v, `cpu_${key}`))} ms for ${format(copied)} MB copied (target ≤ ` +
            `${format(budget)} ms: 1.3× a memcpy of those bytes + 0.1 ms)`,
        );
      }
    }
  }
  return out;
}
