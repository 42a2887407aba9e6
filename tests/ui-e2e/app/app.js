// A tiny stand-in for IDM's End User UI, served by `ferridm --ui` on the same origin as /openidm.
// It makes the calls the real UI makes, in the same way: fetch with `credentials: 'same-origin'`
// (the HttpOnly `session-jwt` cookie travels by itself), anonymous calls with the anonymous
// headers and `X-OpenIDM-NoSession: true`, and `X-Requested-With: XMLHttpRequest` on every
// write. Each step writes one line into #steps: `<step>: ok <detail>` or `<step>: FAILED <why>`.
//
// Client routes (history API, no reload): /login (sign in, "Forgot password?"), /passwordreset
// (find the account; with `#&token=…&code=…`, as the mailed link carries them: choose the new
// password), and any other path: registration → profile → dashboard → profile page (account
// security with the password change, security questions, preferences, trusted devices, consent,
// download and delete) → edit → log out.
//
// Social sign-in (idm-api §13): the login and registration pages show one button per provider of
// `GET authentication`; a click logs the anonymous "session" out, asks `getAuthRedirect` for the
// provider's authorization URL (keeping the start token base64-encoded in local storage) and
// goes there. The provider sends the browser back to /oauthReturn/ (the provider's
// `redirectUri`), which posts every query parameter as an array to `handlePostAuth`, tries the
// OAuth login with the identity token it gets, and on 401 registers through it
// (`oauthRegister` + `clientToken`), asking only for what the provider's profile lacked, then logs
// in with the token and goes on as after any sign-in.
//
// On load it asks, as the UI does, whether a session exists: a login with no credentials (401
// without one). That, a refused sign-in and the OAuth login of an identity no user is linked to
// yet are the only answers of 400 or more it expects.
'use strict';

const API = '/openidm';
const ANONYMOUS = {
  'X-OpenIDM-Username': 'anonymous',
  'X-OpenIDM-Password': 'anonymous',
  'X-OpenIDM-NoSession': 'true',
};
const AUTHORIZED = 'internal/role/openidm-authorized';

const session = {
  userName: null,
  userId: null,
  credentialJwt: null,
  processes: [],
  features: {},
  uiconfig: {},
  schema: {},
  // The social providers offered (GET authentication: those with a uiConfig).
  providers: [],
};
// A social sign-in in progress on /oauthReturn: the identity token handlePostAuth answered, the
// registration process token and the profile the server prefilled the registration with.
const social = { provider: null, identity: null, token: null, defaults: {} };
// Where the start token of a social round trip waits for the return (as the End User UI keeps it).
const DATA_STORE_TOKEN = 'dataStoreToken';
const SOCIAL_PROVIDER = 'socialProvider';
// The password reset in progress: the process token the next submission carries.
const reset = { token: null };

class StepFailure extends Error {}

