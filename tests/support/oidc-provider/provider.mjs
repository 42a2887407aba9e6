// A real OpenID Provider (panva's `oidc-provider`) on loopback for ferridm's social-login tests.
//
// Usage: node provider.mjs SETUP.json
//
// Listens on 127.0.0.1 on a free port with issuer `http://127.0.0.1:<port>`, prints one JSON
// line `{"issuer": "..."}` on stdout once listening, and exits when its standard input closes.
// Diagnostics go to stderr only. oidc-provider's own routes: discovery at
// /.well-known/openid-configuration, /auth, /token, /me (userinfo), /jwks.
//
// oidc-provider is pinned to 8.8.1 (package.json): the 9.x line supports only Node.js 22 and
// later (it warns "Unsupported runtime" on 20), 8.x supports Node.js 18 and later.
//
// SETUP.json:
//   {
//     "clients": [{"client_id", "client_secret", "redirect_uris": [...],
//                  "token_endpoint_auth_method"?: "client_secret_basic" (default) | "client_secret_post"}],
//     "accounts": [{"sub" (or "id"), "email", "email_verified", "given_name", "family_name", "name",
//                   "preferred_username", ...other standard profile claims}],
//     "idTokenTtlSeconds"?: 3600,
//     "pkceRequired"?: true,          // S256 is the only method offered either way
//     "conformIdTokenClaims"?: false  // false: profile/email claims in the ID token and at userinfo;
//                                     // true: only at userinfo (OIDC Core 5.4 strictly)
//   }
// Client secret authentication at the token endpoint accepts both client_secret_basic and
// client_secret_post whichever method is registered (oidc-provider treats them alike).
//
// Non-interactive login (no browser; carry the OP's cookies between requests):
//   GET /interaction/:uid         the OP's login/consent step: JSON describing the prompt
//   GET /interaction/:uid/login?account=<sub>
//                                 logs <sub> in and grants every requested scope, then redirects
//                                 (303) back into the authorization flow; on a consent-only prompt
//                                 `account` may be left out (the session's account is used)
//   GET /interaction/:uid/abort   ends the flow with error=access_denied at the redirect_uri
//
// Plain OAuth 2.0 (no `openid` scope): the flow and token endpoint work (no id_token is issued),
// but oidc-provider's userinfo endpoint insists on the `openid` scope (403 insufficient_scope).
// For that shape this OP serves a provider-specific profile API, like GitHub's `/user`:
//   GET /profile with `Authorization: Bearer <access token>`: {"sub", ...claims of the token's scopes}
//
// Test knobs (tests only):
//   POST /test/rotate-keys   replaces the signing keys with a new RS256 key: {"kids": [...]}
//   POST /test/accounts      adds or replaces an account (body as in "accounts"): 204
//   POST /test/next-id-token {"claims": {...}, "rogueKey": bool}: the next token response's
//                            id_token gets `claims` merged in and is signed again, with the
//                            provider's key or (rogueKey) with a key outside its JWKS under the
//                            same `kid`: 204

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints its notices with console.info; stdout carries only the ready line.
console.info = console.error;

const setup = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));

/** Claims released per scope (OIDC Core 5.4). */
const SCOPE_CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: [
    'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
};

/** Accounts by subject: the claims each one has (with `sub`). */
const accounts = new Map();

function addAccount(account) {
  const { id, ...claims } = account;
  const sub = claims.sub ?? id;
  if (typeof sub !== 'string' || !sub) {
    throw new Error(`an account needs a "sub" (or "id"): ${JSON.stringify(account)}`);
  }
  accounts.set(sub, { ...claims, sub });
}

for (const account of setup.accounts ?? []) {
  addAccount(account);
}

const clients = (setup.clients ?? []).map((client) => ({
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  ...client,
}));

/** Cookie signing keys, kept across key rotations so sessions survive them. */
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

/** A fresh private RS256 signing key as a JWK with a random `kid`. */
function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: crypto.randomUUID(),
    alg: 'RS256',
    use: 'sig',
  };
}

const ttlSeconds = (value) => () => value;

