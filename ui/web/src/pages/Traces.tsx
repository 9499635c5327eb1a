// Traces page (/traces): the search form on the left; a TraceQL box, the duration scatter and
// the result list on the right. Filters (or the TraceQL query `q`) live in the URL; with none,
// the page shows the most recent traces of the time range, as Grafana's Explore does.
import { useMemo, useState } from 'preact/hooks';
import { searchTraces, useApi } from '../api';
import { Empty, ErrorBanner, Loading } from '../components/common';
import { Scatter } from '../components/Scatter';
import { DEFAULT_LIMIT, SearchForm, filtersFromParams, type SearchFilters } from '../components/SearchForm';
import { SORTS, TraceList, sortTraces, type SortKey } from '../components/TraceList';
import { TraceQLBox } from '../components/TraceQLBox';
import { href, navigate, paramsToMap, resolveRange, timeParams, timeRangeFrom, type Route } from '../url';

export function TracesPage(props: { route: Route }) {
  const { params } = props.route;
  const [nonce, setNonce] = useState(0);
  const filters = filtersFromParams(params);
  const traceql = params.get('q') ?? '';
  const sort = (params.get('sort') as SortKey) || 'recent';

  // Everything but the display-only sort order is part of the query.
  const queryParams = new URLSearchParams(params);
  queryParams.delete('sort');
  const queryKey = queryParams.toString();

  // Relative ranges ("now-1h") are resolved when the search runs, so it is recomputed per search.
  const range = useMemo(() => resolveRange(timeRangeFrom(params)), [queryKey, nonce]);

  const result = useApi(
    (signal) =>
      searchTraces(
        {
          q: traceql || undefined,
          service: filters.service,
          operation: filters.operation,
          tags: filters.tags,
          status: filters.status,
          minDuration: filters.minDuration,
          maxDuration: filters.maxDuration,
          limit: Number(filters.limit) || Number(DEFAULT_LIMIT),
          start: range.startMs,
          end: range.endMs,
        },
        signal,
      ),
    [queryKey, nonce],
  );

  const onSearch = (f: SearchFilters) => {
    const next = href('/traces', {
      ...timeRangeFrom(params),
      service: f.service,
      operation: f.operation,
      tags: f.tags,
      status: f.status,
      minDuration: f.minDuration,
      maxDuration: f.maxDuration,
      limit: f.limit,
      sort: params.get('sort'),
    });
    navigate(next);
    setNonce(nonce + 1);
  };

  // A TraceQL query replaces the form's conditions (the limit and time range stay).
  const onQuery = (q: string) => {
    navigate(href('/traces', { ...timeRangeFrom(params), q, limit: filters.limit, sort: params.get('sort') }));
    setNonce(nonce + 1);
  };

  const linkFor = (traceId: string) => href(`/traces/${encodeURIComponent(traceId)}`, timeParams(params));
  const setSort = (key: string) => navigate(href('/traces', { ...paramsToMap(params), sort: key === 'recent' ? undefined : key }), { replace: true });
  const traces = useMemo(() => sortTraces(result.data ?? [], sort), [result.data, sort]);

  return (
    <div class="page traces-page">
      <aside class="search-panel">
        <h2>Search traces</h2>
        {traceql && <div class="muted small">A TraceQL query is active; searching with the form replaces it.</div>}
        <SearchForm initial={filters} onSearch={onSearch} busy={result.loading} />
      </aside>
      <section class="results">
        <TraceQLBox initial={traceql} onRun={onQuery} busy={result.loading} />
        <ErrorBanner error={result.error} what={traceql ? 'TraceQL query' : 'Trace search'} />
        {result.loading && !result.data && <Loading what="traces" />}
        {result.data && (
          <>
            <Scatter traces={result.data} startMs={range.startMs} endMs={range.endMs} onOpen={(id) => navigate(linkFor(id))} />
            <div class="results-head">
              <span>
                <strong>{result.data.length}</strong> trace{result.data.length === 1 ? '' : 's'}
                {result.data.length >= (Number(filters.limit) || 0) && <span class="muted"> (limit reached)</span>}
                {result.loading && <span class="muted"> · refreshing…</span>}
              </span>
              <label class="sort">
                Sort
                <select value={sort} onChange={(e) => setSort(e.currentTarget.value)}>
                  {SORTS.map((s) => (
                    <option key={s.key} value={s.key}>
                      {s.label}
                    </option>
                  ))}
                </select>
              </label>
            </div>
            {traces.length === 0 ? (
              <Empty>No traces match these filters in this time range. Try a wider time range or fewer filters.</Empty>
            ) : (
              <TraceList traces={traces} linkFor={linkFor} />
            )}
          </>
        )}
      </section>
    </div>
  );
}
