// Progressive loading of a sealed recording in served mode: the first frame needs the manifest,
// the chain, the first init segment and the first media segment; the other segments stream in the
// background, a seek far ahead fetches its segment first, and the integrity badge waits for every
// byte. The mock API holds back every media segment after the first until the test releases it.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { frameAt, launch } from './lib/browser.mjs';
import { startMockApi } from './lib/mock-api.mjs';
import { chainRecords, tempDir } from './lib/recording.mjs';
import { makeFixture, PLAYER_DIR } from './make-fixture.mjs';

/** A promise per file that the test resolves when the mock API may answer. */
class Gates {
  constructor(files) {
    this.gates = new Map(files.map((f) => {
      let open;
      const promise = new Promise((r) => { open = r; });
      return [f, { promise, open }];
    }));
  }
  wait(file) { return this.gates.get(file)?.promise; }
  open(file) { this.gates.get(file).open(); }
  openAll() { for (const g of this.gates.values()) g.open(); }
}

/** Runs before the player: the time (Date.now()) the badge settled, and the first presented frame. */
function instrument() {
  window.__t = {};
  document.addEventListener('DOMContentLoaded', () => {
    const v = document.getElementById('video');
    if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(() => { window.__t.frame = Date.now(); });
    new MutationObserver(() => {
      const s = document.body.dataset.integrity;
      if (s && !window.__t.integrity) window.__t.integrity = { status: s, at: Date.now() };
    }).observe(document.body, { attributes: true, attributeFilter: ['data-integrity'] });
  });
}

/** What the page shows about loading. */
const status = (page) => page.evaluate(() => {
  const v = document.getElementById('video');
  return {
    ready: document.body.dataset.ready, loaded: document.body.dataset.loaded, integrity: document.body.dataset.integrity,
    badge: document.getElementById('badge-text').textContent, badgeClass: document.getElementById('badge').className,
    segments: window.PSM.state.segments, changes: window.PSM.state.changes.length, idle: window.PSM.state.idle,
    error: window.PSM.state.error, videoMode: window.PSM.state.videoMode, width: v.videoWidth, readyState: v.readyState,
    frames: v.getVideoPlaybackQuality().totalVideoFrames,
  };
});

const waitPage = (page, fn, arg, timeout = 15000) => page.waitForFunction(fn, arg, { timeout });

let browser;
let fx;
let segments; // every media segment file, in order
before(async () => {
  browser = await launch();
  fx = await makeFixture(tempDir('psmgate-player-progressive-'), { periods: 2, fragsPerSegment: 1 });
  segments = fx.periods.flatMap((p) => p.segments.map((s) => s.file));
  assert.ok(segments.length >= 5, `the fixture has several segments (${segments.length})`);
});
after(async () => { if (browser) await browser.close(); });

/** Serve `recDir` with every segment but the first held back; open the player on it. */
async function openHeld(recDir) {
  const gates = new Gates(segments.slice(1));
  const api = await startMockApi({ playerDir: PLAYER_DIR, recordings: { [fx.sessionId]: recDir }, delay: (id, file) => gates.wait(file) });
  const page = await browser.ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.addInitScript(instrument);
  await page.goto(`${api.url}/player/?id=${fx.sessionId}`, { waitUntil: 'load' });
  const served = (file) => api.log.some((r) => r.path.endsWith(`/files/${file}`) && r.sentAt !== null);
  const requested = (file) => api.log.some((r) => r.path.endsWith(`/files/${file}`));
  return { api, page, gates, errors, served, requested };
}

