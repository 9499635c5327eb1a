// Traces page (/traces): the search form on the left; the duration scatter and the result list
// on the right. Filters live in the URL; the search runs whenever the URL holds search params.
import { useMemo, useState } from 'preact/hooks';
import { searchTraces, useApi } from '../api';
import { Empty, ErrorBanner, Loading } from '../components/common';
import { Scatter } from '../components/Scatter';
import { DEFAULT_LIMIT, SearchForm, filtersFromParams, type SearchFilters } from '../components/SearchForm';
import { SORTS, TraceList, sortTraces, type SortKey } from '../components/TraceList';
import { href, navigate, paramsToMap, resolveRange, timeParams, timeRangeFrom, type Route } from '../url';

export function TracesPage(props: { route: Route }) {
  const { params } = props.route;
  const [nonce, setNonce] = useState(0);
  const filters = filtersFromParams(params);
  const sort = (params.get('sort') as SortKey) || 'recent';

  // Everything but the display-only sort order is part of the query.
  const queryParams = new URLSearchParams(params);
  queryParams.delete('sort');
  const queryKey = queryParams.toString();
  const hasSearch = queryKey !== '';

  // Relative ranges ("now-1h") are resolved when the search runs, so it is recomputed per search.
  const range = useMemo(() => resolveRange(timeRangeFrom(params)), [queryKey, nonce]);

  const result = useApi(
    (signal) =>
      searchTraces(
        {
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
    hasSearch,
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

  const linkFor = (traceId: string) => href(`/traces/${encodeURIComponent(traceId)}`, timeParams(params));
  const setSort = (key: string) => navigate(href('/traces', { ...paramsToMap(params), sort: key === 'recent' ? undefined : key }), { replace: true });
  const traces = useMemo(() => sortTraces(result.data ?? [], sort), [result.data, sort]);

  return (
    <div class="page traces-page">
      <aside class="search-panel">
        <h2>Search traces</h2>
        <SearchForm initial={filters} onSearch={onSearch} busy={result.loading} />
      </aside>
      <section class="results">
        <ErrorBanner error={result.error} what="Trace search" />
        {!hasSearch && (
          <Empty>
            Pick a service and filters, then press <strong>Find traces</strong>.
          </Empty>
        )}
        {hasSearch && result.loading && !result.data && <Loading what="traces" />}
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
