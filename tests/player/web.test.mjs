// Web console sessions (protocol "web"): the DOM replay view (rrweb's Replayer fed with the
// transcript's dom batches), HTTP / page / policy events in the transcript and on the timeline,
// the transcript filters, and live following.
//
// The recording is a hand-written web session (make-fixture.mjs makeWebFixture: rrweb events of
// two pages, HTTP exchanges, a denied request, a recorder-heartbeat termination) with a valid
// chain and seal, laid out as a gateway data folder. With PSMGATE_BIN its export comes from
// `psmgate export` (so the player and rrweb's bundle are the ones embedded in the binary) and it
// is also served by a real `psmgate serve`; without it the export is written by the fixture.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { launch, openPlayer } from './lib/browser.mjs';
import { startMockApi } from './lib/mock-api.mjs';
import { chainRecords, tempDir } from './lib/recording.mjs';
import { makeFixture, makeWebFixture, PLAYER_DIR, VENDOR_FILES } from './make-fixture.mjs';

// What Chromium logs when the replay's sandbox refuses the recorded page's handlers and refresh.
const BLOCKED = /^(Blocked script execution in .* because the document's frame is sandboxed and the 'allow-scripts' permission is not set|Refused to execute the redirect specified via '<meta http-equiv='refresh' .*The document is sandboxed, and the 'allow-scripts' keyword is not set)/;

let fx;
let browser;
let exportDir;
before(async () => {
  fx = await makeWebFixture(tempDir('psmgate-player-web-'));
  exportDir = fx.exportDir;
  const bin = process.env.PSMGATE_BIN;
  if (bin) {
    exportDir = path.join(tempDir('psmgate-player-web-export-'), 'export');
    execFileSync(bin, ['export', fx.sessionId, '--data', fx.dataDir, '--out', exportDir], { timeout: 120000, stdio: ['ignore', 'ignore', 'inherit'] });
    console.log(`# web recording: fixture generator, exported by ${bin}, session ${fx.sessionId}`);
  } else {
    console.log(`# web recording: fixture generator (export written by make-fixture.mjs), session ${fx.sessionId}`);
  }
  browser = await launch();
});
after(async () => { if (browser) await browser.close(); });

/** Text of the page the DOM replay shows now ('' when none). */
const domText = (page) => page.evaluate(() => {
  const f = window.PSM.domView && window.PSM.domView.iframe();
  const b = f && f.contentDocument && f.contentDocument.body;
  return b ? b.textContent : '';
});
/** Seek (the view follows at once when paused) and return the page text. */
async function textAt(page, t) {
  await page.evaluate((t) => { window.PSM.player.pause(); window.PSM.seek(t); }, t);
  return domText(page);
}
const waitPage = (page, fn, arg, timeout = 15000) => page.waitForFunction(fn, arg, { timeout });
const waitText = (page, s, timeout = 15000) => waitPage(page, (s) => {
  const f = window.PSM.domView && window.PSM.domView.iframe();
  const b = f && f.contentDocument && f.contentDocument.body;
  return !!b && b.textContent.includes(s);
}, s, timeout);
/** Page errors other than Chromium's notes that the sandbox blocked the recorded page's handlers or refresh. */
const realErrors = (page) => page.errors.filter((e) => !BLOCKED.test(e));

/** Rows of the transcript list that are shown: [{label, text, cls}]. */
const shownRows = (page) => page.$$eval('#events li:not([hidden]):not(.empty)', (lis) => lis.map((li) => ({
  label: li.querySelector('.k').textContent, text: li.querySelector('.x').textContent, cls: li.className,
})));

