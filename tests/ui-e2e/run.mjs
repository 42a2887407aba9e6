// Drives tests/ui-e2e/app in headless Chromium against a running ferridm that serves it with
// `--ui`. Starts no server: the base URL comes from FERRIDM_URL. The browser is the system's
// Chromium (CHROMIUM, default /usr/bin/chromium) driven by playwright-core. Exits non-zero
// when any step fails.
//
//   FERRIDM_URL=http://127.0.0.1:8080 node tests/ui-e2e/run.mjs
//
// FERRIDM_E2E_USER names the user to register (default: a random e2e-<hex>), with password
// FERRIDM_E2E_PASSWORD. After the progressive profile it checks the dashboard and the profile
// page, toggles a preference, changes the password to FERRIDM_E2E_CHANGED_PASSWORD (with
// re-authentication) and downloads the user's data. Then, when FERRIDM_E2E_MAILBOX names the JSON-lines mailbox of the SMTP
// server the ferridm sends mail to (one {"rcptTos","subject","body",…} object a line), the user
// logs out, asks for a password reset, follows the mailed link (the server's reset
// `verificationLink` must be `<FERRIDM_URL>/passwordreset#`), sets FERRIDM_E2E_NEW_PASSWORD and
// signs in with it; without it that part is skipped with a notice. Last, the account is deleted
// from the profile page.
//
// Every response the browser gets is recorded; the run fails if any /openidm response is 400 or
// more other than the login probes (POST /openidm/authentication?_action=login answered 401: the
// UI's "is there a session?" on load, a refused sign-in, the check after deleting the account).
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { check, expectStep, runInBrowser, stepText } from './harness.mjs';

const base = (process.env.FERRIDM_URL ?? '').replace(/\/+$/, '');
if (!base) {
  console.error('run.mjs: set FERRIDM_URL to the base URL of a ferridm serving tests/ui-e2e/app with --ui');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const userName = process.env.FERRIDM_E2E_USER || `e2e-${randomBytes(4).toString('hex')}`;
const password = process.env.FERRIDM_E2E_PASSWORD || 'Sunfl0werSeed';
const newPassword = process.env.FERRIDM_E2E_NEW_PASSWORD || 'N3wSunfl0wer';
const changedPassword = process.env.FERRIDM_E2E_CHANGED_PASSWORD || 'Ch4ngedSunfl0wer';
const weakPassword = 'weak';
const mailbox = process.env.FERRIDM_E2E_MAILBOX || '';
// How long the reset mail may take to arrive.
const MAIL_TIMEOUT = 30_000;
const MAIL_POLL = 100;
const telephone = '+1 555 0100';
const newGivenName = 'Edited';

async function main(page, context, watch) {
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
  await page.fill('#password', password);
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
  await profilePage(page, 'updates:unset,marketing:unset');

  await page.fill('#newGivenName', newGivenName);
  await page.click('#edit-profile');
  await expectStep(page, 'edit', `givenName=${newGivenName}`);
  await expectStep(page, 'readback', `givenName=${newGivenName} telephoneNumber=${telephone}`);
  check((await page.locator('#done').textContent()) === 'all steps passed', 'the app did not finish');

  // Preferences: a toggle is one PATCH of /preferences/<name>.
  await page.check('#pref-marketing');
  await expectStep(page, 'preference', 'marketing=true');
  // The password change, re-authenticated with the current password; the session goes on.
  await page.fill('#current-password', password);
  await page.fill('#changed-password', changedPassword);
  await page.click('#change-password');
  await expectStep(page, 'password-change', 'password=hidden session=kept');
  await downloadData(page, 1);

  if (!mailbox) {
    console.log('ui-e2e: password reset skipped: FERRIDM_E2E_MAILBOX names no mailbox');
    await deleteAccount(page);
    return;
  }
  const last = await passwordReset(page, context, watch);
  console.log('ui-e2e: password reset passed');
  await downloadData(last, 2);
  await deleteAccount(last);
}

// The dashboard (the shipped one: the Welcome widget only) and the profile page as the app
// shows them after a login: KBA off, the preferences as stored, no AM, no consent mappings.
async function profilePage(page, preferences) {
  await expectStep(page, 'dashboard', 'widgets=Welcome privileges=0 notifications=0');
  await expectStep(page, 'profile-page', `kba=off preferences=${preferences} trustedDevices=none consent=0`);
  check(await page.locator('#security-questions').isHidden(), 'security questions are offered while KBA is off');
}

// "Download my data" after `logins` logins.
async function downloadData(page, logins) {
  await page.click('#download');
  await expectStep(
    page,
    'download',
    `${userName} givenName=${newGivenName} sn=Tester mail=${userName}@example.com telephoneNumber=${telephone} ` +
      `preferences={"marketing":true} loginCount=${logins} dates=createDate,lastChanged`,
  );
}

// Deletes the account from the profile page; the session ends with it.
async function deleteAccount(page) {
  await page.click('#delete-account');
  await expectStep(page, 'delete', `${userName} deleted, then login HTTP 401`);
  console.log('ui-e2e: account deleted');
}

// True for a login probe: a login refused for want of a session or of the right password.

// Every complete message in the mailbox, oldest first (a line still being written is left for
// the next look).
function mailboxMessages() {
  let text;
  try {
    text = readFileSync(mailbox, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') {
      return [];
    }
    throw error;
  }
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line));
}

