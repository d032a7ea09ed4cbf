#!/usr/bin/env node
// A small local HTTPS "cloud console" used as the upstream of the forward-proxy end-to-end tests.
//
//   node console-server.mjs --dir DIR [--secret-cookie V] [--secret-field V] [--secret-text V]
//                           [--bearer V] [--password V]
//
// Creates a throw-away test CA and one leaf certificate in DIR (with the openssl CLI), then serves
// HTTPS on three loopback addresses (ephemeral ports):
//   127.0.0.1  the console (login, single-page app, JSON API, WebSocket echo, secret page,
//              a page with its CSP in <meta> elements, /__state)
//   127.0.0.2  a host the proxy denies      (serves <h1>forbidden-host-content</h1> at /)
//   127.0.0.3  a host the proxy tunnels     (serves <h1>tunnel-host-content</h1> at /)
// When ready it prints one JSON line to stdout:
//   {"ca":"/abs/DIR/ca.pem","console":PORT1,"denied":PORT2,"tunnel":PORT3}
// stdout carries nothing else; requests are logged to stderr without cookie or authorization values.
// Node standard library only.

import crypto from 'node:crypto';
import https from 'node:https';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  accepts, escapeHtml, exitOnSignal, listen, makeTestCertificates, printReady,
} from './peer-common.mjs';

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = 'usage: node console-server.mjs --dir DIR [--secret-cookie V] [--secret-field V] '
  + '[--secret-text V] [--bearer V] [--password V]';

const DEFAULTS = {
  dir: null,
  'secret-cookie': 'cookie-5b1f9c2e7a4d40e8b3a16f0d',
  'secret-field': 'field-AKIA7Q3M9X2LZC4R8T1V',
  'secret-text': 'text-c8e2a94b1d7f4e03a6b5',
  bearer: 'bearer-e61d0f4a9b3c47a28d5e',
  password: 'hunter2-console',
};

function parseArgs(argv) {
  const opts = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stderr.write(`${USAGE}\n`);
      process.exit(0);
    }
    let name;
    let value;
    if (arg.startsWith('--') && arg.includes('=')) {
      name = arg.slice(2, arg.indexOf('='));
      value = arg.slice(arg.indexOf('=') + 1);
    } else if (arg.startsWith('--')) {
      name = arg.slice(2);
      value = argv[++i];
    } else {
      fail(`unexpected argument ${JSON.stringify(arg)}\n${USAGE}`);
    }
    if (!(name in DEFAULTS)) fail(`unknown option --${name}\n${USAGE}`);
    if (value === undefined || value === '') fail(`option --${name} needs a non-empty value\n${USAGE}`);
    opts[name] = value;
  }
  if (!opts.dir) fail(`--dir is required\n${USAGE}`);
  return opts;
}

function fail(message) {
  process.stderr.write(`console-server: ${message}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
const dir = path.resolve(opts.dir);
const SECRET_COOKIE = opts['secret-cookie'];
const SECRET_FIELD = opts['secret-field'];
const SECRET_TEXT = opts['secret-text'];
const BEARER = opts.bearer;
const PASSWORD = opts.password;

// ---------------------------------------------------------------------------------------------
// What the server saw, for the tests' assertions (GET /__state)

const state = { logins_ok: 0, logins_failed: 0, ws_messages: [], requests: [] };
const MAX_RECORDED_REQUESTS = 10000;

function record(site, req) {
  if (state.requests.length >= MAX_RECORDED_REQUESTS) return;
  state.requests.push({
    method: req.method,
    path: req.url,
    host: req.headers.host ?? null,
    // true when the request arrived with a Via header (an intermediary announced itself)
    via: req.headers.via !== undefined,
    site,
  });
}

function log(site, req, status) {
  process.stderr.write(`console-server: ${site} ${req.method} ${req.url} -> ${status}\n`);
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

const ports = { console: 0, denied: 0, tunnel: 0 };

function csp() {
  return "default-src 'self'; script-src 'self'; style-src 'self'; "
    + `connect-src 'self' wss://127.0.0.1:${ports.console}; img-src 'self'; object-src 'none'; `
    + "base-uri 'none'; frame-ancestors 'none'";
}

/**
 * Send a response; `encoding` ('gzip' | 'br' | null) compresses the body when the client accepts it,
 * and then Vary: Accept-Encoding is sent whether or not it was compressed.
 */
function send(site, req, res, status, headers, body, encoding = null) {
  let data = Buffer.isBuffer(body) ? body : Buffer.from(body ?? '');
  const h = { 'Cache-Control': 'no-store', ...headers };
  if (encoding) {
    h.Vary = 'Accept-Encoding';
    if (accepts(req, encoding)) {
      data = encoding === 'gzip' ? zlib.gzipSync(data) : zlib.brotliCompressSync(data);
      h['Content-Encoding'] = encoding;
    }
  }
  h['Content-Length'] = data.length;
  res.writeHead(status, h);
  res.end(req.method === 'HEAD' ? undefined : data);
  log(site, req, status);
}

function sendHtml(site, req, res, status, html, { encoding = null, headers = {} } = {}) {
  send(site, req, res, status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Security-Policy': csp(),
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  }, html, encoding);
}