describe('web session export opened from disk', () => {
  let page;
  before(async () => {
    page = await openPlayer(browser.ctx, pathToFileURL(path.join(exportDir, 'index.html')).href);
    await waitPage(page, () => document.body.dataset.dom === 'ready' || document.body.dataset.dom === 'unavailable');
  });
  after(async () => { if (page) await page.close(); });

  test('opens in the DOM replay view (no video), verified', async () => {
    const s = await page.evaluate(() => ({
      mode: window.PSM.state.mode, videoMode: window.PSM.state.videoMode, view: window.PSM.state.view, dom: window.PSM.state.dom.status,
      error: window.PSM.state.error, integrity: document.body.dataset.integrity, badge: document.getElementById('badge-text').textContent,
      videoTab: document.getElementById('tab-video').disabled, domShown: !document.getElementById('dom-view').hidden,
      videoShown: !document.getElementById('video-wrap').hidden, filters: !document.getElementById('filters').hidden,
    }));
    const { records } = chainRecords(fs.readFileSync(path.join(exportDir, 'chain.jsonl'), 'utf8'));
    assert.deepEqual(s, {
      mode: 'export', videoMode: 'none', view: 'dom', dom: 'ready', error: null, integrity: 'ok',
      badge: `Verified: ${records.length} records, signed by ${fx.keyId}`, videoTab: true, domShown: true, videoShown: false, filters: true,
    });
    assert.ok(fs.existsSync(path.join(exportDir, 'vendor', 'rrweb.min.js')), 'the export carries rrweb\'s replayer');
    assert.deepEqual(realErrors(page), []);
  });

  test('the DOM replay shows the recorded page, its address and title', async () => {
    const text = await textAt(page, 1.5);
    assert.ok(text.includes('Fleet dashboard') && text.includes('Welcome, alice'), text);
    assert.equal(await page.textContent('#dom-url'), fx.facts.dash);
    assert.equal(await page.textContent('#dom-title'), 'Console — Dashboard');
    // what was typed, as the replayer put it into the field
    await textAt(page, fx.facts.typedAt + 0.3);
    const value = await page.evaluate(() => window.PSM.domView.iframe().contentDocument.getElementById('search').value);
    assert.equal(value, 'payroll');
    const box = await page.locator('#dom-stage iframe').boundingBox();
    assert.ok(box && box.width > 200 && box.height > 100, `the page is scaled into view: ${JSON.stringify(box)}`);
  });

  test('seeking before a mutation hides its text, after it shows it', async () => {
    const at = fx.facts.mutationAt;
    let text = await textAt(page, at - 1.5);
    assert.ok(!text.includes('Deployment 42 finished') && text.includes('All systems nominal'), `before: ${text}`);
    text = await textAt(page, at + 0.5);
    assert.ok(text.includes('Deployment 42 finished') && text.includes('Degraded: disk 91% full'), `after: ${text}`);
    text = await textAt(page, at - 0.4);
    assert.ok(!text.includes('Deployment 42 finished') && !text.includes('Degraded'), `back before: ${text}`);
    text = await textAt(page, at + 0.1);
    assert.ok(text.includes('Deployment 42 finished'), `just after: ${text}`);
  });

  test('a new page id switches the replay to that page, and back', async () => {
    let text = await textAt(page, fx.facts.page2At + 0.3);
    assert.ok(text.includes('API keys') && !text.includes('Fleet dashboard'), text);
    assert.equal(await page.evaluate(() => window.PSM.state.dom.page), 'p-2');
    assert.equal(await page.textContent('#dom-url'), fx.facts.settings);
    text = await textAt(page, fx.facts.lastMutationAt + 0.2);
    assert.ok(text.includes('Token rotation due in 2 days'), text);
    text = await textAt(page, fx.facts.mutationAt + 0.5);
    assert.ok(text.includes('Deployment 42 finished') && !text.includes('API keys'), text);
    assert.equal(await page.evaluate(() => window.PSM.state.dom.page), 'p-1');
  });

  test('the recorded page\'s scripts, handlers and refresh do not run', async () => {
    await textAt(page, 1.5);
    await page.waitForTimeout(500);
    assert.ok((await domText(page)).includes('Fleet dashboard'), 'the replay was not navigated away');
    const s = await page.evaluate(() => {
      const f = window.PSM.domView.iframe();
      return { sandbox: f.getAttribute('sandbox'), script: window.__psmgateScriptRan, handler: window.__psmgateHandlerRan, scripts: f.contentDocument.querySelectorAll('script').length };
    });
    assert.deepEqual(s, { sandbox: 'allow-same-origin', script: undefined, handler: undefined, scripts: 0 });
    assert.ok(page.errors.some((e) => /^Refused to execute the redirect/.test(e)), 'Chromium refused the refresh');
  });

  test('HTTP events are listed with status, size and outcome', async () => {
    const rows = (await shownRows(page)).filter((r) => r.label === 'http');
    const http = fx.events.filter((e) => e.type === 'http');
    assert.equal(rows.length, http.length);
    for (const e of http) {
      const r = rows.find((x) => x.text.startsWith(`${e.method} ${e.url} → ${e.status}`));
      assert.ok(r, `a row for ${e.method} ${e.url} → ${e.status}`);
      if (e.action === 'deny') {
        assert.match(r.text, new RegExp(`\\[denied · rule ${e.rule}\\]`));
        assert.match(r.cls, /http-deny/);
      } else if (e.action === 'tunnel') {
        assert.match(r.text, /tunnelled/);
      } else {
        assert.ok(r.text.includes(`${e.total_ms} ms`), r.text);
      }
      if (e.error) assert.ok(r.text.endsWith(`— ${e.error}`), r.text);
      if (e.status === 401) assert.match(r.cls, /http-warn/);
      if (e.status === 502 || e.error) assert.match(r.cls, /http-bad/);
    }
    assert.ok(rows.some((r) => r.text === 'GET https://console.example.test/dashboard → 200 (5.1 kB, 38 ms)'));
  });

  test('filters: All / Pages / HTTP / Policy', async () => {
    const ev = fx.events;
    const visible = ev.filter((e) => e.type !== 'dom' && !(e.type === 'websocket' && e.direction !== 'open'));
    const typed = 2; // "payroll" and the masked password
    const expect = {
      all: visible.length + typed,
      page: ev.filter((e) => e.type === 'url' || e.type === 'title').length,
      http: ev.filter((e) => e.type === 'http' || (e.type === 'websocket' && e.direction === 'open')).length,
      policy: ev.filter((e) => e.type === 'policy' || (e.type === 'http' && e.action === 'deny')).length,
    };
    for (const f of ['page', 'http', 'policy', 'all']) {
      await page.click(`#filters button[data-filter="${f}"]`);
      const rows = await shownRows(page);
      assert.equal(rows.length, expect[f], `${f}: ${rows.map((r) => r.text).join(' | ')}`);
      assert.equal(await page.getAttribute(`#filters button[data-filter="${f}"]`, 'aria-checked'), 'true');
      if (f === 'page') assert.ok(rows.every((r) => r.label === 'page' || r.label === 'title'));
      if (f === 'http') assert.ok(rows.every((r) => r.label === 'http' || r.label === 'websocket'));
      if (f === 'policy') {
        assert.ok(rows.some((r) => r.label === 'http' && r.text.includes('admin.example.test/secrets')));
        assert.ok(rows.some((r) => r.label === 'policy' && r.text.includes('rule recorder-heartbeat') && r.text.includes('terminated')));
      }
      if (f !== 'all') assert.equal(await page.textContent(`#filters button[data-filter="${f}"] .n`), String(expect[f]));
    }
    // a filter and a search together
    await page.click('#filters button[data-filter="http"]');
    await page.fill('#transcript-search', 'payroll');
    assert.deepEqual((await shownRows(page)).map((r) => r.label), ['http']);
    await page.fill('#transcript-search', '');
    await page.click('#filters button[data-filter="all"]');
  });

  test('the timeline marks page changes, titles and policy events', async () => {
    const markers = await page.evaluate(() => window.PSM.state.markers.map((m) => [m.kind, Math.round(m.t * 1000)]));
    const want = [];
    for (const e of fx.events) {
      if (e.type === 'url') want.push(['page', e.t]);
      if (e.type === 'title') want.push(['title', e.t]);
      if (e.type === 'policy' || (e.type === 'http' && e.action === 'deny')) want.push(['policy', e.t]);
    }
    assert.deepEqual(markers.sort(), want.sort());
    assert.ok(markers.some(([k, t]) => k === 'policy' && t === 15500), 'the recorder-heartbeat termination is a policy marker');
  });

  test('search covers titles, URLs and typed text', async () => {
    const count = async (q) => { await page.fill('#transcript-search', q); return page.textContent('#search-count'); };
    assert.equal(await count('payroll'), '2 matches'); // typed, and the search request's URL
    assert.equal(await count('secrets'), '2 matches'); // the denied request and its policy event
    assert.equal(await count('Console — Settings'), '1 match');
    await page.press('#transcript-search', 'Enter');
    const title = fx.events.find((e) => e.type === 'title' && e.title === 'Console — Settings');
    assert.ok(Math.abs(await page.evaluate(() => window.PSM.player.currentTime) - title.t / 1000) < 0.05);
    assert.ok((await domText(page)).includes('API keys'));
    assert.equal(await count('no-such-text-anywhere'), '0 matches');
    await page.fill('#transcript-search', '');
  });

  test('play, pause and speed drive the replay with the player\'s clock', async () => {
    const at = fx.facts.mutationAt;
    await textAt(page, at - 2);
    assert.ok(!(await domText(page)).includes('Deployment 42'));
    await page.click('.speed button[data-rate="4"]');
    const t0 = Date.now();
    await page.click('#play');
    await waitText(page, 'Deployment 42 finished', 5000);
    const wall = (Date.now() - t0) / 1000;
    const s = await page.evaluate(() => ({ t: window.PSM.player.currentTime, playing: window.PSM.state.dom.playing, speed: window.PSM.state.dom.speed }));
    assert.equal(s.playing, true);
    assert.equal(s.speed, 4);
    assert.ok(wall < 1.6, `2 s of session at 4× took ${wall.toFixed(2)} s`);
    assert.ok(s.t >= at - 0.05, `the text appeared at ${s.t.toFixed(2)} s, the mutation is at ${at} s`);
    await page.click('#play');
    const a = await page.evaluate(() => window.PSM.player.currentTime);
    await page.waitForTimeout(400);
    const b = await page.evaluate(() => ({ t: window.PSM.player.currentTime, playing: window.PSM.state.dom.playing, label: document.getElementById('play').getAttribute('aria-label') }));
    assert.deepEqual(b, { t: a, playing: false, label: 'Play' });
    await page.click('.speed button[data-rate="1"]');
  });

  test('skip idle jumps over a stretch without page changes or events', async () => {
    const { idle, duration } = await page.evaluate(() => window.PSM.state);
    const gap = idle.find(([a, b]) => b - a > 3.5 && b < duration);
    assert.ok(gap, `an idle stretch: ${JSON.stringify(idle)}`);
    assert.ok(Math.abs(gap[0] - fx.facts.idle[0]) < 0.3 && Math.abs(gap[1] - fx.facts.idle[1]) < 0.3, `idle ${gap} (expected about ${fx.facts.idle})`);
    await page.check('#skip-idle');
    await page.evaluate((a) => { window.PSM.seek(a + 0.1); window.PSM.player.play(); }, gap[0]);
    await waitPage(page, (b) => window.PSM.player.currentTime >= b - 0.6, gap[1], 3000);
    await page.evaluate(() => window.PSM.player.pause());
    await page.uncheck('#skip-idle');
  });

  test('the clock stops at the end of the recording', async () => {
    await page.evaluate((d) => { window.PSM.seek(d - 0.5); window.PSM.player.play(); }, fx.durationMs / 1000);
    await waitPage(page, () => window.PSM.player.ended, null, 5000);
    const s = await page.evaluate(() => ({ t: window.PSM.player.currentTime, label: document.getElementById('play').getAttribute('aria-label'), playing: window.PSM.state.dom.playing }));
    assert.equal(s.t, fx.durationMs / 1000);
    assert.equal(s.label, 'Play');
    assert.equal(s.playing, false);
    assert.deepEqual(realErrors(page), []);
  });

  test('screenshot of the DOM replay view', async () => {
    await textAt(page, fx.facts.mutationAt + 0.5);
    await page.waitForTimeout(200);
    const out = path.join(tempDir('psmgate-player-web-shot-'), 'player-web.png');
    await page.screenshot({ path: out });
    console.log(`# screenshot: ${out}`);
    assert.ok(fs.statSync(out).size > 10000);
  });
});

