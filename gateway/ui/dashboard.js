// psmgate web UI: the overview and on-call dashboards. Charts are plain SVG drawn here (no
// library, no build step); each has a <title>, an aria-label and a data table beside it with the
// exact figures. Uses ui.js's helpers (api, flash, cell, link, button, time, watchLink, terminate).
'use strict';

(() => {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  /** Colours and names of the enforcement kinds, in stacking order. */
  const KINDS = [
    { id: 'terminated', name: 'Terminated by an operator', colour: '#b3261e' },
    { id: 'policy', name: 'Ended by a policy limit', colour: '#bf8700' },
    { id: 'denied', name: 'Refused by policy', colour: '#6639ba' },
    { id: 'auth_failed', name: 'Credentials refused', colour: '#6e7781' },
  ];
  const KIND_NAMES = {
    terminated: 'terminated', policy: 'policy limit', denied: 'denied', auth_failed: 'credentials refused',
    recording_failed: 'recording failed',
  };
  const THUMBNAIL_EVERY_MS = 2000;
  const ONCALL_EVERY_MS = 5000;
  let dashTimers = [];

  /** Called by ui.js whenever a view is shown: starts this file's views, stops their refreshes. */
  function dashboardShow(view) {
    for (const t of dashTimers) clearInterval(t);
    dashTimers = [];
    if (view === 'overview') loadOverview();
    if (view === 'oncall') {
      loadOncall();
      dashTimers.push(setInterval(refreshThumbnails, THUMBNAIL_EVERY_MS));
      dashTimers.push(setInterval(loadOncall, ONCALL_EVERY_MS));
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Formatting

  /** A ratio as a percentage ("100 %", "66.7 %"), or "—" when there is none. */
  function pct(r) {
    return r == null ? '—' : `${Math.round(r * 1000) / 10} %`;
  }

  /** Bytes in binary units ("0 B", "1.5 MiB"). */
  function bytesText(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let v = n;
    let u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
    return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
  }

  /** A duration in milliseconds in words ("0 s", "42 s", "3 min 5 s", "2 h 10 min"). */
  function durationText(ms) {
    const s = Math.round(ms / 1000);
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min${s % 60 ? ` ${s % 60} s` : ''}`;
    return `${Math.floor(m / 60)} h${m % 60 ? ` ${m % 60} min` : ''}`;
  }

  /** Milliseconds, shown in ms below a second and in seconds above. */
  function msText(ms) {
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
  }

  /** "MM-DD" of a "YYYY-MM-DD" day. */
  const shortDay = (day) => day.slice(5);

  /**
   * The top of an axis for values up to `v`: the smallest of 1, 2, 5 × 10^n at or above it, or
   * for `counts` the smallest of 2, 4, 10 × 10^n (so that its half is a whole number too).
   */
  function niceMax(v, counts) {
    if (!(v > 0)) return counts ? 2 : 1;
    const steps = counts ? [2, 4, 10] : [1, 2, 5, 10];
    let p = counts ? 1 : 10 ** Math.floor(Math.log10(v));
    for (; p < 1e18; p *= 10) for (const m of steps) if (m * p >= v) return m * p;
    return v;
  }


  // ---------------------------------------------------------------------------------------------
  // SVG

  function svg(name, attrs, parent) {
    const e = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }

  function svgText(parent, x, y, text, attrs) {
    const t = svg('text', { x, y, ...(attrs || {}) }, parent);
    t.textContent = text;
    return t;
  }

  /** A titled, labelled chart of `width` × `height` in the container `id`, replacing what it held. */
  function chart(id, title, summary, width, height) {
    const box = document.getElementById(id);
    box.replaceChildren();
    const s = svg('svg', {
      viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `${title}. ${summary}`,
      class: 'chart', preserveAspectRatio: 'xMidYMid meet',
    }, box);
    svg('title', {}, s).textContent = title;
    svg('desc', {}, s).textContent = summary;
    return s;
  }

  /** The data table of a chart, below it in a <details> (the exact figures the chart draws). */
  function dataTable(id, headers, rows) {
    const box = document.getElementById(id);
    box.replaceChildren();
    const details = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Data';
    details.appendChild(summary);
    const table = document.createElement('table');
    const thead = document.createElement('thead');
    const tr = document.createElement('tr');
    for (const h of headers) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      tr.appendChild(th);
    }
    thead.appendChild(tr);
    table.appendChild(thead);
    const tbody = document.createElement('tbody');
    for (const r of rows) {
      const row = document.createElement('tr');
      for (const v of r) cell(row, v);
      tbody.appendChild(row);
    }
    table.appendChild(tbody);
    details.appendChild(table);
    box.appendChild(details);
  }

  const W = 640;
  const H = 220;
  const M = { left: 64, right: 16, top: 12, bottom: 28 };

  /** Y axis from 0 to `max` with three gridlines; returns the y of a value. */
  function yAxis(s, max, label) {
    const plotH = H - M.top - M.bottom;
    const y = (v) => M.top + plotH - (v / max) * plotH;
    for (const v of [0, max / 2, max]) {
      svg('line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v), class: 'grid' }, s);
      svgText(s, M.left - 6, y(v) + 4, label(v), { class: 'tick', 'text-anchor': 'end' });
    }
    return y;
  }

  /** Day labels under the slots of width `slot`: about eight of them, the last day's included. */
  function xDays(s, days, slot) {
    const every = Math.max(1, Math.ceil(days.length / 8));
    days.forEach((d, i) => {
      if ((days.length - 1 - i) % every === 0) {
        svgText(s, M.left + slot * (i + 0.5), H - M.bottom + 16, shortDay(d), { class: 'tick', 'text-anchor': 'middle' });
      }
    });
  }

  /** Vertical bars, one per day, stacked by `series` (each {id, name, colour, values[]}). */
  function barChart(id, title, days, series, unit) {
    const totals = days.map((_, i) => series.reduce((a, s) => a + s.values[i], 0));
    const all = totals.reduce((a, b) => a + b, 0);
    const s = chart(id, title, `${all} ${unit} over ${days.length} days; the busiest day had ${Math.max(0, ...totals)}.`, W, H);
    const max = niceMax(Math.max(...totals), true);
    const y = yAxis(s, max, String);
    const slot = (W - M.left - M.right) / days.length;
    const bw = Math.max(1, slot * 0.7);
    days.forEach((day, i) => {
      let base = 0;
      for (const ser of series) {
        const v = ser.values[i];
        if (v > 0 || series.length === 1) {
          const r = svg('rect', {
            x: M.left + slot * i + (slot - bw) / 2, y: y(base + v), width: bw, height: Math.max(0, y(base) - y(base + v)),
            fill: ser.colour, class: 'bar', 'data-day': day, 'data-series': ser.id, 'data-value': v,
          }, s);
          svg('title', {}, r).textContent = `${day}: ${v} ${series.length > 1 ? ser.name.toLowerCase() : unit}`;
        }
        base += v;
      }
    });
    xDays(s, days, slot);
  }

  /** A line with the area under it, one point per day. */
  function areaChart(id, title, days, values, label) {
    const last = values.length ? values[values.length - 1] : 0;
    const s = chart(id, title, `${label(last)} at the end of the period.`, W, H);
    const max = niceMax(Math.max(...values, 0), false);
    const y = yAxis(s, max, label);
    const slot = (W - M.left - M.right) / days.length;
    const x = (i) => M.left + slot * (i + 0.5);
    const pts = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    svg('path', {
      d: `M${x(0).toFixed(1)},${y(0)} L${pts.join(' L')} L${x(values.length - 1).toFixed(1)},${y(0)} Z`, class: 'area',
    }, s);
    svg('path', { d: `M${pts.join(' L')}`, class: 'line', 'data-points': values.length }, s);
    values.forEach((v, i) => {
      const c = svg('circle', { cx: x(i), cy: y(v), r: 2.5, class: 'point', 'data-day': days[i], 'data-value': v }, s);
      svg('title', {}, c).textContent = `${days[i]}: ${label(v)}`;
    });
    xDays(s, days, slot);
  }

  /** Horizontal bars of `items` ({name, sessions, duration_ms}), by sessions. */
  function topChart(id, title, items) {
    const rowH = 24;
    const height = Math.max(1, items.length) * rowH + 8;
    const s = chart(id, title, items.length
      ? `${items.map((t) => `${t.name}: ${t.sessions} sessions`).join('; ')}.`
      : 'No session in the period.', W, height);
    if (!items.length) {
      svgText(s, 8, 20, 'No session in the period.', { class: 'tick' });
      return;
    }
    const labelW = 150;
    const valueW = 150;
    const max = Math.max(...items.map((t) => t.sessions));
    items.forEach((t, i) => {
      const yy = 4 + i * rowH;
      svgText(s, labelW - 8, yy + 15, t.name.length > 22 ? `${t.name.slice(0, 21)}…` : t.name, { class: 'tick', 'text-anchor': 'end' });
      const w = ((W - labelW - valueW) * t.sessions) / max;
      const r = svg('rect', {
        x: labelW, y: yy + 3, width: Math.max(1, w), height: rowH - 8, class: 'bar hbar', 'data-name': t.name, 'data-value': t.sessions,
      }, s);
      svg('title', {}, r).textContent = `${t.name}: ${t.sessions} sessions, ${durationText(t.duration_ms)}`;
      svgText(s, labelW + w + 6, yy + 15, `${t.sessions} · ${durationText(t.duration_ms)}`, { class: 'tick' });
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Overview

  function kpi(id, value, note) {
    const tile = document.querySelector(`#overview-kpis [data-kpi="${id}"]`);
    tile.querySelector('.kpi-value').textContent = value;
    tile.querySelector('.kpi-note').textContent = note;
  }

  async function loadOverview() {
    const days = document.getElementById('overview-days').value || '30';
    let d;
    try {
      d = await api('GET', `/api/dashboard?days=${encodeURIComponent(days)}`);
    } catch (e) {
      flash(`Overview: ${e.message}`, true);
      return;
    }
    const c = d.coverage;
    kpi('coverage', pct(c.ratio), c.admitted ? `${c.recorded} of ${c.admitted} sessions recorded since the gateway started` : 'no session admitted since the gateway started');
    const g = d.integrity;
    kpi('integrity', pct(g.ratio), `${g.verified} verified, ${g.failed} failed, ${g.unverified} not verified yet`);
    kpi('live', String(d.live_sessions), d.live_sessions === 1 ? 'session running now' : 'sessions running now');
    kpi('storage', bytesText(d.bytes_stored), `stored; ${bytesText(d.bytes_total)} recorded in ${d.period.days} days (${d.sessions_total} sessions)`);
    document.querySelector('#overview-kpis [data-kpi="storage"] .kpi-value').title = `${d.bytes_stored} bytes`;
    const r = d.time_to_replay;
    let replayNote = 'no replay measured since the gateway started';
    if (r && r.samples === 1) replayNote = 'one replay measured since the gateway started';
    else if (r) replayNote = `median of the last ${r.samples} replays (90th percentile ${msText(r.p90_ms)})`;
    kpi('replay', r ? msText(r.median_ms) : '—', replayNote);

    const dayNames = d.sessions_per_day.map((x) => x.day);
    const enf = d.enforcement_per_day;
    barChart('chart-enforcement', 'Enforcement events per day', dayNames,
      KINDS.map((k) => ({ ...k, values: enf.map((x) => x.counts[k.id] || 0) })), 'enforcement events');
    dataTable('table-enforcement', ['Day', ...KINDS.map((k) => k.name), 'Total'],
      enf.map((x) => [x.day, ...KINDS.map((k) => x.counts[k.id] || 0), x.total]));
    const legend = document.getElementById('legend-enforcement');
    legend.replaceChildren(...KINDS.map((k) => {
      const li = document.createElement('li');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = k.colour;
      li.append(sw, ` ${k.name} (${d.enforcement_totals[k.id] || 0})`);
      return li;
    }));

    barChart('chart-sessions', 'Sessions per day', dayNames,
      [{ id: 'sessions', name: 'Sessions', colour: '#0969da', values: d.sessions_per_day.map((x) => x.sessions) }], 'sessions');
    dataTable('table-sessions', ['Day', 'Sessions'], d.sessions_per_day.map((x) => [x.day, x.sessions]));

    areaChart('chart-storage', 'Stored recordings (cumulative)', dayNames,
      d.bytes_per_day.map((x) => x.cumulative), bytesText);
    dataTable('table-storage', ['Day', 'Recorded that day', 'Cumulative'],
      d.bytes_per_day.map((x) => [x.day, bytesText(x.bytes), bytesText(x.cumulative)]));

    topChart('chart-top-users', 'Top privileged users by sessions', d.top_users);
    dataTable('table-top-users', ['User', 'Sessions', 'Total duration'], d.top_users.map((t) => [t.name, t.sessions, durationText(t.duration_ms)]));
    topChart('chart-top-targets', 'Top targets by sessions', d.top_targets);
    dataTable('table-top-targets', ['Target', 'Sessions', 'Total duration'], d.top_targets.map((t) => [t.name, t.sessions, durationText(t.duration_ms)]));

    const states = Object.entries(c.sessions_by_state).map(([k, v]) => `${v} ${k}`).join(', ');
    const cut = [d.truncated.sessions && 'sessions', d.truncated.audit && 'audit events'].filter(Boolean);
    document.getElementById('overview-note').textContent = `${d.period.since.slice(0, 10)} to ${d.period.until.slice(0, 10)} (UTC): `
      + `${d.sessions_total} sessions${states ? ` (${states})` : ''}.${cut.length ? ` Only the most recent ${cut.join(' and ')} are counted.` : ''}`;
    document.getElementById('view-overview').dataset.loaded = String(Date.now());
  }

  // ---------------------------------------------------------------------------------------------
  // On call

  /** Points every live card's thumbnail at a fresh image. */
  function refreshThumbnails() {
    for (const img of document.querySelectorAll('#oncall-cards img.thumb')) {
      img.src = `${img.dataset.src}?t=${Date.now()}`;
    }
  }

  function liveCard(s) {
    const card = document.createElement('article');
    card.className = 'card';
    card.dataset.session = s.session_id;
    const img = document.createElement('img');
    img.className = 'thumb';
    img.width = 320;
    img.alt = `Screen of ${s.user}'s session on ${s.target}, masked as recorded`;
    img.dataset.src = s.thumbnail;
    img.addEventListener('error', () => { img.classList.add('no-screen'); });
    img.addEventListener('load', () => { img.classList.remove('no-screen'); });
    img.src = `${s.thumbnail}?t=${Date.now()}`;
    const who = document.createElement('p');
    who.className = 'card-title';
    who.textContent = `${s.user} → ${s.target}`;
    const meta = document.createElement('p');
    meta.className = 'hint';
    meta.textContent = `${s.protocol.toUpperCase()} from ${s.client_addr}, since ${time(s.started_at)} UTC`;
    const actions = document.createElement('p');
    actions.appendChild(watchLink(s));
    if (s.can_terminate) {
      actions.append(' ');
      actions.appendChild(button('Terminate', 'danger terminate', () => terminate(s, loadOncall)));
    }
    card.append(img, who, meta, actions);
    return card;
  }

  async function loadOncall() {
    let d;
    try {
      d = await api('GET', '/api/oncall');
    } catch (e) {
      flash(`On call: ${e.message}`, true);
      return;
    }
    const cards = document.getElementById('oncall-cards');
    const present = new Set(d.live.map((s) => s.session_id));
    for (const c of [...cards.children]) if (!present.has(c.dataset.session)) c.remove();
    for (const s of d.live) {
      if (!cards.querySelector(`[data-session="${CSS.escape(s.session_id)}"]`)) cards.appendChild(liveCard(s));
    }
    document.getElementById('oncall-empty').hidden = d.live.length > 0;

    const body = document.getElementById('oncall-recent');
    body.replaceChildren();
    for (const it of d.recent) {
      const tr = document.createElement('tr');
      tr.dataset.kind = it.kind;
      if (it.session_id) tr.dataset.session = it.session_id;
      cell(tr, time(it.time));
      cell(tr, KIND_NAMES[it.kind] || it.kind).className = `kind-${it.kind}`;
      cell(tr, it.user || '');
      cell(tr, it.target || '');
      cell(tr, it.rule ? `${it.reason} (${it.rule})` : it.reason).className = 'reason';
      cell(tr, it.actor || '');
      cell(tr, it.player ? link('Recording', it.player) : '');
      body.appendChild(tr);
    }
    document.getElementById('oncall-recent-empty').hidden = d.recent.length > 0;
    document.getElementById('view-oncall').dataset.loaded = String(Date.now());
  }

  document.addEventListener('DOMContentLoaded', () => {
    document.getElementById('overview-days').addEventListener('change', loadOverview);
  });

  // ui.js shows the views; it calls this when one is shown.
  window.dashboardShow = dashboardShow;
})();
