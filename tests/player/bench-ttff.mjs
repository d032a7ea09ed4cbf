#!/usr/bin/env node
// Hand-run benchmark (not part of `node --test`): how long a viewer waits for a 1-hour recording,
// and how far the live view trails a session being recorded. Figures go to BENCHMARKS.md.
//
//   cd tests/player && npm ci                            # once: playwright-core (Chromium is Debian's)
//   node bench-ttff.mjs                                  # record 60 min with `psmgate bench`, then measure
//   node bench-ttff.mjs --recording /tmp/b/svt-av1/2026/11/22/<id>   # reuse a recording (or a bench --out folder)
//   node bench-ttff.mjs --runs 10 --json-out ttff.json   # more runs, keep the JSON
//   node bench-ttff.mjs --recording DIR --throttle-mbit 10 --runs 3 --skip-live   # a 10 Mbit/s link
//
// Options: --psmgate BIN (default $PSMGATE_BIN, else ../../target/release/psmgate, built with
// `--features svt-av1`), --recording DIR, --minutes 60, --runs 5, --seek-min 45, --early-seek-min 30,
// --throttle-mbit MBIT and --latency-ms MS (Chromium's network emulation, both directions),
// --live-seconds 30, --demo-seconds 60, --skip-ttff, --skip-live, --json-out FILE. CHROMIUM overrides
// /usr/bin/chromium;
// KEEP_BENCH_TMP=1 keeps the temporary folders (a recording made here, to reuse with --recording).
// Runs take about a minute with --recording; making the 60-minute recording takes ~6.5 min more on
// 2 cores (`psmgate bench` also decodes 360 frames with ffmpeg to measure quality).
//
// 1. Recording: `psmgate bench --encoder svt-av1 --minutes 60 --out <tmp>` (the standard synthetic
//    workload through the real pipeline on a simulated clock; its wall time is printed), unless
//    --recording names one. Its session folder is copied into a fresh data folder at
//    recordings/YYYY/MM/DD/<id>/ and `psmgate serve --data <data> --no-tls` serves it. No command
//    adds an existing sealed recording to the index (`recover` only indexes recordings it seals,
//    `verify` only updates a row that exists), so the recording is not in the UI's list: the
//    viewer signs in (/login?token=…), opens the UI's Recordings view, and the measured step starts
//    at the navigation to /player/?id=<id> that clicking its row would make (same page, same cookie).
//    If the row is listed (an index that has it), the row's link is clicked instead.
// 2. Each run uses a new browser context (empty cache, new page), with --throttle-mbit applied to
//    the page before it signs in. Measured from the navigation:
//    - first frame: the video's first requestVideoFrameCallback, and readyState >= 2 with
//      getVideoPlaybackQuality().totalVideoFrames > 0 (both recorded; the first, if it fired, is
//      the headline);
//    - early seek: right after the first frame, seek to --early-seek-min: until `seeked`, and until
//      the frame is presented (the segment there may not be loaded yet);
//    - the player ready (<body data-ready="1">), every segment in the SourceBuffer (<body
//      data-loaded="1">; a player without that attribute appends everything before it is ready, so
//      its data-ready stands for both) and the integrity badge settled (the whole chain, every byte
//      and signature checked);
//    - seek to --seek-min (once everything is loaded and the badge settled): until `seeked`, and
//      until the frame is presented;
//    - bytes: response bodies + headers of every request (Playwright request events) that finished
//      before the first frame, and in total until the badge settled.
//    p50 and max over the runs are printed as a table, then everything as JSON.
// 3. Live view: `psmgate serve --demo --demo-seconds 60` records the demo desktop in real time; the
//    player opens on it as soon as its first segment exists and PSM.state.live.lag (wall time since
//    the session started minus the playhead) is sampled every second for --live-seconds (after 2 s
//    to settle), with the playhead's distance to the buffered end; p50/p95/max are printed. Where
//    the lag comes from, per video fragment chained during the samples: the recorder (the fragment
//    chained — its line seen in chain.jsonl on disk, polled every 5 ms — minus the session time its
//    video ends at), the player's read (its bytes received by the page minus chained) and the
//    append (in the SourceBuffer, sampled every 50 ms, minus received); with the age of the
//    buffered end (wall time since start minus buffered end), sampled every 50 ms.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './lib/browser.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------------ options
function parseArgs(argv) {
  const o = {
    psmgate: process.env.PSMGATE_BIN || path.resolve(HERE, '../../target/release/psmgate'),
    recording: null, minutes: 60, runs: 5, seekMin: 45, earlySeekMin: 30, throttleMbit: null, latencyMs: 0,
    liveSeconds: 30, demoSeconds: 60, skipTtff: false, skipLive: false, jsonOut: null,
  };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}: expected a positive number, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--psmgate': o.psmgate = path.resolve(next()); break;
      case '--recording': o.recording = path.resolve(next()); break;
      case '--minutes': o.minutes = num(a, next()); break;
      case '--runs': o.runs = Math.round(num(a, next())); break;
      case '--seek-min': o.seekMin = num(a, next()); break;
      case '--early-seek-min': o.earlySeekMin = num(a, next()); break;
      case '--throttle-mbit': o.throttleMbit = num(a, next()); break;
      case '--latency-ms': o.latencyMs = num(a, next()); break;
      case '--live-seconds': o.liveSeconds = Math.round(num(a, next())); break;
      case '--demo-seconds': o.demoSeconds = Math.round(num(a, next())); break;
      case '--skip-ttff': o.skipTtff = true; break;
      case '--skip-live': o.skipLive = true; break;
      case '--json-out': o.jsonOut = path.resolve(next()); break;
      case '-h': case '--help':
        console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\nimport ')[0]);
        process.exit(0);
        break;
      default: throw new Error(`unknown option ${a} (see --help)`);
    }
  }
  if (o.demoSeconds < o.liveSeconds + 15) throw new Error(`--demo-seconds must exceed --live-seconds by at least 15 s`);
  return o;
}

