// Browser check of the metrics explorer against a demo server (its services export HTTP
// server histograms): pick the histogram by searching, take its p99 grouped by job, add it
// to the chart, add the request rate of the counter part as a second query, check the URL
// holds both queries, the chart draws and its legend filters (a click hides a series);
// exemplars are drawn as links, and one opens the trace behind it; then the Services page
// shows request rates. Screenshot <screenshot>.
//
// Usage: LOUPE_URL=http://127.0.0.1:PORT LOUPE_SCREENSHOT=/tmp/metrics.png node metrics_explorer.mjs
// Prints one JSON summary line and exits 0 on success (see harness.mjs).
import { BASE, check, main, pageState, waitForRows } from './harness.mjs';

const HIST = 'http_server_request_duration_seconds_bucket';

main('metrics_explorer', 'metrics_explorer.png', async (page, pageErrors, screenshot) => {
  const started = Date.now();
  await page.goto(`${BASE}/metrics-explorer?from=now-15m&to=now`, { waitUntil: 'domcontentloaded' });
  const search = page.locator('[data-testid=metric-search]');
  await search.waitFor({ state: 'visible', timeout: 15_000 });
  // The metric list comes from the server; the demo's first export may still be on its way.
  const deadline = Date.now() + 30_000;
  for (;;) {
    await search.fill('');
    await search.type('request_duration_seconds_b');
    const option = page.locator('[data-testid=metric-options] li', { hasText: HIST });
    if ((await option.count()) > 0) {
      check((await option.first().innerText()).includes('histogram'), 'the histogram is not labelled with its type');
      await option.first().dispatchEvent('mousedown');
      break;
    }
    check(Date.now() < deadline, `${HIST} is not offered by the metric search` + (await pageState(page)));
    await page.reload({ waitUntil: 'domcontentloaded' });
    await search.waitFor({ state: 'visible', timeout: 15_000 });
  }
  await page.locator('[data-testid=quantile]').selectOption('0.99');
  const jobBox = page.locator('.group-by label', { hasText: 'job' }).locator('input');
  await jobBox.waitFor({ state: 'visible', timeout: 15_000 });
  await jobBox.check();
  const built = (await page.locator('[data-testid=built-query]').innerText()).trim();
  check(built.startsWith('histogram_quantile(0.99, sum by (job, le)'), `unexpected query from the builder: ${built}`);
  await page.locator('[data-testid=add-query]').click();
  await page.waitForURL(/[?&]q=/, { timeout: 10_000 });

  // A second query: the counter part with the rate toggle on, grouped by job.
  await search.fill('');
  await search.type('request_duration_seconds_count');
  const count = page.locator('[data-testid=metric-options] li', { hasText: 'http_server_request_duration_seconds_count' });
  await count.first().waitFor({ state: 'visible', timeout: 10_000 });
  await count.first().dispatchEvent('mousedown');
  check(await page.locator('[data-testid=rate-toggle]').isChecked(), 'the rate toggle is not on for a counter');
  await page.locator('.group-by label', { hasText: 'job' }).locator('input').check();
  await page.locator('[data-testid=add-query]').click();
  await page.waitForFunction(() => new URLSearchParams(location.search).getAll('q').length === 2, null, { timeout: 10_000 });
  const queries = new URL(page.url()).searchParams.getAll('q');
  check(queries[1] === 'sum by (job) (rate(http_server_request_duration_seconds_count[5m]))', `second query: ${queries[1]}`);

  const legend = await waitForRows(page, '[data-testid=legend-item]', 'the chart legend');
  await page.locator('[data-testid=metric-chart] canvas').first().waitFor({ state: 'visible', timeout: 10_000 });
  const items = await legend.count();
  check(items >= 2, `the legend lists ${items} series`);
  const texts = await legend.allInnerTexts();
  check(texts.some((t) => t.startsWith('#1 ')) && texts.some((t) => t.startsWith('#2 ')), `the legend lacks one of the queries: ${texts}`);
  // The chart has points: uPlot's y axis is labelled only when a series has values.
  const drawn = await page.evaluate(() => {
    const c = document.querySelector('[data-testid=metric-chart] canvas');
    if (!c) return 0;
    const ctx = c.getContext('2d');
    const { data } = ctx.getImageData(0, 0, c.width, c.height);
    let colored = 0;
    for (let i = 0; i < data.length; i += 4) if (data[i + 3] > 0 && Math.abs(data[i] - data[i + 2]) > 40) colored++;
    return colored;
  });
  check(drawn > 50, `the chart draws no lines (${drawn} coloured pixels)`);
  await legend.first().click();
  check((await legend.first().getAttribute('class'))?.includes('off'), 'clicking a legend entry did not hide its series');
  // The view survives a reload: the queries are in the URL.
  await page.reload({ waitUntil: 'domcontentloaded' });
  await waitForRows(page, '[data-testid=legend-item]', 'the chart after a reload');

  // Exemplars: the demo's histograms carry the trace of a request per bucket. Marks overlap
  // and are drawn again with the chart, so the click goes to the element itself.
  const marks = await waitForRows(page, '[data-testid=metric-chart] a.exemplar', 'exemplar marks on the chart');
  const exemplars = await marks.count();
  await page.screenshot({ path: screenshot, fullPage: false });
  const link = await marks.last().getAttribute('href');
  check(/^\/traces\/[0-9a-f]{32}/.test(link ?? ''), `an exemplar links to ${link}`);
  await marks.last().dispatchEvent('click');
  await page.waitForURL(/\/traces\/[0-9a-f]{32}/, { timeout: 10_000 });
  await waitForRows(page, '[data-testid=waterfall-row]', `the exemplar's trace ${link}`);

  await page.goto(`${BASE}/services?from=now-15m&to=now`, { waitUntil: 'domcontentloaded' });
  const rates = await waitForRows(page, '[data-testid=svc-rate] a', 'request rates on the Services page');
  const shown = await rates.count();
  check(shown >= 3, `only ${shown} services show a request rate`);
  check((await page.locator('[data-testid=error-banner]').count()) === 0, 'an error banner is shown' + (await pageState(page)));
  check(pageErrors.length === 0, `uncaught exception in the page: ${pageErrors[0]}`);
  return { legendItems: items, queries, exemplars, servicesWithRates: shown, elapsedMs: Date.now() - started };
});
