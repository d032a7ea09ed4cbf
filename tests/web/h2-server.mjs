#!/usr/bin/env node
// A small local HTTPS console that speaks HTTP/2 only, used as the upstream of the proxy's
// HTTP/2 end-to-end test.
//
//   node h2-server.mjs --dir DIR
//
// Creates a throw-away test CA and one leaf certificate in DIR (with the openssl CLI), then serves
// HTTP/2 over TLS on 127.0.0.1 (ephemeral port). ALPN offers `h2` only and HTTP/1 is refused
// (`allowHTTP1: false`): a client that cannot negotiate h2 gets no answer at all, so every
// request this server answers was made over HTTP/2.
// When ready it prints one JSON line to stdout:
//   {"ca":"/abs/DIR/ca.pem","port":PORT}
// stdout carries nothing else; requests are logged to stderr. Node standard library only.
//
// Routes (every response carries `x-http-version`, the version the request arrived with):
//   GET /             HTML page "H2 console" (gzip when accepted): loads /app.css and /app.js
//   GET /app.css      stylesheet, gzip when accepted
//   GET /app.js       script: fetches /api/version, shows the answer, sets body[data-ready="1"]
//   GET /api/version  JSON {"httpVersion","alpn","path"} (gzip when accepted)
//   GET /__state      JSON {"versions":{PATH:[VERSION...]},"requests":[{method,path,version,alpn}]}

import http2 from 'node:http2';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  accepts, escapeHtml, exitOnSignal, listen, makeTestCertificates, printReady,
} from './peer-common.mjs';

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = 'usage: node h2-server.mjs --dir DIR';

function parseArgs(argv) {
  let dir = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') {
      process.stderr.write(`${USAGE}\n`);
      process.exit(0);
    }
    let value;
    if (arg.startsWith('--dir=')) {
      value = arg.slice('--dir='.length);
    } else if (arg === '--dir') {
      value = argv[++i];
    } else {
      fail(`unexpected argument ${JSON.stringify(arg)}\n${USAGE}`);
    }
    if (value === undefined || value === '') fail(`option --dir needs a non-empty value\n${USAGE}`);
    dir = value;
  }
  if (!dir) fail(`--dir is required\n${USAGE}`);
  return { dir };
}

function fail(message) {
  process.stderr.write(`h2-server: ${message}\n`);
  process.exit(2);
}

const dir = path.resolve(parseArgs(process.argv.slice(2)).dir);

// ---------------------------------------------------------------------------------------------
// What the server saw, for the tests' assertions (GET /__state)

const MAX_RECORDED_REQUESTS = 10000;
const state = { versions: {}, requests: [] };

function alpnOf(req) {
  const session = req.stream && req.stream.session;
  return session && typeof session.alpnProtocol === 'string' ? session.alpnProtocol : null;
}

function record(req, p) {
  if (state.requests.length >= MAX_RECORDED_REQUESTS) return;
  state.requests.push({ method: req.method, path: p, version: req.httpVersion, alpn: alpnOf(req) });
  const seen = state.versions[p] ?? (state.versions[p] = []);
  if (!seen.includes(req.httpVersion)) seen.push(req.httpVersion);
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

/**
 * Sends a response telling the version the request arrived with; `gzip` compresses the body when
 * the client accepts it (and then `vary: accept-encoding` is sent either way).
 */
function send(req, res, status, headers, body, gzip = false) {
  let data = Buffer.isBuffer(body) ? body : Buffer.from(body ?? '');
  const h = { 'cache-control': 'no-store', 'x-http-version': req.httpVersion, ...headers };
  if (gzip) {
    h.vary = 'accept-encoding';
    if (accepts(req, 'gzip')) {
      data = zlib.gzipSync(data);
      h['content-encoding'] = 'gzip';
    }
  }
  h['content-length'] = data.length;
  res.writeHead(status, h);
  res.end(req.method === 'HEAD' ? undefined : data);
  process.stderr.write(`h2-server: HTTP/${req.httpVersion} ${req.method} ${req.url} -> ${status}\n`);
}

function sendJson(req, res, status, value, gzip = false) {
  send(req, res, status, { 'content-type': 'application/json' }, JSON.stringify(value), gzip);
}

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
  + "img-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

function pageHtml(version) {
  return '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>H2 console</title>'
    + '<link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script></head>\n<body>\n'
    + '<h1>h2-page-content</h1>\n'
    + `<p id="served">page served over HTTP/${escapeHtml(version)}</p>\n`
    + '<div id="styled">styled-by-gzip-css</div>\n'
    + '<div id="api">loading…</div>\n'
    + '</body></html>\n';
}

const CSS = 'body{font-family:sans-serif;margin:2em}#styled{display:block;width:123px}';

const APP_JS = `// Fetches the JSON endpoint and shows which HTTP version answered it.
'use strict';
fetch('/api/version')
  .then((r) => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
  .then((v) => {
    document.getElementById('api').textContent = 'api answered over HTTP/' + v.httpVersion;
    document.body.dataset.ready = '1';
  })
  .catch((e) => {
    document.getElementById('api').textContent = 'error: ' + e.message;
    document.body.dataset.error = e.message;
  });
`;

function route(req, res) {
  const p = new URL(req.url, 'https://127.0.0.1').pathname;
  record(req, p);
  const get = req.method === 'GET' || req.method === 'HEAD';
  if (!get) return send(req, res, 405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }, 'method not allowed\n');
  switch (p) {
    case '/':
      return send(req, res, 200, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': CSP,
        'x-content-type-options': 'nosniff',
      }, pageHtml(req.httpVersion), true);
    case '/app.css':
      return send(req, res, 200, { 'content-type': 'text/css; charset=utf-8' }, CSS, true);
    case '/app.js':
      return send(req, res, 200, { 'content-type': 'text/javascript; charset=utf-8' }, APP_JS);
    case '/api/version':
      return sendJson(req, res, 200, { httpVersion: req.httpVersion, alpn: alpnOf(req), path: p }, true);
    case '/__state':
      return sendJson(req, res, 200, state);
    case '/favicon.ico':
      return send(req, res, 204, {}, '');
    default:
      return send(req, res, 404, { 'content-type': 'text/plain' }, 'not found\n');
  }
}

// ---------------------------------------------------------------------------------------------
// Server

// A throw-away CA and one leaf for 127.0.0.1
let tls;
try {
  tls = makeTestCertificates(dir, { caName: 'psmgate test h2 console CA', subjectAltName: 'IP:127.0.0.1, DNS:localhost' });
} catch (e) {
  fail(e.message);
}
const server = http2.createSecureServer({ key: tls.key, cert: tls.cert, allowHTTP1: false }, (req, res) => {
  try {
    route(req, res);
  } catch (e) {
    process.stderr.write(`h2-server: ${req.method} ${req.url} failed: ${e.message}\n`);
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('internal error\n');
    } else {
      res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  }
});
server.on('unknownProtocol', (socket) => {
  process.stderr.write(`h2-server: refused a connection that did not negotiate h2 (ALPN ${socket.alpnProtocol || 'none'})\n`);
  socket.destroy();
});
server.on('tlsClientError', (e) => {
  process.stderr.write(`h2-server: TLS handshake failed: ${e.code || ''} ${e.message}\n`);
});
server.on('sessionError', (e) => {
  process.stderr.write(`h2-server: session error: ${e.message}\n`);
});

let port;
try {
  port = await listen(server, '127.0.0.1');
} catch (e) {
  fail(`cannot listen: ${e.message}`);
}

exitOnSignal('h2-server', () => server.close());
printReady({ ca: tls.ca, port });
