// Log lines as a table: a sticky time column, the level in its colour, the service and the
// line. A click expands a line: every field and attribute, each value with buttons to filter
// by it or exclude it, its trace and span as links, and its context (the lines around it
// from the same pod, or service).
import { useState } from 'preact/hooks';
import { type LogLine, logContext, useApi } from '../api';
import { ErrorBanner, Link, Loading, ServiceDot } from '../components/common';
import { formatTime, formatValue, nanosToMs } from '../format';
import { href } from '../url';
import { LEVEL_COLORS, levelLabel, levelOf } from './levels';
import { condition, isFieldName } from './query';

export function bodyText(l: LogLine): string {
  return typeof l.body === 'string' ? l.body : JSON.stringify(l.body);
}

export function lineKey(l: LogLine, i: number): string {
  return `${l.timeUnixNano}:${l.serviceName}:${i}`;
}

type OnFilter = (cond: string) => void;

function FilterButtons(props: { field: string; value: string; onFilter: OnFilter }) {
  if (!isFieldName(props.field)) return null;
  return (
    <span class="kv-actions">
      <button
        type="button"
        class="btn btn-xs"
        title={`Only lines with ${props.field} = ${props.value}`}
        onClick={() => props.onFilter(condition(props.field, props.value))}
        data-testid="filter-for"
      >
        +
      </button>
      <button
        type="button"
        class="btn btn-xs"
        title={`Leave out lines with ${props.field} = ${props.value}`}
        onClick={() => props.onFilter(condition(props.field, props.value, true))}
        data-testid="filter-out"
      >
        −
      </button>
    </span>
  );
}

function Kv(props: { label: string; field?: string; value: unknown; onFilter?: OnFilter; children?: unknown }) {
  const text = formatValue(props.value);
  return (
    <tr>
      <th>{props.label}</th>
      <td class="mono">
        {props.children ?? text}
        {props.field && props.onFilter && <FilterButtons field={props.field} value={text} onFilter={props.onFilter} />}
      </td>
    </tr>
  );
}

function Context(props: { line: LogLine }) {
  const ctx = useApi((signal) => logContext(props.line, 10, signal), [props.line.timeUnixNano, props.line.serviceName]);
  if (ctx.loading) return <Loading what="context" />;
  if (ctx.error) return <ErrorBanner error={ctx.error} what="Loading the context" />;
  const c = ctx.data!;
  const row = (l: LogLine, cls: string, i: number) => (
    <div class={`ctx-line ${cls}`} key={lineKey(l, i)}>
      <span class="mono muted">{formatTime(nanosToMs(l.timeUnixNano))}</span> {bodyText(l)}
    </div>
  );
  return (
    <div class="log-context" data-testid="log-context">
      {c.before.length === 0 && <div class="muted small">No earlier lines.</div>}
      {c.before.map((l, i) => row(l, 'ctx-other', i))}
      {c.at.map((l, i) => row(l, l.timeUnixNano === props.line.timeUnixNano && bodyText(l) === bodyText(props.line) ? 'ctx-this' : 'ctx-other', i))}
      {c.after.map((l, i) => row(l, 'ctx-other', i))}
      {c.after.length === 0 && <div class="muted small">No later lines.</div>}
    </div>
  );
}

function Details(props: { line: LogLine; onFilter: OnFilter; time: Record<string, string | undefined> }) {
  const l = props.line;
  const [context, setContext] = useState(false);
  const attrs = Object.entries(l.attributes ?? {});
  const res = Object.entries(l.resource ?? {});
  return (
    <div class="log-details" data-testid="log-details">
      <div class="log-details-actions">
        {l.traceId && (
          <Link href={href(`/traces/${l.traceId}`, { ...props.time, span: l.spanId })} class="btn btn-xs">
            Open trace
          </Link>
        )}
        <button type="button" class="btn btn-xs" onClick={() => setContext(!context)} data-testid="show-context">
          {context ? 'Hide context' : 'Show context'}
        </button>
      </div>
      {context && <Context line={l} />}
      <table class="kv">
        <tbody>
          <Kv label="time" value={formatTime(nanosToMs(l.timeUnixNano))} />
          <Kv label="service" field="service" value={l.serviceName} onFilter={props.onFilter} />
          <Kv label="severity" value={`${levelLabel(l.severityNumber, l.severityText)} (${l.severityNumber})`} />
          {l.traceId && (
            <Kv label="trace_id" field="trace_id" value={l.traceId} onFilter={props.onFilter}>
              <Link href={href(`/traces/${l.traceId}`, props.time)}>{l.traceId}</Link>
            </Kv>
          )}
          {l.spanId && l.traceId && (
            <Kv label="span_id" value={l.spanId}>
              <Link href={href(`/traces/${l.traceId}`, { ...props.time, span: l.spanId })}>{l.spanId}</Link>
            </Kv>
          )}
          {l.scopeName && <Kv label="scope" value={l.scopeName} />}
          {attrs.map(([k, v]) => (
            <Kv key={`a:${k}`} label={k} field={`attributes.${k}`} value={v} onFilter={props.onFilter} />
          ))}
          {res.map(([k, v]) => (
            <Kv key={`r:${k}`} label={`resource.${k}`} field={`resource.${k}`} value={v} onFilter={props.onFilter} />
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function LogTable(props: {
  lines: LogLine[];
  onFilter: OnFilter;
  time: Record<string, string | undefined>;
  /** Shown instead of the time column: e.g. the offset into a trace. */
  timeOf?: (l: LogLine) => string;
  /** A link for each line's span (the trace view's Logs tab). */
  spanLink?: (l: LogLine) => string | null;
}) {
  const [open, setOpen] = useState<Set<string>>(new Set());
  const toggle = (k: string) => {
    const next = new Set(open);
    if (next.has(k)) next.delete(k);
    else next.add(k);
    setOpen(next);
  };
  return (
    <div class="log-table" data-testid="log-table">
      {props.lines.map((l, i) => {
        const k = lineKey(l, i);
        const level = levelOf(l.severityNumber);
        const span = props.spanLink?.(l);
        return (
          <div class={`log-row${open.has(k) ? ' open' : ''}`} key={k} data-testid="log-row">
            <div class="log-line" onClick={() => toggle(k)}>
              <span class="log-time mono">{props.timeOf ? props.timeOf(l) : formatTime(nanosToMs(l.timeUnixNano))}</span>
              <span class="log-level" style={{ color: LEVEL_COLORS[level], borderColor: LEVEL_COLORS[level] }}>
                {levelLabel(l.severityNumber, l.severityText)}
              </span>
              <span class="log-service">
                <ServiceDot name={l.serviceName} /> {l.serviceName}
              </span>
              <span class="log-body mono">{bodyText(l)}</span>
              {span && (
                <span class="log-span" onClick={(e) => e.stopPropagation()}>
                  <Link href={span} title="Show this line's span">
                    span
                  </Link>
                </span>
              )}
              {!span && l.traceId && (
                <span class="log-span" onClick={(e) => e.stopPropagation()}>
                  <Link href={href(`/traces/${l.traceId}`, { ...props.time, span: l.spanId })} title="Open this line's trace">
                    trace
                  </Link>
                </span>
              )}
            </div>
            {open.has(k) && <Details line={l} onFilter={props.onFilter} time={props.time} />}
          </div>
        );
      })}
    </div>
  );
}
