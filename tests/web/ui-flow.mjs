#!/usr/bin/env node
// Drives the gateway's web UI in headless Debian Chromium (through playwright-core) through the
// just-in-time access flow: a requester asks for access to a target, an approver (in a second
// browser context, so with its own cookies) approves, the requester reads the one-time credential,
// the approver watches the session live in the player, locks and resumes it, and terminates it
// from the UI.
//
//   node ui-flow.mjs '<json>'
//
// Input:
//   {"base": "http://127.0.0.1:PORT",            the admin listener (https: certificate errors ignored)
//    "requester": {"user": "alice", "password": "…"},
//    "approver": {"user": "bob", "password": "…"},
//    "target": "lab-vnc", "duration": "15m", "reason": "…",   what is requested
//    "terminate_reason": "…",                      typed into the terminate prompt
//    "timeout": 15000}                             per-step timeout in ms (optional)
//
// Output: one JSON line per step on stdout, in this order; the script waits for a line on stdin
// where noted (the caller connects the session, or checks something, in between):
//   {"step":"requested","request":ID,"status":"pending","row":"…","credential_shown":false,"credential_sent":false}
//   {"step":"approved","request":ID,"approve_status":200,"row":"approved by bob","approve_buttons":0,
//    "credential_shown":false,"show_credential_buttons":0,"credential_sent":false}   (the approver's view)
//   {"step":"credential","request":ID,"token":"…","expires":"…","how":"…"}
//                                                  then waits for "connected" on stdin
//   {"step":"listed","session":SID,"user":"alice","target":"lab-vnc","protocol":"vnc","after_ms":N}
//   {"step":"watching","session":SID,"url":"…","live":"following","first":{…},"last":{…}}
//                                                  (samples: t, frames, width, height, edge, luma,
//                                                  integrity, badge, …)
//                                                  then waits for "lock" on stdin
//   {"step":"locked","lock_status":200,"prompt":"…","locked_text":"…","resume_status":200,"still_marked":false}
//                                                  (Lock, then Resume, from the live view)
//                                                  then waits for "terminate" on stdin
//   {"step":"terminated","status":200,"body":{…},"prompt":"…","click_ms":E,"response_ms":E,"seen_ms":E}
//                                                  (epoch milliseconds; response_ms is the browser's
//                                                  own time of the response's end)
//   {"step":"after","row_gone_ms":N,"flash":"…","player_live":"sealed","player_integrity":"…",
//    "approver_saw_token":false,"approver_saw_credential":false}
//   {"step":"done","page_errors":[…],"player_errors":[…]}
// On failure: {"step":"error","message":"…"} and exit status 1; bad input: exit status 2.
// The stdin line "abort" while it waits stops the script with status 1; so does the end of stdin
// at any time (the caller is gone: the browser is closed at once).

import fs from 'node:fs';
import readline from 'node:readline';
import { InputError, emit, launchChromium, main, readJsonArg, sleep } from './flow-common.mjs';

/** The reason typed into the lock prompt. */
const LOCK_REASON = 'hold on, checking the change';


function readInput() {
  const input = readJsonArg('ui-flow.mjs');
  for (const who of ['requester', 'approver']) {
    const u = input[who];
    if (!u || typeof u.user !== 'string' || typeof u.password !== 'string' || !u.user || !u.password) {
      throw new InputError(`"${who}" must be {"user": "…", "password": "…"}`);
    }
  }
  for (const k of ['target', 'duration', 'reason', 'terminate_reason']) {
    if (typeof input[k] !== 'string' || !input[k]) throw new InputError(`"${k}" must be a non-empty string`);
  }
  return input;
}


/** Lines from stdin, one at a time, in order; `onEnd` runs when stdin ends before `close()`. */
function stdinLines(onEnd) {
  const queue = [];
  const waiting = [];
  let closed = false;
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const w = waiting.shift();
    if (w) w.resolve(line.trim()); else queue.push(line.trim());
  });
  let closing = false;
  rl.on('close', () => {
    closed = true;
    for (const w of waiting.splice(0)) w.reject(new Error('standard input closed'));
    if (!closing) onEnd();
  });
  return {
    /** Waits for the line `expected`. */
    async expect(expected) {
      const line = queue.length ? queue.shift() : await new Promise((resolve, reject) => {
        if (closed) reject(new Error('standard input closed'));
        else waiting.push({ resolve, reject });
      });
      if (line !== expected) throw new Error(`expected "${expected}" on stdin, got "${line}"`);
    },
    close() {
      closing = true;
      rl.close();
    },
  };
}

