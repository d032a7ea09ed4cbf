// Served mode: /player/?id=<session-id> with fetch + MediaSource from the admin API.
//  - always: against lib/mock-api.mjs, which serves exactly the documented endpoints;
//  - with PSMGATE_BIN: against a real `psmgate serve` (command line from PSMGATE_SERVE_ARGS,
//    default "serve --data {data} --listen 127.0.0.1:{port} --no-tls"; bearer token from PSMGATE_TOKEN,
//    else the admin token the gateway generated in {data}/admin-token).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launch, openPlayer, waitVideo } from './lib/browser.mjs';
import { startMockApi } from './lib/mock-api.mjs';
import { chainRecords, getRecording, tempDir } from './lib/recording.mjs';
import { PLAYER_DIR } from './make-fixture.mjs';

let rec;
let browser;
before(async () => {
  rec = await getRecording({ label: 'served' });
  browser = await launch();
});
after(async () => { if (browser) await browser.close(); });

/** Checks shared by the mock and the real server. */
async function checkServedPlayer(page, recDir) {
  const manifest = JSON.parse(fs.readFileSync(path.join(recDir, 'manifest.json'), 'utf8'));
  const s = await page.evaluate(() => ({ mode: window.PSM.state.mode, videoMode: window.PSM.state.videoMode, error: window.PSM.state.error }));
  assert.deepEqual(s, { mode: 'served', videoMode: 'mse', error: null });
  const { records } = chainRecords(fs.readFileSync(path.join(recDir, 'chain.jsonl'), 'utf8'));
  assert.equal(await page.evaluate(() => document.body.dataset.integrity), 'ok');
  assert.equal(await page.textContent('#badge-text'), `Verified: ${records.length} records, signed by ${manifest.key_id}`);
  await page.click('#play');
  await waitVideo(page, '(v) => v.currentTime > 1', null);
  const v = await page.evaluate(() => {
    const v = document.getElementById('video');
    v.pause();
    return { w: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames };
  });
  assert.equal(v.w, manifest.periods[0].width);
  assert.ok(v.frames > 0);
  assert.ok((await page.textContent('#meta')).includes(manifest.user));
}

describe('served mode (documented API, mock server)', () => {
  let api;
  let unsealedId;
  before(async () => {
    // An unsealed copy: the seal and its checkpoint removed, the manifest back to its partial name.
    const dir = path.join(tempDir('psmgate-player-live-'), rec.sessionId);
    fs.cpSync(rec.recDir, dir, { recursive: true });
    fs.renameSync(path.join(dir, 'manifest.json'), path.join(dir, 'manifest.partial.json'));
    const lines = fs.readFileSync(path.join(dir, 'chain.jsonl'), 'utf8').split('\n').filter(Boolean);
    const kept = lines.slice(0, lines.findIndex((l) => l.includes('"file":"manifest.json"')));
    fs.writeFileSync(path.join(dir, 'chain.jsonl'), kept.map((l) => l + '\n').join(''));
    unsealedId = '00000000-0000-4000-8000-000000000001';
    api = await startMockApi({ playerDir: PLAYER_DIR, recordings: { [rec.sessionId]: rec.recDir, [unsealedId]: dir }, token: 's3cret-token' });
    api.unsealedCheckpoint = kept.map((l) => JSON.parse(l)).filter((l) => l.checkpoint === true).pop();
  });
  after(async () => { if (api) await api.close(); });

  test('plays and verifies a sealed recording with fetch + MediaSource', async () => {
    const page = await openPlayer(browser.ctx, `${api.url}/player/?id=${rec.sessionId}#token=s3cret-token`);
    await checkServedPlayer(page, rec.recDir);
    assert.equal(await page.evaluate(() => location.hash), '', 'the token is removed from the address bar');
    assert.ok(api.requests.includes(`GET /api/recordings/${rec.sessionId}/files/chain.jsonl`));
    assert.ok(api.requests.some((r) => r.startsWith(`GET /api/recordings/${rec.sessionId}/files/video/`)));
    assert.deepEqual(page.errors, []);
    await page.close();
  });

  test('an unsealed (live or interrupted) recording shows amber', async () => {
    const page = await openPlayer(browser.ctx, `${api.url}/player/?id=${unsealedId}#token=s3cret-token`);
    assert.equal(await page.evaluate(() => document.body.dataset.integrity), 'partial');
    assert.equal(await page.textContent('#badge-text'), `Recording in progress/interrupted — verified up to record ${api.unsealedCheckpoint.seq}`);
    await page.close();
  });

  test('a wrong token is reported, not a blank page', async () => {
    const page = await openPlayer(browser.ctx, `${api.url}/player/?id=${rec.sessionId}#token=wrong`);
    assert.equal(await page.evaluate(() => document.body.dataset.ready), 'error');
    assert.match(await page.textContent('#error'), /HTTP 401/);
    await page.close();
  });
});

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

describe('served mode (real psmgate serve)', () => {
  test('plays and verifies through psmgate serve', async (t) => {
    const bin = process.env.PSMGATE_BIN;
    if (!bin) { t.skip('PSMGATE_BIN is not set'); return; }
    const port = await freePort();
    const args = (process.env.PSMGATE_SERVE_ARGS || 'serve --data {data} --listen 127.0.0.1:{port} --no-tls')
      .split(/\s+/).filter(Boolean).map((a) => a.replace('{data}', rec.dataDir).replace('{port}', String(port)));
    const child = spawn(bin, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    try {
      const base = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 30000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`${bin} ${args.join(' ')} exited with ${child.exitCode}`);
        const ok = await fetch(`${base}/player/`).then((r) => r.ok, () => false);
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`${bin} serve did not answer on ${base}/player/ within 30 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const tokenFile = path.join(rec.dataDir, 'admin-token');
      const secret = process.env.PSMGATE_TOKEN || (fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, 'utf8').trim() : '');
      const token = secret ? `#token=${encodeURIComponent(secret)}` : '';
      const page = await openPlayer(browser.ctx, `${base}/player/?id=${rec.sessionId}${token}`);
      await checkServedPlayer(page, rec.recDir);
      await page.close();
    } finally {
      child.kill('SIGTERM');
    }
  });
});