/** Everything the provider stores (sessions, interactions, grants, codes, tokens), by
 * `<model>:<id>`, shared by every provider instance in this process so that one built to
 * rotate keys carries on where the last one stopped. */
const store = new Map();
const grantMembers = new Map();

/** oidc-provider's storage adapter interface over {@link store}. */
class StoreAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    const key = `${this.model}:${id}`;
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(key, { payload, expiresAt });
    if (this.model === 'Session') {
      store.set(`SessionUid:${payload.uid}`, { payload: id, expiresAt });
    }
    if (payload.userCode) {
      store.set(`UserCode:${payload.userCode}`, { payload: id, expiresAt });
    }
    if (payload.grantId) {
      const members = grantMembers.get(payload.grantId) ?? new Set();
      grantMembers.set(payload.grantId, members.add(key));
    }
  }

  static read(key) {
    const entry = store.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry?.payload;
  }

  async find(id) {
    return StoreAdapter.read(`${this.model}:${id}`);
  }

  async findByUid(uid) {
    const id = StoreAdapter.read(`SessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = StoreAdapter.read(`UserCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = StoreAdapter.read(`${this.model}:${id}`);
    if (payload) {
      payload.consumed = Math.floor(Date.now() / 1000);
    }
  }

  async destroy(id) {
    store.delete(`${this.model}:${id}`);
  }

  async revokeByGrantId(grantId) {
    for (const key of grantMembers.get(grantId) ?? []) {
      store.delete(key);
    }
    grantMembers.delete(grantId);
  }
}

/** A provider for `issuer` signing with `keys`, keeping its state in {@link store}. */
function buildProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    adapter: StoreAdapter,
    clients: structuredClone(clients),
    jwks: { keys },
    cookies: { keys: cookieKeys },
    claims: SCOPE_CLAIMS,
    conformIdTokenClaims: setup.conformIdTokenClaims ?? false,
    pkce: { methods: ['S256'], required: () => setup.pkceRequired ?? true },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
    },
    async findAccount(_ctx, sub) {
      if (!accounts.has(sub)) {
        return undefined;
      }
      return { accountId: sub, claims: async () => structuredClone(accounts.get(sub)) };
    },
    interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
    ttl: {
      AccessToken: ttlSeconds(3600),
      AuthorizationCode: ttlSeconds(60),
      IdToken: ttlSeconds(setup.idTokenTtlSeconds ?? 3600),
      Interaction: ttlSeconds(600),
      Session: ttlSeconds(3600),
      Grant: ttlSeconds(3600),
      RefreshToken: ttlSeconds(3600),
    },
  });
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  return provider;
}

let provider;
let providerCallback;
/** The tampering `POST /test/next-id-token` asked for, spent by the next token response. */
let nextIdToken;
let signingKeys = [signingKey()];

function useProvider(issuer) {
  provider = buildProvider(issuer, signingKeys);
  providerCallback = provider.callback();
}

function sendJson(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
}

/** `GET /interaction/:uid/login`: completes the login prompt (and grants the requested scopes
 * so no consent prompt follows) or a consent prompt (granting what it asks for). */
async function finishLogin(req, res, url) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  const accountId = url.searchParams.get('account') ?? session?.accountId;
  if (!accountId || !accounts.has(accountId)) {
    sendJson(res, 400, { error: 'unknown_account', account: accountId ?? null });
    return;
  }
  const result = {};
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (prompt.name === 'login') {
    result.login = { accountId };
    if (params.scope) {
      grant.addOIDCScope(params.scope);
    }
  }
  const missing = prompt.details ?? {};
  if (missing.missingOIDCScope) {
    grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  }
  if (missing.missingOIDCClaims) {
    grant.addOIDCClaims(missing.missingOIDCClaims);
  }
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  result.consent = { grantId: await grant.save() };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

/** `id_token` with `claims` merged into its payload, signed again with `key` (a private JWK). */
function resign(idToken, claims, key) {
  const [header, payload] = idToken.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url')));
  const encode = (part) => Buffer.from(JSON.stringify(part)).toString('base64url');
  const input = `${encode({ ...header, alg: 'RS256', kid: signingKeys[0].kid })}.${encode({ ...payload, ...claims })}`;
  const signature = crypto.sign('sha256', Buffer.from(input), crypto.createPrivateKey({ key, format: 'jwk' }));
  return `${input}.${signature.toString('base64url')}`;
}

