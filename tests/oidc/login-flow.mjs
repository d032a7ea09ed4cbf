#!/usr/bin/env node
// Drives the gateway's web UI in headless Debian Chromium (through playwright-core) through
// OpenID Connect sign-in at the provider of provider.mjs: open /ui/, click "Sign in with …",
// sign in at the provider's login form, consent, and come back to the gateway. Each login name
// gets a browser context of its own (its own cookies).
//
//   node login-flow.mjs '<json>'
//
// Input:
//   {"base": "http://127.0.0.1:PORT",   the gateway's admin listener
//    "logins": ["alice", "mallory"],      login names typed at the provider, in order
//    "timeout": 15000}                    per-step timeout in ms (optional)
//
// Output: one JSON line per login on stdout, then {"step":"done","page_errors":[…]}:
//   {"step":"login","login":"alice","button":"Sign in with …","consented":true,
//    "url":"<final URL>","status":<HTTP status of the final page>,
//    "who":"alice (user)" or null,      the UI's signed-in line, when back on /ui/
//    "refusal":"…" or null,             the gateway's refusal page text, when refused
//    "session":"psl_…" or null,         the psmgate_session cookie the browser holds
//    "binding_cookie_left":false}       whether the psmgate_oidc cookie is still there
// On failure: {"step":"error","message":"…"} and exit status 1; bad input: exit status 2.

import { chromium } from 'playwright-core';

const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function out(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function readInput() {
  let input;
  try {
    input = JSON.parse(process.argv[2] ?? '');
  } catch (e) {
    return { error: `input must be JSON: ${e.message}` };
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return { error: 'input must be a JSON object' };
  if (typeof input.base !== 'string' || !/^https?:\/\/[^/]+$/.test(input.base)) {
    return { error: '"base" must be a URL like http://127.0.0.1:PORT' };
  }
  if (!Array.isArray(input.logins) || input.logins.length === 0 || !input.logins.every((l) => typeof l === 'string' && l)) {
    return { error: '"logins" must be a non-empty list of login names' };
  }
  if (input.timeout !== undefined && !(Number.isInteger(input.timeout) && input.timeout > 0)) {
    return { error: '"timeout" must be a positive integer (ms)' };
  }
  return { input };
}

async function signIn(browser, base, login, timeout, pageErrors) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const page = await context.newPage();
    page.setDefaultTimeout(timeout);
    page.on('pageerror', (e) => pageErrors.push(`${login}: ${e.message}`));
    await page.goto(`${base}/ui/`);
    const button = page.locator('#oidc-login');
    await button.waitFor({ state: 'visible' });
    const buttonText = (await button.textContent()).trim();
    await button.click();
    // The provider's login form (oidc-provider's development interactions).
    await page.waitForSelector('input[name="login"]');
    await page.fill('input[name="login"]', login);
    await page.fill('input[name="password"]', 'any-password');
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
    let consented = false;
    const gateway = (u) => u.startsWith(`${base}/`);
    if (!gateway(page.url())) {
      // The consent form.
      await page.waitForSelector('input[name="prompt"][value="consent"]', { state: 'attached' });
      await Promise.all([
        page.waitForURL((u) => gateway(u.toString())),
        page.click('button[type="submit"]'),
      ]);
      consented = true;
    }
    await page.waitForLoadState('load');
    const url = page.url();
    let status = null;
    const nav = await page.evaluate(() => {
      const e = performance.getEntriesByType('navigation')[0];
      return e ? e.responseStatus : null;
    });
    if (typeof nav === 'number') status = nav;
    let who = null;
    let refusal = null;
    if (new URL(url).pathname === '/ui/') {
      await page.waitForFunction(() => document.getElementById('who').textContent.trim() !== '');
      who = (await page.textContent('#who')).trim();
    } else {
      const err = page.locator('#oidc-error');
      if (await err.count()) refusal = (await err.textContent()).trim();
    }
    const cookies = await context.cookies(base);
    const session = cookies.find((c) => c.name === 'psmgate_session');
    out({
      step: 'login',
      login,
      button: buttonText,
      consented,
      url,
      status,
      who,
      refusal,
      session: session ? session.value : null,
      binding_cookie_left: cookies.some((c) => c.name === 'psmgate_oidc'),
    });
  } finally {
    await context.close();
  }
}

async function main() {
  const { input, error } = readInput();
  if (error) {
    process.stderr.write(`login-flow.mjs: ${error}\n`);
    process.exit(2);
  }
  const timeout = input.timeout ?? 15000;
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
  const pageErrors = [];
  try {
    for (const login of input.logins) {
      await signIn(browser, input.base, login, timeout, pageErrors);
    }
    out({ step: 'done', page_errors: pageErrors });
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  out({ step: 'error', message: String(e && e.message ? e.message : e) });
  process.exit(1);
});
