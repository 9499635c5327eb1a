// Trace model for the trace view: builds the span tree (children sorted by start), computes
// offsets relative to the trace start in exact nanoseconds, and flattens it for the waterfall.
import type { Span } from './api';
import { nanos } from './format';

export interface SpanNode {
  span: Span;
  depth: number;
  /** Offset of the span start from the trace start, in nanoseconds. */
  offset: number;
  children: SpanNode[];
  /** True when the span names a parent that is not in the trace. */
  orphan: boolean;
  /** Number of spans below this one. */
  descendants: number;
}

export interface TraceModel {
  traceId: string;
  roots: SpanNode[];
  byId: Map<string, SpanNode>;
  startNanos: bigint;
  /** End of the latest span minus the start of the earliest, in nanoseconds. */
  duration: number;
  spanCount: number;
  errorCount: number;
  services: { name: string; spanCount: number; errorCount: number }[];
  root: Span | undefined;
}

function cmpStart(a: SpanNode, b: SpanNode): number {
  return a.offset - b.offset || a.span.name.localeCompare(b.span.name);
}

export function buildTrace(traceId: string, spans: Span[]): TraceModel {
  let start: bigint | null = null;
  let end: bigint | null = null;
  for (const s of spans) {
    const st = nanos(s.startTimeUnixNano);
    const en = st + BigInt(Math.max(0, Math.round(s.durationNanos || 0)));
    if (start === null || st < start) start = st;
    if (end === null || en > end) end = en;
  }
  const startNanos = start ?? 0n;
  const byId = new Map<string, SpanNode>();
  const nodes: SpanNode[] = spans.map((span) => ({
    span,
    depth: 0,
    offset: Number(nanos(span.startTimeUnixNano) - startNanos),
    children: [],
    orphan: false,
    descendants: 0,
  }));
  for (const n of nodes) if (!byId.has(n.span.spanId)) byId.set(n.span.spanId, n);

  const roots: SpanNode[] = [];
  for (const n of nodes) {
    const pid = n.span.parentSpanId;
    const parent = pid ? byId.get(pid) : undefined;
    if (parent && parent !== n) parent.children.push(n);
    else {
      n.orphan = !!pid;
      roots.push(n);
    }
  }
  // Real roots first, then orphans; each group by start time.
  roots.sort((a, b) => Number(a.orphan) - Number(b.orphan) || cmpStart(a, b));

  // Assign depths iteratively (guards against parent cycles in malformed data).
  const seen = new Set<SpanNode>();
  const visit = (n: SpanNode, depth: number): number => {
    seen.add(n);
    n.depth = depth;
    n.children = n.children.filter((c) => !seen.has(c));
    n.children.sort(cmpStart);
    let count = 0;
    for (const c of n.children) count += 1 + visit(c, depth + 1);
    n.descendants = count;
    return count;
  };
  for (const r of roots) visit(r, 0);
  // Spans caught in a parent cycle never reached from a root: show them as extra roots.
  for (const n of nodes) {
    if (!seen.has(n)) {
      n.orphan = true;
      roots.push(n);
      visit(n, 0);
    }
  }

  const svc = new Map<string, { name: string; spanCount: number; errorCount: number }>();
  let errorCount = 0;
  for (const s of spans) {
    const name = s.serviceName || '(unknown)';
    const e = svc.get(name) ?? { name, spanCount: 0, errorCount: 0 };
    e.spanCount++;
    if (s.status?.code === 'error') {
      e.errorCount++;
      errorCount++;
    }
    svc.set(name, e);
  }
  return {
    traceId,
    roots,
    byId,
    startNanos,
    duration: start !== null && end !== null ? Number(end - start) : 0,
    spanCount: spans.length,
    errorCount,
    services: [...svc.values()].sort((a, b) => b.spanCount - a.spanCount || a.name.localeCompare(b.name)),
    root: roots[0]?.span,
  };
}

/** Depth-first rows, skipping the children of collapsed spans. */
export function visibleRows(model: TraceModel, collapsed: Set<string>): SpanNode[] {
  const out: SpanNode[] = [];
  const stack = [...model.roots].reverse();
  while (stack.length) {
    const n = stack.pop()!;
    out.push(n);
    if (!collapsed.has(n.span.spanId)) for (let i = n.children.length - 1; i >= 0; i--) stack.push(n.children[i]);
  }
  return out;
}

export function isError(span: Span): boolean {
  return span.status?.code === 'error';
}

/**
 * Whether a span matches the trace view's span search: `text` (case-insensitive) in its
 * name, service, span id, status message, event names, or any attribute key or value of the
 * span or its resource.
 */
export function spanMatches(span: Span, text: string): boolean {
  const needle = text.trim().toLowerCase();
  if (!needle) return false;
  const has = (v: unknown) => v !== undefined && v !== null && String(typeof v === 'object' ? JSON.stringify(v) : v).toLowerCase().includes(needle);
  if ([span.name, span.serviceName, span.spanId, span.status?.message].some(has)) return true;
  for (const attrs of [span.attributes, span.resource]) {
    for (const [k, v] of Object.entries(attrs ?? {})) if (has(k) || has(v)) return true;
  }
  return (span.events ?? []).some((e) => has(e.name));
}
