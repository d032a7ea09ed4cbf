// What the UI drivers (ui-flow.mjs, dashboard-flow.mjs) share: the input they read from argv,
// the headless Chromium they drive (Debian's /usr/bin/chromium or $CHROMIUM, with its own
// $HOME), the JSON lines they print, and how they end.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

/** Bad input: exit code 2 with the message. */
export class InputError extends Error {}

/** One JSON line on stdout. */
export const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * The JSON object in argv[2], with `base` (http(s)://host:port) and an optional positive
 * `timeout` (ms) checked; the script checks the rest.
 */
export function readJsonArg(script) {
  const arg = process.argv[2];
  if (arg === undefined) throw new InputError(`usage: node ${script} '<json>'`);
  let input;
  try {
    input = JSON.parse(arg);
  } catch (e) {
    throw new InputError(`input is not JSON: ${e.message}`);
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InputError('input must be a JSON object');
  if (typeof input.base !== 'string' || !/^https?:\/\/[^/]+$/.test(input.base)) {
    throw new InputError(`"base" must be a URL like http://127.0.0.1:PORT, got ${JSON.stringify(input.base)}`);
  }
  if (input.timeout !== undefined && !(Number.isInteger(input.timeout) && input.timeout > 0)) {
    throw new InputError('"timeout" must be a positive integer (ms)');
  }
  return input;
}

/** Headless Chromium with a fresh $HOME (`home`, removed by the caller). */
export async function launchChromium(homePrefix, extraArgs = []) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), homePrefix));
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...extraArgs,
    ],
    env: { ...process.env, HOME: home },
  });
  return { browser, home };
}

/** Reads the input, runs `run(input)` and exits: 0 done, 1 failed (an `error` line), 2 bad input. */
export function main(readInput, run) {
  let input;
  try {
    input = readInput();
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  run(input).then(
    () => process.exit(0),
    (e) => {
      emit({ step: 'error', message: String((e && e.stack) || e) });
      process.exit(1);
    },
  );
}
