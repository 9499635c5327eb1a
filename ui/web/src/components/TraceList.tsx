// Trace search results list: one row per trace with root service/span, id, start, duration,
// span and error counts and per-service chips; a row links to the trace view.
import type { TraceSummary } from '../api';
import { formatAgo, formatDuration, formatTime, nanos, nanosToMs, serviceColor, shortId } from '../format';
import { onLinkClick } from '../url';
import { ErrorIcon, ServiceChip } from './common';

export type SortKey = 'recent' | 'oldest' | 'longest' | 'shortest' | 'spans';

export const SORTS: { key: SortKey; label: string }[] = [
  { key: 'recent', label: 'Most recent' },
  { key: 'oldest', label: 'Oldest' },
  { key: 'longest', label: 'Longest' },
  { key: 'shortest', label: 'Shortest' },
  { key: 'spans', label: 'Most spans' },
];

export function sortTraces(traces: TraceSummary[], key: SortKey): TraceSummary[] {
  const out = [...traces];
  const start = (t: TraceSummary) => nanos(t.startTimeUnixNano);
  switch (key) {
    case 'oldest':
      return out.sort((a, b) => (start(a) < start(b) ? -1 : start(a) > start(b) ? 1 : 0));
    case 'longest':
      return out.sort((a, b) => b.durationNanos - a.durationNanos);
    case 'shortest':
      return out.sort((a, b) => a.durationNanos - b.durationNanos);
    case 'spans':
      return out.sort((a, b) => b.spanCount - a.spanCount);
    default:
      return out.sort((a, b) => (start(a) > start(b) ? -1 : start(a) < start(b) ? 1 : 0));
  }
}

export function TraceList(props: { traces: TraceSummary[]; linkFor: (traceId: string) => string }) {
  const maxDur = Math.max(1, ...props.traces.map((t) => t.durationNanos));
  const now = Date.now();
  return (
    <ul class="trace-list">
      {props.traces.map((t) => {
        const startMs = nanosToMs(t.startTimeUnixNano);
        const color = serviceColor(t.rootServiceName);
        const hasErr = t.errorCount > 0;
        return (
          <li key={t.traceId}>
            <a
              href={props.linkFor(t.traceId)}
              onClick={onLinkClick}
              class={`trace-row${hasErr ? ' has-error' : ''}`}
              data-testid="trace-row"
              data-trace-id={t.traceId}
            >
              <span class="trace-row-bar" style={{ background: color }} />
              <div class="trace-row-main">
                <div class="trace-row-title">
                  {hasErr && <ErrorIcon title={`${t.errorCount} error spans`} />}
                  <span class="trace-svc" style={{ color }}>
                    {t.rootServiceName || '(unknown service)'}
                  </span>
                  <span class="trace-sep">:</span>
                  <span class="trace-name">{t.rootSpanName || '(missing root span)'}</span>
                  <span class="trace-id mono">{shortId(t.traceId)}</span>
                </div>
                <div class="trace-row-chips">
                  {t.services.map((s) => (
                    <ServiceChip key={s.name} name={s.name} count={s.spanCount} errors={s.errorCount} />
                  ))}
                </div>
              </div>
              <div class="trace-row-stats">
                <div class="trace-dur">{formatDuration(t.durationNanos)}</div>
                <div class="trace-durbar">
                  <span style={{ width: `${Math.max(1, (t.durationNanos / maxDur) * 100)}%` }} class={hasErr ? 'err' : ''} />
                </div>
                <div class="trace-counts">
                  <span>{t.spanCount} spans</span>
                  {hasErr && <span class="text-err">{t.errorCount} errors</span>}
                </div>
                <div class="trace-start muted" title={formatTime(startMs)}>
                  {formatTime(startMs).slice(0, 19)} · {formatAgo(startMs, now)}
                </div>
              </div>
            </a>
          </li>
        );
      })}
    </ul>
  );
}