// ------------------------------------------------------------------ helpers
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (!process.env.KEEP_BENCH_TMP) process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

/** Poll `fn` until it returns a truthy value; an error marked `fatal` ends the wait. */
async function until(fn, what, timeout = 60000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn().catch((e) => { if (e && e.fatal) throw e; return null; });
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** Nearest-rank quantile. */
function quantile(xs, q) {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}
const maxOf = (xs) => quantile(xs, 1);

/** The environment psmgate runs in: no configuration file from the caller's environment. */
function psmgateEnv() {
  const env = { ...process.env };
  delete env.PSMGATE_CONFIG;
  delete env.PSMGATE_DATA;
  return env;
}

/** `psmgate serve` on a free port; resolves once the player is served. */
async function startServe(bin, data, extra = []) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = [];
  const child = spawn(bin, ['serve', '--data', data, '--listen', `127.0.0.1:${port}`, '--no-tls', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'], env: psmgateEnv(),
  });
  for (const s of [child.stdout, child.stderr]) s.on('data', (d) => { log.push(String(d)); if (log.length > 200) log.shift(); });
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => { if (child.exitCode === null) child.kill('SIGKILL'); }, 10000).unref();
  });
  try {
    await until(async () => {
      if (child.exitCode !== null) throw Object.assign(new Error(`psmgate serve exited with ${child.exitCode}: ${log.join('').slice(-2000)}`), { fatal: true });
      return (await fetch(`${base}/player/`)).ok;
    }, 'psmgate serve', 60000);
  } catch (e) {
    await stop();
    throw e;
  }
  const token = fs.readFileSync(path.join(data, 'admin-token'), 'utf8').trim();
  return { base, token, child, log, stop };
}

// ------------------------------------------------------------------ 1. the recording
function runBench(bin, minutes, out) {
  return new Promise((resolve, reject) => {
    const args = ['bench', '--encoder', 'svt-av1', '--minutes', String(minutes), '--out', out, '--json'];
    console.log(`$ ${bin} ${args.join(' ')}`);
    const started = Date.now();
    execFile(bin, args, { env: psmgateEnv(), maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const wallS = (Date.now() - started) / 1000;
      if (err) { reject(new Error(`psmgate bench failed: ${err.message}\n${String(stderr).slice(-2000)}`)); return; }
      let results;
      try { results = JSON.parse(stdout); } catch (e) { reject(new Error(`psmgate bench printed no JSON: ${e.message}`)); return; }
      const r = results[0];
      if (!r || typeof r.recording !== 'string') { reject(new Error('psmgate bench reported no recording')); return; }
      resolve({ wallS, result: r, folder: r.recording });
    });
  });
}

/** A sealed recording folder: DIR itself, or the one recording below it (a bench --out folder). */
function findRecording(dir) {
  if (!fs.existsSync(dir)) throw new Error(`${dir} does not exist`);
  if (fs.existsSync(path.join(dir, 'manifest.json'))) return dir;
  const found = [];
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop();
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      if (!ent.isDirectory()) continue;
      const p = path.join(d, ent.name);
      if (fs.existsSync(path.join(p, 'manifest.json'))) found.push(p);
      else stack.push(p);
    }
  }
  if (found.length !== 1) throw new Error(`${dir}: expected one sealed recording (a folder with manifest.json), found ${found.length}`);
  return found[0];
}