// Polls the mailbox until a message to `address` arrives after the first `seen` messages.
async function waitForMail(address, seen) {
  const deadline = Date.now() + MAIL_TIMEOUT;
  for (;;) {
    const messages = mailboxMessages();
    const mail = messages.slice(seen).find((message) => (message.rcptTos ?? []).includes(address));
    if (mail) {
      return mail;
    }
    if (Date.now() > deadline) {
      const received = messages.map((message) => `${message.rcptTos} "${message.subject}"`);
      throw new Error(`no mail to ${address} within ${MAIL_TIMEOUT} ms; received: [${received.join('; ')}]`);
    }
    await new Promise((resolve) => setTimeout(resolve, MAIL_POLL));
  }
}

// The first href of an HTML body, unescaped.
function linkIn(body) {
  const match = /href=(["'])(.*?)\1/s.exec(body);
  check(match, `no link in the mail: ${body}`);
  return match[2]
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

// Waits until the policy feedback is about the password field's current value; returns it.
async function policyFeedback(page) {
  await page.waitForFunction(() => {
    const feedback = document.getElementById('password-policy');
    const input = document.getElementById('new-password');
    return feedback.dataset.state === 'checked' && feedback.dataset.checkedLength === String(input.value.length);
  });
  const feedback = page.locator('#password-policy');
  return {
    passes: (await feedback.getAttribute('data-result')) === 'true',
    text: (await feedback.textContent()) ?? '',
    submittable: await page.locator('#reset-password-button').isEnabled(),
  };
}

// Signs in through the app's form.
async function signIn(page, name, secret) {
  await page.fill('#login-userName', name);
  await page.fill('#login-password', secret);
  await page.click('#login-button');
}

// Log out → "Forgot password?" → the mail → its link → a weak then a strong new password →
// sign in with it (and not with the old one).
async function passwordReset(firstPage, context, watch) {
  let page = firstPage;
  const address = `${userName}@example.com`;
  await page.click('#logout-button');
  await expectStep(page, 'signout', 'success=true');
  await expectStep(page, 'login-page', 'forgotPassword=shown ["selfservice/reset"]');
  check((await page.locator('#route').textContent()) === '/login', 'the app did not go to /login');
  const cookies = await context.cookies(base);
  check(
    !cookies.some((cookie) => cookie.name === 'session-jwt'),
    `the session-jwt cookie outlived the logout: ${JSON.stringify(cookies)}`,
  );

  await page.click('#forgot-password');
  await expectStep(page, 'reset-start', 'userQuery initial "Find your account" required=queryFilter');
  check((await page.locator('#route').textContent()) === '/passwordreset', 'the app did not go to /passwordreset');
  const seen = mailboxMessages().length;
  await page.fill('#reset-userName', userName);
  await page.click('#reset-find-button');
  await expectStep(page, 'reset-find', 'emailValidation validateCode required=code');

  const mail = await waitForMail(address, seen);
  console.log(`  mail to ${mail.rcptTos}: "${mail.subject}"`);
  check(mail.subject === 'Reset your password', `mail subject: ${mail.subject}`);
  const link = linkIn(mail.body);
  const prefix = `${base}/passwordreset#&token=`;
  check(link.startsWith(prefix), `the mailed link does not lead to ${prefix}…: ${link}`);
  const code = new URLSearchParams(link.slice(link.indexOf('#') + 1)).get('code') ?? '';
  check(/^[0-9]{8}$/.test(code), `the link carries no 8-digit code: ${link}`);

  // As if clicked in the mail: the link opens in a new tab.
  page = await context.newPage();
  watch(page);
  const response = await page.goto(link, { waitUntil: 'load' });
  check(response && response.status() === 200, `GET ${link}: HTTP ${response && response.status()}`);
  await expectStep(page, 'reset-link', 'token code=8 characters');
  await expectStep(page, 'reset-code', 'resetStage initial "Reset password" required=password');
  check((await page.locator('#route').textContent()) === '/passwordreset', 'the link did not open /passwordreset');

  const field = page.locator('#new-password');
  await field.pressSequentially(weakPassword);
  const weak = await policyFeedback(page);
  console.log(`  policy for "${weakPassword}": ${weak.text}`);
  check(!weak.passes && weak.text.includes('MIN_LENGTH'), `a weak password passed the policy: ${weak.text}`);
  check(!weak.submittable, 'a weak password can be submitted');
  await field.fill('');
  await field.pressSequentially(newPassword);
  const strong = await policyFeedback(page);
  console.log(`  policy for the new password: ${strong.text}`);
  check(strong.passes, `the new password failed the policy: ${strong.text}`);
  check(strong.submittable, 'the reset button stays disabled for a password that passes');
  await page.click('#reset-password-button');
  await expectStep(page, 'reset-submit', 'resetStage end success=true');
  await expectStep(page, 'login-page', 'forgotPassword=shown ["selfservice/reset"]');
  check((await page.locator('#route').textContent()) === '/login', 'the reset did not end on /login');

  await signIn(page, userName, changedPassword);
  const refused = await stepText(page, 'login-refused');
  check(
    refused.startsWith(`login-refused: ok ${userName} HTTP 401`),
    `the old password was not refused: ${refused}`,
  );
  check(
    !(await context.cookies(base)).some((cookie) => cookie.name === 'session-jwt'),
    'a refused login set a session cookie',
  );
  await signIn(page, userName, newPassword);
  // The progressive profile asks at every login (the selfservice-profile.json the Rust test
  // serves): once more, and then the session has the full role.
  await expectStep(page, 'login', `${userName} processesRequired=true [selfservice/profile] cookie=httpOnly`);
  await expectStep(
    page,
    'profile-requirements',
    'conditionaluser initial telephoneNumber(required) "Add your telephone number"',
  );
  check(
    (await page.locator('#attr-telephoneNumber').inputValue()) === telephone,
    'the profile form does not show the telephone number saved before',
  );
  await page.click('#complete-profile');
  await expectStep(page, 'profile-submit', 'conditionaluser end success=true');
  await expectStep(
    page,
    'relogin',
    `${userName} roles=internal/role/openidm-authorized processesRequired=false`,
  );
  await expectStep(page, 'schema', 'givenName title=First Name userEditable=true');
  await profilePage(page, 'updates:unset,marketing:true');
  check(
    (await context.cookies(base)).some((cookie) => cookie.name === 'session-jwt' && cookie.httpOnly),
    'no session-jwt cookie after signing in with the new password',
  );
  return page;
}

console.log(`ui-e2e: ${base} as ${userName}`);
await runInBrowser({ name: 'ui-e2e', base, executablePath, main });
