// Formatting helpers: nanosecond timestamps (kept exact with BigInt), durations,
// wall-clock times, attribute values and the per-service colour palette.

/** Parses a decimal nanosecond string exactly; invalid input becomes 0n. */
export function nanos(text: string | number | undefined | null): bigint {
  if (text === undefined || text === null || text === '') return 0n;
  try {
    return BigInt(typeof text === 'number' ? Math.trunc(text) : text);
  } catch {
    return 0n;
  }
}

/** Unix nanoseconds (string) to unix milliseconds (number, fractional part kept). */
export function nanosToMs(text: string): number {
  const n = nanos(text);
  return Number(n / 1_000_000n) + Number(n % 1_000_000n) / 1e6;
}

function trimNum(v: number, digits: number): string {
  return v.toFixed(digits).replace(/\.?0+$/, '');
}

/** Human duration from nanoseconds: 850ns, 12.3µs, 4.56ms, 1.2s, 2m 5s, 1h 3m. */
export function formatDuration(ns: number): string {
  if (!Number.isFinite(ns)) return '-';
  const abs = Math.abs(ns);
  const sign = ns < 0 ? '-' : '';
  if (abs === 0) return '0';
  if (abs < 1e3) return `${sign}${Math.round(abs)}ns`;
  if (abs < 1e6) return `${sign}${trimNum(abs / 1e3, abs < 1e4 ? 2 : 1)}µs`;
  if (abs < 1e9) return `${sign}${trimNum(abs / 1e6, abs < 1e7 ? 2 : 1)}ms`;
  if (abs < 60e9) return `${sign}${trimNum(abs / 1e9, 2)}s`;
  if (abs < 3600e9) {
    const m = Math.floor(abs / 60e9);
    return `${sign}${m}m ${Math.round((abs - m * 60e9) / 1e9)}s`;
  }
  const h = Math.floor(abs / 3600e9);
  return `${sign}${h}h ${Math.round((abs - h * 3600e9) / 60e9)}m`;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** Local wall-clock time with milliseconds: 2024-05-01 13:04:05.123 */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

/** Short relative age: "12s ago", "5m ago", "3h ago", "2d ago". */
export function formatAgo(ms: number, nowMs: number = Date.now()): string {
  const s = Math.max(0, Math.round((nowMs - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** Renders a JSON-typed attribute value: strings as-is, the rest as compact JSON. */
export function formatValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return String(v);
  return JSON.stringify(v);
}

// A fixed palette of distinguishable, mid-saturation colours that read on a light background.
// Red is left out: it marks errors.
const PALETTE = [
  '#2563eb', '#0d9488', '#d97706', '#7c3aed', '#db2777', '#0891b2',
  '#65a30d', '#ea580c', '#4338ca', '#a16207', '#c026d3', '#475569',
];

/** Stable colour for a service name (FNV-1a hash with a final bit mix, into the palette). */
export function serviceColor(name: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return PALETTE[(h >>> 0) % PALETTE.length];
}

/** Picks "nice" tick steps (1, 2, 5 × 10^n) for an axis spanning `span` units. */
export function niceTicks(span: number, target = 6): number[] {
  if (!(span > 0)) return [0];
  const raw = span / target;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = 0; v <= span + step * 1e-9; v += step) ticks.push(v);
  return ticks;
}
