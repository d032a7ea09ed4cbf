// A small stand-in for the gateway's admin API, serving exactly the documented endpoints from a
// recording folder: GET /player/* (the web-player folder), /api/recordings/<id>/manifest and
// /api/recordings/<id>/files/<path> (single ranges; 416 from the end of a file on, like the gateway).
// Used to test served mode without the psmgate binary.
//
// `delay` holds answers back: called for every /files/ request, it returns how long to wait (ms)
// or a promise to wait for. Every request is logged with its time, and every answer with the time
// it was sent (`log`).
//
// `replays` turns a sealed recording into one "in progress": only the first N chain lines are
// visible (reveal(n)), every file is cut to what those lines cover, and the manifest is the partial
// one (state "recording", only what is chained) until the seal record is revealed. A read of its
// chain.jsonl with `?wait=<s>` and a `bytes=S-` range that has no new line past S + 1 is held, as
// the gateway holds it, until lines are revealed or the wait (at most 10 s) passes; `waiting`
// counts the reads held now, and the log marks a held read answered by a reveal (`released`).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const TYPES = { '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.js': 'text/javascript', '.cjs': 'text/javascript', '.json': 'application/json', '.jsonl': 'application/x-ndjson', '.mp4': 'video/mp4', '.m4s': 'video/iso.segment' };

/** A sealed recording folder replayed as if it were being recorded. */
class Replay {
  constructor(dir) {
    this.dir = dir;
    this.lines = fs.readFileSync(path.join(dir, 'chain.jsonl'), 'utf8').split('\n').filter(Boolean);
    this.manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    this.shown = 0;
    this.waiters = new Set();
  }
  /** Reads of the chain held now. */
  get waiting() { return this.waiters.size; }
  /** Make the first `n` chain lines visible (never fewer than before); held reads are answered. */
  reveal(n) {
    const before = this.shown;
    this.shown = Math.max(this.shown, Math.min(n, this.lines.length));
    if (this.shown > before) for (const w of [...this.waiters]) w();
  }
  /**
   * Hold a read of the chain that starts at `start` until there is a line past `start + 1`, or
   * `seconds` pass; true when lines were revealed meanwhile.
   */
  waitForLines(start, seconds) {
    if (this.file('chain.jsonl').length > start + 1) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (released) => { clearTimeout(timer); this.waiters.delete(wake); resolve(released); };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), Math.min(seconds, 10) * 1000);
      timer.unref(); // a held read never keeps the test process alive
      this.waiters.add(wake);
    });
  }
  /** Reveal up to and including the first line whose record satisfies `pred`. */
  revealThrough(pred) {
    const i = this.lines.findIndex((l, k) => k >= this.shown && pred(JSON.parse(l)));
    if (i < 0) throw new Error('no such chain line');
    this.reveal(i + 1);
    return JSON.parse(this.lines[i]);
  }
  records() { return this.lines.slice(0, this.shown).map((l) => JSON.parse(l)).filter((r) => r.checkpoint !== true); }
  extent(file) {
    return this.records().filter((r) => r.file === file).reduce((a, r) => Math.max(a, r.offset + r.len), 0);
  }
  sealed() { return this.records().some((r) => r.file === 'manifest.json'); }
  /** File bytes as far as chained (null: not chained yet). */
  file(rel) {
    if (rel === 'chain.jsonl') return Buffer.from(this.lines.slice(0, this.shown).map((l) => l + '\n').join(''));
    const n = this.extent(rel);
    return n ? fs.readFileSync(path.join(this.dir, rel)).subarray(0, n) : null;
  }
  manifestBytes() {
    if (this.sealed()) return this.file('manifest.json');
    const m = structuredClone(this.manifest);
    for (const k of ['ended_at', 'duration_ms', 'end_reason', 'chain']) delete m[k];
    m.state = 'recording';
    const chained = (f) => this.extent(f) > 0;
    m.periods = m.periods.filter((p) => chained(p.init)).map((p) => ({ ...p, segments: p.segments.filter((s) => chained(s.file)).map((s) => ({ ...s, bytes: this.extent(s.file) })) }));
    m.events = m.events.filter(chained);
    return Buffer.from(JSON.stringify(m, null, 2) + '\n');
  }
}

/** Parse a single `bytes=a-b` / `bytes=a-` range against `len`: [start, end) or 'unsatisfiable' or null (ignore). */
function parseRange(h, len) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(h || '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') { const n = Number(m[2]); return n === 0 || len === 0 ? 'unsatisfiable' : [Math.max(0, len - n), len]; }
  const start = Number(m[1]);
  const end = m[2] === '' ? len : Math.min(Number(m[2]) + 1, len);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  return start >= len ? 'unsatisfiable' : [start, end];
}

