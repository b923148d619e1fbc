// DEV AND TEST TOOL ONLY — never used in production.
//
// A ProConnect-like OpenID Connect provider (npm's oidc-provider 9) for the test
// suite and the demo. Run it with the Node 22 this folder installs:
//
//   deploy/dev-idp/node_modules/.bin/node deploy/dev-idp/server.mjs [config.json]
//
// It prints one line to stdout once listening: `READY http://127.0.0.1:<port>/api/v2`
// (the issuer). Everything else goes to stderr. See README.md.
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider from 'oidc-provider';
// Not a public entry point, but the package (pinned) has no exports map: one store
// shared by every Provider we build, so sessions and codes survive a key rotation.
import { createMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js';

// oidc-provider prints its notices with console.info: keep stdout for READY.
console.info = console.error;

const HERE = dirname(fileURLToPath(import.meta.url));
const PREFIX = '/api/v2';

// --- Configuration: a JSON file given as argv[2], then environment variables.
const file = process.argv[2] ? JSON.parse(readFileSync(process.argv[2], 'utf8')) : {};
const env = process.env;
const config = {
  host: file.host ?? env.HOST ?? '127.0.0.1',
  port: Number(file.port ?? env.PORT ?? 9000),
  clients: file.clients ?? (env.CLIENTS ? JSON.parse(env.CLIENTS) : [{
    // The demo's client: the Django console on http://127.0.0.1:8000.
    client_id: 'visio-dev',
    client_secret: 'visio-dev-secret-not-for-production',
    redirect_uris: ['http://127.0.0.1:8000/oidc/callback/', 'http://localhost:8000/oidc/callback/'],
    post_logout_redirect_uris: ['http://127.0.0.1:8000/oidc/logout/callback/', 'http://localhost:8000/oidc/logout/callback/'],
    userinfo_signed_response_alg: 'RS256',
  }]),
  accountsFile: file.accounts_file ?? env.ACCOUNTS_FILE ?? join(HERE, 'demo-accounts.json'),
  // The issuer as browsers and the relying party see it, when that is not the
  // listening address (in a container listening on 0.0.0.0: deploy/compose.yml).
  issuer: file.issuer ?? env.ISSUER ?? null,
};

const accounts = JSON.parse(readFileSync(config.accountsFile, 'utf8'));
const bySub = new Map(accounts.map((a) => [a.sub, a]));
const byEmail = new Map(accounts.map((a) => [a.email.toLowerCase(), a]));

const clients = (Array.isArray(config.clients) ? config.clients : [config.clients]).map((c) => ({
  token_endpoint_auth_method: 'client_secret_post',
  id_token_signed_response_alg: 'RS256',
  grant_types: ['authorization_code'],
  response_types: ['code'],
  ...c,
}));

// --- Signing keys: RS256, newest first. Rotation rebuilds the Provider (same store,
// same cookie keys, so logged-in sessions and pending codes survive it).
function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}
let signingKeys = [newSigningKey()];
const cookieKeys = [randomBytes(32).toString('base64url')];
const adapter = createMemoryAdapter();

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}
button{display:block;width:100%;margin:.3em 0;padding:.6em;text-align:left;cursor:pointer}
.warn{background:#fee;border:1px solid #c00;padding:.5em}</style></head>
<body><p class="warn">Fournisseur d'identité de DÉVELOPPEMENT — ne jamais utiliser en production.</p>
<h1>${escapeHtml(title)}</h1>${body}</body></html>`;

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter,
    clients,
    jwks: { keys: signingKeys },
    cookies: { keys: cookieKeys },
    routes: {
      authorization: '/authorize',
      token: '/token',
      userinfo: '/userinfo',
      jwks: '/jwks',
      end_session: '/session/end',
    },
    // ProConnect: one scope per claim.
    claims: {
      acr: null,
      amr: null,
      auth_time: null,
      sid: null,
      iss: null,
      openid: ['sub'],
      email: ['email'],
      given_name: ['given_name'],
      usual_name: ['usual_name'],
      uid: ['uid'],
      siret: ['siret'],
      siren: ['siren'],
      idp_id: ['idp_id'],
      organizational_unit: ['organizational_unit'],
      belonging_population: ['belonging_population'],
      phone: ['phone_number'],
    },
    scopes: ['openid'],
    acrValues: ['eidas1', 'eidas2', 'eidas3'],
    clientAuthMethods: ['client_secret_post'],
    responseTypes: ['code'],
    pkce: { required: () => false },
    features: {
      devInteractions: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      claimsParameter: { enabled: true },
      jwtUserinfo: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('Se déconnecter ?', `${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Oui, me déconnecter</button>
<button type="submit" form="op.logoutForm">Non, rester connecté</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('Déconnecté', '<p>Vous êtes déconnecté.</p>');
        },
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Erreur', `<pre>${escapeHtml(JSON.stringify(out, null, 2))}</pre>`);
    },
    async findAccount(ctx, sub) {
      const account = bySub.get(sub);
      if (!account) return undefined;
      // oidc-provider keeps only the claims that the granted scopes cover.
      return { accountId: sub, claims: async () => ({ ...account }) };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return provider;
}