function describeRecording(folder) {
  const manifest = JSON.parse(fs.readFileSync(path.join(folder, 'manifest.json'), 'utf8'));
  if (!manifest.session_id || !/^[0-9a-f-]{36}$/.test(manifest.session_id)) throw new Error(`${folder}: manifest has no session id`);
  let bytes = 0;
  let files = 0;
  const stack = [folder];
  while (stack.length) {
    const d = stack.pop();
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) stack.push(p);
      else { bytes += fs.statSync(p).size; files++; }
    }
  }
  const segments = (manifest.periods || []).reduce((n, p) => n + (p.segments || []).length, 0);
  const chainRecords = fs.readFileSync(path.join(folder, 'chain.jsonl'), 'utf8').split('\n').filter(Boolean).length;
  // The session time the video covers (a bench recording's duration_ms is the wall time it took).
  const videoEndMs = (manifest.periods || []).flatMap((p) => p.segments || []).reduce((e, s) => Math.max(e, (s.start_ms || 0) + (s.duration_ms || 0)), 0);
  const durationS = Math.max(manifest.duration_ms || 0, videoEndMs) / 1000;
  return { folder, manifest, id: manifest.session_id, bytes, files, segments, chainRecords, durationS };
}

/** Copy the recording into <data>/recordings/YYYY/MM/DD/<id>/ (the date of its folder, else of started_at). */
function stageData(rec) {
  const data = path.join(tempDir('psmgate-bench-ttff-'), 'data');
  const parts = rec.folder.split(path.sep).slice(-4, -1);
  const ymd = parts.length === 3 && /^\d{4}$/.test(parts[0]) && /^\d{2}$/.test(parts[1]) && /^\d{2}$/.test(parts[2])
    ? parts
    : new Date(rec.manifest.started_at).toISOString().slice(0, 10).split('-');
  const dest = path.join(data, 'recordings', ...ymd, rec.id);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.cpSync(rec.folder, dest, { recursive: true });
  return { data, dest };
}

// ------------------------------------------------------------------ 2. time to first frame
/** Runs in every page of a context before its scripts: stamps the first frame and the badge. */
function instrument() {
  const marks = (window.__bench = { marks: {}, meta: null });
  const mark = (k) => { if (marks.marks[k] == null) marks.marks[k] = performance.timeOrigin + performance.now(); };
  document.addEventListener('DOMContentLoaded', () => {
    const v = document.getElementById('video');
    if (!v) return;
    if (v.requestVideoFrameCallback) {
      v.requestVideoFrameCallback((now, meta) => {
        mark('rvfc');
        marks.meta = { mediaTime: meta.mediaTime, presentedFrames: meta.presentedFrames, width: meta.width, height: meta.height };
      });
    }
    const check = () => {
      if (v.readyState >= 2 && v.getVideoPlaybackQuality().totalVideoFrames > 0) { mark('decoded'); return; }
      setTimeout(check, 5);
    };
    check();
    new MutationObserver(() => {
      const s = document.body.dataset.integrity;
      if (s && s !== 'pending') { mark('integrity'); marks.integrity = s; }
      if (document.body.dataset.ready === '1') mark('ready');
      if (document.body.dataset.loaded === '1') mark('loaded');
    }).observe(document.body, { attributes: true, attributeFilter: ['data-integrity', 'data-ready', 'data-loaded'] });
  });
}

/** Seek the paused video through the player; times until `seeked` and until the frame is presented. */
function seekInPage(t) {
  const v = document.getElementById('video');
  v.pause();
  return new Promise((resolve) => {
    const t0 = performance.now();
    const out = { target: t };
    let frame = null;
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback((now, meta) => { frame = { ms: performance.now() - t0, mediaTime: meta.mediaTime }; });
    v.addEventListener('seeked', async () => {
      out.seekedMs = performance.now() - t0;
      for (let i = 0; i < 200 && !frame; i++) await new Promise((r) => setTimeout(r, 5));
      out.frameMs = frame ? frame.ms : null;
      out.frameMediaTime = frame ? frame.mediaTime : null;
      out.currentTime = v.currentTime;
      out.readyState = v.readyState;
      resolve(out);
    }, { once: true });
    window.PSM.seek(t);
  });
}

/** Chromium's network emulation on `page` (download and upload at `mbit` Mbit/s, `latencyMs`). */
async function throttle(context, page, mbit, latencyMs) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const bytesPerS = (mbit * 1e6) / 8;
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: latencyMs, downloadThroughput: bytesPerS, uploadThroughput: bytesPerS });
}

