// What the browser runs (run.mjs, social.mjs) share: the app's step list, headless Chromium with
// every tab watched, and the check that no /openidm answer but the login probes is 400 or more.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** How long one step of the app may take. */
export const STEP_TIMEOUT = 30_000;

export function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/** Waits for step `name` (or any failed step) and returns its text; a failed step fails the run. */
export async function stepText(page, name) {
  await page.waitForSelector(`#step-${name}, #steps [data-ok="false"]`, { timeout: STEP_TIMEOUT });
  const failed = await page.locator('#steps [data-ok="false"]').allTextContents();
  check(failed.length === 0, `a step failed: ${failed.join(' | ')}`);
  const text = (await page.locator(`#step-${name}`).textContent()) ?? '';
  console.log(`  ${text}`);
  return text;
}

export async function expectStep(page, name, expected) {
  const text = await stepText(page, name);
  check(text === `${name}: ok ${expected}`, `step ${name}: expected "${name}: ok ${expected}", got "${text}"`);
}

/** A session's login probe: the login with no credentials, answered 401. */
function isLoginProbe(response) {
  return (
    response.method === 'POST' &&
    response.path === '/openidm/authentication' &&
    response.query === '?_action=login' &&
    response.status === 401
  );
}

/**
 * Runs `main(page, context, watch)` in a fresh headless Chromium (`executablePath`) and sets the
 * exit code: it fails when `main` throws or when any response of ferridm (at `base`) under
 * /openidm but the login probes is 400 or more. `watch(tab)` records another tab's responses.
 * Output lines start with `name`; on failure every tab's steps and the browser log follow.
 */
export async function runInBrowser({ name, base, executablePath, main }) {
  const userDataDir = mkdtempSync(join(tmpdir(), `ferridm-${name}-`));
  const origin = new URL(base).origin;
  const log = [];
  // Every response from ferridm: {method, path, query, status}.
  const responses = [];
  const watch = (tab) => {
    tab.on('console', (message) => log.push(`console.${message.type()}: ${message.text()}`));
    tab.on('pageerror', (error) => log.push(`page error: ${error.message}`));
    tab.on('response', (response) => {
      const request = response.request();
      const url = new URL(response.url());
      const elsewhere = url.origin === origin ? '' : url.origin;
      if (!elsewhere) {
        responses.push({ method: request.method(), path: url.pathname, query: url.search, status: response.status() });
      }
      log.push(`${request.method()} ${elsewhere}${url.pathname}${url.search} -> ${response.status()}`);
    });
  };
  let context;
  try {
    // launchPersistentContext passes --user-data-dir (a fresh directory) itself.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 60_000,
    });
    context.setDefaultTimeout(STEP_TIMEOUT);
    const page = context.pages()[0] ?? (await context.newPage());
    watch(page);
    await main(page, context, watch);
    const api = responses.filter((response) => response.path.startsWith('/openidm/') || response.path === '/openidm');
    const failed = api.filter((response) => response.status >= 400 && !isLoginProbe(response));
    const line = (r) => `${r.method} ${r.path}${r.query} -> ${r.status}`;
    check(failed.length === 0, `/openidm responses of 400 or more:\n  ${failed.map(line).join('\n  ')}`);
    const probes = api.filter(isLoginProbe).length;
    console.log(`${name}: ${api.length} /openidm responses, none 400 or more but ${probes} login probes`);
    console.log(`${name}: all steps passed`);
  } catch (error) {
    process.exitCode = 1;
    console.error(`${name} FAILED: ${error && error.message ? error.message : error}`);
    for (const [index, open] of (context ? context.pages() : []).entries()) {
      const steps = await open
        .locator('#steps li')
        .allTextContents()
        .catch(() => []);
      console.error(`steps (tab ${index + 1}, ${open.url()}):\n  ${steps.join('\n  ')}`);
    }
    console.error(`browser log:\n  ${log.join('\n  ')}`);
  } finally {
    if (context) {
      await context.close().catch(() => {});
    }
    rmSync(userDataDir, { recursive: true, force: true });
  }
}
