// psmgate web UI: sign-in, live sessions (watch, lock, resume, terminate), just-in-time access (request,
// approve, deny), recordings and the audit log. Plain browser JavaScript over the admin API;
// the sign-in session is an HttpOnly cookie, so this script never holds a credential except the
// access token shown once to its requester.
'use strict';

const $ = (id) => document.getElementById(id);
let me = null;
let liveTimer = null;

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const ct = r.headers.get('content-type') || '';
  const data = ct.includes('application/json') ? await r.json() : await r.text();
  if (!r.ok) {
    const msg = (data && data.message) || (typeof data === 'string' ? data : r.statusText);
    const e = new Error(msg);
    e.status = r.status;
    throw e;
  }
  return data;
}

function flash(text, isError) {
  const f = $('flash');
  f.textContent = text;
  f.className = isError ? 'error' : '';
  f.hidden = !text;
}

function cell(tr, content) {
  const td = document.createElement('td');
  if (content instanceof Node) td.appendChild(content); else td.textContent = content == null ? '' : String(content);
  tr.appendChild(td);
  return td;
}

function button(label, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener('click', onClick);
  return b;
}

function link(label, href) {
  const a = document.createElement('a');
  a.href = href;
  a.textContent = label;
  return a;
}

const time = (s) => (s ? s.replace('T', ' ').replace(/\.\d+/, '').replace('Z', '') : '');
const can = (p) => me && me.permissions.includes(p);

function show(view) {
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== `view-${view}`;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === view);
  clearInterval(liveTimer);
  liveTimer = null;
  if (typeof dashboardShow === 'function') dashboardShow(view); // dashboard.js: overview, on call
  if (view === 'live') { loadLive(); liveTimer = setInterval(loadLive, 2000); }
  if (view === 'access') loadAccess();
  if (view === 'recordings') loadRecordings();
  if (view === 'audit') loadAudit();
}

