#!/usr/bin/env node
// Independent generator of a psmgate recording and its export folder, following
// docs/recording-format.md and the export contract of the web player (data.js).
//
// It does not use any psmgate code: video comes from ffmpeg (SVT-AV1, fragmented MP4), the chain
// and the checkpoint signatures are computed here with node:crypto. The tests use it when
// PSMGATE_BIN is not set, and it is handy for trying the player by hand:
//
//   node make-fixture.mjs --out /tmp/fx            # writes /tmp/fx/data/... and /tmp/fx/export/
//   node make-fixture.mjs --out /tmp/fx --periods 2 --unsealed
//   node make-fixture.mjs --out /tmp/fx --periods 2 --frags-per-segment 1   # six segments
//   node make-fixture.mjs --out /tmp/fx --web      # a web console session (see makeWebFixture)
//
// Layout written:
//   <out>/data/YYYY/MM/DD/<session-id>/{manifest.json, chain.jsonl, video/*, events/*}
//   <out>/export/{index.html, player.css, *.js, vendor/*, data.js, recording.mp4, manifest.json, chain.jsonl, events.jsonl}
// A web session is written the way a gateway data folder holds it, so `psmgate export` and
// `psmgate serve --data <out>/data` read it as their own:
//   <out>/data/recordings/YYYY/MM/DD/<session-id>/{manifest.json, chain.jsonl, events/*}
//   <out>/data/keys/gateway.ed25519   the key that signed it (PKCS#8 PEM, mode 0600)

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PLAYER_DIR = path.resolve(HERE, '../../web-player');
// rrweb's replayer, which the gateway embeds as the player's vendor/ files (gateway/build.rs).
const RRWEB_DIST = path.resolve(HERE, '../../web-recorder/node_modules/rrweb/dist');
export const VENDOR_FILES = {
  'vendor/rrweb.min.js': path.join(RRWEB_DIST, 'rrweb.umd.min.cjs'),
  'vendor/rrweb.min.css': path.join(RRWEB_DIST, 'style.min.css'),
};
const GENESIS_TAG = 'psmgate-chain-v1\0';

// ---------------------------------------------------------------- MP4 helpers (independent of the player)

/** Top-level (or child) boxes of `buf` between `start` and `end`: [{type, start, size}]. */
function boxes(buf, start = 0, end = buf.length) {
  const out = [];
  let i = start;
  while (i + 8 <= end) {
    let size = buf.readUInt32BE(i);
    const type = buf.toString('latin1', i + 4, i + 8);
    let hdr = 8;
    if (size === 1) { size = Number(buf.readBigUInt64BE(i + 8)); hdr = 16; }
    if (size === 0) size = end - i;
    if (size < hdr || i + size > end) throw new Error(`bad box ${type} at ${i}`);
    out.push({ type, start: i, size, body: i + hdr });
    i += size;
  }
  return out;
}
function child(buf, box, type) {
  return boxes(buf, box.body, box.start + box.size).find((b) => b.type === type);
}

/** Timescale of the (single) video track of an init segment. */
function initTimescale(init) {
  const moov = boxes(init).find((b) => b.type === 'moov');
  const trak = child(init, moov, 'trak');
  const mdhd = child(init, child(init, trak, 'mdia'), 'mdhd');
  const v = init[mdhd.body];
  return v === 1 ? init.readUInt32BE(mdhd.body + 4 + 16) : init.readUInt32BE(mdhd.body + 4 + 8);
}

