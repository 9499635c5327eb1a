// The log explorer's histogram (uPlot): matching lines per time bucket, stacked by severity
// level; dragging across it zooms the time range to the selection.
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import type { LogHistogram } from '../api';
import { mountPlot } from '../components/plot';
import { LEVELS, LEVEL_COLORS } from './levels';

const HEIGHT = 120;

export function Histogram(props: { data: LogHistogram; onZoom: (startMs: number, endMs: number) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const onZoom = useRef(props.onZoom);
  onZoom.current = props.onZoom;

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const h = props.data;
    const xs = h.times.map((t) => t / 1000);
    const byLevel = new Map(h.series.map((s) => [s.level, s.counts]));
    // Cumulative sums, drawn top level first so each lower level paints over the one above.
    const cumulative: number[][] = [];
    let acc = xs.map(() => 0);
    for (const level of LEVELS) {
      const counts = byLevel.get(level) ?? xs.map(() => 0);
      acc = acc.map((a, i) => a + (counts[i] ?? 0));
      cumulative.push(acc);
    }
    const order = [...LEVELS.keys()].reverse();
    const bars = uPlot.paths.bars!({ size: [0.85, 60], align: 1 });
    const stepS = h.stepMs / 1000;
    const opts: Omit<uPlot.Options, 'width'> = {
      height: HEIGHT,
      legend: { show: false },
      cursor: { y: false, points: { show: false }, drag: { x: true, y: false, setScale: false } },
      select: { show: true, left: 0, top: 0, width: 0, height: 0 },
      scales: {
        x: { time: true, range: [xs[0] ?? 0, (xs[xs.length - 1] ?? 0) + stepS] },
        y: { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] },
      },
      axes: [
        { stroke: '#475569', grid: { show: false }, ticks: { stroke: '#cbd5e1', width: 1 } },
        { stroke: '#475569', grid: { stroke: '#e2e8f0', width: 1 }, ticks: { show: false }, size: 44 },
      ],
      series: [
        {},
        ...order.map((i) => ({
          label: LEVELS[i],
          fill: LEVEL_COLORS[LEVELS[i]],
          stroke: LEVEL_COLORS[LEVELS[i]],
          width: 0,
          paths: bars,
          points: { show: false },
        })),
      ],
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 3) return;
            const a = u.posToVal(u.select.left, 'x');
            const b = u.posToVal(u.select.left + u.select.width, 'x');
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            onZoom.current(Math.floor(a * 1000), Math.ceil(b * 1000));
          },
        ],
      },
    };
    const data = [xs, ...order.map((i) => cumulative[i])] as uPlot.AlignedData;
    return mountPlot(opts, data, el, 200).dispose;
  }, [props.data]);

  return (
    <div class="log-histogram" data-testid="log-histogram">
      <div class="scatter-head">
        <span class="scatter-title">{props.data.total.toLocaleString()} lines</span>
        {LEVELS.filter((l) => props.data.series.some((s) => s.level === l && s.counts.some((c) => c > 0))).map((l) => (
          <span class="legend-item" key={l}>
            <span class="legend-dot" style={{ background: LEVEL_COLORS[l] }} /> {l}
          </span>
        ))}
        <span class="scatter-hint">drag across the bars to zoom in</span>
      </div>
      <div ref={box} />
    </div>
  );
}
