// Drives tests/ui-e2e/app in headless Chromium against a running ferridm that serves it with
// `--ui`. Starts no server: the base URL comes from FERRIDM_URL. The browser is the system's
// Chromium (CHROMIUM, default /usr/bin/chromium) driven by playwright-core. Exits non-zero
// when any step fails.
//
//   FERRIDM_URL=http://127.0.0.1:8080 node tests/ui-e2e/run.mjs
//
// FERRIDM_E2E_USER names the user to register (default: a random e2e-<hex>).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const base = (process.env.FERRIDM_URL ?? '').replace(/\/+$/, '');
if (!base) {
  console.error('run.mjs: set FERRIDM_URL to the base URL of a ferridm serving tests/ui-e2e/app with --ui');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const STEP_TIMEOUT = 30_000;

const userName = process.env.FERRIDM_E2E_USER || `e2e-${randomBytes(4).toString('hex')}`;
const telephone = '+1 555 0100';
const newGivenName = 'Edited';

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

// Waits for step `name` (or any failed step) and returns its text; a failed step fails the run.
async function stepText(page, name) {
  await page.waitForSelector(`#step-${name}, #steps [data-ok="false"]`, { timeout: STEP_TIMEOUT });
  const failed = await page.locator('#steps [data-ok="false"]').allTextContents();
  check(failed.length === 0, `a step failed: ${failed.join(' | ')}`);
  const text = (await page.locator(`#step-${name}`).textContent()) ?? '';
  console.log(`  ${text}`);
  return text;
}

async function expectStep(page, name, expected) {
  const text = await stepText(page, name);
  check(text === `${name}: ok ${expected}`, `step ${name}: expected "${name}: ok ${expected}", got "${text}"`);
}

async function main(page, context) {
  // A client route: the server answers it with index.html, which loads /app.js.
  const response = await page.goto(`${base}/register`, { waitUntil: 'load' });
  check(response && response.status() === 200, `GET /register: HTTP ${response && response.status()}`);
  check(
    (response.headers()['content-type'] ?? '').startsWith('text/html'),
    `GET /register: content-type ${response.headers()['content-type']}`,
  );
  check((await page.title()) === 'ferridm end-to-end UI', `unexpected title ${await page.title()}`);
  check((await page.locator('#route').textContent()) === '/register', 'the app did not run on /register');

  await expectStep(page, 'uiconfig', 'selfRegistration=true');
  await expectStep(page, 'features', 'registration=enabled ["selfservice/registration"]');
  // The form lists the configured registration properties in order, and the only password
  // input is the UI's own masked one.
  await expectStep(page, 'registration-start', 'idmUserDetails initial userName,givenName,sn,mail passwordInputs=1');
  check(
    (await page.locator('#registration input[type="password"]').count()) === 1,
    'the registration form has more than one password input',
  );

  await page.fill('#reg-userName', userName);
  await page.fill('#reg-mail', `${userName}@example.com`);
  await page.click('#register');
  await expectStep(page, 'registration', 'localAutoLogin end credentialJwt');
  await expectStep(page, 'logout', 'success=true');
  await expectStep(
    page,
    'autologin',
    `${userName} authLogin=true processesRequired=true [selfservice/profile] cookie=httpOnly`,
  );

  const cookies = await context.cookies(base);
  const session = cookies.find((cookie) => cookie.name === 'session-jwt');
  check(session && session.value.length > 0, `no session-jwt cookie after the login: ${JSON.stringify(cookies)}`);
  check(session.httpOnly === true, 'the session-jwt cookie is not HttpOnly');
  check(session.path === '/', `the session-jwt cookie has path ${session.path}`);

  await expectStep(
    page,
    'profile-requirements',
    'conditionaluser initial telephoneNumber(required) "Add your telephone number"',
  );
  check(
    (await page.locator('#profile-form label').first().textContent())?.startsWith('Telephone Number'),
    'the profile form is not labelled from the schema title',
  );
  await page.fill('#attr-telephoneNumber', telephone);
  await page.click('#complete-profile');
  await expectStep(page, 'profile-submit', 'conditionaluser end success=true');
  await expectStep(
    page,
    'relogin',
    `${userName} roles=internal/role/openidm-authorized processesRequired=false`,
  );
  await expectStep(page, 'schema', 'givenName title=First Name userEditable=true');

  await page.fill('#newGivenName', newGivenName);
  await page.click('#edit-profile');
  await expectStep(page, 'edit', `givenName=${newGivenName}`);
  await expectStep(page, 'readback', `givenName=${newGivenName} telephoneNumber=${telephone}`);
  check((await page.locator('#done').textContent()) === 'all steps passed', 'the app did not finish');
}

const userDataDir = mkdtempSync(join(tmpdir(), 'ferridm-ui-e2e-'));
let context;
let page;
const log = [];
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
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => log.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => log.push(`page error: ${error.message}`));
  page.on('response', (response) => {
    const request = response.request();
    log.push(`${request.method()} ${new URL(response.url()).pathname} -> ${response.status()}`);
  });
  console.log(`ui-e2e: ${base} as ${userName}`);
  await main(page, context);
  console.log('ui-e2e: all steps passed');
} catch (error) {
  process.exitCode = 1;
  console.error(`ui-e2e FAILED: ${error && error.message ? error.message : error}`);
  if (page) {
    const steps = await page
      .locator('#steps li')
      .allTextContents()
      .catch(() => []);
    console.error(`steps:\n  ${steps.join('\n  ')}`);
  }
  console.error(`browser log:\n  ${log.join('\n  ')}`);
} finally {
  if (context) {
    await context.close().catch(() => {});
  }
  rmSync(userDataDir, { recursive: true, force: true });
}
