// Export mode: the export folder opened from disk (file://), no server.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { frameAt, launch, openPlayer, waitVideo } from './lib/browser.mjs';
import {
  chainRecords, copyExport, exportEvents, getRecording, readDataJs, tempDir, uniqueTypedWord, writeDataJs,
} from './lib/recording.mjs';
import { makeFixture } from './make-fixture.mjs';

const url = (dir) => pathToFileURL(path.join(dir, 'index.html')).href;
const state = (page) => page.evaluate(() => ({ ...window.PSM.state, events: undefined, changes: window.PSM.state.changes.length }));
const badge = (page) => page.evaluate(() => ({ status: document.body.dataset.integrity, text: document.getElementById('badge-text').textContent }));

let rec;
let browser;
let scratch;

before(async () => {
  rec = await getRecording({ label: 'export' });
  browser = await launch();
  scratch = tempDir('psmgate-player-tamper-');
});
after(async () => { if (browser) await browser.close(); });

describe('export opened from disk', () => {
  let page;
  let manifest;
  before(async () => {
    manifest = JSON.parse(fs.readFileSync(path.join(rec.exportDir, 'manifest.json'), 'utf8'));
    page = await openPlayer(browser.ctx, url(rec.exportDir));
  });
  after(async () => { if (page) await page.close(); });

  test('loads in export mode through MediaSource, without errors', async () => {
    const s = await state(page);
    assert.equal(s.mode, 'export');
    assert.equal(s.videoMode, 'mse');
    assert.equal(s.error, null);
    assert.deepEqual(page.errors, []);
    assert.ok(s.changes > 0, 'screen-change times were parsed from moof/trun');
  });

  test('badge is green and counts every chain record', async () => {
    const { records } = chainRecords(fs.readFileSync(path.join(rec.exportDir, 'chain.jsonl'), 'utf8'));
    const b = await badge(page);
    assert.equal(b.status, 'ok', b.text);
    assert.equal(b.text, `Verified: ${records.length} records, signed by ${manifest.key_id}`);
  });

  test('header shows the session metadata', async () => {
    const meta = await page.textContent('#meta');
    for (const v of [manifest.user, manifest.target, manifest.protocol, manifest.codec, manifest.encoder, manifest.session_id]) {
      assert.ok(meta.includes(v), `metadata shows ${v}`);
    }
    const p = manifest.periods[0];
    assert.ok(meta.includes(`${p.width}×${p.height}`));
  });

  test('video plays: time advances, size is right, frames are decoded', async () => {
    await page.evaluate(() => window.PSM.seek(0));
    await page.click('#play');
    await waitVideo(page, '(v) => v.currentTime > 1', null);
    const v = await page.evaluate(() => {
      const v = document.getElementById('video');
      return { w: v.videoWidth, h: v.videoHeight, frames: v.getVideoPlaybackQuality().totalVideoFrames, err: v.error && v.error.message };
    });
    await page.evaluate(() => document.getElementById('video').pause());
    assert.equal(v.err, null);
    assert.equal(v.w, manifest.periods[0].width);
    assert.equal(v.h, manifest.periods[0].height);
    assert.ok(v.frames > 0, `decoded frames: ${v.frames}`);
    assert.equal(await page.getAttribute('#play', 'aria-label'), 'Play');
  });

  test('seek lands at the requested time and shows a different frame', async () => {
    // Times well inside a frame, never at a frame's edge: the middle of the first frame that
    // lasts ≥ 0.2 s after the recording's first frame (which shows the screen before the
    // protocol's first update: black), and the middle of the last such frame.
    const { changes, duration } = await page.evaluate(() => window.PSM.state);
    const frames = changes.map((c, i) => [c, i + 1 < changes.length ? changes[i + 1] : duration])
      .filter(([a, b], i) => i > 0 && b - a >= 0.2);
    assert.ok(frames.length >= 2, `the recording has frames to seek to: ${JSON.stringify(changes)}`);
    const mid = ([a, b]) => Math.round(((a + b) / 2) * 1000) / 1000;
    const t1 = mid(frames[0]);
    const t2 = mid(frames[frames.length - 1]);
    assert.ok(t2 - t1 > 2, 'the recording has screen changes far apart');
    const a = await frameAt(page, t1);
    const b = await frameAt(page, t2);
    assert.ok(Math.abs(a.t - t1) < 0.05, `landed at ${a.t}, wanted ${t1}`);
    assert.ok(Math.abs(b.t - t2) < 0.05, `landed at ${b.t}, wanted ${t2}`);
    assert.ok(a.sum > 0, `the frame at ${t1.toFixed(2)} s is not black: ${JSON.stringify(a.info)}`);
    assert.ok(b.sum > 0, `the frame at ${t2.toFixed(2)} s is not black: ${JSON.stringify(b.info)}`);
    const diff = a.grid.filter((x, i) => x !== b.grid[i]).length;
    assert.ok(diff > 4, `frames at ${t1.toFixed(2)} s and ${t2.toFixed(2)} s differ (${diff}/64 cells)`);
    const again = await frameAt(page, t1);
    assert.deepEqual(again.grid, a.grid, 'seeking back shows the first frame again');
  });

  test('clicking the timeline and arrow keys seek', async () => {
    const box = await page.locator('#timeline canvas').boundingBox();
    const dur = (await state(page)).duration;
    await page.mouse.click(box.x + box.width * 0.25, box.y + box.height / 2);
    let t = await page.evaluate(() => document.getElementById('video').currentTime);
    assert.ok(Math.abs(t - dur * 0.25) < 0.3, `click at 25 % -> ${t} (duration ${dur})`);
    await page.focus('#timeline');
    await page.keyboard.press('ArrowRight');
    const t2 = await page.evaluate(() => document.getElementById('video').currentTime);
    assert.ok(Math.abs(t2 - Math.min(t + 5, dur)) < 0.3, `ArrowRight: ${t} -> ${t2}`);
    assert.equal(await page.getAttribute('#timeline', 'aria-valuenow'), String(Math.round(t2)));
  });

  test('16x speed plays sixteen times faster', async () => {
    await page.evaluate(() => window.PSM.seek(0));
    await page.click('.speed button[data-rate="16"]');
    assert.equal(await page.evaluate(() => document.getElementById('video').playbackRate), 16);
    assert.equal(await page.getAttribute('.speed button[data-rate="16"]', 'aria-checked'), 'true');
    const t0 = Date.now();
    await page.evaluate(() => document.getElementById('video').play());
    await waitVideo(page, '(v) => v.currentTime > 4 || v.ended', null);
    const wall = (Date.now() - t0) / 1000;
    const t = await page.evaluate(() => { const v = document.getElementById('video'); v.pause(); return v.currentTime; });
    assert.ok(t / wall > 4, `media ${t.toFixed(2)} s in ${wall.toFixed(2)} s of wall time`);
    await page.click('.speed button[data-rate="1"]');
    assert.equal(await page.evaluate(() => document.getElementById('video').playbackRate), 1);
  });

  test('skip idle jumps over a stretch without screen change or event', async (t) => {
    const { idle, duration } = await page.evaluate(() => window.PSM.state);
    const gap = idle.find(([a, b]) => a > 0.5 && b - a > 3.5 && b < duration - 0.5);
    if (!gap) { t.skip('this recording has no idle stretch'); return; }
    await page.check('#skip-idle');
    await page.evaluate((a) => window.PSM.seek(a + 0.1), gap[0]);
    await page.evaluate(() => document.getElementById('video').play());
    await waitVideo(page, '(v, b) => v.currentTime >= b - 0.6', gap[1], 3000);
    const wall = await page.evaluate(() => { const v = document.getElementById('video'); v.pause(); return v.currentTime; });
    assert.ok(wall >= gap[1] - 0.6, `jumped to ${wall}`);
    await page.uncheck('#skip-idle');
  });

  test('searching a typed word filters, highlights and jumps to its moment', async () => {
    const hit = uniqueTypedWord(exportEvents(rec.exportDir));
    assert.ok(hit, 'the recording has a typed word');
    await page.evaluate(() => { window.PSM.seek(0); document.getElementById('video').pause(); });
    await page.fill('#transcript-search', hit.word);
    const visible = await page.$$eval('#events li:not([hidden]):not(.empty)', (lis) => lis.length);
    assert.equal(visible, 1);
    assert.equal((await page.textContent('#events li:not([hidden]) mark')).toLowerCase(), hit.word.toLowerCase());
    await page.press('#transcript-search', 'Enter');
    await waitVideo(page, '(v, t) => Math.abs(v.currentTime - t) <= 0.5', hit.t / 1000, 5000);
    const t = await page.evaluate(() => document.getElementById('video').currentTime);
    assert.ok(Math.abs(t - hit.t / 1000) <= 0.5, `jumped to ${t}, event at ${hit.t / 1000}`);
    await page.fill('#transcript-search', 'no-such-word-in-this-recording');
    assert.match(await page.textContent('#search-count'), /^0 matches$/);
    await page.fill('#transcript-search', '');
  });

  test('masked entries are shown as masked', async (t) => {
    const masked = exportEvents(rec.exportDir).filter((e) => e.masked === true);
    if (!masked.length) { t.skip('no masked events in this recording'); return; }
    const texts = await page.$$eval('#events .x.masked', (xs) => xs.map((x) => x.textContent));
    assert.ok(texts.length >= 1);
    assert.ok(texts.every((x) => x === '••• masked'));
  });

  test('screenshot of the player', async () => {
    await page.evaluate(() => window.PSM.seek(2.5));
    await page.waitForTimeout(300);
    const out = path.join(scratch, 'player-export.png');
    await page.screenshot({ path: out });
    console.log(`# screenshot: ${out}`);
    assert.ok(fs.statSync(out).size > 10000);
  });
});

