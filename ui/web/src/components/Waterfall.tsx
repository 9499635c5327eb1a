// Trace waterfall: span rows in tree order with indentation and collapse/expand, a service colour
// bar, and a span bar positioned on a shared time axis with its events as marks; error spans are
// red with an icon; spans matching the span search are highlighted.
import { formatDuration, nanos, niceTicks, serviceColor } from '../format';
import { isError, visibleRows, type SpanNode, type TraceModel } from '../trace';
import { ErrorIcon } from './common';

const KIND_ABBR: Record<string, string> = {
  server: 'SRV',
  client: 'CLI',
  producer: 'PRD',
  consumer: 'CNS',
  internal: 'INT',
};

function Ticks(props: { ticks: number[]; duration: number }) {
  return (
    <>
      {props.ticks.map((t) => (
        <span key={t} class="wf-gridline" style={{ left: `${(t / props.duration) * 100}%` }} />
      ))}
    </>
  );
}

function Row(props: {
  node: SpanNode;
  model: TraceModel;
  ticks: number[];
  selected: boolean;
  match: boolean;
  collapsed: boolean;
  onSelect: (spanId: string) => void;
  onToggle: (spanId: string) => void;
}) {
  const { node, model, ticks } = props;
  const s = node.span;
  const err = isError(s);
  const color = serviceColor(s.serviceName || '');
  const total = model.duration || 1;
  const left = (node.offset / total) * 100;
  const width = Math.max(0, (s.durationNanos / total) * 100);
  // Duration label: right of the bar, else left of it, else inside it.
  const labelPos = left + width < 80 ? 'right' : left > 14 ? 'left' : 'inside';
  return (
    <div
      class={`wf-row${props.selected ? ' selected' : ''}${err ? ' error' : ''}${props.match ? ' match' : ''}`}
      data-testid="waterfall-row"
      data-span-id={s.spanId}
      role="row"
      aria-selected={props.selected}
      onClick={() => props.onSelect(s.spanId)}
    >
      <div class="wf-name" style={{ paddingLeft: `${4 + node.depth * 14}px` }}>
        {node.children.length > 0 ? (
          <button
            type="button"
            class="wf-toggle"
            title={props.collapsed ? `Expand (${node.descendants} spans)` : 'Collapse'}
            aria-expanded={!props.collapsed}
            onClick={(e) => {
              e.stopPropagation();
              props.onToggle(s.spanId);
            }}
          >
            {props.collapsed ? '▸' : '▾'}
          </button>
        ) : (
          <span class="wf-toggle-space" />
        )}
        <span class="wf-svcbar" style={{ background: color }} />
        <span class="wf-label" title={`${s.serviceName}: ${s.name}`}>
          {err && <ErrorIcon title={s.status?.message || 'error'} />}
          <span class="wf-svc" style={{ color }}>
            {s.serviceName}
          </span>
          <span class="wf-op">{s.name}</span>
          {props.collapsed && <span class="wf-hidden">+{node.descendants}</span>}
          {node.orphan && <span class="wf-orphan" title={`parent ${s.parentSpanId} is not in this trace`}>orphan</span>}
        </span>
        {KIND_ABBR[s.kind] && <span class="wf-kind">{KIND_ABBR[s.kind]}</span>}
      </div>
      <div class="wf-timeline">
        <Ticks ticks={ticks} duration={total} />
        <span
          class="wf-bar"
          style={{ left: `${left}%`, width: `${width}%`, background: err ? 'var(--err)' : color }}
        />
        {(s.events ?? []).map((e, i) => {
          const at = Number(nanos(e.timeUnixNano) - model.startNanos);
          return (
            <span
              key={i}
              class={`wf-event${e.name === 'exception' ? ' wf-event-err' : ''}`}
              style={{ left: `${Math.min(100, Math.max(0, (at / total) * 100))}%` }}
              title={`${e.name} at ${formatDuration(at)}`}
              data-testid="span-event"
            />
          );
        })}
        <span
          class={`wf-dur wf-dur-${labelPos}${err ? ' text-err' : ''}`}
          style={
            labelPos === 'right'
              ? { left: `calc(${left + width}% + 4px)` }
              : labelPos === 'left'
                ? { right: `calc(${100 - left}% + 4px)` }
                : { right: `calc(${100 - left - width}% + 4px)` }
          }
        >
          {formatDuration(s.durationNanos)}
        </span>
      </div>
    </div>
  );
}

export function Waterfall(props: {
  model: TraceModel;
  selectedId: string | null;
  matches: Set<string>;
  collapsed: Set<string>;
  onSelect: (spanId: string) => void;
  onToggle: (spanId: string) => void;
  onCollapseAll: () => void;
  onExpandAll: () => void;
}) {
  const { model } = props;
  const rows = visibleRows(model, props.collapsed);
  const total = model.duration || 1;
  const ticks = niceTicks(total, 6).filter((t) => t <= total);
  return (
    <div class="waterfall" role="table" aria-label="Span waterfall">
      <div class="wf-head" role="row">
        <div class="wf-name wf-head-name">
          <span>Service · operation</span>
          <span class="wf-head-actions">
            <button type="button" class="btn btn-xs" onClick={props.onExpandAll}>
              Expand all
            </button>
            <button type="button" class="btn btn-xs" onClick={props.onCollapseAll}>
              Collapse all
            </button>
          </span>
        </div>
        <div class="wf-timeline wf-axis">
          {ticks.map((t) => (
            <span
              key={t}
              class="wf-tick"
              style={t / total > 0.93 ? { right: `${100 - (t / total) * 100}%` } : { left: `${(t / total) * 100}%` }}
            >
              {formatDuration(t)}
            </span>
          ))}
        </div>
      </div>
      {rows.map((n) => (
        <Row
          key={n.span.spanId}
          node={n}
          model={model}
          ticks={ticks}
          selected={props.selectedId === n.span.spanId}
          match={props.matches.has(n.span.spanId)}
          collapsed={props.collapsed.has(n.span.spanId)}
          onSelect={props.onSelect}
          onToggle={props.onToggle}
        />
      ))}
    </div>
  );
}
