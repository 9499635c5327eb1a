// A uPlot line chart of range-query results (several queries on one chart) with a legend
// that filters: clicking a series hides or shows it, shift-click shows only that one.
// Exemplars are diamonds at their time and value, as Grafana draws them; one with a trace id
// links to that trace.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { mountPlot } from '../components/plot';
import { serviceColor } from '../format';
import { href } from '../url';
import type { PromExemplar, PromSeries } from './prom';

/** Exemplar marks drawn at most (the newest are kept). */
const MAX_MARKS = 500;

/** Draws exemplars as links laid over the plot area, placed again on every redraw. */
function exemplarPlugin(exemplars: PromExemplar[]): uPlot.Plugin {
  let layer: HTMLDivElement | null = null;
  return {
    hooks: {
      init: (u) => {
        layer = document.createElement('div');
        layer.className = 'exemplar-layer';
        u.over.appendChild(layer);
      },
      draw: (u) => {
        if (!layer) return;
        layer.replaceChildren();
        const [lo, hi] = [u.scales.y.min ?? -Infinity, u.scales.y.max ?? Infinity];
        for (const e of exemplars.slice(-MAX_MARKS)) {
          const x = u.valToPos(e.t / 1000, 'x');
          if (!Number.isFinite(e.value) || e.value < lo || e.value > hi || x < 0 || x > u.over.clientWidth) continue;
          const trace = e.labels.trace_id ?? e.labels.traceID ?? e.labels.traceId;
          const mark = document.createElement(trace ? 'a' : 'span');
          mark.className = 'exemplar';
          mark.dataset.testid = 'exemplar';
          mark.style.left = `${x}px`;
          mark.style.top = `${u.valToPos(e.value, 'y')}px`;
          const labels = Object.entries(e.labels).map(([k, v]) => `${k}=${v}`);
          mark.title = `${seriesLabel(e.series)}\nvalue ${e.value} at ${new Date(e.t).toISOString()}\n${labels.join('\n')}`;
          if (trace && mark instanceof HTMLAnchorElement) mark.href = href(`/traces/${encodeURIComponent(trace)}`);
          layer.appendChild(mark);
        }
      },
    },
  };
}

const HEIGHT = 300;

export interface ChartSeries {
  /** Which query (0-based) it came from. */
  query: number;
  series: PromSeries;
}

/** A series' legend text: `name{a="b"}` as Prometheus prints it. */
export function seriesLabel(m: Record<string, string>): string {
  const name = m.__name__ ?? '';
  const rest = Object.entries(m)
    .filter(([k]) => k !== '__name__')
    .map(([k, v]) => `${k}="${v}"`);
  return rest.length ? `${name}{${rest.join(', ')}}` : name || '{}';
}

export function Chart(props: { data: ChartSeries[]; exemplars?: PromExemplar[]; startMs: number; endMs: number; step: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const [hidden, setHidden] = useState<Set<number>>(new Set());
  const labels = useMemo(() => props.data.map((d) => `${props.data.length > 1 ? `#${d.query + 1} ` : ''}${seriesLabel(d.series.metric)}`), [props.data]);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    // The server evaluates at start + k·step: the same grid here.
    const stepMs = props.step * 1000;
    const xs: number[] = [];
    for (let t = props.startMs; t <= props.endMs; t += stepMs) xs.push(t / 1000);
    const index = new Map(xs.map((x, i) => [Math.round(x * 1000), i]));
    const ys = props.data.map((d) => {
      const y: (number | null)[] = xs.map(() => null);
      for (const [t, v] of d.series.values) {
        const i = index.get(Math.round(t * 1000));
        const n = Number(v);
        if (i !== undefined && Number.isFinite(n)) y[i] = n;
      }
      return y;
    });
    const opts: Omit<uPlot.Options, 'width'> = {
      height: HEIGHT,
      legend: { show: false },
      cursor: { points: { size: 6 } },
      scales: { x: { time: true } },
      plugins: props.exemplars?.length ? [exemplarPlugin(props.exemplars)] : [],
      axes: [
        { stroke: '#475569', grid: { stroke: '#f1f5f9', width: 1 }, ticks: { stroke: '#cbd5e1', width: 1 } },
        { stroke: '#475569', grid: { stroke: '#e2e8f0', width: 1 }, ticks: { show: false }, size: 60 },
      ],
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: serviceColor(label),
          width: 1.5,
          // Points where there are few values (a short history would be a speck otherwise).
          points: { show: ys[i].filter((v) => v !== null).length < 30, size: 5, fill: serviceColor(label) },
          spanGaps: false,
          show: !hidden.has(i),
        })),
      ],
    };
    const { plot: u, dispose } = mountPlot(opts, [xs, ...ys] as uPlot.AlignedData, el, 300);
    plot.current = u;
    return () => {
      dispose();
      plot.current = null;
    };
    // The hidden set is applied below without rebuilding the chart.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.data, props.exemplars, props.startMs, props.endMs, props.step, labels]);

  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    labels.forEach((_, i) => u.setSeries(i + 1, { show: !hidden.has(i) }));
  }, [hidden, labels]);

  const toggle = (i: number, only: boolean) => {
    setHidden((h) => {
      if (only) {
        const allButI = new Set(labels.map((_, k) => k).filter((k) => k !== i));
        const alreadyOnly = h.size === allButI.size && [...allButI].every((k) => h.has(k));
        return alreadyOnly ? new Set() : allButI;
      }
      const next = new Set(h);
      if (next.has(i)) next.delete(i);
      else next.add(i);
      return next;
    });
  };

  return (
    <div class="metric-chart" data-testid="metric-chart">
      <div ref={box} />
      <ul class="metric-legend" data-testid="metric-legend">
        {labels.map((label, i) => (
          <li
            key={label}
            class={hidden.has(i) ? 'off' : ''}
            title="Click to hide or show; shift-click to show only this series"
            onClick={(e) => toggle(i, e.shiftKey)}
            data-testid="legend-item"
          >
            <span class="legend-dot" style={{ background: serviceColor(label) }} />
            <span class="mono">{label}</span>
          </li>
        ))}
      </ul>
    </div>
  );
}
