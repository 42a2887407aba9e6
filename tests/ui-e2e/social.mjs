// Drives tests/ui-e2e/app in headless Chromium through "sign up with <provider>" (idm-api §13)
// against a running ferridm that serves it with `--ui` and has the OpenID Provider
// FERRIDM_E2E_PROVIDER configured (with `redirectUri` `<FERRIDM_URL>/oauthReturn/` and social
// registration on). Starts no server and no provider. Exits non-zero when any step fails.
//
//   FERRIDM_URL=http://127.0.0.1:8080 FERRIDM_E2E_PROVIDER=loopback \
//   FERRIDM_E2E_ISSUER=http://127.0.0.1:9000 FERRIDM_E2E_ACCOUNT=<sub> FERRIDM_E2E_SN=Hopper \
//     node tests/ui-e2e/social.mjs
//
// The browser opens /register, clicks the provider's button, and once at the provider's login
// step (`<issuer>/interaction/<uid>`) logs FERRIDM_E2E_ACCOUNT in there non-interactively
// (`/interaction/<uid>/login?account=<sub>`, a test provider's shortcut for its login form). The
// provider sends it back to the app's /oauthReturn/, which finishes the round trip, finds no
// linked user, registers through the identity (the test types FERRIDM_E2E_SN, the family name
// the provider's profile lacks; everything else comes prefilled from the provider) and logs in
// with it, landing on the dashboard and profile page. The profile must show the given name the
// provider had (FERRIDM_E2E_GIVEN_NAME, when set, names it). Last it reads the user back with
// the session and prints `social user: <userName> <givenName> <sn> <mail>`.
//
// Every response the browser gets is recorded; the run fails if any /openidm response is 400 or
// more other than the login probes (POST /openidm/authentication?_action=login answered 401: the
// session probe of each page load, and the OAuth login of the identity before it is registered).
import { check, expectStep, runInBrowser, STEP_TIMEOUT, stepText } from './harness.mjs';

