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
//
// Layout written:
//   <out>/data/YYYY/MM/DD/<session-id>/{manifest.json, chain.jsonl, video/*, events/*}
//   <out>/export/{index.html, player.css, *.js, data.js, recording.mp4, manifest.json, chain.jsonl, events.jsonl}

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PLAYER_DIR = path.resolve(HERE, '../../web-player');
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
 * Encode one period with ffmpeg and split it into an init segment and media segments
 * (styp + `fragsPerSegment` moof/mdat pairs each). Each fragment starts with a keyframe.
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
 * @returns {Promise<object>} paths, session id, public key and a few facts the tests use.
 */
export async function makeFixture(out, { periods: nPeriods = 1, sealed = true } = {}) {
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
    for (let f = 0; f < enc.frags.length; f += 2) {
      segNo += 1;
      const name = `video/${String(segNo).padStart(6, '0')}.m4s`;
      const group = enc.frags.slice(f, f + 2);
      append(name, Buffer.concat([styp(), group[0].bytes]));
      if (group[1]) append(name, group[1].bytes);
      const segStart = Math.round(s.startMs + group[0].startMs);
      const segEnd = s.startMs + group[group.length - 1].startMs + group[group.length - 1].durMs;
      period.segments.push({ file: name, start_ms: segStart, duration_ms: Math.round(segEnd - segStart), bytes: files.get(name).length });
      durationMs = Math.max(durationMs, Math.round(segEnd));
    }
    periods.push(period);
  }
  durationMs += 500;

  const events = fixtureEvents(durationMs, periods);
  const evName = 'events/000001.jsonl';
  const batch = (list) => Buffer.from(list.map((e) => JSON.stringify(e) + '\n').join(''), 'utf8');
  const half = events.findIndex((e) => e.t >= 9000);
  append(evName, batch(events.slice(0, half)));
  append(evName, batch(events.slice(half)));

  const manifest = {
    format: 1,
    session_id: sessionId,
    protocol: 'demo',
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
    publicKey: rawPub.toString('base64'), durationMs, periods, events, manifest,
  };
}

/** Write an export folder per the data.js contract (also used by tests to build variants). */
export function writeExport(exportDir, { files, manifest, manifestText, chainText, trustedKey }) {
  fs.mkdirSync(exportDir, { recursive: true });
  for (const f of fs.readdirSync(PLAYER_DIR)) {
    if (/\.(html|css|js)$/.test(f) && f !== 'data.js') fs.copyFileSync(path.join(PLAYER_DIR, f), path.join(exportDir, f));
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
  const info = await makeFixture(out, { periods: Number(opt('periods', '1')), sealed: !args.includes('--unsealed') });
  console.log(`session ${info.sessionId}`);
  console.log(`export ${info.exportDir}`);
  console.log(`data ${info.dataDir}`);
}
