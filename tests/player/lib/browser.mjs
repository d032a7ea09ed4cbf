// Headless Debian Chromium through playwright-core (no browser download).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--autoplay-policy=no-user-gesture-required',
];

/** Launch a browser context; call `close()` when done. */
export async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'psmgate-player-chromium-'));
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'psmgate-player-home-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1400, height: 900 },
    env: { ...process.env, HOME: home },
  });
  return {
    ctx,
    async close() {
      await ctx.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
      fs.rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * Open the player and wait until it is ready, every segment is loaded (data-loaded) and the
 * integrity check has finished.
 */
export async function openPlayer(ctx, url) {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.text()} (${m.location().url})`); });
  await page.goto(url, { waitUntil: 'load' });
  // ready: "1" when it plays, "error" when the recording could not be loaded (see #error);
  // loaded: "1" once the video is loaded to the end (a sealed recording's loads in the background)
  await page.waitForFunction(() => document.body.dataset.ready === 'error'
    || (document.body.dataset.ready === '1' && document.body.dataset.loaded === '1' && document.body.dataset.integrity), null, { timeout: 30000 });
  page.errors = errors;
  return page;
}

/** Wait for a condition on the video element (polling in the page). */
export async function waitVideo(page, fnSource, arg, timeout = 15000) {
  return page.waitForFunction(new Function('arg', `const v = document.getElementById('video'); return (${fnSource})(v, arg);`), arg, { timeout });
}

/**
 * Seek the paused video to `t` (through the player) and return a small fingerprint of the frame
 * drawn to a canvas: {t, sum, hash} (sum of all RGB values, and a coarse 8x8 luma grid).
 */
export async function frameAt(page, t) {
  return page.evaluate(async (t) => {
    const v = document.getElementById('video');
    v.pause();
    const seeked = new Promise((r) => v.addEventListener('seeked', r, { once: true }));
    window.PSM.seek(t);
    await seeked;
    // On a loaded machine the decoder may present the sought frame some time
    // after 'seeked': wait for a presented frame, and give a frame that still
    // reads as black a few more chances before reporting it.
    const presented = () => new Promise((r) => {
      if (v.requestVideoFrameCallback) v.requestVideoFrameCallback(() => r());
      setTimeout(r, 1000);
    });
    if (v.readyState < 2) await presented();
    await new Promise((r) => setTimeout(r, 150));
    const c = document.createElement('canvas');
    c.width = 64; c.height = 36;
    const g = c.getContext('2d');
    let px;
    let sum = 0;
    for (let tries = 0; tries < 20; tries++) {
      g.drawImage(v, 0, 0, c.width, c.height);
      px = g.getImageData(0, 0, c.width, c.height).data;
      sum = 0;
      for (let i = 0; i < px.length; i += 4) sum += px[i] + px[i + 1] + px[i + 2];
      if (sum > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const grid = [];
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const i = ((Math.floor(((y + 0.5) * c.height) / 8) * c.width) + Math.floor(((x + 0.5) * c.width) / 8)) * 4;
        grid.push(Math.round((px[i] * 0.3 + px[i + 1] * 0.59 + px[i + 2] * 0.11) / 16));
      }
    }
    const buffered = [];
    for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
    const q = v.getVideoPlaybackQuality();
    return {
      t: v.currentTime, sum, grid,
      // what the element reported, for a failing assertion's message
      info: { readyState: v.readyState, buffered, decoded: q.totalVideoFrames, dropped: q.droppedVideoFrames, error: v.error && v.error.message },
    };
  }, t);
}