/** Decode time (tfdt) and total duration of one moof (duration from trun, tfhd and trex defaults). */
function fragmentTiming(buf, moof, trexDuration) {
  const traf = child(buf, moof, 'traf');
  const tfhd = child(buf, traf, 'tfhd');
  const tfdt = child(buf, traf, 'tfdt');
  const trun = child(buf, traf, 'trun');
  const tfFlags = buf.readUInt32BE(tfhd.body) & 0xffffff;
  let p = tfhd.body + 8;
  if (tfFlags & 0x1) p += 8;
  if (tfFlags & 0x2) p += 4;
  let defDur = trexDuration;
  if (tfFlags & 0x8) defDur = buf.readUInt32BE(p);
  const base = buf[tfdt.body] === 1 ? Number(buf.readBigUInt64BE(tfdt.body + 4)) : buf.readUInt32BE(tfdt.body + 4);
  const trFlags = buf.readUInt32BE(trun.body) & 0xffffff;
  const count = buf.readUInt32BE(trun.body + 4);
  let q = trun.body + 8;
  if (trFlags & 0x1) q += 4;
  if (trFlags & 0x4) q += 4;
  let dur = 0;
  for (let s = 0; s < count; s++) {
    if (trFlags & 0x100) { dur += buf.readUInt32BE(q); q += 4; } else dur += defDur;
    if (trFlags & 0x200) q += 4;
    if (trFlags & 0x400) q += 4;
    if (trFlags & 0x800) q += 4;
  }
  return { base, dur };
}

function styp() {
  const b = Buffer.alloc(24);
  b.writeUInt32BE(24, 0);
  b.write('stypmsdh', 4, 'latin1');
  b.writeUInt32BE(0, 12);
  b.write('msdhmsix', 16, 'latin1');
  return b;
}

/**
 * Encode one period with ffmpeg and split it into an init segment and its fragments (moof+mdat
 * pairs; makeFixture groups them into media segments). Each fragment starts with a keyframe.
 */
