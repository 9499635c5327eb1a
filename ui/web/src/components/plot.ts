// A uPlot chart that keeps its element's width as the page resizes (the charts of the trace
// scatter, the log histogram and the metrics explorer).
import uPlot from 'uplot';

/** Draws `data` into `el` with `opts` (its width is set here: the element's, at least
 * `minWidth`) and follows the element's width; returns the chart and its teardown. */
export function mountPlot(
  opts: Omit<uPlot.Options, 'width'>,
  data: uPlot.AlignedData,
  el: HTMLElement,
  minWidth: number,
): { plot: uPlot; dispose: () => void } {
  const plot = new uPlot({ ...opts, width: Math.max(minWidth, el.clientWidth) } as uPlot.Options, data, el);
  const ro = new ResizeObserver(() => {
    const w = Math.max(minWidth, el.clientWidth);
    if (w !== plot.width) plot.setSize({ width: w, height: opts.height });
  });
  ro.observe(el);
  return {
    plot,
    dispose: () => {
      ro.disconnect();
      plot.destroy();
    },
  };
}