function sendJson(site, req, res, status, value, encoding = null) {
  send(site, req, res, status, { 'Content-Type': 'application/json' }, JSON.stringify(value), encoding);
}

function redirect(site, req, res, location, headers = {}) {
  send(site, req, res, 303, { Location: location, 'Content-Type': 'text/plain', ...headers }, `see ${location}\n`);
}

function page(title, body, { script = null, css = true } = {}) {
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    + `<title>${escapeHtml(title)}</title>${css ? '<link rel="stylesheet" href="/console.css">' : ''}`
    + `${script ? `<script src="${script}" defer></script>` : ''}</head>\n`
    + `<body>\n${body}\n</body></html>\n`;
}

function cookies(req) {
  const out = {};
  const header = req.headers.cookie;
  if (typeof header !== 'string') return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function hasSession(req) {
  return cookies(req).session === SECRET_COOKIE;
}

const MAX_BODY = 64 * 1024;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Console pages and API

const LOGIN_FORM = '<main class="login">\n<h1>Sign in to the console</h1>\n'
  + '<form method="post" action="/login">\n'
  + '<label>User name <input name="username" autocomplete="username"></label>\n'
  + '<label>Password <input type="password" name="password" autocomplete="current-password"></label>\n'
  + '<button type="submit" id="signin">Sign in</button>\n</form>\n</main>';

const CSS = 'body{font-family:sans-serif;margin:2em;color:#222;background:#fafafa}'
  + 'main.login{max-width:24em}label{display:block;margin:.5em 0}'
  + '#items,#profile,#ws{margin:.5em 0;padding:.5em;border:1px solid #ccc;background:#fff}'
  + '.secret-text{font-family:monospace}';

const ITEMS = [
  { id: 'i-0a1b2c', name: 'alpha-instance', state: 'running' },
  { id: 'i-3d4e5f', name: 'beta-instance', state: 'stopped' },
];

function appJs() {
  return `// Console single-page app: loads the instance list, the profile and a live channel.
'use strict';
const BEARER = ${JSON.stringify(BEARER)};
const done = { items: false, profile: false, ws: false };

function show(id, text) {
  document.getElementById(id).textContent = text;
}

function finish(part) {
  done[part] = true;
  if (done.items && done.profile && done.ws) document.body.dataset.ready = '1';
}

function failed(part, err) {
  show(part, 'error: ' + err);
  document.body.dataset.error = (document.body.dataset.error ? document.body.dataset.error + '; ' : '') + part + ': ' + err;
}

fetch('/api/items', { headers: { Authorization: 'Bearer ' + BEARER } })
  .then((r) => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
  .then((items) => { show('items', items.map((i) => i.name).join(', ')); finish('items'); })
  .catch((e) => failed('items', e.message));

const xhr = new XMLHttpRequest();
xhr.open('GET', '/api/profile');
xhr.responseType = 'json';
xhr.onload = () => {
  if (xhr.status !== 200 || !xhr.response) { failed('profile', 'HTTP ' + xhr.status); return; }
  show('profile', 'profile: ' + xhr.response.user);
  finish('profile');
};
xhr.onerror = () => failed('profile', 'network error');
xhr.send();

const ws = new WebSocket('wss://' + location.host + '/ws');
ws.onopen = () => ws.send('hello-ws');
ws.onmessage = (ev) => { show('ws', 'echo: ' + ev.data); finish('ws'); ws.close(1000, 'done'); };
ws.onerror = () => { if (!done.ws) failed('ws', 'websocket error'); };
`;
}

async function consoleRoute(req, res) {
  const site = 'console';
  const url = new URL(req.url, 'https://127.0.0.1');
  const p = url.pathname;
  const get = req.method === 'GET' || req.method === 'HEAD';

  if (p === '/__state' && get) return sendJson(site, req, res, 200, state);
  if (p === '/console.css' && get) {
    return send(site, req, res, 200, { 'Content-Type': 'text/css; charset=utf-8' }, CSS, 'gzip');
  }
  if (p === '/favicon.ico' && get) return send(site, req, res, 204, {}, '');
  if (p === '/' && get) return redirect(site, req, res, hasSession(req) ? '/app' : '/login');

  if (p === '/login' && get) return sendHtml(site, req, res, 200, page('Console sign-in', LOGIN_FORM));
  if (p === '/login' && req.method === 'POST') {
    let form;
    try {
      form = new URLSearchParams(await readBody(req));
    } catch (e) {
      return send(site, req, res, 413, { 'Content-Type': 'text/plain' }, `${e.message}\n`);
    }
    if (form.get('password') === PASSWORD) {
      state.logins_ok += 1;
      return redirect(site, req, res, '/app', {
        'Set-Cookie': `session=${SECRET_COOKIE}; HttpOnly; Secure; SameSite=Lax; Path=/`,
      });
    }
    state.logins_failed += 1;
    return sendHtml(site, req, res, 401, page('Console sign-in',
      `<p id="error" class="error">wrong password</p>\n${LOGIN_FORM}`));
  }

  if (p === '/app' && get) {
    if (!hasSession(req)) return redirect(site, req, res, '/login');
    const body = '<h1>Instances</h1>\n<div id="items">loading…</div>\n'
      + '<div id="profile">loading…</div>\n<div id="ws">connecting…</div>';
    return sendHtml(site, req, res, 200, page('Console', body, { script: '/app.js' }), { encoding: 'gzip' });
  }
  if (p === '/app.js' && get) {
    return send(site, req, res, 200, { 'Content-Type': 'text/javascript; charset=utf-8' }, appJs(), 'br');
  }

  if (p === '/api/items' && get) {
    if (!hasSession(req) || req.headers.authorization !== `Bearer ${BEARER}`) {
      return sendJson(site, req, res, 401, { error: 'unauthorized' });
    }
    return sendJson(site, req, res, 200, ITEMS, 'gzip');
  }
  if (p === '/api/profile' && get) {
    if (!hasSession(req)) return sendJson(site, req, res, 401, { error: 'unauthorized' });
    return sendJson(site, req, res, 200, { user: 'alice' }, 'br');
  }

  if (p === '/secret' && get) {
    if (!hasSession(req)) return redirect(site, req, res, '/login');
    const body = '<h1>API keys</h1>\n'
      + `<label>Access key <input id="api-key" value="${escapeHtml(SECRET_FIELD)}" readonly></label>\n`
      + `<div class="secret-text">${escapeHtml(SECRET_TEXT)}</div>\n`
      + '<p id="plain">visible-plain-text</p>';
    return sendHtml(site, req, res, 200, page('Keys', body), { encoding: 'gzip' });
  }

  if (p === '/meta-csp' && get) return send(site, req, res, 200, HTML_HEADERS, metaCspPage(), 'gzip');

  return sendHtml(site, req, res, 404, page('Not found', '<h1>not found</h1>'));
}

const HTML_HEADERS = { 'Content-Type': 'text/html; charset=utf-8', 'X-Content-Type-Options': 'nosniff' };

/**
 * A page that sets its policies in <meta> elements only (no CSP header), strict enough that an
 * unwidened policy blocks the recorder: the first, written with character references and placed
 * before the `<head>` start tag (browsers put it in the head they imply, so a script inserted after
 * `<head>` is parsed under it), admits scripts by this response's nonce only; the second, in the
 * head, lets the page connect to a host of its own but not to its origin. The page's nonce script
 * notes every CSP violation in `window.__violations` and marks the page when it ran.
 */
function metaCspPage() {
  const nonce = crypto.randomBytes(16).toString('base64');
  const scripts = `script-src 'nonce-${nonce}' 'strict-dynamic'; object-src 'none'; base-uri 'none'`;
  const connect = "default-src 'self'; connect-src https://api.example.invalid; style-src 'self'";
  const script = "window.__violations = [];\n"
    + "document.addEventListener('securitypolicyviolation', (e) => {\n"
    + "  window.__violations.push(e.effectiveDirective + ' ' + e.blockedURI);\n"
    + '});\n'
    + "document.addEventListener('DOMContentLoaded', () => {\n"
    + "  document.getElementById('marker').textContent = 'page-script-ran';\n"
    + "  document.body.dataset.ran = '1';\n"
    + '});\n';
  return '<!doctype html>\n<html lang="en">'
    + `<meta http-equiv="Content-Security-Policy" content="${scripts.replace(/'/g, '&#39;')}">\n`
    + `<script nonce="${nonce}">\n${script}</script>\n`
    + '<head><meta charset="utf-8"><title>Meta CSP</title>'
    + `<meta http-equiv="content-security-policy" content='${connect.replace(/'/g, '&apos;')}'>`
    + '<link rel="stylesheet" href="/console.css"></head>\n'
    + '<body>\n<h1>Policies in meta elements</h1>\n<p id="visible">meta-csp-visible-text</p>\n'
    + '<p id="marker">page-script-pending</p>\n</body></html>\n';
}

function staticHost(site, heading) {
  return (req, res) => {
    const p = new URL(req.url, 'https://127.0.0.1').pathname;
    if (p === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      return sendHtml(site, req, res, 200, page(site, `<h1>${heading}</h1>`, { css: false }));
    }
    if (p === '/favicon.ico') return send(site, req, res, 204, {}, '');
    return sendHtml(site, req, res, 404, page('Not found', '<h1>not found</h1>', { css: false }));
  };
}

// ---------------------------------------------------------------------------------------------
// WebSocket echo (RFC 6455), console host only

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const WS_MAX_MESSAGE = 1024 * 1024;
const MAX_WS_RECORDED = 1000;

function wsFrame(opcode, payload) {
  const len = payload.length;
  let header;
  if (len < 126) {
    header = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    header = Buffer.alloc(4);
    header[0] = 0x80 | opcode;
    header[1] = 126;
    header.writeUInt16BE(len, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x80 | opcode;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([header, payload]);
}

function rejectUpgrade(socket, status, reason) {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

function handleUpgrade(req, socket, head) {
  const site = 'console';
  record(site, req);
  socket.on('error', (e) => process.stderr.write(`console-server: websocket socket error: ${e.message}\n`));
  const p = new URL(req.url, 'https://127.0.0.1').pathname;
  const key = req.headers['sec-websocket-key'];
  if (p !== '/ws' || req.method !== 'GET') {
    log(site, req, 404);
    return rejectUpgrade(socket, 404, 'Not Found');
  }
  if (String(req.headers.upgrade).toLowerCase() !== 'websocket' || typeof key !== 'string'
    || req.headers['sec-websocket-version'] !== '13') {
    log(site, req, 400);
    return rejectUpgrade(socket, 400, 'Bad Request');
  }
  if (!hasSession(req)) {
    log(site, req, 401);
    return rejectUpgrade(socket, 401, 'Unauthorized');
  }
  const accept = crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
    + `Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
  log(site, req, 101);
  socket.setNoDelay(true);

  let buf = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
  let fragments = [];
  let fragmentOpcode = 0;
  let fragmentSize = 0;
  let closed = false;

  const closeWith = (code, reason = '') => {
    if (closed) return;
    closed = true;
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    socket.end(wsFrame(0x8, payload));
  };

  const onMessage = (opcode, data) => {
    if (opcode === 0x1) {
      const text = data.toString('utf8');
      if (state.ws_messages.length < MAX_WS_RECORDED) state.ws_messages.push(text);
      process.stderr.write(`console-server: ws text message (${data.length} bytes)\n`);
      socket.write(wsFrame(0x1, data));
    } else {
      process.stderr.write(`console-server: ws binary message (${data.length} bytes)\n`);
      socket.write(wsFrame(0x2, data));
    }
  };

  const parse = () => {
    while (!closed) {
      if (buf.length < 2) return;
      const fin = (buf[0] & 0x80) !== 0;
      const rsv = buf[0] & 0x70;
      const opcode = buf[0] & 0x0f;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        const big = buf.readBigUInt64BE(2);
        if (big > BigInt(WS_MAX_MESSAGE)) return closeWith(1009, 'message too big');
        len = Number(big);
        off = 10;
      }
      if (rsv !== 0) return closeWith(1002, 'reserved bits set');
      if (!masked) return closeWith(1002, 'client frames must be masked');
      if (len > WS_MAX_MESSAGE) return closeWith(1009, 'message too big');
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      buf = buf.subarray(off + 4 + len);

      if (opcode >= 0x8) {
        // control frames: never fragmented, at most 125 bytes
        if (!fin || len > 125) return closeWith(1002, 'bad control frame');
        if (opcode === 0x8) {
          const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1000;
          process.stderr.write(`console-server: ws close from client (${code})\n`);
          closeWith(code === 1005 || code === 1006 || code === 1015 ? 1000 : code);
          return;
        }
        if (opcode === 0x9) {
          socket.write(wsFrame(0xa, payload));
          continue;
        }
        if (opcode === 0xa) continue;
        return closeWith(1002, 'unknown control opcode');
      }
      if (opcode === 0x0) {
        if (!fragmentOpcode) return closeWith(1002, 'unexpected continuation');
      } else if (opcode === 0x1 || opcode === 0x2) {
        if (fragmentOpcode) return closeWith(1002, 'expected continuation');
        fragmentOpcode = opcode;
      } else {
        return closeWith(1002, 'unknown opcode');
      }
      fragmentSize += payload.length;
      if (fragmentSize > WS_MAX_MESSAGE) return closeWith(1009, 'message too big');
      fragments.push(payload);
      if (fin) {
        const data = Buffer.concat(fragments);
        const op = fragmentOpcode;
        fragments = [];
        fragmentOpcode = 0;
        fragmentSize = 0;
        onMessage(op, data);
      }
    }
  };

  socket.on('data', (chunk) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    parse();
  });
  socket.on('end', () => { if (!closed) { closed = true; socket.end(); } });
  parse();
}

// ---------------------------------------------------------------------------------------------
// Servers

// A throw-away CA and one leaf for the three loopback hosts
let tls;
try {
  tls = makeTestCertificates(dir, {
    caName: 'psmgate test console CA',
    subjectAltName: 'IP:127.0.0.1, IP:127.0.0.2, IP:127.0.0.3, DNS:localhost',
  });
} catch (e) {
  fail(e.message);
}

function makeServer(site, handler) {
  const server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    record(site, req);
    Promise.resolve(handler(req, res)).catch((e) => {
      process.stderr.write(`console-server: ${site} ${req.method} ${req.url} failed: ${e.message}\n`);
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('internal error\n');
      } else {
        res.destroy();
      }
    });
  });
  server.on('tlsClientError', (e) => {
    process.stderr.write(`console-server: ${site} TLS handshake failed: ${e.code || ''} ${e.message}\n`);
  });
  server.on('upgrade', site === 'console' ? handleUpgrade : (req, socket) => {
    record(site, req);
    socket.on('error', () => {});
    log(site, req, 404);
    rejectUpgrade(socket, 404, 'Not Found');
  });
  return server;
}

const servers = {
  console: makeServer('console', consoleRoute),
  denied: makeServer('denied', staticHost('denied', 'forbidden-host-content')),
  tunnel: makeServer('tunnel', staticHost('tunnel', 'tunnel-host-content')),
};

try {
  ports.console = await listen(servers.console, '127.0.0.1');
  ports.denied = await listen(servers.denied, '127.0.0.2');
  ports.tunnel = await listen(servers.tunnel, '127.0.0.3');
} catch (e) {
  fail(`cannot listen: ${e.message}`);
}

exitOnSignal('console-server', () => {
  for (const s of Object.values(servers)) {
    s.close();
    s.closeAllConnections();
  }
});
printReady({ ca: tls.ca, ...ports });