async function ttffRun(browser, base, token, rec, seekS, earlySeekS, net, run) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const requests = [];
  const pending = [];
  context.on('requestfinished', (req) => {
    pending.push((async () => {
      const s = await req.sizes().catch(() => null);
      const tm = req.timing();
      requests.push({
        url: req.url(), start: tm.startTime, end: tm.responseEnd >= 0 ? tm.startTime + tm.responseEnd : null,
        bytes: s ? Math.max(0, s.responseBodySize) + Math.max(0, s.responseHeadersSize) : 0,
      });
    })());
  });
  try {
    await context.addInitScript(instrument);
    const page = await context.newPage();
    if (net.mbit) await throttle(context, page, net.mbit, net.latencyMs);
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // Sign in with the admin token (the cookie) and open the Recordings view.
    await page.goto(`${base}/login?token=${encodeURIComponent(token)}&next=/ui/`, { waitUntil: 'load' });
    await page.waitForFunction(() => !document.getElementById('nav').hidden, null, { timeout: 15000 });
    const listed = page.waitForResponse((r) => r.url().includes('/api/recordings'), { timeout: 15000 });
    await page.evaluate(() => { location.hash = '#/recordings'; });
    await listed;
    await page.waitForTimeout(200);
    const link = page.locator(`#recording-rows a[href="/player/?id=${encodeURIComponent(rec.id)}"]`);
    const inList = (await link.count()) > 0;
    const t0 = Date.now();
    if (inList) await link.first().click();
    else await page.evaluate((url) => { location.assign(url); }, `/player/?id=${encodeURIComponent(rec.id)}`);
    await page.waitForURL(/\/player\//, { timeout: 15000 });
    await page.waitForFunction(() => (window.__bench && (window.__bench.marks.rvfc || window.__bench.marks.decoded)) || document.body.dataset.ready === 'error',
      null, { timeout: 600000, polling: 50 });
    // Early seek: as soon as the first frame is shown (and the player takes seeks: data-ready).
    await page.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.ready === 'error', null, { timeout: 600000, polling: 20 });
    const early = await page.evaluate(() => document.body.dataset.ready) === '1' ? await page.evaluate(seekInPage, earlySeekS) : null;
    if (early && Math.abs(early.currentTime - earlySeekS) > 0.5) throw new Error(`run ${run}: the early seek to ${earlySeekS} s ended at ${early.currentTime} s`);
    // The other seek waits until every segment is in the SourceBuffer and the badge settled, so it
    // times decoding alone.
    await page.waitForFunction(() => {
      const m = window.__bench.marks;
      const loaded = m.loaded || (m.ready && !('loaded' in window.PSM.state));
      return (m.integrity && loaded) || document.body.dataset.ready === 'error';
    }, null, { timeout: 600000, polling: 100 });
    const shown = await page.evaluate(() => {
      const v = document.getElementById('video');
      const b = v.buffered;
      return {
        marks: window.__bench.marks, meta: window.__bench.meta, integrity: document.body.dataset.integrity,
        badge: document.getElementById('badge-text').textContent, error: window.PSM.state.error,
        ready: document.body.dataset.ready, videoMode: window.PSM.state.videoMode,
        bufferedEnd: b.length ? b.end(b.length - 1) : 0, duration: v.duration, width: v.videoWidth, height: v.videoHeight,
      };
    });
    if (shown.ready === 'error' || shown.error) throw new Error(`run ${run}: the player failed: ${shown.error}`);
    const seek = await page.evaluate(seekInPage, seekS);
    if (Math.abs(seek.currentTime - seekS) > 0.5) throw new Error(`run ${run}: the seek to ${seekS} s ended at ${seek.currentTime} s`);
    await Promise.all(pending);
    const firstAt = shown.marks.rvfc ?? shown.marks.decoded;
    const after = requests.filter((r) => r.start >= t0 - 5);
    const sum = (rs) => rs.reduce((n, r) => n + r.bytes, 0);
    const beforeFirst = after.filter((r) => r.end != null && r.end <= firstAt);
    const beforeVerified = after.filter((r) => r.end != null && r.end <= shown.marks.integrity);
    const rel = (t) => (t == null ? null : t - t0);
    return {
      run, inList,
      firstFrameMs: rel(firstAt), rvfcMs: rel(shown.marks.rvfc), decodedMs: rel(shown.marks.decoded),
      readyMs: rel(shown.marks.ready), loadedMs: rel(shown.marks.loaded ?? shown.marks.ready), verifiedMs: rel(shown.marks.integrity),
      earlySeekedMs: early && early.seekedMs, earlySeekFrameMs: early && early.frameMs, early,
      seekedMs: seek.seekedMs, seekFrameMs: seek.frameMs, seek,
      bytesBeforeFirstFrame: sum(beforeFirst), requestsBeforeFirstFrame: beforeFirst.length,
      bytesUntilVerified: sum(beforeVerified), requestsUntilVerified: beforeVerified.length,
      firstFrame: shown.meta, integrity: shown.integrity, badge: shown.badge, videoMode: shown.videoMode,
      bufferedEnd: shown.bufferedEnd, videoDuration: shown.duration, size: `${shown.width}x${shown.height}`, pageErrors: errors,
    };
  } finally {
    await context.close();
  }
}

