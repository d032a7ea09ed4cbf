// Where the recording under test comes from: the real psmgate binary ($PSMGATE_BIN: `demo` then
// `export`), or the independent fixture generator (make-fixture.mjs) when PSMGATE_BIN is not set.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeFixture } from '../make-fixture.mjs';

/** A fresh temporary directory, removed at process exit unless KEEP_PLAYER_TMP is set. */
export function tempDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (!process.env.KEEP_PLAYER_TMP) process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function findRecordingDir(dataDir, sessionId) {
  const stack = [dataDir];
  while (stack.length) {
    const d = stack.pop();
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      if (!ent.isDirectory()) continue;
      const p = path.join(d, ent.name);
      if (ent.name === sessionId) return p;
      stack.push(p);
    }
  }
  throw new Error(`recording folder of ${sessionId} not found under ${dataDir}`);
}

/**
 * Produce a recording and its export folder.
 * @returns {Promise<{source:string, sessionId:string, dataDir:string, recDir:string, exportDir:string}>}
 */
export async function getRecording({ label = 'player', fixtureOptions = {} } = {}) {
  const tmp = tempDir(`psmgate-${label}-`);
  const bin = process.env.PSMGATE_BIN;
  if (!bin) {
    const info = await makeFixture(tmp, fixtureOptions);
    console.log(`# recording source: fixture generator (make-fixture.mjs), session ${info.sessionId}`);
    return info;
  }
  const dataDir = path.join(tmp, 'data');
  const out = execFileSync(bin, ['demo', '--data', dataDir, '--seconds', '20'], { encoding: 'utf8', timeout: 120000, stdio: ['ignore', 'pipe', 'inherit'] });
  const m = /^session ([0-9a-f-]{36})\s*$/m.exec(out);
  if (!m) throw new Error(`${bin} demo did not print "session <uuid>"; stdout was:\n${out}`);
  const sessionId = m[1];
  const exportDir = path.join(tmp, 'export');
  execFileSync(bin, ['export', sessionId, '--data', dataDir, '--out', exportDir], { timeout: 120000, stdio: ['ignore', 'inherit', 'inherit'] });
  console.log(`# recording source: ${bin} (demo + export), session ${sessionId}`);
  return { source: 'binary', sessionId, dataDir, recDir: findRecordingDir(dataDir, sessionId), exportDir };
}

// ---------------------------------------------------------------- reading an export folder

const PREFIX = 'window.PSMGATE_RECORDING = ';

/** Parse an export's data.js. */
export function readDataJs(exportDir) {
  const text = fs.readFileSync(path.join(exportDir, 'data.js'), 'utf8').trim();
  if (!text.startsWith(PREFIX)) throw new Error('data.js does not start with ' + JSON.stringify(PREFIX));
  return JSON.parse(text.slice(PREFIX.length).replace(/;\s*$/, ''));
}

/** Write data.js back (same shape as the gateway's). */
export function writeDataJs(exportDir, data) {
  fs.writeFileSync(path.join(exportDir, 'data.js'), `${PREFIX}${JSON.stringify(data)};\n`);
}

/** Copy an export folder (for tampering). */
export function copyExport(exportDir, dest) {
  fs.cpSync(exportDir, dest, { recursive: true });
  return dest;
}

/** Data records and checkpoints of a chain text. */
export function chainRecords(chainText) {
  const lines = chainText.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  return { records: lines.filter((l) => l.checkpoint !== true), checkpoints: lines.filter((l) => l.checkpoint === true) };
}

/** All transcript events of an export (sorted by time). */
export function exportEvents(exportDir) {
  const d = readDataJs(exportDir);
  const events = [];
  for (const text of Object.values(d.events || {})) {
    for (const line of text.split('\n')) if (line.trim()) events.push({ raw: line, ...JSON.parse(line) });
  }
  return events.sort((a, b) => a.t - b.t);
}

/**
 * A typed word that occurs in exactly one transcript line, with that event's time: the search
 * test types it and expects the player to jump there.
 */
export function uniqueTypedWord(events) {
  for (const e of events) {
    if (e.type !== 'text' || e.masked) continue;
    const text = e.text ?? e.value ?? e.s ?? e.data;
    if (typeof text !== 'string') continue;
    for (const w of text.split(/[^A-Za-z0-9_-]+/)) {
      if (w.length < 3) continue;
      const hits = events.filter((x) => x.raw.toLowerCase().includes(w.toLowerCase()));
      if (hits.length === 1) return { word: w, t: e.t };
    }
  }
  return null;
}
