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
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = (process.env.LOUPE_URL || '').replace(/\/+$/, '');
const SERVICE = process.env.LOUPE_SERVICE || '';
const MIN_SPANS = Number(process.env.LOUPE_MIN_SPANS || '1');
const SCREENSHOT = process.env.LOUPE_SCREENSHOT || join(process.cwd(), 'trace_view.png');
const FAILURE_SHOT = SCREENSHOT.replace(/\.png$/i, '') + '-failure.png';
const TOKEN = process.env.LOUPE_TOKEN || '';
const OVERALL_TIMEOUT_MS = 120_000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  '--disable-quic',
];

class CheckFailed extends Error {}

/** What the page shows that explains a missing element: error banners, the token prompt, empty states. */
async function pageState(page) {
  const parts = [];
  const banners = await page.locator('[data-testid=error-banner]').allInnerTexts();
  if (banners.length) parts.push(`error banner: ${banners.join(' | ')}`);
  if (await page.locator('[data-testid=token-form]').count()) parts.push('the server asked for an API token (set LOUPE_TOKEN)');
  const empty = await page.locator('.empty').allInnerTexts();
  if (empty.length) parts.push(`page says: ${empty.join(' | ')}`);
  return parts.length ? '; ' + parts.join('; ').replace(/\s+/g, ' ') : '';
}

function check(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

async function run(page, pageErrors) {
  const started = Date.now();
  const searchUrl = `${BASE}/traces?service=${encodeURIComponent(SERVICE)}&from=now-1h&to=now`;
  const resp = await page.goto(searchUrl, { waitUntil: 'domcontentloaded', timeout: 30_000 });
  check(resp && resp.ok(), `GET ${searchUrl} answered ${resp ? resp.status() : 'nothing'}`);

  // Wait up to 30 s for results. The UI does not poll, so while the search comes back empty
  // (spans not yet queryable after ingestion) the page is reloaded every few seconds.
  const rows = page.locator('[data-testid=trace-row]');
  const deadline = Date.now() + 30_000;
  let lastReload = Date.now();
  for (;;) {
    if ((await rows.count()) > 0 && (await rows.first().isVisible())) break;
    if (Date.now() >= deadline) {
      throw new CheckFailed(`no [data-testid=trace-row] within 30 s for service "${SERVICE}"` + (await pageState(page)));
    }
    const settled = (await page.locator('.empty, [data-testid=error-banner]').count()) > 0;
    if (settled && Date.now() - lastReload > 3_000) {
      await page.reload({ waitUntil: 'domcontentloaded' });
      lastReload = Date.now();
    }
    await page.waitForTimeout(250);
  }
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

async function main() {
  if (!BASE) {
    console.error('trace_view: set LOUPE_URL to the Loupe base URL');
    process.exit(1);
  }
  if (!SERVICE) {
    console.error('trace_view: set LOUPE_SERVICE to a service that has traces');
    process.exit(1);
  }
  const userDataDir = mkdtempSync(join(tmpdir(), 'loupe-browser-'));
  let context;
  let page;
  const pageErrors = [];
  const consoleErrors = [];
  const watchdog = setTimeout(() => {
    console.error(`trace_view: FAILED: no result within ${OVERALL_TIMEOUT_MS / 1000} s`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  let code = 0;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1440, height: 900 },
    });
    if (TOKEN) {
      // The UI reads its API token from local storage (the same key the token prompt writes).
      await context.addInitScript((token) => window.localStorage.setItem('loupe.apiToken', token), TOKEN);
    }
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      if (msg.type() === 'error') {
        consoleErrors.push(msg.text());
        console.error(`browser console error: ${msg.text()}`);
      }
    });
    page.on('pageerror', (err) => {
      pageErrors.push(String(err && err.stack ? err.stack : err));
      console.error(`browser uncaught exception: ${err && err.stack ? err.stack : err}`);
    });
    const result = await run(page, pageErrors);
    console.log(
      JSON.stringify({
        ok: true,
        url: BASE,
        service: SERVICE,
        minSpans: MIN_SPANS,
        ...result,
        consoleErrors: consoleErrors.length,
        screenshot: SCREENSHOT,
      }),
    );
  } catch (err) {
    code = 1;
    const reason = err instanceof CheckFailed ? err.message : String(err && err.stack ? err.stack : err);
    console.error(`trace_view: FAILED: ${reason}`);
    if (page) {
      try {
        await page.screenshot({ path: FAILURE_SHOT, fullPage: true });
        console.error(`trace_view: failure screenshot at ${FAILURE_SHOT} (page ${page.url()})`);
      } catch (shotErr) {
        console.error(`trace_view: could not take a failure screenshot: ${shotErr}`);
      }
    }
    console.log(JSON.stringify({ ok: false, url: BASE, service: SERVICE, reason, screenshot: FAILURE_SHOT }));
  } finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
  process.exit(code);
}

main();
