// Client for Loupe's Prometheus API (/prometheus/api/v1): range queries, metric metadata,
// label names and values. Errors come back in Prometheus's envelope
// ({"status":"error","errorType","error"}) and surface as ApiError with that type and text.
import { ApiError, fetchJson } from '../api';

export interface PromSeries {
  metric: Record<string, string>;
  values: [number, string][];
}

export interface MetricInfo {
  name: string;
  type: string;
  unit: string;
  help: string;
}

async function promGet<T>(path: string, params: URLSearchParams, signal?: AbortSignal): Promise<T> {
  const { res, text, body } = await fetchJson(`/prometheus/api/v1/${path}?${params}`, signal);
  if (!res.ok || body?.status !== 'success') {
    throw new ApiError(res.status, body?.errorType || `http_${res.status}`, body?.error || text.slice(0, 300) || res.statusText);
  }
  return body.data as T;
}

/** A range query; `step` in seconds. */
export async function queryRange(
  query: string,
  startMs: number,
  endMs: number,
  step: number,
  signal?: AbortSignal,
): Promise<PromSeries[]> {
  const p = new URLSearchParams({ query, start: String(startMs / 1000), end: String(endMs / 1000), step: String(step) });
  const d = await promGet<{ resultType: string; result: PromSeries[] }>('query_range', p, signal);
  return d.result ?? [];
}

/** An exemplar: one measurement behind a series, usually naming the trace that made it. */
export interface PromExemplar {
  series: Record<string, string>;
  labels: Record<string, string>;
  /** Milliseconds since the epoch. */
  t: number;
  value: number;
}

/** The exemplars of the series a query's selectors select, in the range. */
export async function queryExemplars(query: string, startMs: number, endMs: number, signal?: AbortSignal): Promise<PromExemplar[]> {
  const p = new URLSearchParams({ query, start: String(startMs / 1000), end: String(endMs / 1000) });
  const d = await promGet<{ seriesLabels: Record<string, string>; exemplars: { labels: Record<string, string>; value: string; timestamp: number }[] }[]>(
    'query_exemplars',
    p,
    signal,
  );
  return (d ?? []).flatMap((s) =>
    s.exemplars.map((e) => ({ series: s.seriesLabels, labels: e.labels, t: Math.round(e.timestamp * 1000), value: Number(e.value) })),
  );
}

/** Every metric name in the range, with its type, unit and help where known. */
export async function listMetrics(startMs: number, endMs: number, signal?: AbortSignal): Promise<MetricInfo[]> {
  const range = new URLSearchParams({ start: String(startMs / 1000), end: String(endMs / 1000) });
  const [names, meta] = await Promise.all([
    promGet<string[]>('label/__name__/values', range, signal),
    promGet<Record<string, { type: string; unit: string; help: string }[]>>('metadata', new URLSearchParams(), signal),
  ]);
  // Histogram and summary parts take their family's metadata.
  const family = (n: string) => meta[n] ?? meta[n.replace(/_(bucket|sum|count)$/, '')];
  return names.map((name) => {
    const m = family(name)?.[0];
    // The parts of a histogram or summary: `_count` and `_sum` count like counters.
    const part = !meta[name] && /_(count|sum)$/.test(name) && (m?.type === 'histogram' || m?.type === 'summary');
    return { name, type: part ? 'counter' : m?.type ?? 'unknown', unit: m?.unit ?? '', help: m?.help ?? '' };
  });
}

/** Label names of a metric's series (without __name__). */
export async function labelNames(metric: string, startMs: number, endMs: number, signal?: AbortSignal): Promise<string[]> {
  const p = new URLSearchParams({ 'match[]': metric, start: String(startMs / 1000), end: String(endMs / 1000) });
  const names = await promGet<string[]>('labels', p, signal);
  return names.filter((n) => n !== '__name__');
}

export async function labelValues(
  metric: string,
  label: string,
  startMs: number,
  endMs: number,
  signal?: AbortSignal,
): Promise<string[]> {
  const p = new URLSearchParams({ 'match[]': metric, start: String(startMs / 1000), end: String(endMs / 1000) });
  return promGet<string[]>(`label/${encodeURIComponent(label)}/values`, p, signal);
}

/** A step giving about `points` points over the range (seconds, at least 1). */
export function autoStep(startMs: number, endMs: number, points = 240): number {
  return Math.max(1, Math.round((endMs - startMs) / 1000 / points));
}

/** The query the builder makes of its choices. */
export interface Builder {
  metric: string;
  filters: { label: string; value: string }[];
  groupBy: string[];
  rate: boolean;
  quantile: string;
}

function selector(b: Builder, name: string): string {
  const m = b.filters.filter((f) => f.label && f.value).map((f) => `${f.label}=${JSON.stringify(f.value)}`);
  return m.length ? `${name}{${m.join(', ')}}` : name;
}

export function buildQuery(b: Builder, type: string): string {
  if (!b.metric) return '';
  const by = b.groupBy.filter(Boolean);
  if (type === 'histogram' && b.quantile) {
    const base = b.metric.replace(/_bucket$/, '');
    const keys = [...by, 'le'].join(', ');
    return `histogram_quantile(${b.quantile}, sum by (${keys}) (rate(${selector(b, `${base}_bucket`)}[5m])))`;
  }
  const inner = b.rate ? `rate(${selector(b, b.metric)}[5m])` : selector(b, b.metric);
  if (by.length) return `sum by (${by.join(', ')}) (${inner})`;
  return b.rate ? `sum(${inner})` : inner;
}

/** An instant query's vector as `labels → value`. */
export async function queryInstant(query: string, signal?: AbortSignal): Promise<{ metric: Record<string, string>; value: number }[]> {
  const d = await promGet<{ resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] }>(
    'query',
    new URLSearchParams({ query }),
    signal,
  );
  return (d.result ?? []).map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}

/** Per-service request rate, error rate and p99 latency from OpenTelemetry HTTP server
 * histograms (`http.server.request.duration`), keyed by Prometheus `job`. */
export interface Red {
  rate: number;
  errors: number;
  p99: number | undefined;
}

export async function serviceRed(signal?: AbortSignal): Promise<Map<string, Red>> {
  const m = 'http_server_request_duration_seconds';
  const [rate, errors, p99] = await Promise.all([
    queryInstant(`sum by (job) (rate(${m}_count[5m]))`, signal),
    queryInstant(`sum by (job) (rate(${m}_count{http_response_status_code=~"5.."}[5m]))`, signal),
    queryInstant(`histogram_quantile(0.99, sum by (job, le) (rate(${m}_bucket[5m])))`, signal),
  ]);
  const out = new Map<string, Red>();
  for (const r of rate) out.set(r.metric.job ?? '', { rate: r.value, errors: 0, p99: undefined });
  for (const r of errors) {
    const e = out.get(r.metric.job ?? '');
    if (e) e.errors = r.value;
  }
  for (const r of p99) {
    const e = out.get(r.metric.job ?? '');
    if (e && Number.isFinite(r.value)) e.p99 = r.value;
  }
  return out;
}

/** The `job` of a service: `service.namespace/service.name` or the name alone. */
export function redOf(red: Map<string, Red> | undefined, service: string): Red | undefined {
  if (!red) return undefined;
  if (red.has(service)) return red.get(service);
  for (const [job, r] of red) if (job.endsWith(`/${service}`)) return r;
  return undefined;
}
