// Trace view page (/traces/:traceId): trace header, a span search box (the URL's `find`)
// that highlights matching spans, the waterfall and the details panel of the span selected
// in the URL's `span` param; the Logs tab (`tab=logs`) lists the trace's log lines.
import { useMemo, useState } from 'preact/hooks';
import { ApiError, getTrace, searchLogs, useApi } from '../api';
import { ErrorBanner, ErrorIcon, Link, Loading, ServiceChip } from '../components/common';
import { SpanDetails } from '../components/SpanDetails';
import { Waterfall } from '../components/Waterfall';
import { TraceLogs } from '../logs/TraceLogs';
import { formatDuration, formatTime, nanosToMs } from '../format';
import { buildTrace, spanMatches } from '../trace';
import { href, navigate, paramsToMap, timeParams, type Route } from '../url';

export function TraceViewPage(props: { route: Route; traceId: string }) {
  const { params } = props.route;
  const { traceId } = props;
  const result = useApi((signal) => getTrace(traceId, signal), [traceId]);
  const model = useMemo(() => (result.data ? buildTrace(traceId, result.data.spans) : null), [result.data, traceId]);
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  // The trace's log lines: by its id, from an hour before its start to an hour after its end.
  const startMs = model ? Number(model.startNanos / 1_000_000n) : 0;
  const endMs = model ? startMs + model.duration / 1e6 : 0;
  const logs = useApi(
    async (signal) =>
      (
        await searchLogs(
          { query: `trace_id:${traceId}`, start: startMs - 3600e3, end: endMs + 3600e3, order: 'oldest', limit: 1000 },
          signal,
        )
      ).logs,
    [traceId, startMs],
    !!model,
  );
  const tab = params.get('tab') === 'logs' ? 'logs' : 'timeline';
  const setTab = (t: string) =>
    navigate(href(props.route.path, { ...paramsToMap(params), tab: t === 'logs' ? 'logs' : undefined }), { replace: true });

  const find = params.get('find') ?? '';
  const matches = useMemo(() => {
    const out = new Set<string>();
    if (model && find.trim()) for (const n of model.byId.values()) if (spanMatches(n.span, find)) out.add(n.span.spanId);
    return out;
  }, [model, find]);
  const setFind = (text: string) =>
    navigate(href(props.route.path, { ...paramsToMap(params), find: text || undefined }), { replace: true });

  const selectedId = params.get('span');
  const selected = selectedId && model ? model.byId.get(selectedId)?.span : undefined;
  const time = timeParams(params) as Record<string, string | undefined>;
  const backHref = href('/traces', time);

  const select = (spanId: string | null) =>
    navigate(href(props.route.path, { ...paramsToMap(params), span: spanId ?? undefined }), { replace: true });
  const toggle = (spanId: string) => {
    const next = new Set(collapsed);
    if (next.has(spanId)) next.delete(spanId);
    else next.add(spanId);
    setCollapsed(next);
  };
  const collapseAll = () => {
    if (!model) return;
    const all = new Set<string>();
    for (const n of model.byId.values()) if (n.children.length && n.depth > 0) all.add(n.span.spanId);
    setCollapsed(all);
  };

  const notFound = result.error instanceof ApiError && result.error.status === 404;
  return (
    <div class="page trace-page">
      <div class="crumbs">
        <Link href={backHref}>← Traces</Link>
      </div>
      {notFound ? (
        <div class="error-banner" role="alert" data-testid="error-banner">
          <strong>Trace not found</strong>
          <span class="error-msg">
            No trace <code>{traceId}</code> is stored{result.error?.message ? ` (${result.error.message})` : ''}. It may have
            expired or not arrived yet.
          </span>
        </div>
      ) : (
        <ErrorBanner error={result.error} what="Loading the trace" />
      )}
      {result.loading && !model && <Loading what="trace" />}
      {model && model.spanCount === 0 && <div class="empty">This trace has no spans.</div>}
      {model && model.spanCount > 0 && (
        <>
          <header class="trace-header">
            <h1>
              {model.errorCount > 0 && <ErrorIcon title={`${model.errorCount} error spans`} />}
              <span>{model.root?.serviceName}</span>
              <span class="trace-sep">:</span>
              <span class="trace-h-name">{model.root?.name}</span>
            </h1>
            <dl class="trace-facts">
              <div>
                <dt>Trace ID</dt>
                <dd class="mono">{model.traceId}</dd>
              </div>
              <div>
                <dt>Start</dt>
                <dd>{formatTime(nanosToMs(model.startNanos.toString()))}</dd>
              </div>
              <div>
                <dt>Duration</dt>
                <dd>{formatDuration(model.duration)}</dd>
              </div>
              <div>
                <dt>Spans</dt>
                <dd>{model.spanCount}</dd>
              </div>
              <div>
                <dt>Errors</dt>
                <dd class={model.errorCount ? 'text-err' : ''}>{model.errorCount}</dd>
              </div>
              <div>
                <dt>Services</dt>
                <dd class="chips">
                  {model.services.map((s) => (
                    <ServiceChip key={s.name} name={s.name} count={s.spanCount} errors={s.errorCount} />
                  ))}
                </dd>
              </div>
            </dl>
          </header>
          <div class="span-search">
            <input
              type="search"
              placeholder="Find spans: name, service, attribute, id…"
              value={find}
              onInput={(e) => setFind(e.currentTarget.value)}
              data-testid="span-search"
            />
            {find.trim() && (
              <span class="muted small" data-testid="span-search-count">
                {matches.size} of {model.spanCount} spans match
              </span>
            )}
          </div>
          <div class="tabs" role="tablist">
            <button type="button" role="tab" class={tab === 'timeline' ? 'active' : ''} onClick={() => setTab('timeline')}>
              Timeline
            </button>
            <button
              type="button"
              role="tab"
              class={tab === 'logs' ? 'active' : ''}
              onClick={() => setTab('logs')}
              data-testid="logs-tab"
            >
              Logs{logs.data ? ` (${logs.data.length})` : ''}
            </button>
          </div>
          {tab === 'logs' && (
            <TraceLogs
              logs={logs}
              traceStart={model.startNanos}
              spanIds={new Set(model.byId.keys())}
              path={props.route.path}
              params={paramsToMap(params)}
              time={time}
            />
          )}
          <div class={`trace-body${selected ? ' with-details' : ''}`} style={tab === 'logs' ? { display: 'none' } : undefined}>
            <Waterfall
              model={model}
              matches={matches}
              selectedId={selectedId}
              collapsed={collapsed}
              onSelect={(id) => select(id === selectedId ? null : id)}
              onToggle={toggle}
              onCollapseAll={collapseAll}
              onExpandAll={() => setCollapsed(new Set())}
            />
            {selected && (
              <SpanDetails span={selected} traceStart={model.startNanos} onClose={() => select(null)} timeQuery={time} />
            )}
          </div>
          {selectedId && !selected && (
            <div class="muted small">Span {selectedId} from the link is not in this trace.</div>
          )}
        </>
      )}
    </div>
  );
}