// --- Interactions (login and consent in one step, at the host's root).
async function finishLogin(provider, req, res, details, account) {
  const { params } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: account.sub, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  if (params.claims) {
    const requested = JSON.parse(params.claims);
    for (const use of ['id_token', 'userinfo']) {
      if (requested[use]) grant.addOIDCClaims(Object.keys(requested[use]));
    }
  }
  const grantId = await grant.save();
  const acr = String(params.acr_values || 'eidas1').split(' ')[0];
  await provider.interactionFinished(req, res, {
    login: { accountId: account.sub, acr, amr: ['pwd'] },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Erreur', '<p>Interaction inconnue.</p>'));

  if (req.method === 'POST' && action === 'login') {
    const account = bySub.get((await readForm(req)).get('accountId'));
    if (!account) return send(res, 400, page('Erreur', '<p>Compte inconnu.</p>'));
    return finishLogin(provider, req, res, details, account);
  }

  // Headless login for tests: login_hint=<email> finishes the login at once.
  const hint = details.params.login_hint;
  if (hint) {
    const account = byEmail.get(String(hint).toLowerCase());
    if (!account) {
      return send(res, 400, page('Erreur', `<p>Aucun compte pour ${escapeHtml(hint)}.</p>`));
    }
    return finishLogin(provider, req, res, details, account);
  }

  const buttons = accounts.map((a) => `<button type="submit" name="accountId" value="${escapeHtml(a.sub)}">
${escapeHtml(`${a.given_name} ${a.usual_name}`)} — ${escapeHtml(a.email)}
(${escapeHtml(a.organizational_unit)}, SIRET ${escapeHtml(a.siret)})</button>`).join('\n');
  return send(res, 200, page('Choisir un compte', `<form method="post" action="/interaction/${escapeHtml(uid)}/login">
${buttons}</form>`));
}

// --- HTTP server: /api/v2/* goes to the provider, the rest is ours.
let provider;
let handler;
let issuer;
function start() {
  provider = buildProvider(issuer);
  handler = provider.callback();
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://localhost');
    const path = url.pathname;
    if (path === PREFIX || path.startsWith(`${PREFIX}/`)) {
      // oidc-provider works out its mount path from originalUrl.
      req.originalUrl = req.url;
      req.url = req.url.slice(PREFIX.length) || '/';
      // oidc-provider takes client_secret_basic for a client_secret_post client;
      // ProConnect documents only client_secret_post, so refuse the header here.
      if (req.url.split('?')[0] === '/token' && req.headers.authorization) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify({
          error: 'invalid_client',
          error_description: 'use client_secret_post (client_id and client_secret in the body)',
        }));
      }
      return handler(req, res);
    }
    const match = path.match(/^\/interaction\/([\w-]+)(?:\/(login))?$/);
    if (match) return await interaction(provider, req, res, match[1], match[2]);
    if (path === '/_dev/health' && req.method === 'GET') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify({ status: 'ok', issuer, kids: signingKeys.map((k) => k.kid) }));
    }
    if (path === '/_dev/rotate-keys' && req.method === 'POST') {
      const dropOld = url.searchParams.get('drop_old') === '1';
      if (url.searchParams.get('same_kid') === '1') {
        // A new key published under the current key's kid (which it replaces): what a
        // provider that reuses kids does, and what a relying party must notice.
        signingKeys = [{ ...newSigningKey(), kid: signingKeys[0].kid }, ...signingKeys.slice(1)];
      } else {
        signingKeys = [newSigningKey(), ...(dropOld ? [] : signingKeys.slice(0, 1))];
      }
      start();
      res.writeHead(200, { 'Content-Type': 'application/json' });
      return res.end(JSON.stringify({ kids: signingKeys.map((k) => k.kid) }));
    }
    return send(res, 404, page('Introuvable', '<p>Rien ici.</p>'));
  } catch (err) {
    console.error(err);
    if (!res.headersSent) send(res, 400, page('Erreur', `<p>${escapeHtml(err.message)}</p>`));
    else res.end();
  }
});

server.listen(config.port, config.host, () => {
  const { address, port } = server.address();
  issuer = config.issuer ?? `http://${address}:${port}${PREFIX}`;
  start();
  console.log(`READY ${issuer}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