const base = (process.env.FERRIDM_URL ?? '').replace(/\/+$/, '');
const provider = process.env.FERRIDM_E2E_PROVIDER ?? '';
const issuer = (process.env.FERRIDM_E2E_ISSUER ?? '').replace(/\/+$/, '');
const account = process.env.FERRIDM_E2E_ACCOUNT ?? '';
const familyName = process.env.FERRIDM_E2E_SN ?? '';
const expectedGivenName = process.env.FERRIDM_E2E_GIVEN_NAME ?? '';
if (!base || !provider || !issuer || !account || !familyName) {
  console.error(
    'social.mjs: set FERRIDM_URL (a ferridm serving tests/ui-e2e/app with --ui), FERRIDM_E2E_PROVIDER, ' +
      'FERRIDM_E2E_ISSUER, FERRIDM_E2E_ACCOUNT and FERRIDM_E2E_SN',
  );
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const POLL = 100;


// The uid when `url` is the provider's login step, `<issuer>/interaction/<uid>`.
function interactionUid(url) {
  const parsed = new URL(url);
  const match = /^\/interaction\/([^/]+)$/.exec(parsed.pathname);
  return parsed.origin === new URL(issuer).origin && match ? match[1] : null;
}

// Waits until the browser is at the provider's login step; fails early when a step of the app
// failed instead (the app stays put then).
async function atTheProvider(page) {
  const deadline = Date.now() + STEP_TIMEOUT;
  for (;;) {
    const uid = interactionUid(page.url());
    if (uid) {
      await page.waitForLoadState('load');
      return uid;
    }
    const failed = await page
      .locator('#steps [data-ok="false"]')
      .allTextContents()
      .catch(() => []);
    check(failed.length === 0, `a step failed: ${failed.join(' | ')}`);
    check(Date.now() < deadline, `the browser did not reach ${issuer}/interaction/<uid>; it is at ${page.url()}`);
    await new Promise((resolve) => setTimeout(resolve, POLL));
  }
}

async function main(page, context) {
  const response = await page.goto(`${base}/register`, { waitUntil: 'load' });
  check(response && response.status() === 200, `GET /register: HTTP ${response && response.status()}`);
  check((await page.locator('#route').textContent()) === '/register', 'the app did not run on /register');
  await expectStep(page, 'uiconfig', 'selfRegistration=true');
  const providers = await stepText(page, 'providers');
  check(
    providers.startsWith('providers: ok ') && providers.slice('providers: ok '.length).split(',').some((entry) => entry.startsWith(`${provider}=`)),
    `the app does not offer ${provider}: ${providers}`,
  );
  await expectStep(page, 'registration-start', 'idmUserDetails initial userName,givenName,sn,mail passwordInputs=1');
  const button = page.locator(`#social-${provider}`);
  const label = (await button.textContent()) ?? '';
  console.log(`  button: "${label}"`);
  check(label.startsWith('Sign up with '), `the ${provider} button says "${label}"`);

  // The app logs the anonymous "session" out, asks for the redirect and goes to the provider.
  await button.click();
  const uid = await atTheProvider(page);
  console.log(`  at the provider: ${page.url()}`);
  const binding = (await context.cookies(`${base}/openidm/identityProviders`)).find(
    (cookie) => cookie.name === 'ferridm-social',
  );
  check(binding, `getAuthRedirect set no ferridm-social cookie: ${JSON.stringify(await context.cookies(base))}`);
  check(binding.httpOnly === true, 'the ferridm-social cookie is not HttpOnly');
  check(binding.path === '/openidm', `the ferridm-social cookie has path ${binding.path}`);
  const prompt = JSON.parse((await page.locator('body').textContent()) ?? '{}');
  check(prompt.prompt?.name === 'login', `the provider does not ask for a login: ${JSON.stringify(prompt)}`);

  // The provider's login form, filled in non-interactively: back to <base>/oauthReturn/.
  const login = `${issuer}/interaction/${uid}/login?account=${encodeURIComponent(account)}`;
  const returned = await page.goto(login, { waitUntil: 'load' });
  check(returned && returned.status() === 200, `GET ${login} ended with HTTP ${returned && returned.status()}`);
  check(
    returned.url().startsWith(`${base}/oauthReturn/?`),
    `the provider did not send the browser to ${base}/oauthReturn/: ${returned.url()}`,
  );
  console.log(`  back at ${new URL(returned.url()).pathname}?${[...new URL(returned.url()).searchParams.keys()].join('&')}`);
  const back = await stepText(page, 'oauth-return');
  check(
    back.startsWith(`oauth-return: ok ${provider} parameters=`) &&
      ['code', 'state'].every((name) => back.split('parameters=')[1].split(',').includes(name)),
    `unexpected return: ${back}`,
  );
  check((await page.locator('#route').textContent()) === '/oauthReturn/', 'the app did not run on /oauthReturn/');
  check(!page.url().includes('code='), `the code stayed in the address bar: ${page.url()}`);
  await expectStep(page, 'handle-post-auth', 'token=new');
  await expectStep(page, 'oauth-probe', 'HTTP 401 not linked: registering');

  // The registration asks only for what the provider did not say.
  const asked = await stepText(page, 'social-registration');
  check(
    asked.startsWith('social-registration: ok idmUserDetails initial missing=sn prefilled='),
    `the registration does not ask for just the family name: ${asked}`,
  );
  check(await page.locator('#password-field').isHidden(), 'a social sign-up asks for a password');
  check((await page.locator('#reg-sn').inputValue()) === '', 'the family name is prefilled');
  const userName = await page.locator('#reg-userName').inputValue();
  const givenName = await page.locator('#reg-givenName').inputValue();
  const mail = await page.locator('#reg-mail').inputValue();
  check(userName && givenName && mail, `the form is not prefilled: ${userName} ${givenName} ${mail}`);
  check(!expectedGivenName || givenName === expectedGivenName, `prefilled given name ${givenName}, not ${expectedGivenName}`);
  await page.fill('#reg-sn', familyName);
  await page.click('#complete-social');
  await expectStep(page, 'social-registration-end', 'localAutoLogin end oauthLogin=true sent=sn');
  await expectStep(page, 'social-login', `${userName} moduleId=SOCIAL_PROVIDERS processesRequired=false [] cookie=httpOnly`);
  const session = (await context.cookies(base)).find((cookie) => cookie.name === 'session-jwt');
  check(session && session.value.length > 0 && session.httpOnly, 'no HttpOnly session-jwt cookie after the OAuth login');

  await expectStep(page, 'relogin', `${userName} roles=internal/role/openidm-authorized processesRequired=false`);
  await expectStep(page, 'schema', 'givenName title=First Name userEditable=true');
  await expectStep(page, 'dashboard', 'widgets=Welcome privileges=0 notifications=0');
  await expectStep(page, 'profile-page', 'kba=off preferences=updates:unset,marketing:unset trustedDevices=none consent=0');
  const shown = (await page.locator('#profile-user').textContent()) ?? '';
  console.log(`  profile: ${shown}`);
  check(
    (await page.locator('#profile-user').getAttribute('data-given-name')) === givenName &&
      shown.startsWith(`${givenName} ${familyName} `),
    `the profile page does not show the provider's given name ${givenName}: "${shown}"`,
  );

  // What the server stored, read with the session.
  const id = await page.locator('#profile-user').getAttribute('data-user-id');
  const stored = await page.evaluate(async (path) => {
    const reply = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    return { status: reply.status, body: await reply.json() };
  }, `/openidm/managed/user/${encodeURIComponent(id)}`);
  check(stored.status === 200, `GET managed/user/${id}: HTTP ${stored.status} ${JSON.stringify(stored.body)}`);
  const user = stored.body;
  check(
    user.userName === userName && user.givenName === givenName && user.sn === familyName && user.mail === mail,
    `stored: ${JSON.stringify(user)}`,
  );
  console.log(`social user: ${user.userName} ${user.givenName} ${user.sn} ${user.mail}`);
}

console.log(`ui-e2e-social: ${base} with ${provider} (${issuer}) as ${account}`);
await runInBrowser({ name: 'ui-e2e-social', base, executablePath, main });
