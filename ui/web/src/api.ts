// Client for the Loupe query API (/api/v1): response types, bearer-token handling,
// error decoding, and a small data-loading hook.
import { useEffect, useState } from 'preact/hooks';

export interface ServiceSummary {
  name: string;
  spanCount: number;
  errorCount: number;
}

export interface TraceSummary {
  traceId: string;
  rootServiceName: string;
  rootSpanName: string;
  startTimeUnixNano: string;
  durationNanos: number;
  spanCount: number;
  errorCount: number;
  services: ServiceSummary[];
  /** Spans a TraceQL query matched (only for searches with `q`). */
  matchedSpanIds?: string[];
}

export type Attributes = Record<string, unknown>;

export interface SpanEvent {
  timeUnixNano: string;
  name: string;
  attributes?: Attributes;
}

export interface SpanLink {
  traceId: string;
  spanId: string;
  traceState?: string;
  attributes?: Attributes;
}

export type SpanKind = 'unspecified' | 'internal' | 'server' | 'client' | 'producer' | 'consumer';
export type StatusCode = 'unset' | 'ok' | 'error';

export interface Span {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: SpanKind;
  serviceName: string;
  startTimeUnixNano: string;
  durationNanos: number;
  status: { code: StatusCode; message?: string };
  attributes?: Attributes;
  resource?: Attributes;
  scope?: { name?: string; version?: string };
  events?: SpanEvent[];
  links?: SpanLink[];
  traceState?: string;
}

export interface Trace {
  traceId: string;
  spans: Span[];
}

export interface Operation {
  name: string;
  spanKind: string;
}

export interface TraceQuery {
  /** A TraceQL query; when set, it replaces the form's span conditions. */
  q?: string;
  service?: string;
  operation?: string;
  tags?: string[];
  status?: string;
  minDuration?: string;
  maxDuration?: string;
  start: number;
  end: number;
  limit?: number;
}

const TOKEN_KEY = 'loupe.apiToken';
export const UNAUTHORIZED_EVENT = 'loupe:unauthorized';

export function getToken(): string {
  try {
    return window.localStorage.getItem(TOKEN_KEY) ?? '';
  } catch {
    return '';
  }
}

export function setToken(token: string): void {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage unavailable: the token just is not kept */
  }
}

/** An API failure: HTTP status plus the server's {"error":{"code","message"}} when present. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A GET with the stored token: the status, the raw text and the body parsed as JSON (null
 * when it is not JSON). Network failures become ApiError; a 401 raises the token prompt. */
export async function fetchJson(url: string, signal?: AbortSignal): Promise<{ res: Response; text: string; body: any }> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let res: Response;
  try {
    res = await fetch(url, { headers, signal });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `Cannot reach the Loupe server: ${(e as Error).message}`);
  }
  const text = await res.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  if (res.status === 401) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
  return { res, text, body };
}

async function apiGet<T>(path: string, query: URLSearchParams | null, signal?: AbortSignal): Promise<T> {
  const url = query && [...query.keys()].length ? `${path}?${query}` : path;
  const { res, text, body } = await fetchJson(url, signal);
  if (!res.ok) {
    const err = body?.error;
    const message = err?.message || text.slice(0, 300) || res.statusText || 'request failed';
    throw new ApiError(res.status, err?.code || `http_${res.status}`, message);
  }
  if (body === null) throw new ApiError(res.status, 'bad_response', 'The server sent a response that is not JSON');
  return body as T;
}

const enc = encodeURIComponent;

export async function listServices(signal?: AbortSignal): Promise<string[]> {
  const r = await apiGet<{ services: string[] }>('/api/v1/services', null, signal);
  return r.services ?? [];
}

export async function listOperations(service: string, signal?: AbortSignal): Promise<Operation[]> {
  const r = await apiGet<{ operations: Operation[] }>(`/api/v1/services/${enc(service)}/operations`, null, signal);
  return r.operations ?? [];
}

export async function searchTraces(q: TraceQuery, signal?: AbortSignal): Promise<TraceSummary[]> {
  const p = new URLSearchParams();
  if (q.q) {
    p.set('q', q.q);
  } else {
    if (q.service) p.set('service', q.service);
    if (q.operation) p.set('operation', q.operation);
    for (const t of q.tags ?? []) p.append('tags', t);
    if (q.status) p.set('status', q.status);
    if (q.minDuration) p.set('minDuration', q.minDuration);
    if (q.maxDuration) p.set('maxDuration', q.maxDuration);
  }
  p.set('start', String(Math.floor(q.start)));
  p.set('end', String(Math.ceil(q.end)));
  if (q.limit) p.set('limit', String(q.limit));
  const r = await apiGet<{ traces: TraceSummary[] }>('/api/v1/traces', p, signal);
  return r.traces ?? [];
}

