// Duration-over-time scatter of trace search results (uPlot): x = trace start, y = duration,
// error traces in red; hovering shows the trace, clicking a point opens it.
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import type { TraceSummary } from '../api';
import { mountPlot } from './plot';
import { formatDuration, formatTime, nanosToMs } from '../format';

interface Point {
  t: TraceSummary;
  x: number; // seconds
  y: number; // milliseconds
}

const OK_COLOR = '#2563eb';
const ERR_COLOR = '#dc2626';
const HEIGHT = 190;

function durAxis(_u: uPlot, splits: number[]): string[] {
  return splits.map((v) => formatDuration(v * 1e6));
}

export function Scatter(props: {
  traces: TraceSummary[];
  startMs: number;
  endMs: number;
  onOpen: (traceId: string) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const onOpen = useRef(props.onOpen);
  onOpen.current = props.onOpen;
  const [hover, setHover] = useState<{ p: Point; left: number; top: number } | null>(null);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const points: Point[] = props.traces
      .map((t) => ({ t, x: nanosToMs(t.startTimeUnixNano) / 1000, y: t.durationNanos / 1e6 }))
      .sort((a, b) => a.x - b.x);
    const xs = points.map((p) => p.x);
    const ok = points.map((p) => (p.t.errorCount > 0 ? null : p.y));
    const err = points.map((p) => (p.t.errorCount > 0 ? p.y : null));
    const maxY = Math.max(1e-3, ...points.map((p) => p.y));
    const minX = Math.min(props.startMs / 1000, ...xs);
    const maxX = Math.max(props.endMs / 1000, ...xs);

    const nearest = (u: uPlot): { p: Point; left: number; top: number } | null => {
      const { left, top } = u.cursor;
      if (left === undefined || top === undefined || left < 0) return null;
      let best: { p: Point; left: number; top: number } | null = null;
      let bestD = 12 * 12;
      for (const p of points) {
        const px = u.valToPos(p.x, 'x');
        const py = u.valToPos(p.y, 'y');
        const d = (px - left) ** 2 + (py - top) ** 2;
        if (d <= bestD) {
          bestD = d;
          best = { p, left: px, top: py };
        }
      }
      return best;
    };

    const pointStyle = (color: string) => ({ show: true, size: 8, width: 1.5, space: 0, stroke: color, fill: color + '99' });
    const opts: Omit<uPlot.Options, 'width'> = {
      height: HEIGHT,
      legend: { show: false },
      cursor: {
        x: false,
        y: false,
        points: { show: false },
        drag: { x: false, y: false, setScale: false },
      },
      scales: {
        x: { time: true, range: [minX, maxX] },
        y: { range: [0, maxY * 1.1] },
      },
      axes: [
        { stroke: '#475569', grid: { stroke: '#e2e8f0', width: 1 }, ticks: { stroke: '#cbd5e1', width: 1 } },
        { stroke: '#475569', grid: { stroke: '#e2e8f0', width: 1 }, ticks: { stroke: '#cbd5e1', width: 1 }, values: durAxis, size: 60 },
      ],
      series: [
        {},
        { label: 'ok', stroke: OK_COLOR, paths: () => null, points: pointStyle(OK_COLOR) },
        { label: 'error', stroke: ERR_COLOR, paths: () => null, points: pointStyle(ERR_COLOR) },
      ],
      hooks: {
        setCursor: [(u) => setHover(nearest(u))],
        ready: [
          (u) => {
            u.over.addEventListener('click', () => {
              const n = nearest(u);
              if (n) onOpen.current(n.p.t.traceId);
            });
            u.over.addEventListener('mouseleave', () => setHover(null));
          },
        ],
      },
    };
    const { plot: u, dispose } = mountPlot(opts, [xs, ok, err] as uPlot.AlignedData, el, 200);
    plot.current = u;
    return () => {
      dispose();
      plot.current = null;
      setHover(null);
    };
  }, [props.traces, props.startMs, props.endMs]);

  const u = plot.current;
  return (
    <div class="scatter" data-testid="scatter">
      <div class="scatter-head">
        <span class="scatter-title">Duration over time</span>
        <span class="legend-item">
          <span class="legend-dot" style={{ background: OK_COLOR }} /> ok
        </span>
        <span class="legend-item">
          <span class="legend-dot" style={{ background: ERR_COLOR }} /> has errors
        </span>
        <span class="scatter-hint">click a point to open the trace</span>
      </div>
      <div class="scatter-plot" style={{ cursor: hover ? 'pointer' : 'default' }}>
        <div ref={box} />
        {hover && u && (
          <div
            class="scatter-tip"
            style={{
              left: `${hover.left + u.over.offsetLeft + 10}px`,
              top: `${hover.top + u.over.offsetTop + 10}px`,
            }}
          >
            <div>
              <strong>{hover.p.t.rootServiceName}</strong>: {hover.p.t.rootSpanName}
            </div>
            <div>
              {formatDuration(hover.p.t.durationNanos)} · {hover.p.t.spanCount} spans
              {hover.p.t.errorCount > 0 && <span class="text-err"> · {hover.p.t.errorCount} errors</span>}
            </div>
            <div class="muted">{formatTime(hover.p.x * 1000)}</div>
          </div>
        )}
      </div>
    </div>
  );
}
