// Browser check of the log explorer against a demo server: for a service that logs JSON lines
// and one that logs logfmt lines (their trace context only in the text), search its lines,
// expand one, jump to its trace, and find the line in the trace view's Logs tab (screenshot
// <screenshot>-<service>.png); then value autocomplete, filtering by a clicked value, the
// histogram, a line's context and live tail (screenshot <screenshot>).
//
// Usage: LOUPE_URL=http://127.0.0.1:PORT LOUPE_SERVICES=cart,inventory \
//        LOUPE_SCREENSHOT=/tmp/logs.png node log_explorer.mjs
// Prints one JSON summary line and exits 0 on success (see harness.mjs).
import { BASE, check, main, pageState, waitForRows } from './harness.mjs';

const SERVICES = (process.env.LOUPE_SERVICES || '').split(',').filter(Boolean);

/** Search → expand → open trace → Logs tab shows the line. */
async function lineToTrace(page, service, screenshot) {
  await page.goto(`${BASE}/logs?q=${encodeURIComponent(`service:${service}`)}&from=now-1h&to=now`, {
    waitUntil: 'domcontentloaded',
  });
  const rows = await waitForRows(page, '[data-testid=log-row]', `service ${service}`);
  const row = rows.first();
  const body = (await row.locator('.log-body').innerText()).trim();
  await row.locator('.log-line').click();
  const details = row.locator('[data-testid=log-details]');
  await details.waitFor({ state: 'visible', timeout: 10_000 });
  const traceLink = details.getByText('Open trace');
  check((await traceLink.count()) === 1, `the ${service} line has no trace link: ${body}`);
  await traceLink.click();
  await page.waitForURL(/\/traces\/[0-9a-f]{32}/, { timeout: 15_000 });
  const traceId = /\/traces\/([0-9a-f]{32})/.exec(page.url())[1];
  await waitForRows(page, '[data-testid=waterfall-row]', `trace ${traceId}`);
  const tab = page.locator('[data-testid=logs-tab]');
  await page.waitForFunction(() => /\(\d+\)/.test(document.querySelector('[data-testid=logs-tab]')?.textContent ?? ''), null, {
    timeout: 15_000,
  });
  await tab.click();
  await page.waitForURL(/[?&]tab=logs/, { timeout: 10_000 });
  const traceLines = page.locator('[data-testid=trace-logs] [data-testid=log-row]');
  await traceLines.first().waitFor({ state: 'visible', timeout: 15_000 });
  const bodies = (await traceLines.locator('.log-body').allInnerTexts()).map((b) => b.trim());
  check(bodies.includes(body), `the Logs tab of trace ${traceId} lacks the line "${body}": ${JSON.stringify(bodies)}` + (await pageState(page)));
  const services = new Set((await traceLines.locator('.log-service').allInnerTexts()).map((s) => s.trim()));
  // Each line of the tab links to its span; following one selects that span in the timeline.
  const spanLinks = page.locator('[data-testid=trace-logs] .log-span a');
  check((await spanLinks.count()) > 0, 'no line of the Logs tab links to its span');
  const shot = screenshot.replace(/\.png$/i, '') + `-${service}.png`;
  await page.screenshot({ path: shot, fullPage: true });
  await spanLinks.first().click();
  await page.waitForURL(/[?&]span=[0-9a-f]{16}/, { timeout: 10_000 });
  await page.locator('[data-testid=span-details]').waitFor({ state: 'visible', timeout: 10_000 });
  return { service, traceId, traceLines: bodies.length, traceServices: [...services], screenshot: shot };
}

async function explorer(page, service, screenshot) {
  await page.goto(`${BASE}/logs?from=now-1h&to=now`, { waitUntil: 'domcontentloaded' });
  await waitForRows(page, '[data-testid=log-row]', 'any service');
  const histogram = page.locator('[data-testid=log-histogram]');
  await histogram.waitFor({ state: 'visible', timeout: 15_000 });
  check((await histogram.locator('canvas').count()) > 0, 'the histogram has no canvas');

  // Value autocomplete: `service:` offers the services that log.
  const input = page.locator('[data-testid=log-query]');
  await input.click();
  await input.fill('service:');
  const suggestions = page.locator('[data-testid=suggestions] li');
  await suggestions.first().waitFor({ state: 'visible', timeout: 10_000 });
  const offered = (await suggestions.locator('.mono').allInnerTexts()).map((s) => s.trim());
  check(offered.includes(service), `service: offers ${JSON.stringify(offered)}, not ${service}`);
  await suggestions.filter({ hasText: service }).first().click();
  check((await input.inputValue()).startsWith(`service:${service}`), `autocomplete wrote "${await input.inputValue()}"`);
  await input.press('Enter');
  await page.waitForURL(new RegExp(`[?&]q=service%3A${service}`), { timeout: 10_000 });
  // The previous lines stay on screen until the new search answers.
  try {
    await page.waitForFunction(
      (svc) => {
        const names = [...document.querySelectorAll('[data-testid=log-row] .log-service')].map((e) => e.textContent.trim());
        return names.length > 0 && names.every((n) => n === svc);
      },
      service,
      { timeout: 15_000 },
    );
  } catch {
    const shown = new Set((await page.locator('[data-testid=log-row] .log-service').allInnerTexts()).map((s) => s.trim()));
    check(false, `after filtering, lines of ${JSON.stringify([...shown])}` + (await pageState(page)));
  }

  // Expand a line, exclude its service with the − button: the query says so.
  const row = page.locator('[data-testid=log-row]').first();
  await row.locator('.log-line').click();
  await row.locator('[data-testid=show-context]').click();
  await row.locator('[data-testid=log-context] .ctx-this').first().waitFor({ state: 'visible', timeout: 10_000 });
  const contextLines = await row.locator('[data-testid=log-context] .ctx-line').count();
  const serviceRow = row.locator('.kv tr', { hasText: 'service' }).first();
  await serviceRow.hover();
  await serviceRow.locator('[data-testid=filter-out]').click();
  await page.waitForURL(/-service%3A/, { timeout: 10_000 });

  // Live tail: the demo keeps logging, so new lines arrive.
  await page.goto(`${BASE}/logs?from=now-1h&to=now`, { waitUntil: 'domcontentloaded' });
  await waitForRows(page, '[data-testid=log-row]', 'any service');
  await page.locator('[data-testid=live-toggle]').click();
  await page.waitForURL(/[?&]live=1/, { timeout: 10_000 });
  await page.waitForFunction(() => /Following new lines: \d+ so far/.test(document.querySelector('.live-note')?.textContent ?? ''), null, {
    timeout: 20_000,
  });
  await page.screenshot({ path: screenshot, fullPage: false });
  return { offered, contextLines };
}

if (SERVICES.length === 0) {
  console.error('log_explorer: set LOUPE_SERVICES to services that log (comma-separated)');
  process.exit(1);
}
main('log_explorer', 'log_explorer.png', async (page, pageErrors, screenshot) => {
  const started = Date.now();
  const traces = [];
  for (const s of SERVICES) traces.push(await lineToTrace(page, s, screenshot));
  const ex = await explorer(page, SERVICES[0], screenshot);
  check((await page.locator('[data-testid=error-banner]').count()) === 0, 'an error banner is shown' + (await pageState(page)));
  check(pageErrors.length === 0, `uncaught exception in the page: ${pageErrors[0]}`);
  return { traces, ...ex, elapsedMs: Date.now() - started };
});
