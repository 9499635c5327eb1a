// Browser check of the Loupe web UI: searches traces for a service, opens the first result,
// waits for the waterfall, opens a span's details, finds spans with the span search, and saves a
// screenshot; then the Traces page with no filters shows recent traces, a TraceQL query runs
// from the query box (screenshot <screenshot>-traceql.png), and a pasted trace id opens it.
//
// Usage: LOUPE_URL=http://127.0.0.1:PORT LOUPE_SERVICE=checkout LOUPE_MIN_SPANS=3 \
//        LOUPE_SCREENSHOT=/tmp/trace.png node trace_view.mjs
// Optional: LOUPE_TOKEN, an API token for servers that require one.
// Prints one JSON summary line and exits 0 on success; on failure prints the reason, saves
// <screenshot>-failure.png and exits 1.
import { BASE, check, CheckFailed, main, pageState, waitForRows } from './harness.mjs';

const SERVICE = process.env.LOUPE_SERVICE || '';
const MIN_SPANS = Number(process.env.LOUPE_MIN_SPANS || '1');

async function run(page, pageErrors, SCREENSHOT) {
  const started = Date.now();
  const searchUrl = `${BASE}/traces?service=${encodeURIComponent(SERVICE)}&from=now-1h&to=now`;
  const resp = await page.goto(searchUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
  check(resp && resp.ok(), `GET ${searchUrl} answered ${resp ? resp.status() : 'nothing'}`);

  // Results may take a moment to become queryable after ingestion.
  const rows = await waitForRows(page, '[data-testid=trace-row]', `service "${SERVICE}"`);
  const traceRows = await rows.count();

  const scatter = page.locator('[data-testid=scatter]');
  check(await scatter.isVisible(), 'the [data-testid=scatter] chart is not visible');
  check((await scatter.locator('canvas').count()) > 0, 'the scatter chart has no canvas');

  const traceId = await rows.first().getAttribute('data-trace-id');
  await rows.first().click();
  await page.waitForURL(/\/traces\/[^/?]+/, { timeout: 15_000 });
  check(!traceId || page.url().includes(`/traces/${traceId}`), `opened ${page.url()}, expected trace ${traceId}`);

  const wfRows = page.locator('[data-testid=waterfall-row]');
  try {
    await page.waitForFunction(
      (min) => document.querySelectorAll('[data-testid=waterfall-row]').length >= min,
      MIN_SPANS,
      { timeout: 30_000 },
    );
  } catch {
    throw new CheckFailed(
      `expected at least ${MIN_SPANS} [data-testid=waterfall-row], found ${await wfRows.count()}` + (await pageState(page)),
    );
  }
  const waterfallRows = await wfRows.count();
  const errorRows = await page.locator('[data-testid=waterfall-row].error').count();

  // Open a child span when there is one (the root is row 0), else the root.
  const target = wfRows.nth(waterfallRows > 1 ? 1 : 0);
  const spanId = await target.getAttribute('data-span-id');
  await target.click();
  const details = page.locator('[data-testid=span-details]');
  await details.waitFor({ state: 'visible', timeout: 10_000 });
  check(
    !spanId || (await details.innerText()).includes(spanId),
    `the span details panel does not show the clicked span ${spanId}`,
  );

  const banners = await page.locator('[data-testid=error-banner]').count();
  check(banners === 0, `an error banner is shown: ${(await page.locator('[data-testid=error-banner]').allInnerTexts()).join(' | ')}`);
  check(pageErrors.length === 0, `uncaught exception in the page: ${pageErrors[0]}`);

  // Span search: the service name matches at least one span, highlighted, with a count.
  await page.locator('[data-testid=span-search]').fill(SERVICE);
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=waterfall-row].match').length > 0, null, {
    timeout: 10_000,
  });
  const matchedRows = await page.locator('[data-testid=waterfall-row].match').count();
  const countText = await page.locator('[data-testid=span-search-count]').innerText();
  check(/^\d+ of \d+ spans match$/.test(countText.trim()), `span search count reads "${countText}"`);
  check(page.url().includes('find='), `the span search is not in the URL: ${page.url()}`);
  const eventMarks = await page.locator('[data-testid=span-event]').count();
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // The Traces page with no filters shows the most recent traces and the scatter at once.
  await page.goto(`${BASE}/traces`, { waitUntil: 'domcontentloaded' });
  await rows.first().waitFor({ state: 'visible', timeout: 30_000 });
  check(await page.locator('[data-testid=scatter]').isVisible(), 'no scatter on arrival');
  const recentRows = await rows.count();

  // A TraceQL query from the query box, kept in the URL.
  const query = `{ resource.service.name = "${SERVICE}" && kind = server }`;
  await page.locator('[data-testid=traceql-input]').fill(query);
  await page.locator('[data-testid=traceql-run]').click();
  await page.waitForURL(/[?&]q=/, { timeout: 10_000 });
  await page.waitForFunction(() => {
    const r = document.querySelectorAll('[data-testid=trace-row]');
    return r.length > 0 && !document.querySelector('.loading');
  }, null, { timeout: 30_000 });
  check((await page.locator('[data-testid=error-banner]').count()) === 0, 'the TraceQL search shows an error' + (await pageState(page)));
  const traceqlRows = await rows.count();
  const traceqlShot = SCREENSHOT.replace(/\.png$/i, '') + '-traceql.png';
  await page.screenshot({ path: traceqlShot, fullPage: true });

  // Pasting a trace id anywhere (outside text fields) opens that trace.
  await page.evaluate((id) => {
    const data = new DataTransfer();
    data.setData('text/plain', id);
    document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, traceId);
  await page.waitForURL(new RegExp(`/traces/${traceId}`), { timeout: 10_000 });
  await wfRows.first().waitFor({ state: 'visible', timeout: 15_000 });

  check(pageErrors.length === 0, `uncaught exception in the page: ${pageErrors[0]}`);
  return {
    traceRows, traceId, waterfallRows, errorRows, spanId, matchedRows, eventMarks, recentRows, traceqlRows,
    traceqlScreenshot: traceqlShot, elapsedMs: Date.now() - started,
  };
}

if (!SERVICE) {
  console.error('trace_view: set LOUPE_SERVICE to a service that has traces');
  process.exit(1);
}
main('trace_view', 'trace_view.png', async (page, pageErrors, screenshot) => ({
  service: SERVICE,
  minSpans: MIN_SPANS,
  ...(await run(page, pageErrors, screenshot)),
}));
