// Span details panel of the trace view: identity, timing, status, attributes, resource,
// scope, events (exception stack traces in <pre>) and links of the selected span.
import type { ComponentChildren } from 'preact';
import type { Attributes, Span } from '../api';
import { formatDuration, formatTime, formatValue, nanos, nanosToMs, serviceColor } from '../format';
import { href } from '../url';
import { ErrorIcon, Link } from './common';

function AttrTable(props: { attrs: Attributes | undefined; empty?: string }) {
  const entries = Object.entries(props.attrs ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return <div class="muted small">{props.empty ?? 'none'}</div>;
  return (
    <table class="kv">
      <tbody>
        {entries.map(([k, v]) =>
          k === 'exception.stacktrace' && typeof v === 'string' ? (
            <tr key={k}>
              <td colSpan={2}>
                <div class="kv-key">{k}</div>
                <pre class="stack">{v}</pre>
              </td>
            </tr>
          ) : (
            <tr key={k}>
              <th title={k}>{k}</th>
              <td>
                <span class={typeof v === 'string' ? 'v-str' : 'v-typed'}>{formatValue(v)}</span>
              </td>
            </tr>
          ),
        )}
      </tbody>
    </table>
  );
}

function Section(props: { title: string; count?: number; children: ComponentChildren }) {
  return (
    <section class="sd-section">
      <h3>
        {props.title}
        {props.count !== undefined && <span class="count">{props.count}</span>}
      </h3>
      {props.children}
    </section>
  );
}

export function SpanDetails(props: { span: Span; traceStart: bigint; onClose: () => void; timeQuery: Record<string, string | undefined> }) {
  const s = props.span;
  const err = s.status?.code === 'error';
  const start = nanos(s.startTimeUnixNano);
  const offset = Number(start - props.traceStart);
  const attrCount = Object.keys(s.attributes ?? {}).length;
  const resCount = Object.keys(s.resource ?? {}).length;
  const events = s.events ?? [];
  const links = s.links ?? [];
  return (
    <aside class="span-details" data-testid="span-details" aria-label="Span details">
      <div class="sd-head">
        <span class="sd-svcbar" style={{ background: serviceColor(s.serviceName || '') }} />
        <div class="sd-title">
          <div class="sd-svc">{s.serviceName}</div>
          <div class="sd-name">
            {err && <ErrorIcon />} {s.name}
          </div>
        </div>
        <button type="button" class="btn btn-xs" onClick={props.onClose} title="Close details">
          ✕
        </button>
      </div>
      {err && (
        <div class="sd-error">
          <strong>Error</strong>
          {s.status.message ? `: ${s.status.message}` : ''}
        </div>
      )}
      <table class="kv sd-facts">
        <tbody>
          <tr><th>Service</th><td>{s.serviceName}</td></tr>
          <tr><th>Name</th><td>{s.name}</td></tr>
          <tr><th>Kind</th><td>{s.kind}</td></tr>
          <tr><th>Span ID</th><td class="mono">{s.spanId}</td></tr>
          <tr><th>Parent ID</th><td class="mono">{s.parentSpanId || <span class="muted">none (root span)</span>}</td></tr>
          <tr><th>Start</th><td>{formatTime(nanosToMs(s.startTimeUnixNano))} <span class="muted">(+{formatDuration(offset)})</span></td></tr>
          <tr><th>Duration</th><td>{formatDuration(s.durationNanos)} <span class="muted">({s.durationNanos.toLocaleString()} ns)</span></td></tr>
          <tr>
            <th>Status</th>
            <td>
              <span class={`status status-${s.status?.code ?? 'unset'}`}>{s.status?.code ?? 'unset'}</span>
              {s.status?.message && <span> {s.status.message}</span>}
            </td>
          </tr>
          {s.traceState && <tr><th>Trace state</th><td class="mono">{s.traceState}</td></tr>}
        </tbody>
      </table>
      <Section title="Attributes" count={attrCount}>
        <AttrTable attrs={s.attributes} />
      </Section>
      <Section title="Resource" count={resCount}>
        <AttrTable attrs={s.resource} />
      </Section>
      <Section title="Scope">
        {s.scope?.name ? (
          <div class="mono small sd-scope">
            {s.scope.name}
            {s.scope.version && <span class="muted"> {s.scope.version}</span>}
          </div>
        ) : (
          <div class="muted small">none</div>
        )}
      </Section>
      <Section title="Events" count={events.length}>
        {events.length === 0 && <div class="muted small">none</div>}
        {events.map((ev, i) => (
          <div key={i} class={`sd-event${ev.name === 'exception' ? ' exception' : ''}`}>
            <div class="sd-event-head">
              <span class="sd-event-off">+{formatDuration(Number(nanos(ev.timeUnixNano) - start))}</span>
              <strong>{ev.name}</strong>
            </div>
            <AttrTable attrs={ev.attributes} empty="no attributes" />
          </div>
        ))}
      </Section>
      <Section title="Links" count={links.length}>
        {links.length === 0 && <div class="muted small">none</div>}
        {links.map((l, i) => (
          <div key={i} class="sd-link">
            <div class="mono small">
              <Link href={href(`/traces/${encodeURIComponent(l.traceId)}`, { ...props.timeQuery, span: l.spanId })}>
                {l.traceId}
              </Link>{' '}
              / {l.spanId}
            </div>
            {l.traceState && <div class="muted small">trace state: {l.traceState}</div>}
            <AttrTable attrs={l.attributes} empty="no attributes" />
          </div>
        ))}
      </Section>
    </aside>
  );
}
