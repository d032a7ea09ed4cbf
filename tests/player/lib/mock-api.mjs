// A small stand-in for the gateway's admin API, serving exactly the documented endpoints from a
// recording folder: GET /player/* (the web-player folder), /api/recordings/<id>/manifest and
// /api/recordings/<id>/files/<path>. Used to test served mode without the psmgate binary.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript', '.json': 'application/json', '.jsonl': 'application/x-ndjson', '.mp4': 'video/mp4', '.m4s': 'video/iso.segment' };

/**
 * @param {{playerDir:string, recordings:Object<string,string>, token?:string}} o
 *   recordings: session id -> recording folder; token: required bearer token for /api (optional)
 * @returns {Promise<{url:string, requests:string[], close:function}>}
 */
export function startMockApi({ playerDir, recordings, token }) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    requests.push(`${req.method} ${u.pathname}`);
    const send = (code, body, type = 'text/plain') => { res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' }); res.end(body); };
    const sendFile = (file) => {
      if (!fs.existsSync(file) || !fs.statSync(file).isFile()) return send(404, 'not found');
      send(200, fs.readFileSync(file), TYPES[path.extname(file)] || 'application/octet-stream');
    };
    if (u.pathname === '/player' ) { res.writeHead(302, { location: '/player/' + u.search }); return res.end(); }
    if (u.pathname.startsWith('/player/')) {
      const rel = decodeURIComponent(u.pathname.slice('/player/'.length)) || 'index.html';
      if (rel.includes('..')) return send(400, 'bad path');
      return sendFile(path.join(playerDir, rel));
    }
    const m = /^\/api\/recordings\/([0-9a-f-]{36})\/(manifest|files\/(.+))$/.exec(u.pathname);
    if (!m) return send(404, 'not found');
    if (token && req.headers.authorization !== `Bearer ${token}`) return send(401, 'unauthorized');
    const dir = recordings[m[1]];
    if (!dir) return send(404, 'no such recording');
    if (m[2] === 'manifest') {
      const sealed = path.join(dir, 'manifest.json');
      return sendFile(fs.existsSync(sealed) ? sealed : path.join(dir, 'manifest.partial.json'));
    }
    const rel = decodeURIComponent(m[3]);
    if (rel.split('/').some((p) => p === '..' || p === '')) return send(400, 'bad path');
    return sendFile(path.join(dir, rel));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((r) => server.close(r)) });
    });
  });
}