/** Passes a token request to the provider, rewriting the response's `id_token` as
 * `tampering` asks. */
function tamperedTokenResponse(req, res, tampering) {
  const end = res.end.bind(res);
  res.end = (body, ...rest) => {
    if (res.statusCode !== 200) {
      return end(body, ...rest);
    }
    const reply = JSON.parse(body.toString());
    if (reply.id_token) {
      const key = tampering.rogueKey ? signingKey() : signingKeys[0];
      reply.id_token = resign(reply.id_token, tampering.claims ?? {}, key);
    }
    const text = JSON.stringify(reply);
    res.setHeader('content-length', Buffer.byteLength(text));
    return end(text, ...rest);
  };
  providerCallback(req, res);
}

/** `GET /profile`: the claims of the bearer token's account that its scopes release. */
async function profile(req, res) {
  const [scheme, value] = (req.headers.authorization ?? '').split(' ');
  const token = scheme?.toLowerCase() === 'bearer' && value
    ? await provider.AccessToken.find(value)
    : undefined;
  if (!token || !accounts.has(token.accountId)) {
    sendJson(res, 401, { error: 'invalid_token' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
    return;
  }
  const claims = accounts.get(token.accountId);
  const released = { sub: claims.sub };
  for (const scope of token.scopes) {
    for (const name of SCOPE_CLAIMS[scope] ?? []) {
      if (name in claims) {
        released[name] = claims[name];
      }
    }
  }
  sendJson(res, 200, released);
}

async function handle(req, res, issuer) {
  const url = new URL(req.url, issuer);
  const path = url.pathname;
  const interaction = /^\/interaction\/([^/]+)(?:\/(login|abort))?$/.exec(path);
  if (req.method === 'GET' && interaction) {
    const [, uid, action] = interaction;
    if (action === 'login') {
      await finishLogin(req, res, url);
    } else if (action === 'abort') {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
    } else {
      const { prompt, params } = await provider.interactionDetails(req, res);
      sendJson(res, 200, {
        uid,
        prompt,
        params,
        login: `${issuer}/interaction/${uid}/login?account=`,
        abort: `${issuer}/interaction/${uid}/abort`,
      });
    }
  } else if (req.method === 'GET' && path === '/profile') {
    await profile(req, res);
  } else if (req.method === 'POST' && path === '/test/rotate-keys') {
    signingKeys = [signingKey()];
    useProvider(issuer);
    sendJson(res, 200, { kids: signingKeys.map((key) => key.kid) });
  } else if (req.method === 'POST' && path === '/test/next-id-token') {
    nextIdToken = await readJson(req);
    sendJson(res, 204);
  } else if (req.method === 'POST' && path === '/token' && nextIdToken) {
    const tampering = nextIdToken;
    nextIdToken = undefined;
    tamperedTokenResponse(req, res, tampering);
  } else if (req.method === 'POST' && path === '/test/accounts') {
    addAccount(await readJson(req));
    sendJson(res, 204);
  } else {
    providerCallback(req, res);
  }
}

/** Fails unless every client's metadata is valid (oidc-provider checks it on first use). */
async function checkClients() {
  for (const { client_id: clientId } of clients) {
    if (!await provider.Client.find(String(clientId))) {
      throw new Error(`client ${clientId} cannot be loaded`);
    }
  }
}

const server = http.createServer();
server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  useProvider(issuer);
  try {
    await checkClients();
  } catch (error) {
    console.error('invalid setup:', error);
    process.exit(1);
  }
  server.on('request', (req, res) => {
    handle(req, res, issuer).catch((error) => {
      console.error(`${req.method} ${req.url}:`, error);
      if (!res.headersSent) {
        sendJson(res, error.statusCode ?? 500, {
          error: error.error ?? 'server_error',
          error_description: error.error_description ?? error.message,
        });
      } else {
        res.destroy();
      }
    });
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// The test process holds our standard input open: when it goes away, so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
