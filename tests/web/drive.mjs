#!/usr/bin/env node
// Drives headless Debian Chromium (through playwright-core) through an HTTPS forward proxy and
// reports what it saw.
//
//   node drive.mjs '<json>'        (or `node drive.mjs -` to read the JSON from stdin)
//
// Input:
//   {"proxy": "http://127.0.0.1:PORT" | null,   null or absent: connect directly (no proxy)
//    "username": "alice@aws-console", "password": "TOKEN",   proxy credentials (optional)
//    "ca": "/path/ca.pem" or [paths],           the CA(s) the browser must trust (the proxy's CA, or
//                                                the origin's CA when connecting directly)
//    "shots": "/abs/dir",                        where screenshots go (needed by screenshot steps)
//    "timeout": 15000,                           per-step timeout in ms (optional)
//    "steps": [...]}
// Steps, one result each, in order:
//   {"goto": URL}                                 -> {status, url, title, text, csp?, error?}
//   {"fill": SELECTOR, "value": V}                -> {ok, error?}
//   {"click": SELECTOR, "waitForNavigation": B}   -> {ok, status?, url, title, error?}
//   {"waitFor": SELECTOR, "timeout": MS}          -> {found}
//   {"eval": "js expression"}                     -> {value, error?}
//   {"screenshot": "name.png"}                    -> {path, error?}
//   {"abort": "URL glob"}                         -> {ok}  (matching requests fail from then on)
//   {"sleep": MS}                                 -> {ok}
// Output: one JSON line {"results":[...],"page_errors":[...]} on stdout, exit 0.
// Exit 1 (message on stderr) when the browser cannot be set up, 2 on bad input.
//
// The CA is trusted through an NSS database in a temporary HOME ($HOME/.pki/nssdb), the way
// Chromium on Linux reads user-installed trust anchors; certificate errors are never ignored.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
// Hosts of the browser vendor's services. Some are still contacted in the background (update
// checks, account lookups); they bypass the proxy and resolve to nothing, so nothing leaves the
// machine and the proxy under test only sees the pages the steps visit.
const VENDOR_HOSTS = ['*.google.com', '*.googleapis.com', '*.gstatic.com', '*.gvt1.com', '*.gvt2.com', '*.googleusercontent.com'];
const HOST_RESOLVER_RULES = `--host-resolver-rules=${VENDOR_HOSTS.map((h) => `MAP ${h} ~NOTFOUND`).join(', ')}`;
// Chromium's own background services (autofill, password leak checks, sign-in, updates) would
// otherwise open connections to vendor hosts through the proxy under test and show up in its audit.
const PROFILE_PREFERENCES = {
  credentials_enable_service: false,
  profile: { password_manager_enabled: false, password_manager_leak_detection: false },
  autofill: { enabled: false, profile_enabled: false, credit_card_enabled: false },
  signin: { allowed: false, allowed_on_next_startup: false },
  safebrowsing: { enabled: false },
  search: { suggest_enabled: false },
  translate: { enabled: false },
};
const TEXT_LIMIT = 4000;

/** Bad input (exit 2). */
class InputError extends Error {}
/** The browser could not be set up (exit 1). */
class SetupError extends Error {}

