// Metrics explorer (/metrics-explorer; `/metrics` is the server's own Prometheus endpoint): pick a metric (search by name, with its type and unit), narrow
// it by label values, group it, take the rate of a counter or a quantile of a histogram, and
// add the PromQL it makes to the chart; several queries share one chart. The queries live in
// the URL (`q`, repeated) with the time range, so a view can be shared; each one can be
// edited as PromQL directly.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { useApi } from '../api';
import { Empty, ErrorBanner, Loading } from '../components/common';
import { Chart, type ChartSeries } from '../metrics/Chart';
import {
  autoStep,
  buildQuery,
  labelNames,
  labelValues,
  listMetrics,
  queryExemplars,
  queryRange,
  type Builder,
  type MetricInfo,
} from '../metrics/prom';
import { href, navigate, paramsToMap, resolveRange, timeRangeFrom, type Route } from '../url';

const QUANTILES = ['0.5', '0.9', '0.95', '0.99'];

function setQueries(route: Route, queries: string[]) {
  navigate(href('/metrics-explorer', { ...paramsToMap(route.params), q: queries }));
}

function MetricPicker(props: { metrics: MetricInfo[]; value: string; onPick: (m: MetricInfo) => void }) {
  const [text, setText] = useState(props.value);
  const [open, setOpen] = useState(false);
  // Closing waits for a click on an option to land; a focus or keystroke since cancels it.
  const closing = useRef<number | undefined>(undefined);
  const show = () => {
    window.clearTimeout(closing.current);
    setOpen(true);
  };
  useEffect(() => setText(props.value), [props.value]);
  const shown = props.metrics.filter((m) => m.name.toLowerCase().includes(text.toLowerCase())).slice(0, 50);
  return (
    <div class="metric-picker">
      <input
        class="mono"
        placeholder="Search metrics"
        value={text}
        onInput={(e) => {
          setText(e.currentTarget.value);
          show();
        }}
        onFocus={show}
        onBlur={() => {
          closing.current = window.setTimeout(() => setOpen(false), 150);
        }}
        data-testid="metric-search"
      />
      {open && shown.length > 0 && (
        <ul class="metric-options" data-testid="metric-options">
          {shown.map((m) => (
            <li
              key={m.name}
              onMouseDown={(e) => {
                e.preventDefault();
                setText(m.name);
                setOpen(false);
                props.onPick(m);
              }}
              title={m.help}
            >
              <span class="mono">{m.name}</span>
              <span class={`metric-type type-${m.type}`}>{m.type}</span>
              {m.unit && <span class="metric-unit">{m.unit}</span>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function LabelFilter(props: {
  metric: string;
  labels: string[];
  value: { label: string; value: string };
  range: { startMs: number; endMs: number };
  onChange: (v: { label: string; value: string }) => void;
  onRemove: () => void;
}) {
  const values = useApi(
    (s) => labelValues(props.metric, props.value.label, props.range.startMs, props.range.endMs, s),
    [props.metric, props.value.label, props.range.startMs, props.range.endMs],
    !!props.value.label,
  );
  return (
    <span class="label-filter">
      <select value={props.value.label} onChange={(e) => props.onChange({ label: e.currentTarget.value, value: '' })}>
        <option value="">label…</option>
        {props.labels.map((l) => (
          <option key={l} value={l}>
            {l}
          </option>
        ))}
      </select>
      =
      <select value={props.value.value} onChange={(e) => props.onChange({ ...props.value, value: e.currentTarget.value })}>
        <option value="">value…</option>
        {(values.data ?? []).map((v) => (
          <option key={v} value={v}>
            {v}
          </option>
        ))}
      </select>
      <button type="button" class="btn btn-xs" onClick={props.onRemove} title="Remove this filter">
        ×
      </button>
    </span>
  );
}

function QueryBuilder(props: { route: Route; queries: string[]; range: { startMs: number; endMs: number } }) {
  const metrics = useApi((s) => listMetrics(props.range.startMs, props.range.endMs, s), [props.range.startMs, props.range.endMs]);
  const [b, setB] = useState<Builder>({ metric: '', filters: [], groupBy: [], rate: false, quantile: '0.99' });
  const info = metrics.data?.find((m) => m.name === b.metric);
  // A histogram's or summary's `_count` and `_sum` are counters; only `_bucket` takes a quantile.
  const family = info?.type ?? 'unknown';
  const part = /_(count|sum)$/.test(b.metric) && (family === 'histogram' || family === 'summary');
  const type = part ? 'counter' : family === 'histogram' && !b.metric.endsWith('_bucket') ? 'gauge' : family;
  const labels = useApi(
    (s) => labelNames(b.metric, props.range.startMs, props.range.endMs, s),
    [b.metric, props.range.startMs, props.range.endMs],
    !!b.metric,
  );
  const query = buildQuery(b, type);
  const pick = (m: MetricInfo) =>
    setB({ metric: m.name, filters: [], groupBy: [], rate: m.type === 'counter' || /_total$|_count$|_sum$/.test(m.name), quantile: b.quantile });
  return (
    <div class="query-builder" data-testid="query-builder">
      <ErrorBanner error={metrics.error} what="Loading metrics" />
      <div class="builder-row">
        {metrics.loading && !metrics.data ? (
          <Loading what="metrics" />
        ) : (
          <MetricPicker metrics={metrics.data ?? []} value={b.metric} onPick={pick} />
        )}
        {info && (
          <span class="metric-info" title={info.help}>
            <span class={`metric-type type-${type}`}>{type}</span>
            {info.unit && <span class="metric-unit">{info.unit}</span>}
          </span>
        )}
        {b.metric && type !== 'histogram' && (
          <label class="check" title="Per-second rate over 5 minutes (for counters)">
            <input type="checkbox" checked={b.rate} onChange={(e) => setB({ ...b, rate: e.currentTarget.checked })} data-testid="rate-toggle" />
            rate
          </label>
        )}
        {type === 'histogram' && (
          <label class="check">
            quantile
            <select value={b.quantile} onChange={(e) => setB({ ...b, quantile: e.currentTarget.value })} data-testid="quantile">
              {QUANTILES.map((q) => (
                <option key={q} value={q}>
                  {q}
                </option>
              ))}
            </select>
          </label>
        )}
      </div>
      {b.metric && (
        <div class="builder-row">
          {b.filters.map((f, i) => (
            <LabelFilter
              key={i}
              metric={b.metric}
              labels={labels.data ?? []}
              value={f}
              range={props.range}
              onChange={(v) => setB({ ...b, filters: b.filters.map((x, k) => (k === i ? v : x)) })}
              onRemove={() => setB({ ...b, filters: b.filters.filter((_, k) => k !== i) })}
            />
          ))}
          <button type="button" class="btn btn-xs" onClick={() => setB({ ...b, filters: [...b.filters, { label: '', value: '' }] })}>
            + filter
          </button>
          <span class="group-by">
            group by
            {(labels.data ?? []).filter((l) => l !== 'le').map((l) => (
              <label key={l} class="check">
                <input
                  type="checkbox"
                  checked={b.groupBy.includes(l)}
                  onChange={(e) =>
                    setB({ ...b, groupBy: e.currentTarget.checked ? [...b.groupBy, l] : b.groupBy.filter((g) => g !== l) })
                  }
                />
                {l}
              </label>
            ))}
          </span>
        </div>
      )}
      {query && (
        <div class="builder-row">
          <code class="built-query" data-testid="built-query">
            {query}
          </code>
          <button type="button" class="btn btn-primary" onClick={() => setQueries(props.route, [...props.queries, query])} data-testid="add-query">
            Add to chart
          </button>
        </div>
      )}
    </div>
  );
}

function QueryRow(props: { index: number; query: string; onChange: (q: string) => void; onRemove: () => void }) {
  const [text, setText] = useState(props.query);
  useEffect(() => setText(props.query), [props.query]);
  return (
    <form
      class="query-row"
      onSubmit={(e) => {
        e.preventDefault();
        props.onChange(text.trim());
      }}
    >
      <span class="query-num">#{props.index + 1}</span>
      <input class="mono" value={text} onInput={(e) => setText(e.currentTarget.value)} data-testid="query-input" />
      <button type="submit" class="btn btn-xs">
        Run
      </button>
      <button type="button" class="btn btn-xs" onClick={props.onRemove} title="Remove this query">
        ×
      </button>
    </form>
  );
}

export function MetricsPage(props: { route: Route }) {
  const { route } = props;
  const queries = route.params.getAll('q').filter((q) => q.trim());
  const range = useMemo(() => resolveRange(timeRangeFrom(route.params)), [route.params.get('from'), route.params.get('to')]);
  const step = autoStep(range.startMs, range.endMs);
  const results = useApi(
    async (s) => {
      const all = await Promise.all(queries.map((q) => queryRange(q, range.startMs, range.endMs, step, s)));
      return all.flatMap((series, query): ChartSeries[] => series.map((ser) => ({ query, series: ser })));
    },
    [queries.join('\n'), range.startMs, range.endMs, step],
    queries.length > 0,
  );
  // Exemplars are extra: a failure leaves the chart as it is.
  const exemplars = useApi(
    async (s) => {
      const all = await Promise.all(queries.map((q) => queryExemplars(q, range.startMs, range.endMs, s).catch(() => [])));
      return all.flat().sort((a, b) => a.t - b.t);
    },
    [queries.join('\n'), range.startMs, range.endMs],
    queries.length > 0,
  );
  return (
    <div class="page metrics-page">
      <div class="page-head">
        <h1>Metrics</h1>
      </div>
      <QueryBuilder route={route} queries={queries} range={range} />
      {queries.map((q, i) => (
        <QueryRow
          key={`${i}:${q}`}
          index={i}
          query={q}
          onChange={(n) => setQueries(route, queries.map((x, k) => (k === i ? n : x)).filter(Boolean))}
          onRemove={() => setQueries(route, queries.filter((_, k) => k !== i))}
        />
      ))}
      <ErrorBanner error={results.error} what="Query" />
      {results.loading && !results.data && <Loading what="series" />}
      {queries.length === 0 && <Empty>Pick a metric above and add it to the chart, or write PromQL.</Empty>}
      {queries.length > 0 && results.data && results.data.length === 0 && <Empty>No series in this time range.</Empty>}
      {results.data && results.data.length > 0 && (
        <Chart data={results.data} exemplars={exemplars.data} startMs={range.startMs} endMs={range.endMs} step={step} />
      )}
      {exemplars.data && exemplars.data.length > 0 && (
        <p class="hint" data-testid="exemplar-count">
          ◆ {exemplars.data.length} exemplar{exemplars.data.length === 1 ? '' : 's'}: measurements with the trace that made them; click one to open its
          trace.
        </p>
      )}
      {queries.length === 0 && (
        <p class="hint">
          Grafana works too: add a Prometheus data source with the URL <code>{window.location.origin}/prometheus</code>.
        </p>
      )}
    </div>
  );
}