export async function getTrace(traceId: string, signal?: AbortSignal): Promise<Trace> {
  const r = await apiGet<Trace>(`/api/v1/traces/${enc(traceId)}`, null, signal);
  return { traceId: r.traceId ?? traceId, spans: r.spans ?? [] };
}

export interface Loaded<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
}

/**
 * Runs `load` whenever `deps` change (skipped while `enabled` is false), aborting the
 * previous request. Aborted requests never surface as errors.
 */
export function useApi<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[], enabled = true): Loaded<T> {
  const [state, setState] = useState<Loaded<T>>({ data: undefined, error: undefined, loading: enabled });
  useEffect(() => {
    if (!enabled) {
      setState({ data: undefined, error: undefined, loading: false });
      return;
    }
    const ctl = new AbortController();
    setState((s) => ({ data: s.data, error: undefined, loading: true }));
    load(ctl.signal).then(
      (data) => !ctl.signal.aborted && setState({ data, error: undefined, loading: false }),
      (error) => !ctl.signal.aborted && setState({ data: undefined, error, loading: false }),
    );
    return () => ctl.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [enabled, ...deps]);
  return state;
}

// ---- logs ----

export interface LogLine {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: number;
  severityText: string;
  serviceName: string;
  body: unknown;
  attributes: Attributes;
  resource: Attributes;
  traceId?: string;
  spanId?: string;
  scopeName: string;
  eventName?: string;
}

export interface LogsPage {
  logs: LogLine[];
  limit: number;
  nextCursor?: string;
}

export interface LogQuery {
  query: string;
  start: number;
  end: number;
  limit?: number;
  order?: 'newest' | 'oldest';
  cursor?: string;
}

function logParams(q: LogQuery): URLSearchParams {
  const p = new URLSearchParams();
  if (q.query.trim()) p.set('query', q.query);
  p.set('start', String(Math.floor(q.start)));
  p.set('end', String(Math.ceil(q.end)));
  if (q.limit) p.set('limit', String(q.limit));
  if (q.order) p.set('order', q.order);
  if (q.cursor) p.set('cursor', q.cursor);
  return p;
}

export async function searchLogs(q: LogQuery, signal?: AbortSignal): Promise<LogsPage> {
  const r = await apiGet<LogsPage>('/api/v1/logs', logParams(q), signal);
  return { logs: r.logs ?? [], limit: r.limit, nextCursor: r.nextCursor };
}

export interface LogHistogram {
  start: number;
  stepMs: number;
  times: number[];
  series: { level: string; counts: number[] }[];
  total: number;
}

export async function logHistogram(q: LogQuery, signal?: AbortSignal): Promise<LogHistogram> {
  return apiGet<LogHistogram>('/api/v1/logs/histogram', logParams(q), signal);
}

export interface LogFacets {
  field: string;
  values: { value: string; count: number }[];
  sampled: number;
  missing: number;
}

export async function logFacets(field: string, q: LogQuery, signal?: AbortSignal): Promise<LogFacets> {
  const p = logParams(q);
  p.set('field', field);
  p.set('limit', '20');
  p.set('sample', '1000');
  return apiGet<LogFacets>('/api/v1/logs/facets', p, signal);
}

export interface LogContext {
  before: LogLine[];
  at: LogLine[];
  after: LogLine[];
}

export async function logContext(line: LogLine, n: number, signal?: AbortSignal): Promise<LogContext> {
  const p = new URLSearchParams();
  p.set('time', line.timeUnixNano);
  p.set('service', line.serviceName);
  const pod = line.resource?.['k8s.pod.name'];
  if (typeof pod === 'string' && pod) p.set('pod', pod);
  p.set('before', String(n));
  p.set('after', String(n));
  return apiGet<LogContext>('/api/v1/logs/context', p, signal);
}

/**
 * Follows `/api/v1/logs/tail` (server-sent events, read with fetch so the bearer token is
 * sent) and calls `onLine` for each new line until `signal` aborts. Resolves when the
 * stream ends; rejects with an ApiError when the server refuses it.
 */
export async function tailLogs(query: string, onLine: (l: LogLine) => void, signal: AbortSignal): Promise<void> {
  const p = new URLSearchParams();
  if (query.trim()) p.set('query', query);
  const headers: Record<string, string> = { Accept: 'text/event-stream' };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`/api/v1/logs/tail?${p}`, { headers, signal });
  if (!res.ok || !res.body) {
    if (res.status === 401) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
    const text = await res.text();
    let message = text.slice(0, 300);
    try {
      message = JSON.parse(text)?.error?.message ?? message;
    } catch {
      /* plain text */
    }
    throw new ApiError(res.status, `http_${res.status}`, message || 'live tail failed');
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end: number;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trimStart();
      }
      if (event === 'log' && data) onLine(JSON.parse(data) as LogLine);
    }
  }
}