describe('progressive loading (served, later segments held back)', () => {
  test('first frame before the later segments, a seek far ahead loads its segment first, green only after every byte', async () => {
    const { api, page, gates, errors, served, requested } = await openHeld(fx.recDir);
    try {
      // The first frame, with only the first segment served.
      await waitPage(page, () => document.body.dataset.ready === '1' || document.body.dataset.ready === 'error');
      await waitPage(page, () => { const v = document.getElementById('video'); return v.readyState >= 2 && v.getVideoPlaybackQuality().totalVideoFrames > 0; });
      let s = await status(page);
      assert.equal(s.ready, '1');
      assert.equal(s.error, null);
      assert.equal(s.videoMode, 'mse');
      assert.equal(s.width, fx.periods[0].width);
      assert.ok(requested('chain.jsonl') && requested(fx.periods[0].init) && requested(segments[0]), 'chain, init and first segment were fetched');
      assert.deepEqual(segments.slice(1).filter(served), [], 'no later segment was served before the first frame');
      assert.deepEqual(s.segments, { total: segments.length, loaded: 1 });
      assert.notEqual(s.loaded, '1');
      assert.equal(s.integrity, undefined, 'the badge has not settled');
      assert.match(s.badgeClass, /badge-pending/);
      assert.match(s.badge, /^Checking integrity/);
      const changesAtStart = s.changes;
      // Segment 2 (2..9 s) holds the idle stretch; while it is not loaded, nothing there is idle.
      const p1 = fx.periods[0].segments;
      const unknownFrom = p1[1].start_ms / 1000;
      assert.deepEqual(s.idle.filter(([a, b]) => b > unknownFrom + 0.01 && a < fx.durationMs / 1000 - 1), [], `no idle stretch over video not loaded yet: ${JSON.stringify(s.idle)}`);

      // Nothing else arrives while the segments are held: the badge stays unsettled.
      await page.waitForTimeout(700);
      s = await status(page);
      assert.equal(s.integrity, undefined);
      assert.match(s.badge, /^Checking integrity/);

      // Seek into the last segment (period 2): the player asks for it; only it is released.
      const last = segments.at(-1);
      const p2 = fx.periods[1];
      const target = p2.segments.at(-1).start_ms / 1000 + 1;
      assert.ok(!requested(last), 'the last segment was not asked for before the seek');
      const shot = frameAt(page, target);
      const deadline = Date.now() + 10000;
      while (!requested(last) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.ok(requested(last), 'the seek asked for the segment that holds its time');
      gates.open(last);
      const early = await shot;
      assert.ok(Math.abs(early.t - target) < 0.05, `landed at ${early.t}, wanted ${target}`);
      assert.ok(early.sum > 0, 'the frame is not black');
      s = await status(page);
      assert.equal(s.width, p2.width, 'period 2 (its own init segment) plays');
      assert.deepEqual(segments.slice(1, -1).filter(served), [], 'the segments between were still held back');
      assert.equal(s.integrity, undefined, 'the badge has not settled');
      // the timeline takes the segment's screen changes (at most REFRESH_MS later)
      await waitPage(page, (n) => window.PSM.state.changes.length > n && window.PSM.state.segments.loaded === 2, changesAtStart, 5000);

      // Release the rest: everything loads, and only then the badge turns green.
      const releasedAt = Date.now();
      gates.openAll();
      await waitPage(page, () => document.body.dataset.loaded === '1' && !!document.body.dataset.integrity);
      s = await status(page);
      const { records } = chainRecords(fs.readFileSync(path.join(fx.recDir, 'chain.jsonl'), 'utf8'));
      assert.equal(s.integrity, 'ok', s.badge);
      assert.equal(s.badge, `Verified: ${records.length} records, signed by ${fx.keyId}`);
      assert.deepEqual(s.segments, { total: segments.length, loaded: segments.length });
      const t = await page.evaluate(() => window.__t);
      assert.ok(t.integrity.at >= releasedAt, `the badge settled (${t.integrity.at}) after the held segments were released (${releasedAt})`);
      assert.ok(t.frame < releasedAt, 'the first frame was presented while the segments were held back');
      // The idle stretch of segment 2 is found now that it is loaded.
      assert.ok(s.idle.some(([a, b]) => a >= unknownFrom - 0.01 && b <= p1[2].start_ms / 1000 + 0.01 && b - a > 3), `idle stretch in segment 2: ${JSON.stringify(s.idle)}`);
      // The same frame as before, now that everything is buffered; and the start plays.
      const again = await frameAt(page, target);
      assert.deepEqual(again.grid, early.grid, 'the frame seen before the rest was loaded is the same');
      const start = await frameAt(page, 1);
      assert.ok(Math.abs(start.t - 1) < 0.05 && start.sum > 0);
      assert.equal(await page.evaluate(() => document.getElementById('video').videoWidth), fx.periods[0].width);
      // Every file was fetched once.
      const videoGets = api.log.filter((r) => r.path.includes('/files/video/')).map((r) => r.path);
      assert.equal(videoGets.length, new Set(videoGets).size, `each video file fetched once: ${videoGets.join(' ')}`);
      assert.deepEqual(errors, []);
    } finally {
      gates.openAll();
      await page.close();
      await api.close();
    }
  });

  test('a later segment that does not match the chain turns the badge red after the first frame', async () => {
    // A copy whose last segment has one byte flipped (its last byte: sample data).
    const dir = path.join(tempDir('psmgate-player-progressive-bad-'), fx.sessionId);
    fs.cpSync(fx.recDir, dir, { recursive: true });
    const bad = segments.at(-1);
    const file = path.join(dir, bad);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 1] ^= 0x01;
    fs.writeFileSync(file, bytes);
    const { records } = chainRecords(fs.readFileSync(path.join(dir, 'chain.jsonl'), 'utf8'));
    const r = records.filter((x) => x.file === bad).at(-1);
    const { api, page, gates } = await openHeld(dir);
    try {
      await waitPage(page, () => document.body.dataset.ready === '1' && document.getElementById('video').readyState >= 2);
      let s = await status(page);
      assert.equal(s.integrity, undefined, 'not settled before the segments arrive');
      assert.match(s.badge, /^Checking integrity/);
      gates.openAll();
      await waitPage(page, () => !!document.body.dataset.integrity);
      s = await status(page);
      assert.equal(s.integrity, 'fail');
      assert.equal(s.badge, `${bad} bytes ${r.offset}..${r.offset + r.len} do not match chain record ${r.seq}`);
    } finally {
      gates.openAll();
      await page.close();
      await api.close();
    }
  });
});