/**
 * Records the bodies of a context's API responses, and its pages' errors (the player's apart).
 */
function watchContext(ctx, label, errors, playerErrors) {
  const bodies = [];
  ctx.on('response', async (r) => {
    if (!new URL(r.url()).pathname.startsWith('/api/')) return;
    try {
      bodies.push({ url: r.url(), status: r.status(), text: await r.text() });
    } catch (e) { /* a body that is gone (navigation) was not read by the page either */ }
  });
  ctx.on('page', (page) => {
    const sink = () => (new URL(page.url()).pathname.startsWith('/player/') ? playerErrors : errors);
    page.on('pageerror', (e) => sink().push(`${label}: ${e.message}`));
    page.on('console', (m) => {
      // Chromium also logs every refused request as a console error; the API's answers are
      // checked through the responses themselves.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) sink().push(`${label}: ${m.text()}`);
    });
  });
  return bodies;
}

async function signIn(page, base, who, timeout) {
  await page.goto(`${base}/ui/`, { waitUntil: 'load' });
  await page.waitForSelector('#view-login:not([hidden])', { timeout });
  await page.fill('#login-user', who.user);
  await page.fill('#login-password', who.password);
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction((u) => !document.getElementById('nav').hidden
    && document.getElementById('who').textContent.startsWith(`${u} (`), who.user, { timeout })
    .catch(async () => {
      throw new Error(`${who.user} could not sign in: ${await page.textContent('#flash')}`);
    });
}

/** Text of a request row's status cell. */
const rowStatus = (page, id) => page.textContent(`tr[data-request="${id}"] td[class^="status-"]`);

/** What the player shows of the live video. */
const playerSample = (page) => page.evaluate(() => {
  const v = document.getElementById('video');
  const b = v.buffered;
  let luma = 0;
  if (v.videoWidth) {
    const c = document.createElement('canvas');
    c.width = 64; c.height = 48;
    const g = c.getContext('2d');
    g.drawImage(v, 0, 0, c.width, c.height);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < px.length; i += 4) luma += px[i] * 0.3 + px[i + 1] * 0.59 + px[i + 2] * 0.11;
    luma /= px.length / 4;
  }
  return {
    live: document.body.dataset.live,
    ready: document.body.dataset.ready,
    integrity: document.body.dataset.integrity || null,
    t: v.currentTime,
    frames: v.getVideoPlaybackQuality().totalVideoFrames,
    width: v.videoWidth,
    height: v.videoHeight,
    edge: b.length ? b.end(b.length - 1) : 0,
    paused: v.paused,
    luma: Math.round(luma * 10) / 10,
    error: window.PSM && window.PSM.state ? window.PSM.state.error : null,
    polls: window.PSM && window.PSM.state ? window.PSM.state.live.polls : null,
    badge: document.getElementById('badge-text').textContent,
    details: document.getElementById('integrity-panel').textContent.replace(/\s+/g, ' ').trim().slice(0, 2000),
    status: document.getElementById('video-status').textContent,
  };
});