/**
 * @param {{playerDir:string, vendor?:Object<string,string>, recordings?:Object<string,string>, replays?:Object<string,string>, token?:string,
 *   delay?:function(string, string, http.IncomingMessage): (number|Promise|undefined)}} o
 *   vendor: player path (e.g. vendor/rrweb.min.js) -> file, the files the gateway embeds beside
 *   the player folder; recordings: session id -> recording folder; replays: session id -> sealed
 *   folder replayed live; token: required bearer token for /api (optional); delay(id, file, req):
 *   how long to hold back the answer to a /files/ request (ms, or a promise)
 * @returns {Promise<{url:string, requests:string[], log:Array<{path:string, query:string, range:?string, at:number, sentAt:?number,
 *   status:?number, released:boolean}>, replays:Object<string,Replay>, close:function}>}  log: every
 *   request (at: Date.now() when it arrived, sentAt: when its answer was sent, released: a held
 *   chain read answered by a reveal)
 */
export function startMockApi({ playerDir, vendor = {}, recordings = {}, replays = {}, token, delay }) {
  const requests = [];
  const log = [];
  const live = Object.fromEntries(Object.entries(replays).map(([id, dir]) => [id, new Replay(dir)]));
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    requests.push(`${req.method} ${u.pathname}`);
    const entry = { path: u.pathname, query: u.search, range: req.headers.range || null, at: Date.now(), sentAt: null, status: null, released: false };
    log.push(entry);
    res.on('finish', () => { entry.sentAt = Date.now(); entry.status = res.statusCode; });
    handle(req, res, u, entry).catch((e) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(String(e && e.message));
    });
  });
  async function handle(req, res, u, entry) {
    const send = (code, body, type = 'text/plain', extra = {}) => { res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', ...extra }); res.end(body); };
    const sendBytes = (bytes, type) => {
      const r = parseRange(req.headers.range, bytes.length);
      if (r === 'unsatisfiable') return send(416, '', 'text/plain', { 'content-range': `bytes */${bytes.length}` });
      if (!r) return send(200, bytes, type, { 'accept-ranges': 'bytes' });
      return send(206, bytes.subarray(r[0], r[1]), type, { 'content-range': `bytes ${r[0]}-${r[1] - 1}/${bytes.length}` });
    };
    const sendFile = (file) => {
      if (!fs.existsSync(file) || !fs.statSync(file).isFile()) return send(404, 'not found');
      sendBytes(fs.readFileSync(file), TYPES[path.extname(file)] || 'application/octet-stream');
    };
    if (u.pathname === '/player' ) { res.writeHead(302, { location: '/player/' + u.search }); return res.end(); }
    if (u.pathname.startsWith('/player/')) {
      const rel = decodeURIComponent(u.pathname.slice('/player/'.length)) || 'index.html';
      if (rel.includes('..')) return send(400, 'bad path');
      if (Object.hasOwn(vendor, rel)) return sendFile(vendor[rel]);
      return sendFile(path.join(playerDir, rel));
    }
    const m = /^\/api\/recordings\/([0-9a-f-]{36})\/(manifest|files\/(.+))$/.exec(u.pathname);
    if (!m) return send(404, 'not found');
    if (token && req.headers.authorization !== `Bearer ${token}`) return send(401, 'unauthorized');
    const rel = m[3] === undefined ? null : decodeURIComponent(m[3]);
    if (rel !== null && rel.split('/').some((p) => p === '..' || p === '')) return send(400, 'bad path');
    if (delay && rel !== null) {
      const wait = delay(m[1], rel, req);
      if (typeof wait === 'number' && wait > 0) await new Promise((r) => setTimeout(r, wait));
      else if (wait && typeof wait.then === 'function') await wait;
    }
    const replay = live[m[1]];
    if (replay) {
      if (m[2] === 'manifest') return send(200, replay.manifestBytes(), 'application/json');
      const wait = Number(u.searchParams.get('wait'));
      const from = /^bytes=(\d+)-$/.exec(req.headers.range || '');
      if (rel === 'chain.jsonl' && wait > 0 && from) entry.released = await replay.waitForLines(Number(from[1]), wait);
      const b = replay.file(rel);
      return b ? sendBytes(b, TYPES[path.extname(rel)] || 'application/octet-stream') : send(404, 'no such file');
    }
    const dir = recordings[m[1]];
    if (!dir) return send(404, 'no such recording');
    if (m[2] === 'manifest') {
      const sealed = path.join(dir, 'manifest.json');
      return sendFile(fs.existsSync(sealed) ? sealed : path.join(dir, 'manifest.partial.json'));
    }
    return sendFile(path.join(dir, rel));
  }
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`, requests, log, replays: live,
        close: () => { server.closeAllConnections(); return new Promise((r) => server.close(r)); },
      });
    });
  });
}