async function call(method, path, { headers = {}, body } = {}) {
  const sent = { Accept: 'application/json', ...headers };
  if (method !== 'GET') {
    sent['X-Requested-With'] = 'XMLHttpRequest';
  }
  if (body !== undefined) {
    sent['Content-Type'] = 'application/json; charset=UTF-8';
  }
  const response = await fetch(API + path, {
    method,
    headers: sent,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: response.status, body: json, text };
}

function $(id) {
  return document.getElementById(id);
}

function step(name, ok, detail) {
  // A step done again (another sign-in attempt) replaces its earlier line.
  document.getElementById(`step-${name}`)?.remove();
  const line = document.createElement('li');
  line.id = `step-${name}`;
  line.dataset.ok = String(ok);
  line.textContent = `${name}: ${ok ? 'ok' : 'FAILED'} ${detail}`;
  $('steps').append(line);
  if (!ok) {
    throw new StepFailure(`${name}: ${detail}`);
  }
}

// Fails the step unless `reply` has `status`; returns the body.
function expectStatus(name, reply, status) {
  if (reply.status !== status) {
    step(name, false, `HTTP ${reply.status} (expected ${status}): ${reply.text}`);
  }
  return reply.body ?? {};
}

async function guarded(action) {
  try {
    await action();
  } catch (error) {
    if (!(error instanceof StepFailure)) {
      const line = document.createElement('li');
      line.id = 'step-error';
      line.dataset.ok = 'false';
      line.textContent = `error: FAILED ${error && error.stack ? error.stack : error}`;
      $('steps').append(line);
    }
    $('done').textContent = `failed: ${error.message || error}`;
  }
}

// On load: what the UI reads before showing anything (both open to anonymous), then the page
// of the current route.
async function start() {
  $('route').textContent = window.location.pathname;
  const uiconfig = await call('GET', '/info/uiconfig', { headers: ANONYMOUS });
  const configuration = expectStatus('uiconfig', uiconfig, 200).configuration ?? {};
  session.uiconfig = configuration;
  step('uiconfig', configuration.selfRegistration === true, `selfRegistration=${configuration.selfRegistration}`);

  // Is there a session already? (A login probe: 401 without one.)
  const probe = await call('POST', '/authentication?_action=login');
  step('session-probe', probe.status === 401 || probe.status === 200, `HTTP ${probe.status}`);

  const features = await call('GET', '/info/features?_queryFilter=true', { headers: ANONYMOUS });
  const result = expectStatus('features', features, 200).result ?? [];
  const registration = result.find((feature) => feature.name === 'registration');
  step(
    'features',
    Boolean(registration && registration.enabled),
    `registration=${registration && registration.enabled ? 'enabled' : 'disabled'} ` +
      `${registration ? JSON.stringify(registration.endpoints) : ''}`,
  );
  session.features = Object.fromEntries(result.map((feature) => [feature.name, feature]));

  // The social sign-in buttons (the login and registration pages read them).
  const authentication = await call('GET', '/authentication', { headers: ANONYMOUS });
  const providers = expectStatus('providers', authentication, 200).providers ?? [];
  session.providers = providers.filter((provider) => provider.uiConfig && provider.provider);
  step(
    'providers',
    Array.isArray(providers),
    session.providers.map((provider) => `${provider.provider}=${buttonName(provider)}`).join(',') || 'none',
  );
  await render();
}

// The pages: which sections a route shows and what it does on entry.
const PAGES = {
  home: async () => {
    await showRegistrationForm();
    $('register').disabled = false;
  },
  login: showLogin,
  passwordreset: showPasswordReset,
  oauthReturn: showOAuthReturn,
};

function pageOf(pathname) {
  const name = pathname.replace(/^\/+|\/+$/g, '');
  return Object.hasOwn(PAGES, name) ? name : 'home';
}

// Shows the sections of the current route and enters its page.
async function render() {
  $('route').textContent = window.location.pathname;
  const page = pageOf(window.location.pathname);
  for (const section of document.querySelectorAll('section[data-page]')) {
    section.hidden = section.dataset.page !== page;
  }
  showSocialButtons(page);
  await PAGES[page]();
}

async function navigate(path) {
  window.history.pushState(null, '', path);
  await render();
}

// Values the form starts with (the test fills in the rest).
const REGISTRATION_DEFAULTS = { givenName: 'Browser', sn: 'Tester' };

// The registration form, built from the first stage's requirements: one text input per
// registration property in the listed order. A password listed there would be a second,
// unmasked password field next to the UI's own.
async function showRegistrationForm() {
  const initial = await call('GET', '/selfservice/registration', { headers: ANONYMOUS });
  const first = expectStatus('registration-start', initial, 200);
  const properties = first.requirements?.registrationProperties?.properties ?? {};
  const names = Object.keys(properties);
  const form = $('registration-form');
  form.replaceChildren();
  for (const name of names) {
    const label = document.createElement('label');
    label.textContent = `${properties[name].title ?? name} `;
    const input = document.createElement('input');
    input.id = `reg-${name}`;
    input.autocomplete = 'off';
    input.value = REGISTRATION_DEFAULTS[name] ?? '';
    label.append(input);
    form.append(label);
  }
  const passwordInputs = [...document.querySelectorAll('#registration input')].filter(
    (input) => input.type === 'password' || input.id === 'reg-password',
  ).length;
  step(
    'registration-start',
    first.type === 'idmUserDetails' && first.tag === 'initial',
    `${first.type} ${first.tag} ${names.join(',')} passwordInputs=${passwordInputs}`,
  );
}

// Registration → anonymous logout → login with the credentialJwt → profile requirements.
async function register() {
  $('register').disabled = true;
  const user = { password: $('password').value };
  for (const input of document.querySelectorAll('#registration-form input')) {
    user[input.id.replace(/^reg-/, '')] = input.value;
  }
  const submitted = await call('POST', '/selfservice/registration?_action=submitRequirements', {
    headers: ANONYMOUS,
    body: { input: { user } },
  });
  const end = expectStatus('registration', submitted, 200);
  const jwt = end.additions?.credentialJwt;
  step(
    'registration',
    end.tag === 'end' && end.status?.success === true && typeof jwt === 'string' && jwt.length > 0,
    `${end.type} ${end.tag} ${typeof jwt === 'string' ? 'credentialJwt' : 'no credentialJwt'}`,
  );
  session.credentialJwt = jwt;

  // The End User UI drops the anonymous "session" before logging the new user in.
  const logout = await call('POST', '/authentication?_action=logout', { headers: ANONYMOUS });
  const loggedOut = expectStatus('logout', logout, 200);
  step('logout', loggedOut.success === true, `success=${loggedOut.success}`);

  const login = await call('POST', '/authentication?_action=login', {
    headers: { 'X-OpenIDM-Jwt': jwt, 'X-OpenIDM-NoSession': 'false' },
  });
  const context = expectStatus('autologin', login, 200);
  const authorization = context.authorization ?? {};
  session.userName = context.authenticationId;
  session.userId = authorization.id;
  session.processes = authorization.requiredProfileProcesses ?? [];
  const cookieVisible = document.cookie.includes('session-jwt');
  step(
    'autologin',
    context.authenticationId === user.userName && authorization.authLogin === true && !cookieVisible,
    `${context.authenticationId} authLogin=${authorization.authLogin} ` +
      `processesRequired=${authorization.processesRequired === true} ` +
      `[${session.processes.join(',')}] cookie=${cookieVisible ? 'visible' : 'httpOnly'}`,
  );

  if (session.processes.length > 0) {
    await showProfileForm(session.processes[0]);
  } else {
    await afterProfile();
  }
}

// Reads a pending profile process (cookie only) and renders one input per requested attribute.
async function showProfileForm(process) {
  const reply = await call('GET', `/${process}`);
  const body = expectStatus('profile-requirements', reply, 200);
  const requirements = body.requirements ?? {};
  const attributes = requirements.attributes ?? [];
  const form = $('profile-form');
  form.replaceChildren();
  for (const attribute of attributes) {
    const label = document.createElement('label');
    label.textContent = `${attribute.schema?.title ?? attribute.name} `;
    const input = document.createElement('input');
    input.id = `attr-${attribute.name}`;
    input.dataset.name = attribute.name;
    input.required = attribute.isRequired === true;
    input.value = attribute.value ?? '';
    label.append(input);
    form.append(label);
  }
  $('profile-title').textContent = requirements.uiConfig?.displayName ?? 'Complete your profile';
  $('profile-purpose').textContent = requirements.uiConfig?.purpose ?? '';
  step(
    'profile-requirements',
    body.type === 'conditionaluser' && attributes.length > 0,
    `${body.type} ${body.tag} ` +
      attributes.map((a) => `${a.name}(${a.isRequired ? 'required' : 'optional'})`).join(',') +
      ` "${requirements.uiConfig?.displayName ?? ''}"`,
  );
  $('complete-profile').disabled = false;
}

// Submits the profile form, then asks for the refreshed context (login with the cookie).
async function completeProfile() {
  $('complete-profile').disabled = true;
  const attributes = {};
  for (const input of $('profile-form').querySelectorAll('input')) {
    attributes[input.dataset.name] = input.value;
  }
  const process = session.processes[0];
  const reply = await call('POST', `/${process}?_action=submitRequirements`, {
    body: { input: { attributes } },
  });
  const body = expectStatus('profile-submit', reply, 200);
  step(
    'profile-submit',
    body.tag === 'end' && body.status?.success === true,
    `${body.type} ${body.tag} success=${body.status?.success}`,
  );
  await afterProfile();
}

async function afterProfile() {
  const login = await call('POST', '/authentication?_action=login');
  const context = expectStatus('relogin', login, 200);
  const authorization = context.authorization ?? {};
  const roles = authorization.roles ?? [];
  step(
    'relogin',
    context.authenticationId === session.userName &&
      roles.includes(AUTHORIZED) &&
      authorization.processesRequired === undefined,
    `${context.authenticationId} roles=${roles.join(',')} processesRequired=${authorization.processesRequired === true}`,
  );

  // The profile page is built from the object schema.
  const schema = await call('GET', '/schema/managed/user');
  session.schema = expectStatus('schema', schema, 200);
  const givenName = session.schema.properties?.givenName ?? {};
  step(
    'schema',
    givenName.title === 'First Name' && givenName.userEditable === true,
    `givenName title=${givenName.title} userEditable=${givenName.userEditable}`,
  );
  await showDashboard();
  await showProfilePage();
  $('edit-profile').disabled = false;
}

function ownPath() {
  return `/managed/user/${encodeURIComponent(session.userId)}`;
}

// What each dashboard widget reads when it is shown (the Workflow widget's calls are the End
// User UI's; the Welcome widget shows the session's user and reads nothing).
const WIDGET_CALLS = {
  Welcome: () => [],
  Workflow: (userId) => [
    '/endpoint/getprocessesforuser',
    `/endpoint/gettasksview?_queryId=gettasksview&userId=${encodeURIComponent(userId)}&viewType=assignee`,
    `/endpoint/gettasksview?_queryId=gettasksview&userId=${encodeURIComponent(userId)}`,
  ],
};

// The dashboard: privileges and notifications (read on every page), then the configured
// widgets, each with its own reads.
async function showDashboard() {
  const privileges = await call('POST', '/privilege?_action=listPrivileges');
  const granted = expectStatus('dashboard', privileges, 200);
  const notifications = await call('GET', `${ownPath()}?_fields=_notifications/*`);
  const unread = expectStatus('dashboard', notifications, 200)._notifications ?? [];
  const dashboard = await call('GET', '/config/ui/dashboard');
  const widgets = expectStatus('dashboard', dashboard, 200).dashboard?.widgets ?? [];
  const list = $('widgets');
  list.replaceChildren();
  // Shown after any sign-in, whichever route it happened on.
  $('dashboard').hidden = false;
  for (const widget of widgets) {
    for (const path of (WIDGET_CALLS[widget.type] ?? (() => []))(session.userId)) {
      expectStatus('dashboard', await call('GET', path), 200);
    }
    const item = document.createElement('li');
    item.textContent = widget.type;
    list.append(item);
  }
  step(
    'dashboard',
    Array.isArray(granted) && Array.isArray(unread),
    `widgets=${widgets.map((widget) => widget.type).join(',')} privileges=${granted.length} notifications=${unread.length}`,
  );
}

// The profile page: the user, the security questions (read with the anonymous headers, as the
// UI does; the session cookie still decides), preferences from the schema, trusted devices
// (only with AM's endpoints in the UI configuration), consentable mappings.
async function showProfilePage() {
  const profile = expectStatus('profile-page', await call('GET', ownPath()), 200);
  const kba = expectStatus('profile-page', await call('GET', '/selfservice/kba', { headers: ANONYMOUS }), 200);
  const questions = Object.keys(kba.questions ?? {});
  const offersQuestions = questions.length > 0 && kba.minimumAnswersToDefine > 0;
  $('security-questions').hidden = !offersQuestions;
  $('security-questions').textContent = offersQuestions ? `Define ${kba.minimumAnswersToDefine} of ${questions.length}` : '';

  const preferences = session.schema.properties?.preferences?.properties ?? {};
  const form = $('preferences');
  form.replaceChildren();
  for (const [name, preference] of Object.entries(preferences)) {
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.id = `pref-${name}`;
    box.checked = profile.preferences?.[name] === true;
    box.addEventListener('change', () => guarded(() => savePreference(name, box.checked)));
    label.append(box, ` ${preference.description ?? name}`);
    form.append(label);
  }

  const amEndpoints = session.uiconfig.amDataEndpoints;
  let devices = 'none';
  if (amEndpoints) {
    const reply = await call('GET', `${amEndpoints.baseUrl}${session.userId}${amEndpoints.trustedDevices}?_queryId=*`);
    devices = String((expectStatus('profile-page', reply, 200).result ?? []).length);
  }
  $('trusted-devices').textContent = amEndpoints ? `${devices} trusted devices` : 'No trusted devices (no AM).';

  const consent = await call('GET', '/consent?_queryFilter=/source eq "managed/user"');
  const mappings = expectStatus('profile-page', consent, 200).result ?? [];
  $('consent').replaceChildren(
    ...mappings.map((mapping) => Object.assign(document.createElement('li'), { textContent: mapping.name })),
  );

  const user = $('profile-user');
  user.textContent = `${profile.givenName ?? ''} ${profile.sn ?? ''} (${profile.userName}, ${profile.mail ?? 'no e-mail'})`;
  user.dataset.userId = profile._id ?? session.userId;
  user.dataset.givenName = profile.givenName ?? '';

  const shown = Object.keys(preferences).map((name) => `${name}:${profile.preferences?.[name] ?? 'unset'}`);
  step(
    'profile-page',
    profile.userName === session.userName && Array.isArray(mappings),
    `kba=${offersQuestions ? `on(${questions.length})` : 'off'} preferences=${shown.join(',')} ` +
      `trustedDevices=${devices} consent=${mappings.length}`,
  );
  $('account').hidden = false;
  $('change-password').disabled = false;
  $('download').disabled = false;
  $('delete-account').disabled = false;
}

// A preference toggle: one replace of /preferences/<name>.
async function savePreference(name, value) {
  const reply = await call('PATCH', ownPath(), {
    body: [{ operation: 'replace', field: `/preferences/${name}`, value }],
  });
  const body = expectStatus('preference', reply, 200);
  step('preference', body.preferences?.[name] === value, `${name}=${body.preferences?.[name]}`);
}

// The password change: the new password with the current one for re-authentication. The
// session goes on after it.
async function changePassword() {
  $('change-password').disabled = true;
  const current = $('current-password').value;
  const reply = await call('PATCH', ownPath(), {
    headers: { 'X-OpenIDM-Reauth-Password': current },
    body: [{ operation: 'add', field: '/password', value: $('changed-password').value }],
  });
  const body = expectStatus('password-change', reply, 200);
  $('current-password').value = '';
  $('changed-password').value = '';
  const after = await call('GET', ownPath());
  step(
    'password-change',
    body.password === undefined && after.status === 200,
    `password=${body.password === undefined ? 'hidden' : 'returned'} session=${after.status === 200 ? 'kept' : after.status}`,
  );
  $('change-password').disabled = false;
}

// "Download my data": the UI's read of the user's own object, without `_rev` and `kbaInfo`.
async function download() {
  const fields = '*,idps/*,_meta/createDate,_meta/lastChanged,_meta/termsAccepted,_meta/loginCount';
  const data = expectStatus('download', await call('GET', `${ownPath()}?_fields=${fields}`), 200);
  delete data._rev;
  delete data.kbaInfo;
  $('downloaded').textContent = JSON.stringify(data, null, 4);
  const meta = data._meta ?? {};
  step(
    'download',
    data.userName === session.userName && data.password === undefined,
    `${data.userName} givenName=${data.givenName} sn=${data.sn} mail=${data.mail} ` +
      `telephoneNumber=${data.telephoneNumber} preferences=${JSON.stringify(data.preferences ?? {})} ` +
      `loginCount=${meta.loginCount} dates=${['createDate', 'lastChanged'].filter((key) => key in meta).join(',')}`,
  );
}

// Deletes the account, then asks for the session again (a login probe: the session ended).
async function deleteAccount() {
  $('delete-account').disabled = true;
  const reply = await call('DELETE', ownPath());
  const body = expectStatus('delete', reply, 200);
  const probe = await call('POST', '/authentication?_action=login');
  step(
    'delete',
    body.userName === session.userName && probe.status === 401,
    `${body.userName} deleted, then login HTTP ${probe.status}`,
  );
}

// Edits the user's own profile and reads it back.
async function editProfile() {
  $('edit-profile').disabled = true;
  const value = $('newGivenName').value;
  const path = `/managed/user/${encodeURIComponent(session.userId)}`;
  const patched = await call('PATCH', path, {
    body: [{ operation: 'replace', field: '/givenName', value }],
  });
  const body = expectStatus('edit', patched, 200);
  step('edit', body.givenName === value, `givenName=${body.givenName}`);

  const read = await call('GET', path);
  const user = expectStatus('readback', read, 200);
  step(
    'readback',
    user.givenName === value && user.userName === session.userName,
    `givenName=${user.givenName} telephoneNumber=${user.telephoneNumber}`,
  );
  $('done').textContent = 'all steps passed';
  $('logout-button').disabled = false;
}

// Ends the session (the server clears the cookie) and goes to the sign-in page.
async function signOut() {
  $('logout-button').disabled = true;
  const reply = await call('POST', '/authentication?_action=logout');
  const body = expectStatus('signout', reply, 200);
  step('signout', body.success === true, `success=${body.success}`);
  session.userName = null;
  session.userId = null;
  await navigate('/login');
}

// The sign-in page, with "Forgot password?" only while the server offers password reset.
async function showLogin() {
  const passwordReset = session.features.passwordReset;
  const offered = Boolean(passwordReset && passwordReset.enabled);
  $('forgot-password').hidden = !offered;
  $('login-password').value = '';
  $('login-button').disabled = false;
  step(
    'login-page',
    true,
    `forgotPassword=${offered ? 'shown' : 'hidden'} ${passwordReset ? JSON.stringify(passwordReset.endpoints) : ''}`,
  );
}

// Signs in with the form's credentials. A refusal is shown on the page (and is no failed step:
// refusing a wrong password is what the server should do).
async function signIn() {
  $('login-button').disabled = true;
  const userName = $('login-userName').value;
  const password = $('login-password').value;
  $('login-password').value = '';
  const login = await call('POST', '/authentication?_action=login', {
    headers: { 'X-OpenIDM-Username': userName, 'X-OpenIDM-Password': password, 'X-OpenIDM-NoSession': 'false' },
  });
  if (login.status === 401) {
    $('login-message').textContent = 'Wrong user name or password.';
    $('login-button').disabled = false;
    step('login-refused', true, `${userName} HTTP 401 ${login.body?.message ?? login.text}`);
    return;
  }
  const context = expectStatus('login', login, 200);
  const authorization = context.authorization ?? {};
  session.userName = context.authenticationId;
  session.userId = authorization.id;
  session.processes = authorization.requiredProfileProcesses ?? [];
  const cookieVisible = document.cookie.includes('session-jwt');
  $('login-message').textContent = `Signed in as ${context.authenticationId}.`;
  step(
    'login',
    context.authenticationId === userName && !cookieVisible,
    `${context.authenticationId} processesRequired=${authorization.processesRequired === true} ` +
      `[${session.processes.join(',')}] cookie=${cookieVisible ? 'visible' : 'httpOnly'}`,
  );
  // As after the registration: a pending profile process first, then the full session.
  if (session.processes.length > 0) {
    $('profile').hidden = false;
    await showProfileForm(session.processes[0]);
  } else {
    await afterProfile();
  }
}

// The parameters a reset link carries after its `#` (`#&token=…&code=…`, as IDM's
// `#/passwordreset/&token=…&code=…`).
function linkParameters() {
  const parameters = {};
  for (const pair of window.location.hash.replace(/^#/, '').split('&')) {
    const at = pair.indexOf('=');
    if (at > 0) {
      parameters[decodeURIComponent(pair.slice(0, at))] = decodeURIComponent(pair.slice(at + 1));
    }
  }
  return parameters;
}

// /passwordreset: without a token, the "find your account" form; from the mailed link, the
// code goes back to the server and the new password form follows.
async function showPasswordReset() {
  const { token, code } = linkParameters();
  $('reset-find').hidden = Boolean(token);
  $('reset-choose').hidden = true;
  if (!token) {
    const initial = await call('GET', '/selfservice/reset', { headers: ANONYMOUS });
    const first = expectStatus('reset-start', initial, 200);
    const requirements = first.requirements ?? {};
    const required = requirements.required ?? [];
    $('reset-find-description').textContent = requirements.description ?? '';
    step(
      'reset-start',
      first.type === 'userQuery' && first.tag === 'initial' && required.includes('queryFilter'),
      `${first.type} ${first.tag} "${requirements.description ?? ''}" required=${required.join(',')}`,
    );
    $('reset-find-button').disabled = false;
    return;
  }

  step('reset-link', Boolean(code), `token code=${code ? `${code.length} characters` : 'missing'}`);
  // Token and code are spent now: keep them out of the history.
  window.history.replaceState(null, '', window.location.pathname);
  const submitted = await call('POST', '/selfservice/reset?_action=submitRequirements', {
    headers: ANONYMOUS,
    body: { token, input: { code } },
  });
  const next = expectStatus('reset-code', submitted, 200);
  const requirements = next.requirements ?? {};
  const required = requirements.required ?? [];
  reset.token = next.token;
  $('reset-choose-description').textContent = requirements.description ?? '';
  step(
    'reset-code',
    next.type === 'resetStage' && next.tag === 'initial' && required.includes('password') && Boolean(next.token),
    `${next.type} ${next.tag} "${requirements.description ?? ''}" required=${required.join(',')}`,
  );
  $('reset-choose').hidden = false;
}

// Finds the account by user name; the server mails it a link (and answers the same for an
// account that does not exist).
async function requestReset() {
  $('reset-find-button').disabled = true;
  const userName = $('reset-userName').value;
  const quoted = userName.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  const submitted = await call('POST', '/selfservice/reset?_action=submitRequirements', {
    headers: ANONYMOUS,
    body: { input: { queryFilter: `userName eq "${quoted}"` } },
  });
  const next = expectStatus('reset-find', submitted, 200);
  const required = next.requirements?.required ?? [];
  $('reset-sent').textContent = 'If the account exists, we sent it an e-mail with a link to reset its password.';
  step(
    'reset-find',
    next.type === 'emailValidation' && next.tag === 'validateCode' && required.includes('code'),
    `${next.type} ${next.tag} required=${required.join(',')}`,
  );
}

// Checks the new password against the policy at every keystroke, as IDM's UI does; only the
// answer for the latest value is shown, and the reset can be submitted only once it passes.
let policyChecks = 0;
async function checkPassword() {
  const check = ++policyChecks;
  const password = $('new-password').value;
  const feedback = $('password-policy');
  feedback.dataset.state = 'checking';
  $('reset-password-button').disabled = true;
  const reply = await call('POST', '/policy/selfservice/reset?_action=validateObject', {
    headers: ANONYMOUS,
    body: { password },
  });
  if (check !== policyChecks) {
    return;
  }
  const body = expectStatus('password-policy', reply, 200);
  // `MIN_LENGTH(minLength=8)` for the password, `<property>: REQUIRED` for any other property.
  const failed = (body.failedPolicyRequirements ?? []).flatMap((failure) =>
    (failure.policyRequirements ?? []).map((requirement) => {
      const params = Object.entries(requirement.params ?? {}).map(([key, value]) => `${key}=${value}`);
      const text = `${requirement.policyRequirement}${params.length > 0 ? `(${params.join(',')})` : ''}`;
      return failure.property === 'password' ? text : `${failure.property}: ${text}`;
    }),
  );
  const passes = body.result === true;
  feedback.textContent = passes ? 'The password meets the policy.' : `Not yet: ${failed.join(', ')}`;
  feedback.dataset.result = String(passes);
  feedback.dataset.checkedLength = String(password.length);
  feedback.dataset.state = 'checked';
  $('reset-password-button').disabled = !passes;
}

async function resetPassword() {
  $('reset-password-button').disabled = true;
  const submitted = await call('POST', '/selfservice/reset?_action=submitRequirements', {
    headers: ANONYMOUS,
    body: { token: reset.token, input: { password: $('new-password').value } },
  });
  const end = expectStatus('reset-submit', submitted, 200);
  step(
    'reset-submit',
    end.type === 'resetStage' && end.tag === 'end' && end.status?.success === true,
    `${end.type} ${end.tag} success=${end.status?.success}`,
  );
  reset.token = null;
  $('new-password').value = '';
  await navigate('/login');
  $('login-message').textContent = 'Your password has been reset: sign in with the new one.';
}

// ---------------------------------------------------------------------------------------------
// Social sign-in (idm-api §13)
// ---------------------------------------------------------------------------------------------

// Where each page shows its provider buttons, and what they say.
const SOCIAL_BUTTONS = {
  home: { container: 'registration-social', verb: 'Sign up with' },
  login: { container: 'login-social', verb: 'Sign in with' },
};

function buttonName(provider) {
  return provider.uiConfig?.buttonDisplayName ?? provider.provider;
}

// One button per provider on the login and registration pages (ids `social-<provider>`).
function showSocialButtons(page) {
  for (const [name, { container, verb }] of Object.entries(SOCIAL_BUTTONS)) {
    const box = $(container);
    box.replaceChildren();
    if (name !== page) {
      continue;
    }
    for (const provider of session.providers) {
      const button = document.createElement('button');
      button.type = 'button';
      button.id = `social-${provider.provider}`;
      button.dataset.provider = provider.provider;
      button.textContent = `${verb} ${buttonName(provider)}`;
      button.addEventListener('click', () => guarded(() => startSocial(provider.provider, button)));
      box.append(button);
    }
  }
}

// §13.2: drop the anonymous "session", ask for the provider's authorization URL (coming back to
// /oauthReturn), keep the start token for the return and go to the provider.
async function startSocial(provider, button) {
  button.disabled = true;
  const logout = await call('POST', '/authentication?_action=logout', { headers: ANONYMOUS });
  expectStatus('social-start', logout, 200);
  const reply = await call('POST', '/identityProviders?_action=getAuthRedirect', {
    headers: ANONYMOUS,
    body: { provider, landingPage: `${window.location.origin}/oauthReturn` },
  });
  const body = expectStatus('social-start', reply, 200);
  let target = 'none';
  try {
    const url = new URL(body.redirect);
    target = `${url.origin}${url.pathname}`;
  } catch {
    target = `not a URL: ${body.redirect}`;
  }
  step(
    'social-start',
    target.startsWith('http') && typeof body.token === 'string' && body.token.length > 0,
    `${provider} redirect=${target}`,
  );
  window.localStorage.setItem(DATA_STORE_TOKEN, window.btoa(body.token));
  window.localStorage.setItem(SOCIAL_PROVIDER, provider);
  window.location.assign(body.redirect);
}

// The OAuth login with the identity token of a finished round trip (§13.4).
function oauthLogin(identity) {
  return call('POST', '/authentication?_action=login', {
    headers: {
      'X-OpenIDM-OAuth-Login': 'true',
      'X-OpenIDM-DataStoreToken': identity,
      'X-OpenIDM-NoSession': 'false',
    },
  });
}

// /oauthReturn/?code=…&state=…&iss=… (§13.3): every query parameter as an array of strings to
// handlePostAuth with the start token; then the OAuth login, or the registration when no user is
// linked to the identity yet.
async function showOAuthReturn() {
  const query = new URLSearchParams(window.location.search);
  const parameters = {};
  for (const name of query.keys()) {
    parameters[name] = query.getAll(name);
  }
  const stored = window.localStorage.getItem(DATA_STORE_TOKEN);
  window.localStorage.removeItem(DATA_STORE_TOKEN);
  social.provider = window.localStorage.getItem(SOCIAL_PROVIDER) ?? '';
  window.localStorage.removeItem(SOCIAL_PROVIDER);
  // The code and state are spent now: keep them out of the history.
  window.history.replaceState(null, '', window.location.pathname);
  $('oauth-status').textContent = `Back from ${social.provider}…`;
  step(
    'oauth-return',
    Boolean(stored) && parameters.error === undefined,
    `${social.provider} parameters=${Object.keys(parameters).join(',')}` +
      (stored ? '' : ' no start token') +
      (parameters.error ? ` error=${parameters.error} ${parameters.error_description ?? ''}` : ''),
  );

  const verified = await call('POST', '/identityProviders?_action=handlePostAuth', {
    headers: { ...ANONYMOUS, 'X-OpenIDM-DataStoreToken': window.atob(stored) },
    body: parameters,
  });
  const identity = expectStatus('handle-post-auth', verified, 200).token;
  step(
    'handle-post-auth',
    typeof identity === 'string' && identity.length > 0,
    `token=${typeof identity === 'string' ? 'new' : 'missing'}`,
  );
  social.identity = identity;

  const probe = await oauthLogin(identity);
  if (probe.status === 200) {
    step('oauth-probe', true, 'HTTP 200 linked');
    await afterOAuthLogin('social-login', probe);
    return;
  }
  step(
    'oauth-probe',
    probe.status === 401,
    probe.status === 401 ? 'HTTP 401 not linked: registering' : `HTTP ${probe.status}: ${probe.text}`,
  );
  $('oauth-status').textContent = `No account is linked to your ${social.provider} identity yet: signing you up.`;
  await registerSocial();
}

// §13.5: registration through the verified identity. The server prefills the user from the
// provider's profile; what it lacked (or what fails the policy) comes back as the registration
// form, prefilled.
async function registerSocial() {
  const reply = await call('POST', '/selfservice/registration?_action=submitRequirements', {
    headers: ANONYMOUS,
    body: { input: { clientToken: social.identity, oauthRegister: 'true' } },
  });
  const body = expectStatus('social-registration', reply, 200);
  if (body.tag === 'end') {
    await socialRegistrationEnd('social-registration', body, null);
    return;
  }
  const requirements = body.requirements ?? {};
  const defaults = requirements.properties?.user?.default ?? {};
  const failed = (requirements.failedPolicyRequirements ?? []).map((failure) => failure.property);
  const properties = requirements.registrationProperties?.properties ?? {};
  const names = [...Object.keys(properties), ...failed.filter((name) => !Object.hasOwn(properties, name))];
  const form = $('registration-form');
  form.replaceChildren();
  for (const name of names) {
    const label = document.createElement('label');
    label.textContent = `${properties[name]?.title ?? name}${failed.includes(name) ? ' (required)' : ''} `;
    const input = document.createElement('input');
    input.id = `reg-${name}`;
    input.autocomplete = 'off';
    input.required = failed.includes(name);
    input.value = defaults[name] === undefined ? '' : String(defaults[name]);
    label.append(input);
    form.append(label);
  }
  social.token = body.token;
  social.defaults = defaults;
  $('registration').hidden = false;
  $('password-field').hidden = true;
  $('register').hidden = true;
  $('registration-missing').textContent = `Your ${social.provider} profile did not say: ${failed.join(', ')}.`;
  $('complete-social').hidden = false;
  $('complete-social').disabled = false;
  step(
    'social-registration',
    body.type === 'idmUserDetails' && body.tag === 'initial' && typeof body.token === 'string',
    `${body.type} ${body.tag} missing=${failed.join(',')} prefilled=${Object.keys(defaults).sort().join(',')}`,
  );
}

// Submits what the user typed or changed (the rest the server keeps from the provider).
async function completeSocialRegistration() {
  $('complete-social').disabled = true;
  const user = {};
  for (const input of $('registration-form').querySelectorAll('input')) {
    const name = input.id.replace(/^reg-/, '');
    const before = social.defaults[name] === undefined ? '' : String(social.defaults[name]);
    if (input.value !== before) {
      user[name] = input.value;
    }
  }
  const reply = await call('POST', '/selfservice/registration?_action=submitRequirements', {
    headers: ANONYMOUS,
    body: { token: social.token, input: { user } },
  });
  const body = expectStatus('social-registration-end', reply, 200);
  await socialRegistrationEnd('social-registration-end', body, Object.keys(user));
}

// The registration's end: `oauthLogin: true` says to log in with the identity token.
async function socialRegistrationEnd(name, body, sent) {
  const additions = body.additions ?? {};
  step(
    name,
    body.tag === 'end' && body.status?.success === true && additions.oauthLogin === true,
    `${body.type} ${body.tag} oauthLogin=${additions.oauthLogin}${sent ? ` sent=${sent.join(',')}` : ''}`,
  );
  social.token = null;
  $('registration').hidden = true;
  $('oauth-status').textContent = 'Signed up: signing you in.';
  await afterOAuthLogin('social-login', await oauthLogin(social.identity));
}

// A session from the OAuth login: on as after any sign-in (a pending profile process first).
async function afterOAuthLogin(name, login) {
  const context = expectStatus(name, login, 200);
  const authorization = context.authorization ?? {};
  session.userName = context.authenticationId;
  session.userId = authorization.id;
  session.processes = authorization.requiredProfileProcesses ?? [];
  social.identity = null;
  const cookieVisible = document.cookie.includes('session-jwt');
  $('oauth-status').textContent = `Signed in as ${context.authenticationId} through ${social.provider}.`;
  step(
    name,
    Boolean(context.authenticationId) && Boolean(authorization.id) && !cookieVisible,
    `${context.authenticationId} moduleId=${authorization.moduleId} ` +
      `processesRequired=${authorization.processesRequired === true} ` +
      `[${session.processes.join(',')}] cookie=${cookieVisible ? 'visible' : 'httpOnly'}`,
  );
  if (session.processes.length > 0) {
    $('profile').hidden = false;
    await showProfileForm(session.processes[0]);
  } else {
    await afterProfile();
  }
}

$('register').addEventListener('click', () => guarded(register));
$('complete-social').addEventListener('click', () => guarded(completeSocialRegistration));
$('complete-profile').addEventListener('click', () => guarded(completeProfile));
$('edit-profile').addEventListener('click', () => guarded(editProfile));
$('logout-button').addEventListener('click', () => guarded(signOut));
$('change-password').addEventListener('click', () => guarded(changePassword));
$('download').addEventListener('click', () => guarded(download));
$('delete-account').addEventListener('click', () => guarded(deleteAccount));
$('login-button').addEventListener('click', () => guarded(signIn));
$('forgot-password').addEventListener('click', (event) => {
  event.preventDefault();
  guarded(() => navigate('/passwordreset'));
});
$('reset-find-button').addEventListener('click', () => guarded(requestReset));
$('new-password').addEventListener('input', () => guarded(checkPassword));
$('reset-password-button').addEventListener('click', () => guarded(resetPassword));
window.addEventListener('popstate', () => guarded(render));
// A reset link opened in a tab that already shows /passwordreset only changes the fragment.
window.addEventListener('hashchange', () => guarded(render));
guarded(start);