describe('web session export without rrweb\'s replayer', () => {
  test('says DOM replay is unavailable; the transcript and the clock still work', async () => {
    const dir = path.join(tempDir('psmgate-player-web-norrweb-'), 'export');
    fs.cpSync(exportDir, dir, { recursive: true });
    fs.rmSync(path.join(dir, 'vendor'), { recursive: true, force: true });
    const page = await openPlayer(browser.ctx, pathToFileURL(path.join(dir, 'index.html')).href);
    try {
      await waitPage(page, () => document.body.dataset.dom === 'unavailable');
      assert.match(await page.textContent('#dom-status'), /DOM replay is unavailable/);
      assert.equal(await page.evaluate(() => document.body.dataset.integrity), 'ok');
      await page.click('#filters button[data-filter="http"]');
      assert.ok((await shownRows(page)).length > 0);
      await page.evaluate(() => { window.PSM.seek(3); });
      assert.equal(await page.evaluate(() => window.PSM.player.currentTime), 3);
      assert.deepEqual(page.errors.filter((e) => !/Failed to load resource/.test(e)), []);
    } finally {
      await page.close();
    }
  });
});

describe('web session with video (fixture generator)', () => {
  test('the video is shown first; the DOM replay tab follows the video\'s clock', async () => {
    const vfx = await makeFixture(tempDir('psmgate-player-web-video-'), { web: true });
    const page = await openPlayer(browser.ctx, pathToFileURL(path.join(vfx.exportDir, 'index.html')).href);
    try {
      await waitPage(page, () => document.body.dataset.dom === 'ready');
      const views = () => page.evaluate(() => ({
        view: window.PSM.state.view, videoShown: !document.getElementById('video-wrap').hidden, domShown: !document.getElementById('dom-view').hidden,
      }));
      const s = await page.evaluate(() => ({ videoMode: window.PSM.state.videoMode, videoTab: document.getElementById('tab-video').disabled, integrity: document.body.dataset.integrity, player: window.PSM.player === document.getElementById('video') }));
      assert.deepEqual(s, { videoMode: 'mse', videoTab: false, integrity: 'ok', player: true });
      assert.deepEqual(await views(), { view: 'video', videoShown: true, domShown: false });
      await page.click('#tab-dom');
      assert.deepEqual(await views(), { view: 'dom', videoShown: false, domShown: true });
      const at = vfx.facts.mutationAt;
      assert.ok(!(await textAt(page, at - 1)).includes('Deployment 42'));
      assert.ok((await textAt(page, at + 0.5)).includes('Deployment 42 finished'));
      // playing the video plays the page
      await textAt(page, at - 1.2);
      await page.evaluate(() => document.getElementById('video').play());
      await waitText(page, 'Deployment 42 finished', 5000);
      const p = await page.evaluate(() => ({ t: document.getElementById('video').currentTime, playing: window.PSM.state.dom.playing }));
      assert.ok(p.playing, 'the replay plays with the video');
      assert.ok(p.t >= at - 0.05, `the text appeared at ${p.t.toFixed(2)} s of video, the mutation is at ${at} s`);
      await page.evaluate(() => document.getElementById('video').pause());
      await waitPage(page, () => !window.PSM.state.dom.playing, null, 2000);
      await page.click('#tab-video');
      assert.deepEqual(await views(), { view: 'video', videoShown: true, domShown: false });
      assert.deepEqual(realErrors(page), []);
    } finally {
      await page.close();
    }
  });
});