function route() {
  if (!me) { show('login'); return; }
  const view = (location.hash.replace(/^#\//, '') || '').split('?')[0];
  const views = ['overview', 'oncall', 'live', 'access', 'recordings', 'audit'];
  const home = can('view_recordings') ? 'overview' : (can('watch_live') ? 'live' : 'access');
  show(views.includes(view) ? view : home);
}

async function loadMe() {
  try {
    me = await api('GET', '/api/me');
  } catch (e) {
    me = null;
  }
  $('nav').hidden = !me;
  $('logout').hidden = !me;
  $('who').textContent = me ? `${me.user} (${me.roles.join(', ')})` : '';
  for (const a of document.querySelectorAll('#nav a')) {
    const need = {
      overview: 'view_recordings', oncall: 'watch_live', live: 'watch_live', recordings: 'view_recordings', audit: 'view_audit',
    }[a.dataset.view];
    a.hidden = need ? !can(need) : false;
  }
  route();
}

async function loadLive() {
  try {
    const { sessions } = await api('GET', '/api/sessions/live');
    const body = $('live-rows');
    body.replaceChildren();
    for (const s of sessions) {
      const tr = document.createElement('tr');
      tr.dataset.session = s.session_id;
      cell(tr, time(s.started_at));
      cell(tr, s.user);
      cell(tr, s.target);
      cell(tr, s.protocol);
      cell(tr, s.client_addr);
      const actions = document.createElement('span');
      actions.appendChild(watchLink(s));
      if (s.can_terminate) {
        actions.append(' ');
        if (s.locked) actions.appendChild(button('Resume', 'resume', () => resume(s)));
        else actions.appendChild(button('Lock', 'lock', () => lockSession(s)));
        actions.append(' ');
        actions.appendChild(button('Terminate', 'danger terminate', () => terminate(s)));
      }
      if (s.locked) {
        const note = document.createElement('span');
        note.className = 'locked';
        note.textContent = ` locked by ${s.locked.actor}: ${s.locked.reason}`;
        actions.appendChild(note);
      }
      cell(tr, actions);
      body.appendChild(tr);
    }
    $('live-empty').hidden = sessions.length > 0;
  } catch (e) {
    flash(`Live sessions: ${e.message}`, true);
  }
}

/** The "Watch" link that opens the player on live session `s` in a new tab. */
function watchLink(s) {
  const watch = link('Watch', s.player);
  watch.target = '_blank';
  watch.className = 'watch';
  return watch;
}

/**
 * POSTs `action` (`terminate`, `lock`, `resume`) with `body` on live session `s`, says how it
 * went, then runs `refresh` (the view the action was taken from).
 */
async function sessionAction(s, action, body, done, refresh) {
  try {
    await api('POST', `/api/sessions/live/${encodeURIComponent(s.session_id)}/${action}`, body);
    flash(`Session of ${s.user} on ${s.target} ${done}.`);
    refresh();
  } catch (e) {
    flash(`${action[0].toUpperCase()}${action.slice(1)}: ${e.message}`, true);
  }
}

async function terminate(s, refresh = loadLive) {
  const reason = window.prompt(`Terminate ${s.user}'s session on ${s.target}? Reason:`);
  if (!reason) return;
  await sessionAction(s, 'terminate', { reason }, 'terminated', refresh);
}

async function lockSession(s) {
  const reason = window.prompt(`Lock ${s.user}'s session on ${s.target}? Their input stops reaching the target until you resume it. Reason:`);
  if (!reason) return;
  await sessionAction(s, 'lock', { reason }, 'locked', loadLive);
}

async function resume(s) {
  await sessionAction(s, 'resume', {}, 'resumed', loadLive);
}

async function loadAccess() {
  try {
    const { targets } = await api('GET', '/api/targets');
    const requestable = targets.filter((t) => t.permissions.includes('request_access'));
    const sel = $('request-target');
    sel.replaceChildren(...requestable.map((t) => {
      const o = document.createElement('option');
      o.value = t.name;
      o.textContent = `${t.name} (${t.protocol})`;
      return o;
    }));
    $('request-form').hidden = requestable.length === 0;
    await loadRequests();
  } catch (e) {
    flash(`Access: ${e.message}`, true);
  }
}

function showCredential(req) {
  const c = req.credential;
  $('credential').hidden = !c;
  if (!c) return;
  $('credential-token').textContent = c.token;
  $('credential-expiry').textContent = time(c.expires_at);
  $('credential-how').textContent = `Target ${req.target}: ${c.how}.`;
}

async function loadRequests() {
  const { requests } = await api('GET', '/api/access-requests');
  const body = $('request-rows');
  body.replaceChildren();
  for (const r of requests) {
    const tr = document.createElement('tr');
    tr.dataset.request = r.id;
    cell(tr, r.id);
    cell(tr, time(r.created_at));
    cell(tr, r.user);
    cell(tr, r.target);
    cell(tr, `${Math.round(r.duration_secs / 60)} min`);
    cell(tr, r.reason);
    const st = cell(tr, r.status + (r.decided_by ? ` by ${r.decided_by}` : ''));
    st.className = `status-${r.status}`;
    const actions = document.createElement('span');
    if (r.can_decide) {
      actions.appendChild(button('Approve', 'approve', () => decide(r, 'approve')));
      actions.append(' ');
      actions.appendChild(button('Deny', 'deny', () => decide(r, 'deny')));
    } else if (r.user === me.user && r.status === 'pending') {
      actions.appendChild(button('Cancel', 'cancel', () => cancelRequest(r)));
    } else if (r.credential) {
      actions.appendChild(button('Show credential', 'show-credential', () => showCredential(r)));
    }
    cell(tr, actions);
    body.appendChild(tr);
  }
}

async function decide(r, what) {
  try {
    await api('POST', `/api/access-requests/${r.id}/${what}`, {});
    flash(`Request ${r.id} ${what === 'approve' ? 'approved' : 'denied'}.`);
    loadRequests();
  } catch (e) {
    flash(`Request ${r.id}: ${e.message}`, true);
  }
}

async function cancelRequest(r) {
  try {
    await api('POST', `/api/access-requests/${r.id}/cancel`, {});
    loadRequests();
  } catch (e) {
    flash(`Request ${r.id}: ${e.message}`, true);
  }
}

// A date input's day (YYYY-MM-DD) as an RFC 3339 instant: its start in UTC, or with `next` the
// start of the following day (the API's `until` is exclusive).
function dayStart(day, next) {
  const d = new Date(`${day}T00:00:00Z`);
  if (next) d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().replace('.000Z', 'Z');
}

async function loadRecordings() {
  const q = new URLSearchParams();
  const text = $('filter-text').value.trim();
  if (text) q.set('q', text);
  if ($('filter-user').value) q.set('user', $('filter-user').value);
  if ($('filter-target').value) q.set('target', $('filter-target').value);
  if ($('filter-protocol').value) q.set('protocol', $('filter-protocol').value);
  if ($('filter-since').value) q.set('since', dayStart($('filter-since').value, false));
  if ($('filter-until').value) q.set('until', dayStart($('filter-until').value, true));
  try {
    const rows = await api('GET', `/api/recordings?${q}`);
    const body = $('recording-rows');
    body.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement('tr');
      cell(tr, link(time(r.started_at), `/player/?id=${encodeURIComponent(r.id)}`));
      cell(tr, r.user);
      cell(tr, r.target);
      cell(tr, r.protocol);
      cell(tr, r.duration_ms != null ? `${(r.duration_ms / 1000).toFixed(1)} s` : '');
      cell(tr, r.state);
      cell(tr, r.integrity);
      body.appendChild(tr);
    }
    $('recordings-empty').hidden = rows.length > 0;
  } catch (e) {
    flash(`Recordings: ${e.message}`, true);
  }
}

async function loadAudit() {
  try {
    const { entries, integrity } = await api('GET', '/api/audit?tail=500');
    $('audit-integrity').textContent = integrity.ok
      ? `Chain verified: ${integrity.entries} entries${integrity.unsigned ? `, ${integrity.unsigned} unsigned` : ''}.`
      : `Chain check FAILED: ${integrity.error}`;
    const body = $('audit-rows');
    body.replaceChildren();
    for (const e of entries.slice().reverse()) {
      const tr = document.createElement('tr');
      cell(tr, e.seq);
      cell(tr, time(e.time));
      cell(tr, e.actor);
      cell(tr, e.action);
      cell(tr, e.target || '');
      cell(tr, e.detail || e.session_id || '');
      body.appendChild(tr);
    }
  } catch (e) {
    flash(`Audit log: ${e.message}`, true);
  }
}

// Offers "Sign in with <provider>" when the gateway has OpenID Connect sign-in configured.
async function loadOidc() {
  try {
    const s = await api('GET', '/api/oidc');
    $('oidc').hidden = !s.enabled;
    if (s.enabled) $('oidc-login').textContent = `Sign in with ${s.label}`;
  } catch (e) {
    $('oidc').hidden = true;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  loadOidc();
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await api('POST', '/api/login', { user: $('login-user').value, password: $('login-password').value });
      $('login-password').value = '';
      flash('');
      await loadMe();
    } catch (e) {
      flash(`Sign-in failed: ${e.message}`, true);
    }
  });
  $('logout').addEventListener('click', async () => {
    try { await api('POST', '/api/logout', {}); } catch (e) { /* signed out either way */ }
    me = null;
    location.hash = '';
    loadMe();
  });
  $('request-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('POST', '/api/access-requests', {
        target: $('request-target').value, reason: $('request-reason').value, duration: $('request-duration').value,
      });
      $('request-reason').value = '';
      flash(r.status === 'approved' ? `Request ${r.id} approved by policy.` : `Request ${r.id} is waiting for approval.`);
      showCredential(r);
      loadRequests();
    } catch (e) {
      flash(`Request: ${e.message}`, true);
    }
  });
  $('recordings-filter').addEventListener('submit', (ev) => { ev.preventDefault(); loadRecordings(); });
  window.addEventListener('hashchange', route);
  loadMe();
});