// ---------------------------------------------------------------- tampering

/** Open a tampered copy and return its badge. */
async function tamperedBadge(name, mutate) {
  const dir = copyExport(rec.exportDir, path.join(scratch, name));
  const data = readDataJs(dir);
  mutate(dir, data);
  writeDataJs(dir, data);
  const page = await openPlayer(browser.ctx, url(dir));
  const b = await badge(page);
  b.problems = await page.$$eval('#integrity-problems li', (lis) => lis.map((l) => l.textContent));
  await page.close();
  return b;
}

describe('tampered exports', () => {
  test('one flipped media byte (data.js and recording.mp4) is reported with file, range and record', async () => {
    let expected;
    const b = await tamperedBadge('flip-media', (dir, data) => {
      const m = data.manifest;
      const seg = m.periods[0].segments[0].file;
      const [off, len] = data.files[seg];
      const pos = Math.floor(len / 2);
      const media = Buffer.from(data.media, 'base64');
      media[off + pos] ^= 0x01;
      data.media = media.toString('base64');
      const mp4 = fs.readFileSync(path.join(dir, 'recording.mp4'));
      mp4[off + pos] ^= 0x01;
      fs.writeFileSync(path.join(dir, 'recording.mp4'), mp4);
      const r = chainRecords(data.chain).records.find((x) => x.file === seg && x.offset <= pos && pos < x.offset + x.len);
      expected = `${seg} bytes ${r.offset}..${r.offset + r.len} do not match chain record ${r.seq}`;
    });
    assert.equal(b.status, 'fail');
    assert.equal(b.text, expected);
    assert.equal(b.problems[0], expected);
  });

  test('an edited chain record is reported', async () => {
    let expected;
    const b = await tamperedBadge('edit-chain', (dir, data) => {
      const lines = data.chain.split('\n');
      const i = lines.findIndex((l) => l.includes('"seq":2,'));
      const r = JSON.parse(lines[i]);
      r.sha256 = (r.sha256[0] === '0' ? '1' : '0') + r.sha256.slice(1);
      lines[i] = JSON.stringify(r);
      data.chain = lines.join('\n');
      fs.writeFileSync(path.join(dir, 'chain.jsonl'), data.chain);
      expected = `chain record 2 (${r.file}) head does not recompute: the chain was edited`;
    });
    assert.equal(b.status, 'fail');
    assert.equal(b.text, expected);
  });

  test('an edited manifest is reported against the seal record', async () => {
    let expected;
    const b = await tamperedBadge('edit-manifest', (dir, data) => {
      data.manifest_text = data.manifest_text.replace(/("user"\s*:\s*)"[^"]*"/, '$1"mallory"');
      data.manifest.user = 'mallory';
      const seal = chainRecords(data.chain).records.find((r) => r.file === 'manifest.json');
      expected = `manifest.json bytes 0..${seal.len} do not match chain record ${seal.seq}`;
    });
    assert.equal(b.status, 'fail');
    assert.equal(b.text, expected);
  });

  test('a manifest object that differs from manifest_text is reported', async () => {
    const b = await tamperedBadge('edit-manifest-object', (dir, data) => { data.manifest.user = 'mallory'; });
    assert.equal(b.status, 'fail');
    assert.equal(b.text, 'the manifest shown differs from the sealed manifest.json');
  });

  test('a signing key other than the trusted key is reported', async () => {
    const b = await tamperedBadge('other-key', (dir, data) => { data.trusted_key = Buffer.alloc(32, 7).toString('base64'); });
    assert.equal(b.status, 'fail');
    assert.match(b.text, /^signing key [0-9a-f]{16} is not the trusted gateway key [0-9a-f]{16}$/);
  });

  test('a bad checkpoint signature is reported', async () => {
    let expected;
    const b = await tamperedBadge('bad-sig', (dir, data) => {
      const lines = data.chain.split('\n');
      const i = lines.findIndex((l) => l.includes('"checkpoint":true'));
      const cp = JSON.parse(lines[i]);
      const sig = Buffer.from(cp.sig, 'base64');
      sig[5] ^= 0x40;
      cp.sig = sig.toString('base64');
      lines[i] = JSON.stringify(cp);
      data.chain = lines.join('\n');
      expected = `checkpoint signature for record ${cp.seq} does not verify with key ${data.manifest.key_id}`;
    });
    assert.equal(b.status, 'fail');
    assert.equal(b.text, expected);
  });

  test('a chain cut before the seal shows an unsealed (amber) recording', async () => {
    let expected;
    const b = await tamperedBadge('unsealed', (dir, data) => {
      const lines = data.chain.split('\n').filter(Boolean);
      const sealIdx = lines.findIndex((l) => l.includes('"file":"manifest.json"'));
      const kept = lines.slice(0, sealIdx);
      data.chain = kept.map((l) => l + '\n').join('');
      const cps = kept.map((l) => JSON.parse(l)).filter((l) => l.checkpoint === true);
      expected = `Recording in progress/interrupted — verified up to record ${cps.length ? cps[cps.length - 1].seq : 0}`;
    });
    assert.equal(b.status, 'partial');
    assert.equal(b.text, expected);
  });
});

// ---------------------------------------------------------------- several periods (fixture generator)

describe('recording with a screen-size change (two periods)', () => {
  test('plays both periods, resizes the video and verifies', async () => {
    const fx = await makeFixture(tempDir('psmgate-player-periods-'), { periods: 2 });
    const page = await openPlayer(browser.ctx, url(fx.exportDir));
    const b = await badge(page);
    assert.equal(b.status, 'ok', b.text);
    assert.equal(await page.evaluate(() => document.getElementById('video').videoWidth), 640);
    const p2 = fx.periods[1];
    await page.evaluate((t) => window.PSM.seek(t), p2.start_ms / 1000 + 0.3);
    await page.evaluate(() => document.getElementById('video').play());
    await waitVideo(page, '(v, w) => v.videoWidth === w', p2.width, 8000);
    const a = await frameAt(page, p2.start_ms / 1000 + 1);
    assert.ok(Math.abs(a.t - (p2.start_ms / 1000 + 1)) < 0.05);
    assert.ok(a.sum > 0);
    assert.match(await page.textContent('#period-info'), /800×450 · period 2\/2/);
    assert.deepEqual(page.errors, []);
    await page.close();
  });
});