async function benchTtff(opts, browser) {
  let bench = null;
  let folder;
  if (opts.recording) folder = findRecording(opts.recording);
  else {
    const out = tempDir('psmgate-bench-rec-');
    bench = await runBench(opts.psmgate, opts.minutes, out);
    console.log(`psmgate bench: ${bench.wallS.toFixed(0)} s wall for ${opts.minutes} session minutes (${bench.result.frames} frames, ${(bench.result.bytes / 1e6).toFixed(1)} MB)`);
    folder = bench.folder;
  }
  const rec = describeRecording(folder);
  console.log(`recording ${rec.id} (${rec.folder}): ${(rec.durationS / 60).toFixed(1)} min, ${rec.segments} segments, ${rec.chainRecords} chain records, ${(rec.bytes / 1e6).toFixed(1)} MB in ${rec.files} files`);
  if (rec.manifest.state !== 'completed') console.log(`note: the recording's state is ${rec.manifest.state}`);
  const seekS = Math.min(opts.seekMin * 60, Math.max(0, rec.durationS - 1));
  const earlySeekS = Math.min(opts.earlySeekMin * 60, Math.max(0, rec.durationS - 1));
  const net = { mbit: opts.throttleMbit, latencyMs: opts.latencyMs };
  const { data } = stageData(rec);
  const srv = await startServe(opts.psmgate, data);
  const runs = [];
  try {
    const auth = { headers: { Authorization: `Bearer ${srv.token}` } };
    const indexed = (await (await fetch(`${srv.base}/api/recordings`, auth)).json()).some((r) => r.id === rec.id);
    const byId = await fetch(`${srv.base}/api/recordings/${rec.id}/manifest`, auth);
    if (!byId.ok) throw new Error(`psmgate serve does not find ${rec.id}: HTTP ${byId.status}`);
    console.log(`served at ${srv.base}; in the index (UI list): ${indexed ? 'yes' : 'no — measured from the navigation to /player/?id= out of the UI page'}`);
    for (let i = 1; i <= opts.runs; i++) {
      const r = await ttffRun(browser, srv.base, srv.token, rec, seekS, earlySeekS, net, i);
      runs.push(r);
      console.log(`run ${i}: first frame ${fmtMs(r.firstFrameMs)} (rVFC ${fmtMs(r.rvfcMs)}, decoded ${fmtMs(r.decodedMs)}), ready ${fmtMs(r.readyMs)}, early seek to ${fmtClock(earlySeekS)} ${fmtMs(r.earlySeekFrameMs)} (seeked ${fmtMs(r.earlySeekedMs)}), loaded ${fmtMs(r.loadedMs)}, verified ${fmtMs(r.verifiedMs)}, seek to ${fmtClock(seekS)} ${fmtMs(r.seekFrameMs)} (seeked ${fmtMs(r.seekedMs)}, frame at ${r.seek.frameMediaTime?.toFixed(2)} s), ${fmtMB(r.bytesBeforeFirstFrame)} in ${r.requestsBeforeFirstFrame} responses before the first frame; ${r.integrity}: ${r.badge}`);
    }
  } finally {
    await srv.stop();
  }
  return {
    recording: { id: rec.id, durationS: rec.durationS, segments: rec.segments, chainRecords: rec.chainRecords, bytes: rec.bytes, files: rec.files, encoder: rec.manifest.encoder, folder: rec.folder },
    bench: bench && { wallS: bench.wallS, frames: bench.result.frames, bytes: bench.result.bytes, cpuSeconds: bench.result.cpu_seconds },
    seekS, earlySeekS, net, runs,
  };
}

// ------------------------------------------------------------------ 3. live view lag
/** In the page: when each file fetch's body arrived, and the buffered end every 50 ms. */
function instrumentLive() {
  window.__benchFetches = [];
  window.__benchEdges = [];
  const original = window.fetch;
  window.fetch = async function (input, init) {
    const r = await original.apply(this, arguments);
    const url = String((input && input.url) || input);
    const h = (init && init.headers) || {};
    const range = h.Range || h.range || null;
    r.clone().arrayBuffer().then((b) => window.__benchFetches.push({ url, range, at: Date.now(), len: b.byteLength }), () => {});
    return r;
  };
  setInterval(() => {
    const v = document.getElementById('video');
    const b = v && v.buffered;
    if (b && b.length) window.__benchEdges.push({ at: Date.now(), edge: b.end(b.length - 1) });
  }, 50);
}

