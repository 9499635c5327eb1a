// Log explorer (/logs): the query bar, the histogram by severity (drag to zoom), the
// matching lines page by page (newest or oldest first), and live tail. The query (`q`), the
// order, live tail (`live=1`) and the time range are in the URL.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { type LogLine, type LogsPage, logHistogram, searchLogs, tailLogs, useApi } from '../api';
import { Empty, ErrorBanner, Loading } from '../components/common';
import { Histogram } from '../logs/Histogram';
import { LogTable } from '../logs/LogTable';
import { QueryBar } from '../logs/QueryBar';
import { withCondition } from '../logs/query';
import { href, navigate, paramsToMap, resolveRange, timeParams, timeRangeFrom, type Route } from '../url';

const PAGE = 100;
const LIVE_MAX = 1000;

export function LogsPage(props: { route: Route }) {
  const { params } = props.route;
  const q = params.get('q') ?? '';
  const order = params.get('order') === 'oldest' ? 'oldest' : 'newest';
  const live = params.get('live') === '1';
  const range = timeRangeFrom(params);
  const rangeKey = `${range.from}|${range.to}`;
  // Resolved once per change of the range, so "now-1h" does not move between requests.
  const { startMs, endMs } = useMemo(() => resolveRange(range), [rangeKey]);
  const time = timeParams(params) as Record<string, string | undefined>;

  const set = (changes: Record<string, string | undefined>) =>
    navigate(href('/logs', { ...paramsToMap(params), ...changes }));

  const first = useApi(
    (signal) => searchLogs({ query: q, start: startMs, end: endMs, limit: PAGE, order }, signal),
    [q, startMs, endMs, order],
  );
  const histogram = useApi((signal) => logHistogram({ query: q, start: startMs, end: endMs }, signal), [q, startMs, endMs]);
  const [more, setMore] = useState<LogsPage[]>([]);
  const [loadingMore, setLoadingMore] = useState(false);
  const [moreError, setMoreError] = useState<Error | undefined>();
  useEffect(() => setMore([]), [first.data]);

  // Live tail: new lines on top.
  const [tailed, setTailed] = useState<LogLine[]>([]);
  const [tailError, setTailError] = useState<Error | undefined>();
  useEffect(() => {
    setTailed([]);
    setTailError(undefined);
    if (!live) return;
    const ctl = new AbortController();
    tailLogs(q, (l) => setTailed((t) => [l, ...t].slice(0, LIVE_MAX)), ctl.signal).catch((e: Error) => {
      if (e.name !== 'AbortError') setTailError(e);
    });
    return () => ctl.abort();
  }, [live, q]);

  const pages = first.data ? [first.data, ...more] : [];
  const lines = [...tailed, ...pages.flatMap((p) => p.logs)];
  const cursor = pages.length ? pages[pages.length - 1].nextCursor : undefined;
  const loadMore = () => {
    if (!cursor) return;
    setLoadingMore(true);
    setMoreError(undefined);
    searchLogs({ query: q, start: startMs, end: endMs, limit: PAGE, order, cursor }).then(
      (p) => {
        setMore((m) => [...m, p]);
        setLoadingMore(false);
      },
      (e) => {
        setMoreError(e);
        setLoadingMore(false);
      },
    );
  };

  const fields = useMemo(() => {
    const keys = new Set<string>();
    for (const l of lines.slice(0, 200)) for (const k of Object.keys(l.attributes ?? {})) keys.add(k);
    return [...keys].sort();
  }, [pages.length, first.data, tailed.length]);

  return (
    <div class="page logs-page">
      <div class="logs-controls">
        <QueryBar value={q} onSubmit={(text) => set({ q: text.trim() || undefined })} fields={fields} range={{ start: startMs, end: endMs }} />
        <select
          value={order}
          onChange={(e) => set({ order: e.currentTarget.value === 'oldest' ? 'oldest' : undefined })}
          title="Which lines come first"
          data-testid="log-order"
        >
          <option value="newest">Newest first</option>
          <option value="oldest">Oldest first</option>
        </select>
        <button
          type="button"
          class={`btn${live ? ' btn-live' : ''}`}
          onClick={() => set({ live: live ? undefined : '1' })}
          title="Show new matching lines as they arrive"
          data-testid="live-toggle"
        >
          <span class={`live-dot${live ? ' on' : ''}`} /> {live ? 'Live' : 'Live tail'}
        </button>
      </div>
      <ErrorBanner error={first.error} what="Searching logs" />
      <ErrorBanner error={histogram.error} what="Counting lines" />
      <ErrorBanner error={tailError} what="Live tail" />
      {histogram.data && (
        <Histogram
          data={histogram.data}
          onZoom={(a, b) => set({ from: String(a), to: String(b) })}
        />
      )}
      {first.loading && !first.data && <Loading what="logs" />}
      {live && <div class="muted small live-note">Following new lines{tailed.length ? `: ${tailed.length} so far` : ''}…</div>}
      {first.data && lines.length === 0 && (
        <Empty>No lines match{q ? <> <code>{q}</code></> : ''} in this time range.</Empty>
      )}
      {lines.length > 0 && (
        <LogTable lines={lines} time={time} onFilter={(cond) => set({ q: withCondition(q, cond) })} />
      )}
      <ErrorBanner error={moreError} what="Loading more lines" />
      {cursor && !live && (
        <button type="button" class="btn load-more" onClick={loadMore} disabled={loadingMore} data-testid="load-more">
          {loadingMore ? 'Loading…' : `Load ${PAGE} more`}
        </button>
      )}
    </div>
  );
}
