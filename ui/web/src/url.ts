// URL state for every page: client-side navigation over the history API, a hook that
// re-renders on URL changes, query-string helpers and time-range (from/to) parsing.
import { useEffect, useState } from 'preact/hooks';

const NAV_EVENT = 'loupe:navigate';

export type ParamValue = string | string[] | number | undefined | null;
export type ParamMap = Record<string, ParamValue>;

export interface Route {
  path: string;
  params: URLSearchParams;
}

function currentRoute(): Route {
  return { path: window.location.pathname, params: new URLSearchParams(window.location.search) };
}

/** Re-renders the caller whenever the URL changes (push, replace or back/forward). */
export function useRoute(): Route {
  const [route, setRoute] = useState<Route>(currentRoute);
  useEffect(() => {
    const update = () => setRoute(currentRoute());
    window.addEventListener('popstate', update);
    window.addEventListener(NAV_EVENT, update);
    return () => {
      window.removeEventListener('popstate', update);
      window.removeEventListener(NAV_EVENT, update);
    };
  }, []);
  return route;
}

/** Builds "path?query" from a map; empty strings, null and undefined are left out, arrays repeat. */
export function href(path: string, params: ParamMap = {}): string {
  const qs = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    const values = Array.isArray(value) ? value : [String(value)];
    for (const v of values) if (v !== '') qs.append(key, v);
  }
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  const target = new URL(to, window.location.origin);
  const next = target.pathname + target.search + target.hash;
  const cur = window.location.pathname + window.location.search + window.location.hash;
  if (next !== cur) {
    if (opts.replace) window.history.replaceState(null, '', next);
    else window.history.pushState(null, '', next);
  }
  window.dispatchEvent(new Event(NAV_EVENT));
}

/** Click handler for <a> elements: plain left clicks navigate in-app, modified clicks open normally. */
export function onLinkClick(e: MouseEvent): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.currentTarget as HTMLAnchorElement;
  if (a.target && a.target !== '_self') return;
  const url = new URL(a.href, window.location.href);
  if (url.origin !== window.location.origin) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
}

/** Returns the params as a plain map (repeated keys become arrays), for spreading into href(). */
export function paramsToMap(params: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const key of new Set(params.keys())) {
    const all = params.getAll(key);
    out[key] = all.length > 1 ? all : all[0];
  }
  return out;
}

// ---- time range ----

export const DEFAULT_FROM = 'now-1h';
export const DEFAULT_TO = 'now';

export const RELATIVE_RANGES: { from: string; label: string }[] = [
  { from: 'now-5m', label: 'Last 5 minutes' },
  { from: 'now-15m', label: 'Last 15 minutes' },
  { from: 'now-1h', label: 'Last 1 hour' },
  { from: 'now-6h', label: 'Last 6 hours' },
  { from: 'now-24h', label: 'Last 24 hours' },
  { from: 'now-7d', label: 'Last 7 days' },
];

const UNIT_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/**
 * Parses one end of a time range to unix milliseconds: "now", "now-15m" (units s m h d w),
 * unix milliseconds ("1700000000000") or anything Date.parse accepts (ISO 8601).
 * Returns null when the text is not a time.
 */
export function parseTimeExpr(text: string, nowMs: number = Date.now()): number | null {
  const t = text.trim();
  if (t === 'now') return nowMs;
  const rel = /^now-(\d+(?:\.\d+)?)([smhdw])$/.exec(t);
  if (rel) return nowMs - parseFloat(rel[1]) * UNIT_MS[rel[2]];
  if (/^\d{10,16}$/.test(t)) return Number(t);
  const parsed = Date.parse(t);
  return Number.isNaN(parsed) ? null : parsed;
}

export interface TimeRange {
  from: string;
  to: string;
}

export function timeRangeFrom(params: URLSearchParams): TimeRange {
  return { from: params.get('from') || DEFAULT_FROM, to: params.get('to') || DEFAULT_TO };
}

/** Resolves a range to [startMs, endMs]; invalid ends fall back to the defaults. */
export function resolveRange(range: TimeRange, nowMs: number = Date.now()): { startMs: number; endMs: number } {
  const startMs = parseTimeExpr(range.from, nowMs) ?? parseTimeExpr(DEFAULT_FROM, nowMs)!;
  const endMs = parseTimeExpr(range.to, nowMs) ?? nowMs;
  return startMs <= endMs ? { startMs, endMs } : { startMs: endMs, endMs: startMs };
}

export function isRelative(range: TimeRange): boolean {
  return range.from.startsWith('now') && range.to.startsWith('now');
}

export function rangeLabel(range: TimeRange): string {
  const preset = RELATIVE_RANGES.find((r) => r.from === range.from);
  if (preset && range.to === 'now') return preset.label;
  const rel = /^now-(.+)$/.exec(range.from);
  if (rel && range.to === 'now') return `Last ${rel[1]}`;
  const { startMs, endMs } = resolveRange(range);
  return `${formatShort(startMs)} → ${formatShort(endMs)}`;
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

function formatShort(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Value for an <input type="datetime-local"> (local time) from unix ms. */
export function toLocalInput(ms: number): string {
  const d = new Date(ms);
  return `${formatShort(ms).replace(' ', 'T')}:${pad(d.getSeconds())}`;
}

/** The time params to carry along when following a link to another page. */
export function timeParams(params: URLSearchParams): ParamMap {
  return { from: params.get('from') ?? undefined, to: params.get('to') ?? undefined };
}

// ---- Go-style durations (used by the trace search filters) ----

const DUR_UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Parses "100ms", "1.5s", "1m30s" to nanoseconds; returns null when invalid. */
export function parseGoDuration(text: string): number | null {
  const t = text.trim();
  if (!t) return null;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < t.length) {
    re.lastIndex = pos;
    const m = re.exec(t);
    if (!m) return null;
    total += parseFloat(m[1]) * DUR_UNIT_NS[m[2]];
    pos = re.lastIndex;
  }
  return total;
}
