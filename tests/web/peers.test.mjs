// Checks the two end-to-end peers on their own, without the proxy: the console server's routes,
// compression and WebSocket, and drive.mjs walking the sign-in -> app -> secret flow in Chromium
// (connecting directly and trusting the console's own CA).
//
//   cd tests/web && npm install && node --test

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';

const here = path.dirname(new URL(import.meta.url).pathname);
const SECRETS = {
  cookie: 'cookie-test-7f3a91',
  field: 'field-test-AKIAQ2W3E4',
  text: 'text-test-9b8c7d',
  bearer: 'bearer-test-55aa01',
  password: 'pw-test-correct',
};

let server;
let info;
let dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psmgate-web-peers-'));
  server = spawn(process.execPath, [path.join(here, 'console-server.mjs'), '--dir', dir,
    '--secret-cookie', SECRETS.cookie, '--secret-field', SECRETS.field, '--secret-text', SECRETS.text,
    '--bearer', SECRETS.bearer, '--password', SECRETS.password], { stdio: ['ignore', 'pipe', 'pipe'] });
  server.stderr.resume();
  info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('console-server did not start')), 15000);
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)));
      }
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`console-server exited with ${code}`));
    });
  });
});

after(() => {
  server?.kill('SIGTERM');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function request(host, port, urlPath, { method = 'GET', headers = {}, body = null } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host, port, path: urlPath, method, headers, ca: fs.readFileSync(info.ca) }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const cookie = () => `session=${SECRETS.cookie}`;

test('startup line names the CA and three distinct ports', () => {
  assert.equal(info.ca, path.join(dir, 'ca.pem'));
  assert.ok(fs.existsSync(info.ca));
  const ports = [info.console, info.denied, info.tunnel];
  ports.forEach((p) => assert.ok(Number.isInteger(p) && p > 0));
  assert.equal(new Set(ports).size, 3);
});

test('leaf certificate verifies against the CA for every served name', () => {
  const r = spawnSync('openssl', ['verify', '-CAfile', info.ca, path.join(dir, 'leaf.pem')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const text = spawnSync('openssl', ['x509', '-in', path.join(dir, 'leaf.pem'), '-noout', '-ext', 'subjectAltName'],
    { encoding: 'utf8' }).stdout;
  for (const name of ['IP Address:127.0.0.1', 'IP Address:127.0.0.2', 'IP Address:127.0.0.3', 'DNS:localhost']) {
    assert.ok(text.includes(name), `${name} missing from ${text}`);
  }
});

test('login checks the password and sets the session cookie', async () => {
  const bad = await request('127.0.0.1', info.console, '/login', {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'username=alice&password=nope',
  });
  assert.equal(bad.status, 401);
  assert.match(bad.body.toString(), /wrong password/);
  assert.equal(bad.headers['set-cookie'], undefined);
  const good = await request('127.0.0.1', info.console, '/login', {
    method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `username=alice&password=${SECRETS.password}`,
  });
  assert.equal(good.status, 303);
  assert.equal(good.headers.location, '/app');
  assert.deepEqual(good.headers['set-cookie'], [`session=${SECRETS.cookie}; HttpOnly; Secure; SameSite=Lax; Path=/`]);
});

test('API needs the cookie and the bearer and is compressed as negotiated', async () => {
  const ae = { 'Accept-Encoding': 'gzip, deflate, br' };
  assert.equal((await request('127.0.0.1', info.console, '/api/items', { headers: { Cookie: cookie(), ...ae } })).status, 401);
  assert.equal((await request('127.0.0.1', info.console, '/api/items', {
    headers: { Authorization: `Bearer ${SECRETS.bearer}`, ...ae },
  })).status, 401);
  const items = await request('127.0.0.1', info.console, '/api/items', {
    headers: { Cookie: cookie(), Authorization: `Bearer ${SECRETS.bearer}`, ...ae },
  });
  assert.equal(items.status, 200);
  assert.equal(items.headers['content-encoding'], 'gzip');
  assert.equal(items.headers.vary, 'Accept-Encoding');
  assert.deepEqual(JSON.parse(zlib.gunzipSync(items.body)).map((i) => i.name), ['alpha-instance', 'beta-instance']);

  const profile = await request('127.0.0.1', info.console, '/api/profile', { headers: { Cookie: cookie(), ...ae } });
  assert.equal(profile.headers['content-encoding'], 'br');
  assert.deepEqual(JSON.parse(zlib.brotliDecompressSync(profile.body)), { user: 'alice' });
  const plain = await request('127.0.0.1', info.console, '/api/profile', { headers: { Cookie: cookie() } });
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.deepEqual(JSON.parse(plain.body), { user: 'alice' });

  const js = await request('127.0.0.1', info.console, '/app.js', { headers: { Cookie: cookie(), ...ae } });
  assert.equal(js.headers['content-encoding'], 'br');
  assert.ok(zlib.brotliDecompressSync(js.body).toString().includes(JSON.stringify(SECRETS.bearer)));
  const app = await request('127.0.0.1', info.console, '/app', { headers: { Cookie: cookie(), ...ae } });
  assert.equal(app.headers['content-encoding'], 'gzip');
  assert.match(app.headers['content-security-policy'], new RegExp(`connect-src 'self' wss://127\\.0\\.0\\.1:${info.console};`));
  assert.ok(!/<script>/.test(zlib.gunzipSync(app.body).toString()));
});

test('pages need the session', async () => {
  for (const p of ['/app', '/secret']) {
    const r = await request('127.0.0.1', info.console, p);
    assert.equal(r.status, 303);
    assert.equal(r.headers.location, '/login');
  }
});

test('denied and tunnel hosts serve their own content', async () => {
  assert.match((await request('127.0.0.2', info.denied, '/')).body.toString(), /<h1>forbidden-host-content<\/h1>/);
  assert.match((await request('127.0.0.3', info.tunnel, '/')).body.toString(), /<h1>tunnel-host-content<\/h1>/);
});

test('Chromium signs in, runs the app under the CSP and reads the secret page', () => {
  const shots = path.join(dir, 'shots');
  const base = `https://127.0.0.1:${info.console}`;
  const input = {
    proxy: null,
    ca: info.ca,
    shots,
    steps: [
      { goto: `${base}/app` },
      { fill: 'input[name=username]', value: 'alice' },
      { fill: 'input[type=password][name=password]', value: 'wrong' },
      { click: '#signin', waitForNavigation: true },
      { fill: 'input[name=username]', value: 'alice' },
      { fill: 'input[type=password][name=password]', value: SECRETS.password },
      { click: '#signin', waitForNavigation: true },
      { waitFor: "body[data-ready='1']", timeout: 15000 },
      { eval: "['items', 'profile', 'ws'].map((id) => document.getElementById(id).textContent)" },
      { screenshot: 'app.png' },
      { goto: `${base}/secret` },
      { eval: "document.getElementById('api-key').value" },
      { eval: 'document.cookie' },
    ],
  };
  const r = spawnSync(process.execPath, [path.join(here, 'drive.mjs'), JSON.stringify(input)], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  const { results } = JSON.parse(r.stdout);
  assert.equal(results.length, input.steps.length);
  assert.equal(results[0].title, 'Console sign-in');
  assert.equal(results[0].url, `${base}/login`);
  assert.equal(results[3].status, 401);
  assert.equal(results[6].status, 200);
  assert.equal(results[6].title, 'Console');
  assert.deepEqual(results[7], { found: true });
  assert.deepEqual(results[8].value, ['alpha-instance, beta-instance', 'profile: alice', 'echo: hello-ws']);
  assert.ok(fs.statSync(results[9].path).size > 1000);
  assert.equal(results[10].title, 'Keys');
  assert.ok(results[10].text.includes(SECRETS.text));
  assert.ok(results[10].text.includes('visible-plain-text'));
  assert.equal(results[11].value, SECRETS.field);
  assert.equal(results[12].value, '', 'the session cookie is HttpOnly');
});

test('Chromium refuses the console when told to trust another CA', () => {
  const other = path.join(dir, 'other');
  fs.mkdirSync(other);
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', path.join(other, 'k.pem'), '-out', path.join(other, 'ca.pem'), '-days', '2', '-subj', '/CN=unrelated CA',
    '-addext', 'basicConstraints=critical,CA:TRUE'], { encoding: 'utf8' });
  assert.equal(gen.status, 0, gen.stderr);
  const input = { proxy: null, ca: path.join(other, 'ca.pem'), steps: [{ goto: `https://127.0.0.1:${info.console}/login` }] };
  const r = spawnSync(process.execPath, [path.join(here, 'drive.mjs'), JSON.stringify(input)], { encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, r.stderr);
  const [res] = JSON.parse(r.stdout).results;
  assert.equal(res.status, null);
  assert.match(res.error, /ERR_CERT_AUTHORITY_INVALID/);
});

test('server state records logins, WebSocket messages and requests', async () => {
  const s = JSON.parse((await request('127.0.0.1', info.console, '/__state')).body);
  assert.ok(s.logins_ok >= 2);
  assert.ok(s.logins_failed >= 2);
  assert.ok(s.ws_messages.includes('hello-ws'));
  const paths = new Set(s.requests.filter((r) => r.site === 'console').map((r) => `${r.method} ${r.path}`));
  for (const p of ['GET /app', 'POST /login', 'GET /app.js', 'GET /api/items', 'GET /api/profile', 'GET /ws', 'GET /secret']) {
    assert.ok(paths.has(p), `${p} not recorded`);
  }
  assert.ok(s.requests.every((r) => typeof r.host === 'string' && r.via === false));
});