/** Top-level boxes of `b`: [type, body]. */
function mp4Boxes(b) {
  const out = [];
  for (let i = 0; i + 8 <= b.length;) {
    const size = b.readUInt32BE(i);
    if (size < 8 || i + size > b.length) break;
    out.push([b.toString('latin1', i + 4, i + 8), b.subarray(i + 8, i + size)]);
    i += size;
  }
  return out;
}

/** Session time (ms) a fragment's video ends at: tfdt plus its samples' durations (timescale 1000). */
function fragmentEndMs(bytes) {
  const moof = mp4Boxes(bytes).find(([t]) => t === 'moof');
  const traf = moof && mp4Boxes(moof[1]).find(([t]) => t === 'traf');
  if (!traf) return null;
  let start = null;
  let dur = 0;
  for (const [t, body] of mp4Boxes(traf[1])) {
    if (t === 'tfdt') start = body[0] === 1 ? Number(body.readBigUInt64BE(4)) : body.readUInt32BE(4);
    if (t === 'trun') {
      const flags = body.readUInt32BE(0) & 0xffffff;
      const n = body.readUInt32BE(4);
      let at = 8 + (flags & 1 ? 4 : 0) + (flags & 4 ? 4 : 0);
      const per = [0x100, 0x200, 0x400, 0x800].filter((f) => flags & f).length * 4;
      for (let k = 0; k < n; k++, at += per) if (flags & 0x100) dur += body.readUInt32BE(at);
    }
  }
  return start === null ? null : start + dur;
}

/** Watch a recording's chain.jsonl on disk: when each line appeared (polled every 5 ms). */
function watchChain(file) {
  const seen = [];
  let have = 0;
  let rest = '';
  const timer = setInterval(() => {
    let size;
    try { size = fs.statSync(file).size; } catch { return; }
    if (size <= have) return;
    const fd = fs.openSync(file, 'r');
    const b = Buffer.alloc(size - have);
    fs.readSync(fd, b, 0, b.length, have);
    fs.closeSync(fd);
    have = size;
    const at = Date.now();
    const lines = (rest + b.toString('utf8')).split('\n');
    rest = lines.pop();
    for (const l of lines) if (l) { try { seen.push({ at, rec: JSON.parse(l) }); } catch { /* torn: never, lines are whole */ } }
  }, 5);
  return { seen, stop: () => clearInterval(timer) };
}

/** Per video fragment chained in [from, to]: recorder, read and append times (ms), see the header. */
function lagBreakdown(folder, chained, fetches, edges, startedAt, from, to) {
  const rows = [];
  for (const { at, rec } of chained) {
    if (at < from || at > to || typeof rec.file !== 'string' || !/^video\/\d+\.m4s$/.test(rec.file) || rec.offset === 0) continue;
    const fd = fs.openSync(path.join(folder, rec.file), 'r');
    const b = Buffer.alloc(rec.len);
    fs.readSync(fd, b, 0, rec.len, rec.offset);
    fs.closeSync(fd);
    const end = fragmentEndMs(b);
    if (end === null) continue;
    const got = fetches.find((f) => {
      const m = /^bytes=(\d+)-(\d*)$/.exec(f.range || '');
      return f.url.split('?')[0].endsWith('/' + rec.file) && m && Number(m[1]) <= rec.offset && (m[2] === '' || Number(m[2]) >= rec.offset + rec.len - 1);
    });
    const appended = edges.find((e) => e.edge * 1000 >= end - 1 && (!got || e.at >= got.at));
    rows.push({
      recorderMs: at - startedAt - end,
      readMs: got ? got.at - at : null,
      appendMs: got && appended ? appended.at - got.at : null,
    });
  }
  const edgeAge = edges.filter((e) => e.at >= from && e.at <= to).map((e) => e.at - startedAt - e.edge * 1000);
  const stat = (xs) => ({ p50: quantile(xs, 0.5), p95: quantile(xs, 0.95), max: maxOf(xs), n: xs.filter((x) => x != null).length });
  return {
    fragments: rows.length,
    recorderMs: stat(rows.map((r) => r.recorderMs)),
    readMs: stat(rows.map((r) => r.readMs)),
    appendMs: stat(rows.map((r) => r.appendMs)),
    edgeAgeMs: stat(edgeAge),
  };
}