async function run(input) {
  const timeout = input.timeout || 15000;
  const { base, requester, approver, target } = input;
  const { browser, home } = await launchChromium('psmgate-ui-flow-home-', ['--autoplay-policy=no-user-gesture-required']);
  const stdin = stdinLines(() => {
    process.stderr.write('standard input ended: stopping\n');
    browser.close().catch(() => {}).finally(() => {
      fs.rmSync(home, { recursive: true, force: true });
      process.exit(1);
    });
  });
  const pageErrors = [];
  const playerErrors = [];
  try {
    const ignoreHTTPSErrors = base.startsWith('https:');
    const aliceCtx = await browser.newContext({ ignoreHTTPSErrors, viewport: { width: 1280, height: 800 } });
    const bobCtx = await browser.newContext({ ignoreHTTPSErrors, viewport: { width: 1280, height: 800 } });
    const aliceBodies = watchContext(aliceCtx, requester.user, pageErrors, playerErrors);
    const bobBodies = watchContext(bobCtx, approver.user, pageErrors, playerErrors);
    const credentialIn = (bodies) => bodies.some((b) => b.text.includes('"credential"'));

    // 1. The requester signs in and asks for access.
    const alice = await aliceCtx.newPage();
    await signIn(alice, base, requester, timeout);
    await alice.waitForSelector('#request-form:not([hidden])', { timeout });
    await alice.selectOption('#request-target', target);
    await alice.selectOption('#request-duration', input.duration);
    await alice.fill('#request-reason', input.reason);
    const [created] = await Promise.all([
      alice.waitForResponse((r) => new URL(r.url()).pathname === '/api/access-requests' && r.request().method() === 'POST', { timeout }),
      alice.click('#request-form button[type=submit]'),
    ]);
    const req = await created.json();
    if (created.status() !== 201) throw new Error(`the request was refused (${created.status()}): ${JSON.stringify(req)}`);
    const id = req.id;
    await alice.waitForSelector(`tr[data-request="${id}"]`, { timeout });
    emit({
      step: 'requested',
      request: id,
      status: req.status,
      row: (await rowStatus(alice, id)).trim(),
      credential_shown: await alice.isVisible('#credential'),
      credential_sent: credentialIn(aliceBodies),
    });

    // 2. The approver signs in in a second context and approves it.
    const bob = await bobCtx.newPage();
    await signIn(bob, base, approver, timeout);
    await bob.goto(`${base}/ui/#/access`);
    const approveButton = `tr[data-request="${id}"] button.approve`;
    await bob.waitForSelector(approveButton, { timeout });
    const rowText = await bob.textContent(`tr[data-request="${id}"]`);
    for (const want of [requester.user, target, input.reason]) {
      if (!rowText.includes(want)) throw new Error(`the approver's row lacks ${JSON.stringify(want)}: ${rowText}`);
    }
    const [approved] = await Promise.all([
      bob.waitForResponse((r) => r.url().endsWith(`/api/access-requests/${id}/approve`), { timeout }),
      bob.click(approveButton),
    ]);
    await bob.waitForFunction((id) => {
      const c = document.querySelector(`tr[data-request="${id}"] td[class^="status-"]`);
      return c && c.className === 'status-approved';
    }, id, { timeout });
    emit({
      step: 'approved',
      request: id,
      approve_status: approved.status(),
      row: (await rowStatus(bob, id)).trim(),
      approve_buttons: await bob.locator(approveButton).count(),
      credential_shown: await bob.isVisible('#credential'),
      show_credential_buttons: await bob.locator(`tr[data-request="${id}"] button.show-credential`).count(),
      credential_sent: credentialIn(bobBodies),
    });

    // 3. The requester reloads the access view and reads the credential.
    await alice.reload({ waitUntil: 'load' });
    const show = `tr[data-request="${id}"] button.show-credential`;
    await alice.waitForSelector(show, { timeout });
    await alice.click(show);
    await alice.waitForSelector('#credential:not([hidden])', { timeout });
    const token = (await alice.textContent('#credential-token')).trim();
    if (!token) throw new Error('the credential shown is empty');
    emit({
      step: 'credential',
      request: id,
      token,
      expires: await alice.textContent('#credential-expiry'),
      how: await alice.textContent('#credential-how'),
    });
    await stdin.expect('connected');

    // 4. The approver finds the session among the live ones and watches it.
    const listStart = Date.now();
    await bob.goto(`${base}/ui/#/live`);
    const sessionRow = await bob.waitForFunction(([user, target]) => {
      for (const tr of document.querySelectorAll('#live-rows tr[data-session]')) {
        const cells = [...tr.querySelectorAll('td')].map((td) => td.textContent);
        if (cells[1] === user && cells[2] === target) return tr.dataset.session;
      }
      return null;
    }, [requester.user, target], { timeout });
    const sid = await sessionRow.jsonValue();
    const row = `#live-rows tr[data-session="${sid}"]`;
    const cells = await bob.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
    emit({ step: 'listed', session: sid, user: cells[1], target: cells[2], protocol: cells[3], after_ms: Date.now() - listStart });

    const [player] = await Promise.all([
      bobCtx.waitForEvent('page', { timeout }),
      bob.click(`${row} a.watch`),
    ]);
    await player.waitForLoadState('load');
    await player.waitForFunction(() => document.body.dataset.ready === '1' || document.body.dataset.ready === 'error', null, { timeout });
    if ((await player.getAttribute('body', 'data-ready')) === 'error') {
      throw new Error(`the player could not load the session: ${await player.textContent('#error').catch(() => '')}`);
    }
    // Frames decoded and shown at the live edge.
    await player.waitForFunction(() => {
      const v = document.getElementById('video');
      return document.body.dataset.live === 'following' && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
    }, null, { timeout });
    const first = await playerSample(player);
    await sleep(3000);
    const last = await playerSample(player);
    emit({ step: 'watching', session: sid, url: player.url(), live: last.live, first, last });
    await stdin.expect('lock');

    // 5a. The approver locks the session (the reason goes in the prompt), sees it marked, and
    //     resumes it.
    let lockPrompt = null;
    bob.once('dialog', (d) => {
      lockPrompt = d.message();
      d.accept(LOCK_REASON);
    });
    const locked = bob.waitForResponse((r) => r.url().endsWith(`/api/sessions/live/${encodeURIComponent(sid)}/lock`)
      && r.request().method() === 'POST', { timeout });
    await bob.click(`${row} button.lock`);
    const lockResp = await locked;
    await bob.waitForSelector(`${row} .locked`, { timeout });
    const lockedText = await bob.textContent(`${row} .locked`);
    const resumed = bob.waitForResponse((r) => r.url().endsWith(`/api/sessions/live/${encodeURIComponent(sid)}/resume`)
      && r.request().method() === 'POST', { timeout });
    await bob.click(`${row} button.resume`);
    const resumeResp = await resumed;
    await bob.waitForSelector(`${row} button.lock`, { timeout });
    emit({
      step: 'locked',
      lock_status: lockResp.status(),
      prompt: lockPrompt,
      locked_text: lockedText,
      resume_status: resumeResp.status(),
      still_marked: (await bob.$(`${row} .locked`)) !== null,
    });
    await stdin.expect('terminate');

    // 5. The approver terminates the session from the live view (the reason goes in the prompt).
    let prompt = null;
    bob.once('dialog', (d) => {
      prompt = d.message();
      d.accept(input.terminate_reason);
    });
    const responded = bob.waitForResponse((r) => r.url().endsWith(`/api/sessions/live/${encodeURIComponent(sid)}/terminate`)
      && r.request().method() === 'POST', { timeout });
    const clickMs = Date.now();
    await bob.click(`${row} button.terminate`);
    const resp = await responded;
    const seenMs = Date.now();
    await resp.finished();
    const timing = resp.request().timing();
    const responseMs = timing.responseEnd >= 0 ? timing.startTime + timing.responseEnd : seenMs;
    emit({
      step: 'terminated',
      status: resp.status(),
      body: await resp.json().catch(() => null),
      prompt,
      click_ms: clickMs,
      response_ms: Math.round(responseMs * 1000) / 1000,
      seen_ms: seenMs,
    });

    // 6. The session leaves the live view; the player sees the recording sealed.
    const goneStart = Date.now();
    await bob.waitForSelector(row, { state: 'detached', timeout });
    const rowGoneMs = Date.now() - goneStart;
    await player.waitForFunction(() => document.body.dataset.live === 'sealed', null, { timeout: timeout * 2 });
    await player.waitForFunction(() => !!document.body.dataset.integrity && document.body.dataset.integrity !== 'partial', null, { timeout })
      .catch(() => { /* reported as it is */ });
    emit({
      step: 'after',
      row_gone_ms: rowGoneMs,
      flash: (await bob.textContent('#flash')).trim(),
      player_live: await player.getAttribute('body', 'data-live'),
      player_integrity: await player.getAttribute('body', 'data-integrity'),
      approver_saw_token: bobBodies.some((b) => b.text.includes(token)),
      approver_saw_credential: credentialIn(bobBodies),
    });
    emit({ step: 'done', page_errors: pageErrors, player_errors: playerErrors });
  } finally {
    stdin.close();
    await browser.close().catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
}

main(readInput, run);
