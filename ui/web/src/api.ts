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

async function apiGet<T>(path: string, query: URLSearchParams | null, signal?: AbortSignal): Promise<T> {
  const url = query && [...query.keys()].length ? `${path}?${query}` : path;
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
  if (!res.ok) {
    if (res.status === 401) window.dispatchEvent(new Event(UNAUTHORIZED_EVENT));
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
