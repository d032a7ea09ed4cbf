#!/usr/bin/env node
// Opens the gateway's dashboards in headless Debian Chromium (through playwright-core) and reports
// what they show: the overview's KPI tiles and charts, and the on-call view's live session card
// (its thumbnail) and recent blocked or terminated sessions.
//
//   node dashboard-flow.mjs '<json>'
//
// Input:
//   {"base": "http://127.0.0.1:PORT",        the admin listener (https: certificate errors ignored)
//    "token": "…",                            the break-glass admin token (signs in by /login?token=)
//    "live": "SESSION-ID",                    a live session whose card must show its thumbnail
//    "terminated": "SESSION-ID",              a session that must be listed as terminated
//    "timeout": 15000,                        per-step timeout in ms (optional)
//    "screenshots": "DIR"}                    where to save overview.png and oncall.png (optional)
//
// Output: one JSON line on stdout:
//   {"step":"done",
//    "default_view": "overview",              the view shown at /ui/ without a hash
//    "kpis": {"coverage": {"value","note"}, "integrity": …, "live": …, "storage": …, "replay": …},
//    "charts": {ID: {"title","label","bars","values","series":{SERIES: SUM},"names":[…],
//                     "points","last_point","table_rows"}},
//    "card": {"session","natural_width","natural_height","sources","watch","terminate"},
//    "recent": [{"session","kind","cells":[…]}],
//    "page_errors": […]}
// On failure: {"step":"error","message":"…"} and exit status 1; bad input: exit status 2.

import fs from 'node:fs';
import path from 'node:path';
import { InputError, emit, launchChromium, main, readJsonArg, sleep } from './flow-common.mjs';

const CHARTS = ['chart-enforcement', 'chart-sessions', 'chart-storage', 'chart-top-users', 'chart-top-targets'];
const TABLES = {
  'chart-enforcement': 'table-enforcement', 'chart-sessions': 'table-sessions', 'chart-storage': 'table-storage',
  'chart-top-users': 'table-top-users', 'chart-top-targets': 'table-top-targets',
};

function readInput() {
  const input = readJsonArg('dashboard-flow.mjs');
  for (const k of ['token', 'live', 'terminated']) {
    if (typeof input[k] !== 'string' || !input[k]) throw new InputError(`"${k}" must be a non-empty string`);
  }
  if (input.screenshots !== undefined && (typeof input.screenshots !== 'string' || !fs.existsSync(input.screenshots))) {
    throw new InputError('"screenshots" must name an existing directory');
  }
  return input;
}


/** What the overview shows. */
const readOverview = (page, charts, tables) => page.evaluate(([charts, tables]) => {
  const kpis = {};
  for (const tile of document.querySelectorAll('#overview-kpis [data-kpi]')) {
    kpis[tile.dataset.kpi] = {
      value: tile.querySelector('.kpi-value').textContent,
      note: tile.querySelector('.kpi-note').textContent,
    };
  }
  const out = {};
  for (const id of charts) {
    const svg = document.querySelector(`#${id} svg`);
    if (!svg) { out[id] = null; continue; }
    const bars = [...svg.querySelectorAll('rect.bar')];
    const series = {};
    for (const b of bars) {
      const s = b.dataset.series || 'bars';
      series[s] = (series[s] || 0) + Number(b.dataset.value);
    }
    const points = [...svg.querySelectorAll('circle.point')];
    const line = svg.querySelector('path.line');
    out[id] = {
      title: svg.querySelector('title') ? svg.querySelector('title').textContent : null,
      label: svg.getAttribute('aria-label'),
      role: svg.getAttribute('role'),
      bars: bars.length,
      values: bars.reduce((a, b) => a + Number(b.dataset.value), 0),
      series,
      names: bars.map((b) => b.dataset.name).filter((n) => n !== undefined),
      points: points.length,
      line_points: line ? Number(line.dataset.points) : null,
      last_point: points.length ? Number(points[points.length - 1].dataset.value) : null,
      table_rows: document.querySelectorAll(`#${tables[id]} tbody tr`).length,
    };
  }
  return { kpis, charts: out };
}, [charts, tables]);

async function run(input) {
  const timeout = input.timeout || 15000;
  const { base } = input;
  const { browser, home } = await launchChromium('psmgate-dashboard-home-');
  const pageErrors = [];
  try {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: base.startsWith('https:'), viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      // A thumbnail asked for before the session has a screen is a 404 the card shows as such.
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) pageErrors.push(m.text());
    });

    // 1. Sign in with the admin token straight into the overview.
    const overviewLoaded = () => page.waitForFunction(() => {
      const v = document.getElementById('view-overview');
      return v && !v.hidden && v.dataset.loaded;
    }, null, { timeout });
    await page.goto(`${base}/login?token=${encodeURIComponent(input.token)}&next=/ui/%23/overview`, { waitUntil: 'load' });
    await overviewLoaded();
    const overview = await readOverview(page, CHARTS, TABLES);
    if (input.screenshots) await page.screenshot({ path: path.join(input.screenshots, 'overview.png'), fullPage: true });

    // 2. The view after sign-in without a hash is the overview too.
    await page.goto(`${base}/ui/`, { waitUntil: 'load' });
    await page.waitForFunction(() => !document.getElementById('nav').hidden, null, { timeout });
    const defaultView = await page.evaluate(() => {
      const shown = [...document.querySelectorAll('main > section')].find((s) => !s.hidden);
      return shown ? shown.id.replace(/^view-/, '') : null;
    });

    // 3. The on-call view: the live session's card with its thumbnail, refreshed.
    await page.evaluate(() => { location.hash = '#/oncall'; });
    const card = `#oncall-cards [data-session="${input.live}"]`;
    await page.waitForSelector(card, { timeout });
    await page.waitForFunction((sel) => {
      const img = document.querySelector(`${sel} img.thumb`);
      return img && img.complete && img.naturalWidth > 0;
    }, card, { timeout });
    const sources = new Set();
    const until = Date.now() + 4500;
    while (Date.now() < until) {
      sources.add(await page.getAttribute(`${card} img.thumb`, 'src'));
      await sleep(250);
    }
    const cardInfo = await page.evaluate((sel) => {
      const c = document.querySelector(sel);
      const img = c.querySelector('img.thumb');
      return {
        session: c.dataset.session,
        natural_width: img.naturalWidth,
        natural_height: img.naturalHeight,
        alt: img.alt,
        watch: c.querySelector('a.watch') ? c.querySelector('a.watch').getAttribute('href') : null,
        terminate: !!c.querySelector('button.terminate'),
        text: c.textContent,
      };
    }, card);
    cardInfo.sources = sources.size;
    if (input.screenshots) await page.screenshot({ path: path.join(input.screenshots, 'oncall.png'), fullPage: true });
    await page.waitForSelector(`#oncall-recent tr[data-session="${input.terminated}"]`, { timeout });
    const recent = await page.$$eval('#oncall-recent tr', (trs) => trs.map((tr) => ({
      session: tr.dataset.session || null,
      kind: tr.dataset.kind,
      cells: [...tr.querySelectorAll('td')].map((td) => td.textContent),
      reason: tr.querySelector('td.reason') ? tr.querySelector('td.reason').textContent : null,
      player: tr.querySelector('a') ? tr.querySelector('a').getAttribute('href') : null,
    })));
    emit({
      step: 'done', default_view: defaultView, kpis: overview.kpis, charts: overview.charts, card: cardInfo, recent, page_errors: pageErrors,
    });
  } finally {
    await browser.close().catch(() => {});
    fs.rmSync(home, { recursive: true, force: true });
  }
}

main(readInput, run);
