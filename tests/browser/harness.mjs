// Shared by the browser checks: Chromium launched as the tests need it, the check helpers,
// and the run wrapper that prints one JSON summary line, saves a failure screenshot and sets
// the exit code.
//
// Environment: LOUPE_URL (base URL), LOUPE_SCREENSHOT (where the success screenshot goes;
// the failure one is <name>-failure.png), LOUPE_TOKEN (optional API token).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = (process.env.LOUPE_URL || '').replace(/\/+$/, '');
export const TOKEN = process.env.LOUPE_TOKEN || '';
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

export class CheckFailed extends Error {}

/** What the page shows that explains a missing element: error banners, the token prompt, empty states. */
export async function pageState(page) {
  const parts = [];
  const banners = await page.locator('[data-testid=error-banner]').allInnerTexts();
  if (banners.length) parts.push(`error banner: ${banners.join(' | ')}`);
  if (await page.locator('[data-testid=token-form]').count()) parts.push('the server asked for an API token (set LOUPE_TOKEN)');
  const empty = await page.locator('.empty').allInnerTexts();
  if (empty.length) parts.push(`page says: ${empty.join(' | ')}`);
  return parts.length ? '; ' + parts.join('; ').replace(/\s+/g, ' ') : '';
}

export function check(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

/**
 * Waits up to `ms` for a visible `selector`. The UI does not poll, so while the page settles
 * on nothing (data not yet queryable) it is reloaded every few seconds.
 */
export async function waitForRows(page, selector, what, ms = 30_000) {
  const rows = page.locator(selector);
  const deadline = Date.now() + ms;
  let lastReload = Date.now();
  for (;;) {
    if ((await rows.count()) > 0 && (await rows.first().isVisible())) return rows;
    if (Date.now() >= deadline) throw new CheckFailed(`no ${selector} within ${ms / 1000} s for ${what}` + (await pageState(page)));
    const settled = (await page.locator('.empty, [data-testid=error-banner]').count()) > 0;
    if (settled && Date.now() - lastReload > 3_000) {
      await page.reload({ waitUntil: 'domcontentloaded' });
      lastReload = Date.now();
    }
    await page.waitForTimeout(250);
  }
}

/** Runs `run(page, pageErrors, screenshot)` in a fresh Chromium profile and exits. */
export async function main(name, screenshotDefault, run) {
  if (!BASE) {
    console.error(`${name}: set LOUPE_URL to the Loupe base URL`);
    process.exit(1);
  }
  const screenshot = process.env.LOUPE_SCREENSHOT || join(process.cwd(), screenshotDefault);
  const failureShot = screenshot.replace(/\.png$/i, '') + '-failure.png';
  const userDataDir = mkdtempSync(join(tmpdir(), 'loupe-browser-'));
  let context;
  let page;
  const pageErrors = [];
  const consoleErrors = [];
  const watchdog = setTimeout(() => {
    console.error(`${name}: FAILED: no result within ${OVERALL_TIMEOUT_MS / 1000} s`);
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
    const result = await run(page, pageErrors, screenshot);
    console.log(JSON.stringify({ ok: true, url: BASE, ...result, consoleErrors: consoleErrors.length, screenshot }));
  } catch (err) {
    code = 1;
    const reason = err instanceof CheckFailed ? err.message : String(err && err.stack ? err.stack : err);
    console.error(`${name}: FAILED: ${reason}`);
    if (page) {
      try {
        await page.screenshot({ path: failureShot, fullPage: true });
        console.error(`${name}: failure screenshot at ${failureShot} (page ${page.url()})`);
      } catch (shotErr) {
        console.error(`${name}: could not take a failure screenshot: ${shotErr}`);
      }
    }
    console.log(JSON.stringify({ ok: false, url: BASE, reason, screenshot: failureShot }));
  } finally {
    clearTimeout(watchdog);
    if (context) await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
  process.exit(code);
}