describe('web session served', () => {
  test('through the documented API (mock server): rrweb comes from the player folder', async () => {
    const api = await startMockApi({ playerDir: PLAYER_DIR, vendor: VENDOR_FILES, recordings: { [fx.sessionId]: fx.recDir } });
    try {
      const page = await openPlayer(browser.ctx, `${api.url}/player/?id=${fx.sessionId}`);
      await waitPage(page, () => document.body.dataset.dom === 'ready');
      assert.equal(await page.evaluate(() => document.body.dataset.integrity), 'ok');
      assert.ok((await textAt(page, fx.facts.mutationAt + 0.5)).includes('Deployment 42 finished'));
      assert.ok(api.requests.includes('GET /player/vendor/rrweb.min.js'));
      assert.deepEqual(realErrors(page), []);
      await page.close();
    } finally {
      await api.close();
    }
  });

  test('by a real psmgate serve (the player and rrweb embedded in the binary)', async (t) => {
    const bin = process.env.PSMGATE_BIN;
    if (!bin) { t.skip('PSMGATE_BIN is not set'); return; }
    const port = await freePort();
    const child = spawn(bin, ['serve', '--data', fx.dataDir, '--listen', `127.0.0.1:${port}`, '--no-tls'], { stdio: ['ignore', 'ignore', 'inherit'] });
    try {
      const base = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 30000;
      while (!(await fetch(`${base}/player/`).then((r) => r.ok, () => false))) {
        if (child.exitCode !== null) throw new Error(`psmgate serve exited with ${child.exitCode}`);
        if (Date.now() > deadline) throw new Error('psmgate serve did not answer within 30 s');
        await new Promise((r) => setTimeout(r, 200));
      }
      const vendor = await fetch(`${base}/player/vendor/rrweb.min.js`);
      assert.equal(vendor.status, 200);
      assert.match(vendor.headers.get('content-type'), /javascript/);
      const token = fs.readFileSync(path.join(fx.dataDir, 'admin-token'), 'utf8').trim();
      const page = await openPlayer(browser.ctx, `${base}/player/?id=${fx.sessionId}#token=${encodeURIComponent(token)}`);
      await waitPage(page, () => document.body.dataset.dom === 'ready');
      assert.equal(await page.evaluate(() => document.body.dataset.integrity), 'ok');
      assert.ok((await textAt(page, 1.5)).includes('Fleet dashboard'));
      assert.ok((await textAt(page, fx.facts.page2At + 0.3)).includes('API keys'));
      assert.deepEqual(realErrors(page), []);
      await page.close();
    } finally {
      child.kill('SIGTERM');
    }
  });
});