async function benchLive(opts, browser) {
  const data = path.join(tempDir('psmgate-bench-live-'), 'data');
  const srv = await startServe(opts.psmgate, data, ['--demo', '--demo-seconds', String(opts.demoSeconds)]);
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.addInitScript(instrumentLive);
  let chainWatch = null;
  try {
    const auth = { headers: { Authorization: `Bearer ${srv.token}` } };
    const id = await until(async () => (await (await fetch(`${srv.base}/api/recordings`, auth)).json())[0]?.id, 'the demo session', 30000);
    const manifest = await until(async () => {
      const m = await (await fetch(`${srv.base}/api/recordings/${id}/manifest`, auth)).json();
      return m.periods?.[0]?.segments?.length ? m : null;
    }, 'the first segment', 30000);
    if (manifest.state !== 'recording') throw new Error(`the demo session is ${manifest.state}, not recording`);
    const folder = findFolder(data, id);
    chainWatch = watchChain(path.join(folder, 'chain.jsonl'));
    const startedAt = Date.parse(manifest.started_at);
    const opened = Date.now();
    const page = await context.newPage();
    await page.goto(`${srv.base}/player/?id=${id}#token=${encodeURIComponent(srv.token)}`, { waitUntil: 'load' });
    await page.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.ready === 'error', null, { timeout: 30000 });
    await page.waitForFunction(() => window.PSM.state.live.lag != null || document.body.dataset.live === 'sealed', null, { timeout: 30000 });
    const openS = (Date.now() - opened) / 1000;
    await sleep(2000);
    const samples = [];
    const from = Date.now();
    for (let i = 0; i < opts.liveSeconds; i++) {
      const s = await page.evaluate(() => {
        const v = document.getElementById('video');
        const b = v.buffered;
        const edge = b.length ? b.end(b.length - 1) : 0;
        return { lag: window.PSM.state.live.lag, behindEdge: edge - v.currentTime, t: v.currentTime, live: document.body.dataset.live, paused: v.paused };
      });
      samples.push(s);
      await sleep(1000);
    }
    const to = Date.now();
    const sealedEarly = samples.some((s) => s.live !== 'following');
    const lags = samples.map((s) => s.lag);
    const edges = samples.map((s) => s.behindEdge);
    const inPage = await page.evaluate(() => ({ fetches: window.__benchFetches, edges: window.__benchEdges }));
    chainWatch.stop();
    const breakdown = lagBreakdown(folder, chainWatch.seen, inPage.fetches, inPage.edges, startedAt, from, to);
    return {
      sessionId: id, demoSeconds: opts.demoSeconds, openS, samples,
      allFollowing: !sealedEarly,
      lag: { p50: quantile(lags, 0.5), p95: quantile(lags, 0.95), max: maxOf(lags), min: quantile(lags, 0) },
      behindEdge: { p50: quantile(edges, 0.5), p95: quantile(edges, 0.95), max: maxOf(edges) },
      breakdown,
    };
  } finally {
    if (chainWatch) chainWatch.stop();
    await context.close();
    await srv.stop();
  }
}

/** The folder of recording `id` below a data folder. */
function findFolder(data, id) {
  const stack = [data];
  while (stack.length) {
    const d = stack.pop();
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      if (!ent.isDirectory()) continue;
      const p = path.join(d, ent.name);
      if (ent.name === id) return p;
      stack.push(p);
    }
  }
  throw new Error(`no folder for recording ${id} below ${data}`);
}

