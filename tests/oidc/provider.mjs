#!/usr/bin/env node
// A real OpenID provider for the OIDC sign-in end-to-end test: the npm `oidc-provider` package
// (a certified OpenID Connect implementation) served over HTTPS on an ephemeral loopback port,
// with a throw-away test CA (tests/web/peer-common.mjs).
//
//   node provider.mjs '<json>'
//
// Input:
//   {"dir": "/abs/dir",                 where the CA and the leaf certificate are written
//    "client_id": "psmgate", "client_secret": "…",
//    "redirect_uri": "http://127.0.0.1:PORT/api/oidc/callback",
//    "auth_method": "client_secret_basic",     or "client_secret_post" (optional)
//    "id_token_claims": false,                 true: the ID token carries every claim (optional)
//    "groups": {"carol": ["dba", "ops"],      the `groups` claim of some login names: any JSON
//               "bob": "psm-admins"}          value, given as it is (optional)
//
// One static confidential client; PKCE is required. Sign-in goes through oidc-provider's
// development interactions: a form where any login name works (the password is not checked),
// then a consent form. The account of login name NAME has the claims sub = "sub-NAME",
// preferred_username = NAME, name and email, and `groups` (scope `groups`) when "groups" names
// it. By default (oidc-provider's conforming behaviour) only `sub` and the protocol claims are in
// the ID token and the rest comes from the userinfo endpoint; with "id_token_claims" the ID token
// carries them all.
// ID tokens are signed RS256 with a key made at start.
//
// Output: one JSON line on stdout once ready:
//   {"issuer": "https://127.0.0.1:PORT", "ca": "/abs/dir/ca.pem"}
// Then a log on stderr: the provider's events, and for each token request how the client
// authenticated ("token request: client_secret_basic" or "…: client_secret_post"). Exits on SIGTERM/SIGINT, and when stdin closes
// (the test that started it is gone). Bad input: exit status 2.

import crypto from 'node:crypto';
import https from 'node:https';
import path from 'node:path';
import Provider from 'oidc-provider';
import { exitOnSignal, listen, makeTestCertificates, printReady } from '../web/peer-common.mjs';

function readInput() {
  let input;
  try {
    input = JSON.parse(process.argv[2] ?? '');
  } catch (e) {
    throw new Error(`input must be JSON: ${e.message}`);
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new Error('input must be a JSON object');
  for (const k of ['dir', 'client_id', 'client_secret', 'redirect_uri']) {
    if (typeof input[k] !== 'string' || !input[k]) throw new Error(`"${k}" must be a non-empty string`);
  }
  if (!path.isAbsolute(input.dir)) throw new Error('"dir" must be an absolute path');
  const method = input.auth_method ?? 'client_secret_basic';
  if (!['client_secret_basic', 'client_secret_post'].includes(method)) {
    throw new Error('"auth_method" must be client_secret_basic or client_secret_post');
  }
  if (input.id_token_claims !== undefined && typeof input.id_token_claims !== 'boolean') {
    throw new Error('"id_token_claims" must be true or false');
  }
  const groups = input.groups ?? {};
  if (typeof groups !== 'object' || groups === null || Array.isArray(groups)) {
    throw new Error('"groups" must be an object of login name -> claim value');
  }
  return { ...input, auth_method: method, id_token_claims: input.id_token_claims === true, groups };
}

// stdout carries only the ready line: oidc-provider's notices (console.log/info) go to stderr.
console.log = (...args) => console.error(...args);
console.info = console.log;

async function main() {
  let input;
  try {
    input = readInput();
  } catch (e) {
    process.stderr.write(`provider.mjs: ${e.message}\n`);
    process.exit(2);
  }
  const tls = makeTestCertificates(input.dir, { caName: 'psmgate OIDC test CA', subjectAltName: 'IP:127.0.0.1' });
  const server = https.createServer({ key: tls.key, cert: tls.cert });
  const port = await listen(server, '127.0.0.1');
  const issuer = `https://127.0.0.1:${port}`;

  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signing = { ...privateKey.export({ format: 'jwk' }), kid: `k-${crypto.randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' };

  const provider = new Provider(issuer, {
    clients: [{
      client_id: input.client_id,
      client_secret: input.client_secret,
      redirect_uris: [input.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: input.auth_method,
    }],
    pkce: { required: () => true },
    conformIdTokenClaims: !input.id_token_claims,
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          const claims = { sub: `sub-${id}`, preferred_username: id, name: `Test ${id}`, email: `${id}@example.test`, email_verified: true };
          if (Object.hasOwn(input.groups, id)) claims.groups = input.groups[id];
          return claims;
        },
      };
    },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    jwks: { keys: [signing] },
    features: { devInteractions: { enabled: true } },
  });
  for (const event of ['authorization.success', 'grant.success', 'grant.error', 'authorization.error', 'server_error']) {
    provider.on(event, (_ctx, err) => {
      process.stderr.write(`provider.mjs: ${event}${err && err.message ? `: ${err.message}` : ''}\n`);
    });
  }
  const handle = provider.callback();
  server.on('request', (req, res) => {
    if (req.method === 'POST' && new URL(req.url, issuer).pathname === '/token') {
      // How the client authenticated, for the test to check (never the secret).
      const basic = /^basic /i.test(req.headers.authorization ?? '');
      process.stderr.write(`provider.mjs: token request: ${basic ? 'client_secret_basic' : 'client_secret_post'}\n`);
    }
    handle(req, res);
  });

  const close = () => server.close();
  exitOnSignal('provider.mjs', close);
  process.stdin.on('end', () => {
    process.stderr.write('provider.mjs: stdin closed, exiting\n');
    close();
    process.exit(0);
  });
  process.stdin.resume();
  printReady({ issuer, ca: tls.ca });
}

main().catch((e) => {
  process.stderr.write(`provider.mjs: ${e.stack || e}\n`);
  process.exit(1);
});