describe('web session followed live (replayed by the mock API)', () => {
  test('new dom events reach the shown replayer without rebuilding it; a new page gets its own', async () => {
    const api = await startMockApi({ playerDir: PLAYER_DIR, vendor: VENDOR_FILES, replays: { [fx.sessionId]: fx.recDir } });
    let page;
    try {
      const replay = api.replays[fx.sessionId];
      const evRecords = chainRecords(fs.readFileSync(path.join(fx.recDir, 'chain.jsonl'), 'utf8')).records.filter((r) => r.file.startsWith('events/'));
      assert.ok(evRecords.length >= 4, 'the transcript is chained in several appends');
      replay.revealThrough((r) => r.seq === evRecords[0].seq);
      page = await openPlayer(browser.ctx, `${api.url}/player/?id=${fx.sessionId}`);
      await waitPage(page, () => document.body.dataset.dom === 'ready' && document.body.dataset.live === 'following');
      await waitText(page, 'Fleet dashboard');
      assert.ok(!(await domText(page)).includes('Deployment 42'));
      assert.equal(await page.evaluate(() => window.PSM.state.dom.built), 1);

      // The batch with the mutation arrives: it goes into the same replayer.
      replay.revealThrough((r) => r.seq === evRecords[2].seq);
      await waitText(page, 'Deployment 42 finished');
      let s = await page.evaluate(() => ({ built: window.PSM.state.dom.built, page: window.PSM.state.dom.page, live: document.body.dataset.live }));
      assert.deepEqual(s, { built: 1, page: 'p-1', live: 'following' });

      // The rest and the seal: the second page is replayed by a replayer of its own.
      replay.reveal(replay.lines.length);
      await waitPage(page, () => document.body.dataset.live === 'sealed' && document.body.dataset.integrity === 'ok');
      await waitText(page, 'API keys', 20000);
      s = await page.evaluate(() => ({ built: window.PSM.state.dom.built, page: window.PSM.state.dom.page }));
      assert.deepEqual(s, { built: 2, page: 'p-2' });
      const rows = await page.$$eval('#events li:not(.empty)', (lis) => lis.length);
      const derived = 2;
      assert.equal(rows, fx.events.length + derived);
      assert.deepEqual(realErrors(page), []);
    } finally {
      if (page) await page.close();
      await api.close();
    }
  });
});

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}
