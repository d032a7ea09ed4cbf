// Live mode: the player follows a recording in progress.
//  - always: a sealed two-period fixture replayed chain line by chain line by lib/mock-api.mjs
//    (a chain read held until new lines arrive, a new period while live, seeking back, "Go live",
//    the seal);
//  - with PSMGATE_BIN: a real `psmgate serve --demo` recording the synthetic desktop in real time;
//    the lag behind the live edge is measured and printed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launch, openPlayer, waitVideo } from './lib/browser.mjs';
import { startMockApi } from './lib/mock-api.mjs';
import { chainRecords, tempDir } from './lib/recording.mjs';
import { makeFixture, PLAYER_DIR } from './make-fixture.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { if (browser) await browser.close(); });

/** What the page shows about live mode and the video. */
const liveState = (page) => page.evaluate(() => {
  const v = document.getElementById('video');
  const b = v.buffered;
  return {
    live: document.body.dataset.live,
    indicator: !document.getElementById('live').hidden,
    goLive: !document.getElementById('go-live').hidden,
    integrity: document.body.dataset.integrity,
    badge: document.getElementById('badge-text').textContent,
    edge: b.length ? b.end(b.length - 1) : 0,
    t: v.currentTime,
    paused: v.paused,
    width: v.videoWidth,
    lag: window.PSM.state.live.lag,
    rows: document.querySelectorAll('#events li:not(.empty)').length,
    periods: window.PSM.state.manifest.periods.length,
  };
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const waitPage = (page, fn, arg, timeout = 15000) => page.waitForFunction(fn, arg, { timeout });

describe('live recording (replayed by the mock API)', () => {
  let fx;
  let api;
  let id;
  before(async () => {
    fx = await makeFixture(tempDir('psmgate-player-live-fixture-'), { periods: 2 });
    id = fx.sessionId;
    api = await startMockApi({ playerDir: PLAYER_DIR, replays: { [id]: fx.recDir } });
  });
  after(async () => { if (api) await api.close(); });

  test('a recording with no chain record yet reads as in progress, not as broken', async () => {
    // Nothing chained yet: the moment right after a session started.
    assert.equal(api.replays[id].shown, 0);
    const page = await openPlayer(browser.ctx, `${api.url}/player/?id=${id}`);
    try {
      await waitPage(page, () => !!document.body.dataset.integrity);
      const s = await liveState(page);
      assert.equal(s.integrity, 'partial', s.badge);
      assert.equal(s.live, 'following');
    } finally {
      await page.close();
    }
  });

  test('follows new fragments, a new period and the seal', async () => {
    const replay = api.replays[id];
    const p2init = fx.periods[1].init;
    const firstSeg = fx.periods[0].segments[0].file;
    // Period 1's init and first fragment: a recording just started.
    replay.revealThrough((r) => r.file === firstSeg);
    const page = await openPlayer(browser.ctx, `${api.url}/player/?id=${id}`);
    let s = await liveState(page);
    assert.equal(s.live, 'following');
    assert.ok(s.indicator, 'LIVE is shown');
    assert.equal(s.integrity, 'partial', s.badge);
    const edge0 = s.edge;
    assert.ok(edge0 > 0, 'the first fragment is buffered');

    // The player's next read of the chain's tail waits at the server for new lines (`wait`); the
    // rest of period 1 arrives and that held read brings it: the buffered end grows.
    await until(async () => replay.waiting > 0, 'a chain read held for new lines', 15000);
    replay.revealThrough((r) => r.file === fx.periods[0].segments.at(-1).file && r.offset > 0);
    await waitPage(page, (e) => { const b = document.getElementById('video').buffered; return b.length && b.end(b.length - 1) > e + 3; }, edge0);
    await waitVideo(page, '(v) => v.videoWidth === 640 && !v.paused', null);
    const held = api.log.filter((e) => e.path.endsWith('/files/chain.jsonl') && e.released);
    assert.equal(held.length, 1, 'one held read answered by the new lines');
    assert.match(held[0].query, /^\?wait=\d+$/);
    assert.equal(held[0].status, 206);

    // Seeking back stops following; "Go live" returns to the edge.
    await page.evaluate(() => { window.PSM.seek(0.5); });
    s = await liveState(page);
    assert.equal(s.live, 'behind');
    assert.ok(s.goLive && s.indicator);
    await sleep(1500);
    s = await liveState(page);
    assert.ok(s.edge - s.t > 3, `still behind after seeking back (t ${s.t}, edge ${s.edge})`);
    await page.click('#go-live');
    s = await liveState(page);
    assert.equal(s.live, 'following');
    assert.ok(!s.goLive);
    assert.ok(s.edge - s.t < 1.5, `at the edge after Go live (t ${s.t}, edge ${s.edge})`);

    // A screen-size change: period 2's init segment, then its fragments.
    replay.revealThrough((r) => r.file === p2init);
    replay.revealThrough((r) => r.file === fx.periods[1].segments.at(-1).file && r.offset > 0);
    await waitPage(page, () => window.PSM.state.manifest.periods.length === 2);
    await waitVideo(page, '(v, w) => v.videoWidth === w', fx.periods[1].width, 15000);
    await waitPage(page, () => /800×450 · period 2\/2/.test(document.getElementById('period-info').textContent), null, 5000);

    // The transcript arrives (the fixture chains it after the video), then the seal.
    const rows0 = (await liveState(page)).rows;
    replay.revealThrough((r) => r.file.startsWith('events/'));
    await waitPage(page, (n) => document.querySelectorAll('#events li:not(.empty)').length > n, rows0);
    replay.reveal(replay.lines.length);
    await waitPage(page, () => document.body.dataset.live === 'sealed' && document.body.dataset.integrity === 'ok');
    s = await liveState(page);
    assert.ok(!s.indicator && !s.goLive, 'LIVE is gone after the seal');
    const { records } = chainRecords(fs.readFileSync(path.join(fx.recDir, 'chain.jsonl'), 'utf8'));
    assert.equal(s.badge, `Verified: ${records.length} records, signed by ${fx.keyId}`);
    assert.equal(s.rows, await page.evaluate(() => document.querySelectorAll('#events li:not(.empty)').length));
    assert.equal(await page.evaluate(() => window.PSM.state.events.length), fx.events.length);
    assert.ok(api.requests.some((r) => r.endsWith('/files/chain.jsonl')));
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  test('a recording that is only opened after its seal is not live', async () => {
    const page = await openPlayer(browser.ctx, `${api.url}/player/?id=${id}`);
    const s = await liveState(page);
    assert.equal(s.live, 'no');
    assert.equal(s.integrity, 'ok', s.badge);
    assert.ok(!s.indicator && !s.goLive);
    await page.close();
  });
});

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

/** Poll `fn` until it returns a truthy value. */
async function until(fn, what, timeout = 30000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

function quantile(xs, q) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

describe('live recording (real psmgate serve --demo)', () => {
  test('follows the demo session at its live edge until it is sealed', async (t) => {
    const bin = process.env.PSMGATE_BIN;
    if (!bin) { t.skip('PSMGATE_BIN is not set'); return; }
    const data = path.join(tempDir('psmgate-player-live-'), 'data');
    const port = await freePort();
    const seconds = 20;
    const child = spawn(bin, ['serve', '--data', data, '--listen', `127.0.0.1:${port}`, '--no-tls', '--demo', '--demo-seconds', String(seconds)], { stdio: ['ignore', 'ignore', 'inherit'] });
    let page;
    try {
      const base = `http://127.0.0.1:${port}`;
      await until(async () => { if (child.exitCode !== null) throw new Error(`psmgate exited with ${child.exitCode}`); return (await fetch(`${base}/player/`)).ok; }, 'psmgate serve');
      const token = fs.readFileSync(path.join(data, 'admin-token'), 'utf8').trim();
      const auth = { headers: { Authorization: `Bearer ${token}` } };
      // The demo session: its index row appears when recording starts; wait for its first segment.
      const id = await until(async () => (await (await fetch(`${base}/api/recordings`, auth)).json())[0]?.id, 'the demo session');
      const manifest = await until(async () => {
        const m = await (await fetch(`${base}/api/recordings/${id}/manifest`, auth)).json();
        return m.periods?.[0]?.segments?.length ? m : null;
      }, 'the first segment');
      assert.equal(manifest.state, 'recording');
      const started = Date.parse(manifest.started_at);

      page = await openPlayer(browser.ctx, `${base}/player/?id=${id}#token=${encodeURIComponent(token)}`);
      let s = await liveState(page);
      assert.equal(s.live, 'following');
      assert.ok(s.indicator, 'LIVE is shown');
      assert.equal(s.integrity, 'partial', s.badge);

      // Sample for 8 s: the buffered end advances and the playhead stays at the edge.
      await sleep(1500); // settle: the first catch-up
      const samples = [];
      for (let i = 0; i < 16; i++) {
        s = await liveState(page);
        samples.push({ ...s, wall: (Date.now() - started) / 1000 });
        await sleep(500);
      }
      const first = samples[0];
      const last = samples.at(-1);
      const behindEdge = samples.map((x) => x.edge - x.t);
      const behindWall = samples.map((x) => x.wall - x.t);
      console.log(`live lag over ${samples.length} samples: behind the buffered edge median ${quantile(behindEdge, 0.5).toFixed(2)} s, max ${Math.max(...behindEdge).toFixed(2)} s; behind wall-clock session time median ${quantile(behindWall, 0.5).toFixed(2)} s, max ${Math.max(...behindWall).toFixed(2)} s`);
      assert.ok(samples.every((x) => x.live === 'following' && !x.paused), 'following and playing throughout');
      assert.ok(last.edge - first.edge > 4, `buffered end advanced ${first.edge.toFixed(2)} -> ${last.edge.toFixed(2)} s in ${(last.wall - first.wall).toFixed(1)} s`);
      assert.ok(last.t - first.t > 4, `playhead advanced ${first.t.toFixed(2)} -> ${last.t.toFixed(2)} s`);
      assert.ok(Math.max(...behindEdge) <= 2.5, `playhead within 2.5 s of the buffered edge: ${behindEdge.map((x) => x.toFixed(2)).join(' ')}`);
      assert.ok(Math.max(...behindWall) <= 3, `playhead within 3 s of wall-clock session time: ${behindWall.map((x) => x.toFixed(2)).join(' ')}`);
      assert.ok(quantile(behindWall, 0.5) <= 2, `median lag behind wall-clock session time ${quantile(behindWall, 0.5).toFixed(2)} s`);

      // Seeking back pauses following; "Go live" returns.
      await page.evaluate(() => window.PSM.seek(document.getElementById('video').currentTime - 5));
      await sleep(1200);
      s = await liveState(page);
      assert.equal(s.live, 'behind');
      assert.ok(s.goLive);
      assert.ok(s.edge - s.t > 3.5, `stays behind (t ${s.t.toFixed(2)}, edge ${s.edge.toFixed(2)})`);
      await page.click('#go-live');
      await waitPage(page, () => { const v = document.getElementById('video'); const b = v.buffered; return document.body.dataset.live === 'following' && b.end(b.length - 1) - v.currentTime < 2.5; }, null, 5000);

      // The session ends: sealed, LIVE gone, verified.
      await waitPage(page, () => document.body.dataset.live === 'sealed' && document.body.dataset.integrity === 'ok', null, (seconds + 20) * 1000);
      s = await liveState(page);
      assert.ok(!s.indicator && !s.goLive);
      const sealed = await (await fetch(`${base}/api/recordings/${id}/manifest`, auth)).json();
      assert.equal(sealed.state, 'completed');
      const chain = await (await fetch(`${base}/api/recordings/${id}/files/chain.jsonl`, auth)).text();
      assert.equal(s.badge, `Verified: ${chainRecords(chain).records.length} records, signed by ${sealed.key_id}`);
      assert.ok(s.edge >= sealed.duration_ms / 1000 - 1.5, `the whole session is buffered (${s.edge.toFixed(2)} of ${sealed.duration_ms / 1000} s)`);
      assert.equal(await page.evaluate(() => window.PSM.state.duration), sealed.duration_ms / 1000);
      // The gateway answers a range past the end of a file with 416 and its length.
      const r = await fetch(`${base}/api/recordings/${id}/files/chain.jsonl`, { headers: { ...auth.headers, Range: `bytes=${Buffer.byteLength(chain)}-` } });
      assert.equal(r.status, 416);
      assert.equal(r.headers.get('content-range'), `bytes */${Buffer.byteLength(chain)}`);
      assert.deepEqual(page.errors, []);
    } finally {
      if (page) await page.close();
      child.kill('SIGTERM');
    }
  });
});