// ------------------------------------------------------------------ output
const fmtMs = (ms) => (ms == null ? '—' : ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
const fmtMB = (b) => (b == null ? '—' : `${(b / 1e6).toFixed(2)} MB`);
const fmtClock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`;
const fmtS = (s) => (s == null ? '—' : `${s.toFixed(2)} s`);

function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r, i) => {
    const line = `| ${r.map((x, c) => String(x).padEnd(widths[c])).join(' | ')} |`;
    return i === 0 ? `${line}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|` : line;
  }).join('\n');
}

function summarize(ttff, live) {
  const out = {};
  if (ttff) {
    const col = (k) => ttff.runs.map((r) => r[k]);
    const row = (name, k, fmt) => [name, fmt(quantile(col(k), 0.5)), fmt(maxOf(col(k)))];
    out.ttff = {
      runs: ttff.runs.length,
      measures: Object.fromEntries(['firstFrameMs', 'rvfcMs', 'decodedMs', 'readyMs', 'earlySeekedMs', 'earlySeekFrameMs', 'loadedMs', 'verifiedMs', 'seekedMs', 'seekFrameMs', 'bytesBeforeFirstFrame', 'requestsBeforeFirstFrame', 'bytesUntilVerified']
        .map((k) => [k, { p50: quantile(col(k), 0.5), max: maxOf(col(k)) }])),
    };
    const link = ttff.net.mbit ? `${ttff.net.mbit} Mbit/s, ${ttff.net.latencyMs} ms latency (Chromium network emulation)` : 'loopback, no throttling';
    console.log(`\nTime to first frame: ${(ttff.recording.durationS / 60).toFixed(1)}-minute recording (${ttff.recording.segments} segments, ${fmtMB(ttff.recording.bytes)}), ${ttff.runs.length} runs, ${ttff.runs[0]?.inList ? 'clicked in the UI list' : 'navigation from the UI page to /player/?id='}, ${link}`);
    console.log(table([
      ['measure', 'p50', 'max'],
      row('navigation → first frame (rVFC)', 'rvfcMs', fmtMs),
      row('navigation → readyState ≥ 2 and a decoded frame', 'decodedMs', fmtMs),
      row('navigation → player ready (data-ready)', 'readyMs', fmtMs),
      row(`seek to ${fmtClock(ttff.earlySeekS)} right after the first frame → seeked`, 'earlySeekedMs', fmtMs),
      row(`seek to ${fmtClock(ttff.earlySeekS)} right after the first frame → frame presented (rVFC)`, 'earlySeekFrameMs', fmtMs),
      row('navigation → every segment in the SourceBuffer', 'loadedMs', fmtMs),
      row('navigation → integrity badge settled', 'verifiedMs', fmtMs),
      row(`seek to ${fmtClock(ttff.seekS)} → seeked`, 'seekedMs', fmtMs),
      row(`seek to ${fmtClock(ttff.seekS)} → frame presented (rVFC)`, 'seekFrameMs', fmtMs),
      row('bytes fetched before the first frame', 'bytesBeforeFirstFrame', fmtMB),
      row('responses before the first frame', 'requestsBeforeFirstFrame', (x) => (x == null ? '—' : String(x))),
      row('bytes fetched until the badge settled', 'bytesUntilVerified', fmtMB),
    ]));
  }
  if (live) {
    out.live = { lag: live.lag, behindEdge: live.behindEdge, samples: live.samples.length, allFollowing: live.allFollowing, breakdown: live.breakdown };
    console.log(`\nLive view lag: psmgate serve --demo --demo-seconds ${live.demoSeconds}, player ready ${live.openS.toFixed(1)} s after it was opened (on the first segment), ${live.samples.length} samples 1 s apart${live.allFollowing ? '' : ' (NOT all while following the edge)'}`);
    console.log(table([
      ['measure', 'p50', 'p95', 'max'],
      ['PSM.state.live.lag (wall since start − playhead)', fmtS(live.lag.p50), fmtS(live.lag.p95), fmtS(live.lag.max)],
      ['playhead behind the buffered end', fmtS(live.behindEdge.p50), fmtS(live.behindEdge.p95), fmtS(live.behindEdge.max)],
    ]));
    const b = live.breakdown;
    const ms = (x) => (x == null ? '—' : `${Math.round(x)} ms`);
    const row = (name, st) => [name, ms(st.p50), ms(st.p95), ms(st.max)];
    console.log(`\nWhere it comes from: ${b.fragments} video fragments chained during the samples`);
    console.log(table([
      ['per fragment', 'p50', 'p95', 'max'],
      row('recorder: chained − session time its video ends at', b.recorderMs),
      row('read: received by the page − chained', b.readMs),
      row('append: in the SourceBuffer − received', b.appendMs),
      row('age of the buffered end (every 50 ms)', b.edgeAgeMs),
    ]));
  }
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(opts.psmgate)) throw new Error(`${opts.psmgate} does not exist (build it with cargo build --release -p psmgate --features svt-av1, or pass --psmgate)`);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS,
    env: { ...process.env, HOME: tempDir('psmgate-bench-home-') },
  });
  const chromiumVersion = browser.version();
  let ttff = null;
  let live = null;
  try {
    if (!opts.skipTtff) ttff = await benchTtff(opts, browser);
    if (!opts.skipLive) live = await benchLive(opts, browser);
  } finally {
    await browser.close();
  }
  const summary = summarize(ttff, live);
  const json = {
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30), load: os.loadavg(), chromium: chromiumVersion },
    options: opts, summary, ttff, live,
  };
  console.log(`\n${JSON.stringify({ machine: json.machine, summary }, null, 2)}`);
  if (opts.jsonOut) fs.writeFileSync(opts.jsonOut, `${JSON.stringify(json, null, 2)}\n`);
}

main().catch((e) => {
  console.error(`bench-ttff: ${e.message || e}`);
  process.exit(1);
});