function encodePeriod(tmp, { width, height, seconds, idle, pattern }) {
  const out = path.join(tmp, `p-${width}x${height}.mp4`);
  const vf = [];
  // Drop the frames of [idle[0], idle[1]) and keep the original timestamps (variable frame rate):
  // this is what a recorder that never encodes an unchanged screen produces.
  if (idle) vf.push(`select='lt(t\\,${idle[0]})+gte(t\\,${idle[1]})'`);
  execFileSync('ffmpeg', [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', `${pattern}=size=${width}x${height}:rate=5`, '-t', String(seconds),
    ...(vf.length ? ['-vf', vf.join(','), '-fps_mode', 'vfr'] : []),
    '-c:v', 'libsvtav1', '-preset', '12', '-crf', '45', '-g', '10', '-pix_fmt', 'yuv420p',
    '-f', 'mp4', '-movflags', 'frag_keyframe+empty_moov+default_base_moof', out,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const buf = fs.readFileSync(out);
  const top = boxes(buf);
  const moovBox = top.find((b) => b.type === 'moov');
  const init = buf.subarray(0, moovBox.start + moovBox.size);
  const timescale = initTimescale(init);
  const trex = child(buf, child(buf, moovBox, 'mvex'), 'trex');
  const trexDuration = buf.readUInt32BE(trex.body + 12);
  const frags = [];
  for (let i = 0; i < top.length; i++) {
    if (top[i].type !== 'moof') continue;
    const mdat = top[i + 1];
    if (!mdat || mdat.type !== 'mdat') throw new Error('moof without mdat');
    const t = fragmentTiming(buf, top[i], trexDuration);
    frags.push({ bytes: buf.subarray(top[i].start, mdat.start + mdat.size), startMs: (t.base / timescale) * 1000, durMs: (t.dur / timescale) * 1000 });
  }
  return { init: Buffer.from(init), frags, timescale };
}

// ---------------------------------------------------------------- chain

const sha256 = (b) => crypto.createHash('sha256').update(b).digest();
function u64(n) { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; }

class Chain {
  constructor(sessionId, privateKey, keyId) {
    this.sessionId = sessionId;
    this.privateKey = privateKey;
    this.keyId = keyId;
    this.seq = 0;
    this.head = sha256(Buffer.concat([Buffer.from(GENESIS_TAG), Buffer.from(sessionId, 'utf8')]));
    this.lines = [];
    this.fileLen = new Map();
  }
  /** Append one data record for `bytes` appended to `file`. */
  record(file, bytes) {
    const offset = this.fileLen.get(file) || 0;
    this.fileLen.set(file, offset + bytes.length);
    this.seq += 1;
    const digest = sha256(bytes);
    const name = Buffer.from(file, 'utf8');
    const lenBuf = Buffer.alloc(2); lenBuf.writeUInt16BE(name.length);
    const head = sha256(Buffer.concat([this.head, u64(this.seq), lenBuf, name, u64(offset), u64(bytes.length), digest]));
    this.lines.push(JSON.stringify({ seq: this.seq, file, offset, len: bytes.length, sha256: digest.toString('hex'), prev: this.head.toString('hex'), head: head.toString('hex') }));
    this.head = head;
  }
  checkpoint() {
    const msg = Buffer.concat([Buffer.from(GENESIS_TAG), Buffer.from(this.sessionId, 'utf8'), Buffer.from([0]), u64(this.seq), this.head]);
    const sig = crypto.sign(null, msg, this.privateKey).toString('base64');
    this.lines.push(JSON.stringify({ checkpoint: true, seq: this.seq, head: this.head.toString('hex'), key_id: this.keyId, sig }));
  }
  text() { return this.lines.map((l) => l + '\n').join(''); }
}

// ---------------------------------------------------------------- events

/** The transcript of the fixture. Times are ms since session start; nothing happens in 4..9 s. */
function fixtureEvents(durationMs, periods) {
  const ev = [
    { t: 0, type: 'session', event: 'start', detail: 'demo session started' },
    { t: 0, type: 'resize', width: periods[0].width, height: periods[0].height },
    { t: 400, type: 'title', title: 'alice@lab-vnc: ~' },
    { t: 900, type: 'pointer', x: 100, y: 120 },
    { t: 1000, type: 'pointer', x: 140, y: 150 },
    { t: 1100, type: 'button', button: 1, down: true, x: 140, y: 150 },
    { t: 1150, type: 'button', button: 1, down: false, x: 140, y: 150 },
    { t: 2000, type: 'text', text: 'whoami' },
    { t: 2300, type: 'key', key: 'Return' },
    { t: 2800, type: 'text', text: 'sudo journalctl -u nginx' },
    { t: 3100, type: 'key', key: 'Return' },
    { t: 3400, type: 'marker', label: 'checkpoint A' },
    { t: 3600, type: 'wheel', dx: 0, dy: -3 },
    // idle: no screen change and no event from ~3.8 s to 9 s
    { t: 9300, type: 'clipboard', direction: 'target-to-client', len: 24, masked: true },
    { t: 9400, type: 'policy', rule: 'no-clipboard-out', action: 'blocked', detail: 'clipboard copy to client blocked' },
    { t: 9800, type: 'key', masked: true },
    { t: 9900, type: 'text', masked: true },
    { t: 10500, type: 'text', text: 'systemctl restart frobnicator' },
    { t: 10800, type: 'key', key: 'Return' },
    { t: 11200, type: 'title', title: 'alice@lab-vnc: /etc/frobnicator' },
  ];
  if (periods.length > 1) {
    ev.push({ t: periods[1].start_ms, type: 'resize', width: periods[1].width, height: periods[1].height });
    ev.push({ t: periods[1].start_ms + 1200, type: 'text', text: 'exit' });
  }
  ev.push({ t: durationMs, type: 'session', event: 'end', detail: 'client disconnected' });
  return ev;
}

// ---------------------------------------------------------------- main generator

/**
 * Generate a recording under `<out>/data` and its export under `<out>/export`.
 * `web`: a web console session with video (protocol "web", the transcript of makeWebFixture).
 * `fragsPerSegment`: fragments (2 s each, one keyframe each) per media segment; period 1 has 4
 * fragments (one spans the idle stretch), period 2 has 2.
 * @returns {Promise<object>} paths, session id, public key and a few facts the tests use.
 */
export async function makeFixture(out, { periods: nPeriods = 1, sealed = true, web = false, fragsPerSegment = 2 } = {}) {
  if (!Number.isInteger(fragsPerSegment) || fragsPerSegment < 1) throw new Error(`fragsPerSegment must be a positive integer, not ${fragsPerSegment}`);
  fs.mkdirSync(out, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(out, '.enc-'));
  const sessionId = crypto.randomUUID();
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const rawPub = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const keyId = sha256(rawPub).toString('hex').slice(0, 16);
  const started = new Date(Date.UTC(2026, 10, 22, 10, 0, 0));
  const rel = path.join(String(started.getUTCFullYear()), '11', '22', sessionId);
  const dataDir = path.join(out, 'data');
  const recDir = path.join(dataDir, rel);
  fs.mkdirSync(path.join(recDir, 'video'), { recursive: true });
  fs.mkdirSync(path.join(recDir, 'events'), { recursive: true });

  const specs = [{ width: 640, height: 360, seconds: 12, idle: [4, 9], pattern: 'testsrc2', startMs: 0 }];
  if (nPeriods > 1) specs.push({ width: 800, height: 450, seconds: 4, pattern: 'smptehdbars', startMs: 12000 });

  const chain = new Chain(sessionId, privateKey, keyId);
  const files = new Map(); // relative path -> Buffer (the final file content)
  const append = (file, bytes) => {
    files.set(file, Buffer.concat([files.get(file) || Buffer.alloc(0), bytes]));
    chain.record(file, bytes);
    if (chain.seq % 3 === 0) chain.checkpoint();
  };

  const periods = [];
  let segNo = 0;
  let durationMs = 0;
  const encoded = specs.map((s) => encodePeriod(tmp, s));
  for (let p = 0; p < specs.length; p++) {
    const s = specs[p];
    const enc = encoded[p];
    const initName = p === 0 ? 'video/init.mp4' : `video/init-${String(p + 1).padStart(6, '0')}.mp4`;
    append(initName, enc.init);
    const period = { init: initName, width: s.width, height: s.height, start_ms: s.startMs, segments: [] };
    for (let f = 0; f < enc.frags.length; f += fragsPerSegment) {
      segNo += 1;
      const name = `video/${String(segNo).padStart(6, '0')}.m4s`;
      const group = enc.frags.slice(f, f + fragsPerSegment);
      append(name, Buffer.concat([styp(), group[0].bytes]));
      for (const g of group.slice(1)) append(name, g.bytes);
      const segStart = Math.round(s.startMs + group[0].startMs);
      const segEnd = s.startMs + group[group.length - 1].startMs + group[group.length - 1].durMs;
      period.segments.push({ file: name, start_ms: segStart, duration_ms: Math.round(segEnd - segStart), bytes: files.get(name).length });
      durationMs = Math.max(durationMs, Math.round(segEnd));
    }
    periods.push(period);
  }
  durationMs += 500;

  const webFx = web ? webEvents(started.getTime()) : null;
  const events = webFx ? webFx.events : fixtureEvents(durationMs, periods);
  const evName = 'events/000001.jsonl';
  const batch = (list) => Buffer.from(list.map((e) => JSON.stringify(e) + '\n').join(''), 'utf8');
  const half = events.findIndex((e) => e.t >= 9000);
  append(evName, batch(events.slice(0, half)));
  append(evName, batch(events.slice(half)));

  const manifest = {
    format: 1,
    session_id: sessionId,
    protocol: web ? 'web' : 'demo',
    user: 'alice',
    target: 'lab-vnc',
    client_addr: '127.0.0.1:50312',
    started_at: started.toISOString().replace('.000Z', 'Z'),
    ended_at: sealed ? new Date(started.getTime() + durationMs).toISOString().replace(/\.\d+Z$/, 'Z') : null,
    duration_ms: durationMs,
    state: sealed ? 'completed' : 'interrupted',
    end_reason: sealed ? 'client disconnected' : null,
    codec: 'av01.0.04M.08',
    encoder: 'svt-av1',
    periods,
    events: [evName],
    policy_version: 'sha256:' + sha256(Buffer.from('fixture policy')).toString('hex'),
    mask_rule_ids: ['hide-secret-panel'],
    chain: { records: chain.seq, head: chain.head.toString('hex') },
    key_id: keyId,
    public_key: rawPub.toString('base64'),
    gateway: 'psmgate-fixture 0.1.0',
  };
  const manifestText = JSON.stringify(manifest, null, 2) + '\n';
  if (sealed) {
    files.set('manifest.json', Buffer.from(manifestText, 'utf8'));
    chain.record('manifest.json', Buffer.from(manifestText, 'utf8'));
    chain.checkpoint();
  } else {
    if (chain.lines[chain.lines.length - 1].includes('"checkpoint"') === false) chain.checkpoint();
    files.set('manifest.partial.json', Buffer.from(manifestText, 'utf8'));
  }
  files.set('chain.jsonl', Buffer.from(chain.text(), 'utf8'));
  for (const [name, bytes] of files) {
    fs.mkdirSync(path.dirname(path.join(recDir, name)), { recursive: true });
    fs.writeFileSync(path.join(recDir, name), bytes);
  }

  // ---- export folder
  const exportDir = path.join(out, 'export');
  writeExport(exportDir, { files, manifest, manifestText, chainText: chain.text(), trustedKey: rawPub.toString('base64') });
  fs.rmSync(tmp, { recursive: true, force: true });

  return {
    source: 'fixture', sessionId, dataDir, recDir, exportDir, keyId,
    publicKey: rawPub.toString('base64'), durationMs, periods, events, manifest, facts: webFx && webFx.facts,
  };
}

// ---------------------------------------------------------------- web console session

// rrweb event and source numbers (rrweb's EventType / IncrementalSource / NodeType).
const RR = { FULL_SNAPSHOT: 2, INCREMENTAL: 3, META: 4, MUTATION: 0, MOUSE_MOVE: 1, SCROLL: 3, INPUT: 5 };
const el = (id, tagName, attributes, childNodes = []) => ({ type: 2, id, tagName, attributes, childNodes });
const txt = (id, textContent) => ({ type: 3, id, textContent });

/** A full snapshot of a small console page: {node, initialOffset}. `body` are the body's children. */
function pageSnapshot(title, body, head = []) {
  return {
    node: {
      type: 0, id: 1, childNodes: [
        { type: 1, id: 2, name: 'html', publicId: '', systemId: '' },
        el(3, 'html', { lang: 'en' }, [
          el(4, 'head', {}, [
            el(5, 'title', {}, [txt(6, title)]),
            el(7, 'style', { _cssText: 'body { font-family: sans-serif; margin: 24px; color: #111; } .warn { color: #b45309; }' }),
            ...head,
          ]),
          el(10, 'body', {}, body),
        ]),
      ],
    },
    initialOffset: { left: 0, top: 0 },
  };
}

/**
 * The transcript of a web console session, and the facts the tests check. Times `t` are ms since
 * session start; rrweb timestamps are ms since the epoch on the (simulated) browser's clock,
 * which runs `skew` ms ahead of the gateway's. A dom batch arrives `latency` ms after its newest
 * event, so the player maps rrweb time to session time with shift = t - newest timestamp of the
 * first batch, i.e. browser time + `latency` on the session clock.
 */
function webEvents(startedMs) {
  const skew = 3700;
  const latency = 150;
  const ts = (sessionMs) => startedMs + sessionMs + skew;
  const rr = (sessionMs, type, data) => ({ type, data, timestamp: ts(sessionMs) });
  const inc = (sessionMs, data) => rr(sessionMs, RR.INCREMENTAL, data);
  const events = [];
  const batch = (page, seq, url, list) => {
    const newest = Math.max(...list.map((e) => e.timestamp)) - startedMs - skew;
    events.push({ t: newest + latency, type: 'dom', page, seq, url, events: list });
  };
  const dash = 'https://console.example.test/dashboard';
  const settings = 'https://console.example.test/settings';
  const http = (t, method, url, rest) => events.push({
    t, type: 'http', method, url, action: 'record', rule: 'console', status: 200, ms: 20, total_ms: 40,
    req_bytes: 0, resp_bytes: 1000, content_type: 'text/html', request_headers: [['accept', '*/*']], response_headers: [], ...rest,
  });

  http(300, 'GET', dash, { resp_bytes: 5120, total_ms: 38, ms: 30 });
  events.push({ t: 320, type: 'url', url: dash });
  batch('p-1', 0, dash, [
    rr(600, RR.META, { href: dash, width: 1280, height: 720 }),
    rr(610, RR.FULL_SNAPSHOT, pageSnapshot('Console — Dashboard', [
      el(11, 'h1', {}, [txt(12, 'Fleet dashboard')]),
      el(13, 'p', {}, [txt(14, 'Welcome, alice')]),
      el(15, 'div', { id: 'status' }, [txt(16, 'All systems nominal')]),
      el(17, 'input', { id: 'search', type: 'text', value: '' }),
      el(18, 'input', { id: 'pw', type: 'password', value: '' }),
      el(19, 'ul', { id: 'deploys' }, [el(20, 'li', {}, [txt(21, 'Deployment 41 finished')])]),
      // Page scripts and inline handlers must never run in the replay.
      el(22, 'script', {}, [txt(23, 'window.parent.__psmgateScriptRan = true;')]),
      el(24, 'img', { src: 'data:image/png;base64,AAAA', onerror: 'window.parent.__psmgateHandlerRan = true', alt: '' }),
    ], [
      // nor may the page navigate the replay away
      el(8, 'meta', { 'http-equiv': 'refresh', content: '0;url=data:text/html,navigated-away' }),
    ])),
    inc(650, { source: RR.MOUSE_MOVE, positions: [{ x: 120, y: 90, id: 11, timeOffset: 0 }] }),
  ]);
  events.push({ t: 850, type: 'title', title: 'Console — Dashboard' });
  const typing = [];
  'payroll'.split('').forEach((_, i) => typing.push(inc(1200 + i * 100, { source: RR.INPUT, id: 17, text: 'payroll'.slice(0, i + 1), isChecked: false })));
  typing.push(inc(1900, { source: RR.INPUT, id: 18, text: '*******', isChecked: false }));
  batch('p-1', 1, dash, typing);
  http(2100, 'GET', 'https://console.example.test/api/search?q=payroll', { content_type: 'application/json', resp_bytes: 2345, total_ms: 41 });
  http(2600, 'POST', 'https://console.example.test/api/login', { status: 401, content_type: 'application/json', req_bytes: 64, resp_bytes: 87, total_ms: 25 });
  events.push({
    t: 3000, type: 'http', method: 'GET', url: 'https://admin.example.test/secrets', action: 'deny', rule: 'block-admin-host', status: 403,
    ms: 0, total_ms: 0, req_bytes: 0, resp_bytes: 0, request_headers: [], response_headers: [],
  });
  events.push({ t: 3000, type: 'policy', rule: 'block-admin-host', action: 'blocked', detail: 'GET https://admin.example.test/secrets' });
  events.push({ t: 3300, type: 'websocket', url: 'wss://console.example.test/live', direction: 'open', bytes: 0 });
  events.push({ t: 3400, type: 'websocket', url: 'wss://console.example.test/live', direction: 'to_client', kind: 'text', bytes: 120 });
  events.push({
    t: 3500, type: 'http', method: 'CONNECT', url: 'tracker.example.net:443', action: 'tunnel', rule: 'tunnel-telemetry', status: 200,
    ms: 12, total_ms: 5000, req_bytes: 900, resp_bytes: 20480, request_headers: [], response_headers: [],
  });
  // The mutation the seek test looks for: a new list item and a changed status text.
  const mutationMs = 5800;
  batch('p-1', 2, dash, [
    inc(mutationMs, {
      source: RR.MUTATION, texts: [{ id: 16, value: 'Degraded: disk 91% full' }], attributes: [{ id: 15, attributes: { class: 'warn' } }], removes: [],
      adds: [
        { parentId: 19, nextId: null, node: el(30, 'li', {}, []) },
        { parentId: 30, nextId: null, node: txt(31, 'Deployment 42 finished') },
      ],
    }),
    inc(5810, { source: RR.SCROLL, id: 1, x: 0, y: 0 }),
  ]);
  http(6500, 'GET', 'https://console.example.test/api/metrics', { status: 502, content_type: 'text/plain', resp_bytes: 0, total_ms: 3010 });
  http(7000, 'GET', 'https://console.example.test/api/stream', { content_type: 'text/event-stream', resp_bytes: 4096, total_ms: 900, error: 'response body cut short' });
  // Navigation: a new document, a new page id.
  http(8900, 'GET', settings, { resp_bytes: 4200, total_ms: 35 });
  events.push({ t: 8920, type: 'url', url: settings });
  batch('p-2', 0, settings, [
    rr(9000, RR.META, { href: settings, width: 1024, height: 768 }),
    rr(9010, RR.FULL_SNAPSHOT, pageSnapshot('Console — Settings', [
      el(11, 'h1', {}, [txt(12, 'Settings')]),
      el(13, 'h2', {}, [txt(14, 'API keys')]),
      el(15, 'p', {}, [txt(16, 'Token rotation due in 3 days')]),
    ])),
  ]);
  events.push({ t: 9200, type: 'title', title: 'Console — Settings' });
  // nothing happens from ~9.2 s to 14.5 s (idle)
  batch('p-2', 1, settings, [inc(14500, { source: RR.MUTATION, texts: [{ id: 16, value: 'Token rotation due in 2 days' }], attributes: [], removes: [], adds: [] })]);
  events.push({ t: 15500, type: 'policy', rule: 'recorder-heartbeat', action: 'terminated', detail: 'no recorder report for 15 s' });
  events.sort((a, b) => a.t - b.t);
  const mapped = (sessionMs) => sessionMs + latency; // where the player puts an rrweb event (shift from the first batch)
  return {
    events,
    facts: {
      skew, latency, dash, settings, mutationAt: mapped(mutationMs) / 1000, typedAt: mapped(1800) / 1000, page2At: mapped(9000) / 1000,
      lastMutationAt: mapped(14500) / 1000, idle: [mapped(9010) / 1000, mapped(14500) / 1000],
    },
  };
}

/**
 * A sealed web console session (protocol "web", no video: "periods": []), written as a gateway
 * data folder holds it (see the top of this file), and its export under `<out>/export`.
 * The transcript is written in four chained appends (the live tests reveal them one by one).
 */
export async function makeWebFixture(out) {
  fs.mkdirSync(out, { recursive: true });
  const sessionId = crypto.randomUUID();
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const rawPub = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const keyId = sha256(rawPub).toString('hex').slice(0, 16);
  const started = new Date(Date.UTC(2026, 10, 22, 11, 0, 0));
  const dataDir = path.join(out, 'data');
  const recDir = path.join(dataDir, 'recordings', '2026', '11', '22', sessionId);
  fs.mkdirSync(path.join(recDir, 'events'), { recursive: true });
  fs.mkdirSync(path.join(dataDir, 'keys'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dataDir, 'keys', 'gateway.ed25519'), privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });

  const { events, facts } = webEvents(started.getTime());
  const chain = new Chain(sessionId, privateKey, keyId);
  const files = new Map();
  const append = (file, bytes) => {
    files.set(file, Buffer.concat([files.get(file) || Buffer.alloc(0), bytes]));
    chain.record(file, bytes);
    chain.checkpoint();
  };
  const evName = 'events/000001.jsonl';
  const lines = (list) => Buffer.from(list.map((e) => JSON.stringify(e) + '\n').join(''), 'utf8');
  const cuts = [2200, 5000, 8000, Infinity];
  let from = 0;
  const chunks = [];
  for (const cut of cuts) {
    const list = events.filter((e) => e.t >= from && e.t < cut);
    from = cut;
    if (list.length) { append(evName, lines(list)); chunks.push(list); }
  }
  const durationMs = 16000;
  const manifest = {
    format: 1,
    session_id: sessionId,
    protocol: 'web',
    user: 'alice',
    target: 'ops-console',
    client_addr: '127.0.0.1:50444',
    started_at: started.toISOString().replace('.000Z', 'Z'),
    ended_at: new Date(started.getTime() + durationMs).toISOString().replace(/\.\d+Z$/, 'Z'),
    duration_ms: durationMs,
    state: 'completed',
    end_reason: 'terminated by policy: the in-page recorder fell silent',
    codec: '',
    encoder: '',
    periods: [],
    events: [evName],
    policy_version: 'sha256:' + sha256(Buffer.from('fixture web policy')).toString('hex'),
    mask_rule_ids: [],
    chain: { records: chain.seq, head: chain.head.toString('hex') },
    key_id: keyId,
    public_key: rawPub.toString('base64'),
    gateway: 'psmgate-fixture 0.1.0',
  };
  const manifestText = JSON.stringify(manifest, null, 2) + '\n';
  files.set('manifest.json', Buffer.from(manifestText, 'utf8'));
  chain.record('manifest.json', Buffer.from(manifestText, 'utf8'));
  chain.checkpoint();
  files.set('chain.jsonl', Buffer.from(chain.text(), 'utf8'));
  for (const [name, bytes] of files) fs.writeFileSync(path.join(recDir, name), bytes);

  const exportDir = path.join(out, 'export');
  writeExport(exportDir, { files, manifest, manifestText, chainText: chain.text(), trustedKey: rawPub.toString('base64') });
  return {
    source: 'fixture', sessionId, dataDir, recDir, exportDir, keyId, publicKey: rawPub.toString('base64'),
    durationMs, events, chunks, manifest, facts,
  };
}

/** Write an export folder per the data.js contract (also used by tests to build variants). */
export function writeExport(exportDir, { files, manifest, manifestText, chainText, trustedKey }) {
  fs.mkdirSync(exportDir, { recursive: true });
  for (const f of fs.readdirSync(PLAYER_DIR)) {
    if (/\.(html|css|js)$/.test(f) && f !== 'data.js') fs.copyFileSync(path.join(PLAYER_DIR, f), path.join(exportDir, f));
  }
  for (const [rel, src] of Object.entries(VENDOR_FILES)) {
    if (!fs.existsSync(src)) continue;
    fs.mkdirSync(path.dirname(path.join(exportDir, rel)), { recursive: true });
    fs.copyFileSync(src, path.join(exportDir, rel));
  }
  // media = every video file of every period, in manifest order; period 1 comes first, so
  // recording.mp4 (period 1 only) is a prefix of it.
  const parts = [];
  const map = {};
  let off = 0;
  let p1End = 0;
  manifest.periods.forEach((p, i) => {
    for (const name of [p.init, ...p.segments.map((s) => s.file)]) {
      const b = files.get(name);
      map[name] = [off, b.length];
      parts.push(b);
      off += b.length;
    }
    if (i === 0) p1End = off;
  });
  const media = Buffer.concat(parts);
  const events = {};
  for (const e of manifest.events) events[e] = files.get(e).toString('utf8');
  const data = {
    manifest,
    manifest_text: manifestText,
    chain: chainText,
    media: media.toString('base64'),
    files: map,
    events,
    trusted_key: trustedKey ?? null,
  };
  fs.writeFileSync(path.join(exportDir, 'data.js'), `window.PSMGATE_RECORDING = ${JSON.stringify(data)};\n`);
  fs.writeFileSync(path.join(exportDir, 'recording.mp4'), media.subarray(0, p1End));
  fs.writeFileSync(path.join(exportDir, 'manifest.json'), manifestText);
  fs.writeFileSync(path.join(exportDir, 'chain.jsonl'), chainText);
  fs.writeFileSync(path.join(exportDir, 'events.jsonl'), Object.values(events).join(''));
}

// ---------------------------------------------------------------- CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (k, d) => { const i = args.indexOf(`--${k}`); return i >= 0 ? args[i + 1] : d; };
  const out = path.resolve(opt('out', 'fixture-out'));
  const info = args.includes('--web')
    ? await makeWebFixture(out)
    : await makeFixture(out, { periods: Number(opt('periods', '1')), sealed: !args.includes('--unsealed'), fragsPerSegment: Number(opt('frags-per-segment', '2')) });
  console.log(`session ${info.sessionId}`);
  console.log(`export ${info.exportDir}`);
  console.log(`data ${info.dataDir}`);
}