function readInput() {
  const arg = process.argv[2];
  if (arg === undefined) throw new InputError("usage: node drive.mjs '<json>'  (or - to read it from stdin)");
  const text = arg === '-' ? fs.readFileSync(0, 'utf8') : arg;
  let input;
  try {
    input = JSON.parse(text);
  } catch (e) {
    throw new InputError(`input is not JSON: ${e.message}`);
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InputError('input must be a JSON object');
  if (input.proxy !== undefined && input.proxy !== null) {
    if (typeof input.proxy !== 'string' || !/^https?:\/\/[^/]+\/?$/.test(input.proxy)) {
      throw new InputError(`"proxy" must be null or a URL like http://127.0.0.1:PORT, got ${JSON.stringify(input.proxy)}`);
    }
  }
  for (const k of ['username', 'password', 'shots']) {
    if (input[k] !== undefined && input[k] !== null && typeof input[k] !== 'string') throw new InputError(`"${k}" must be a string`);
  }
  if (typeof input.ca === 'string') input.ca = [input.ca];
  if (!Array.isArray(input.ca) || input.ca.length === 0 || input.ca.some((c) => typeof c !== 'string' || !c)) {
    throw new InputError('"ca" (path, or list of paths, of the CA certificates to trust) is required');
  }
  for (const c of input.ca) {
    if (!fs.existsSync(c)) throw new InputError(`CA file ${c} does not exist`);
  }
  if (!Array.isArray(input.steps)) throw new InputError('"steps" must be an array');
  if (input.timeout !== undefined && !(Number.isFinite(input.timeout) && input.timeout > 0)) {
    throw new InputError('"timeout" must be a positive number of milliseconds');
  }
  input.steps.forEach((s, i) => {
    if (typeof s !== 'object' || s === null) throw new InputError(`step ${i} is not an object`);
    const kinds = ['goto', 'fill', 'click', 'waitFor', 'eval', 'screenshot', 'abort', 'sleep'].filter((k) => k in s);
    if (kinds.length !== 1) throw new InputError(`step ${i} must have exactly one of goto, fill, click, waitFor, eval, screenshot, abort, sleep`);
    if (kinds[0] === 'sleep') {
      if (!(Number.isFinite(s.sleep) && s.sleep >= 0)) throw new InputError(`step ${i}: "sleep" must be a number of milliseconds`);
    } else if (typeof s[kinds[0]] !== 'string') throw new InputError(`step ${i}: "${kinds[0]}" must be a string`);
    if (kinds[0] === 'fill' && typeof s.value !== 'string') throw new InputError(`step ${i}: fill needs a string "value"`);
  });
  return input;
}

/** Create $home/.pki/nssdb trusting each of `caFiles` as a TLS server CA. */
function trustCa(home, caFiles) {
  const db = path.join(home, '.pki', 'nssdb');
  fs.mkdirSync(db, { recursive: true });
  const run = (args) => {
    const r = spawnSync('certutil', args, { encoding: 'utf8' });
    if (r.error && r.error.code === 'ENOENT') {
      throw new Error('certutil was not found; install the Debian package libnss3-tools');
    }
    if (r.error) throw new Error(`certutil failed to start: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`certutil ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
  };
  run(['-d', `sql:${db}`, '-N', '--empty-password']);
  caFiles.forEach((caFile, i) => {
    run(['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', `trusted-ca-${i}`, '-i', path.resolve(caFile)]);
  });
}

function errorText(e) {
  return String(e && e.message ? e.message : e).split('\n')[0];
}

async function pageInfo(page) {
  let title = null;
  let text = null;
  try {
    title = await page.title();
    text = await page.evaluate((limit) => (document.body ? document.body.innerText.slice(0, limit) : ''), TEXT_LIMIT);
  } catch {
    // the page may be mid-navigation or an error page without a body
  }
  return { url: page.url(), title, text };
}

async function runStep(page, step, input, timeout) {
  if ('abort' in step) {
    // Requests matching the glob fail from now on (as if blocked by an extension).
    await page.route(step.abort, (route) => route.abort());
    return { ok: true };
  }
  if ('sleep' in step) {
    await new Promise((r) => setTimeout(r, step.sleep));
    return { ok: true };
  }
  if ('goto' in step) {
    try {
      const response = await page.goto(step.goto, { waitUntil: 'load', timeout: step.timeout ?? timeout * 2 });
      const csp = response ? (await response.allHeaders())['content-security-policy'] : undefined;
      return { status: response ? response.status() : null, ...(await pageInfo(page)), ...(csp ? { csp } : {}) };
    } catch (e) {
      return { status: null, ...(await pageInfo(page)), error: errorText(e) };
    }
  }
  if ('fill' in step) {
    try {
      await page.fill(step.fill, step.value, { timeout: step.timeout ?? timeout });
      return { ok: true };
    } catch (e) {
      return { ok: false, error: errorText(e) };
    }
  }
  if ('click' in step) {
    try {
      let status = null;
      if (step.waitForNavigation) {
        const [response] = await Promise.all([
          page.waitForNavigation({ waitUntil: 'load', timeout: step.timeout ?? timeout * 2 }),
          page.click(step.click, { timeout: step.timeout ?? timeout }),
        ]);
        status = response ? response.status() : null;
      } else {
        await page.click(step.click, { timeout: step.timeout ?? timeout });
      }
      const info = await pageInfo(page);
      return { ok: true, status, url: info.url, title: info.title };
    } catch (e) {
      const info = await pageInfo(page);
      return { ok: false, status: null, url: info.url, title: info.title, error: errorText(e) };
    }
  }
  if ('waitFor' in step) {
    try {
      await page.waitForSelector(step.waitFor, { state: 'attached', timeout: step.timeout ?? timeout });
      return { found: true };
    } catch (e) {
      return { found: false, error: errorText(e) };
    }
  }
  if ('eval' in step) {
    try {
      const value = await page.evaluate(step.eval);
      return { value: value === undefined ? null : value };
    } catch (e) {
      return { value: null, error: errorText(e) };
    }
  }
  if ('screenshot' in step) {
    const name = step.screenshot;
    if (!input.shots) return { path: null, error: 'a screenshot step needs "shots" (a directory) in the input' };
    if (name !== path.basename(name) || name === '.' || name === '..') {
      return { path: null, error: `screenshot name must be a plain file name, got ${JSON.stringify(name)}` };
    }
    try {
      fs.mkdirSync(input.shots, { recursive: true });
      const file = path.resolve(input.shots, name);
      await page.screenshot({ path: file, timeout: step.timeout ?? timeout });
      return { path: file };
    } catch (e) {
      return { path: null, error: errorText(e) };
    }
  }
  return { error: 'unknown step' };
}

async function main() {
  const input = readInput();
  const timeout = input.timeout ?? 15000;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'psmgate-web-drive-'));
  const home = path.join(tmp, 'home');
  const userDataDir = path.join(tmp, 'profile');
  fs.mkdirSync(home);
  fs.mkdirSync(path.join(userDataDir, 'Default'), { recursive: true });
  fs.writeFileSync(path.join(userDataDir, 'Default', 'Preferences'), JSON.stringify(PROFILE_PREFERENCES));
  let ctx = null;
  try {
    try {
      trustCa(home, input.ca);
    } catch (e) {
      throw new SetupError(e.message);
    }
    const options = {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: [...CHROMIUM_ARGS, HOST_RESOLVER_RULES],
      viewport: { width: 1024, height: 768 },
      env: { ...process.env, HOME: home },
      acceptDownloads: false,
    };
    if (input.proxy) {
      // Playwright turns this into --proxy-server=<proxy> --proxy-bypass-list=<-loopback>;...
      // (loopback hosts go through the proxy too, vendor hosts never do) and answers the proxy's
      // 407 challenge, also for CONNECT, with these credentials; httpCredentials would only answer
      // origin-server challenges.
      options.proxy = { server: input.proxy, bypass: ['<-loopback>', ...VENDOR_HOSTS].join(',') };
      if (input.username !== undefined && input.username !== null) {
        options.proxy.username = input.username;
        options.proxy.password = input.password ?? '';
      }
    }
    try {
      ctx = await chromium.launchPersistentContext(userDataDir, options);
    } catch (e) {
      throw new SetupError(`cannot launch ${options.executablePath}: ${errorText(e)}`);
    }
    const page = ctx.pages()[0] || (await ctx.newPage());
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(errorText(e)));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
    page.on('dialog', (d) => d.dismiss().catch(() => {}));

    const results = [];
    for (const step of input.steps) results.push(await runStep(page, step, input, timeout));
    process.stdout.write(`${JSON.stringify({ results, page_errors: pageErrors })}\n`);
  } finally {
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (e) {
  const known = e instanceof InputError || e instanceof SetupError;
  process.stderr.write(`drive: ${known ? e.message : (e && e.stack) || e}\n`);
  process.exitCode = e instanceof InputError ? 2 : 1;
}
