/*
 * psmgate player — main script.
 *
 * Two ways to get the bytes, one code path after that:
 *  - export mode: opened from disk (file://), where fetch/XHR are blocked; everything comes from
 *    data.js (window.PSMGATE_RECORDING: manifest, manifest_text, chain, base64 media + file map,
 *    events, trusted_key);
 *  - served mode: /player/?id=<session-id> on the gateway; files come from
 *    /api/recordings/<id>/manifest and /api/recordings/<id>/files/<path>.
 * Both expose the same "source": manifest, chain text, getFile(path) -> bytes. Playback, timeline,
 * transcript and the integrity check only use that, so what is verified is exactly what is played.
 *
 * Video: MediaSource in both modes (init segment, then media segments in order, per period with a
 * timestampOffset that puts the period at its start_ms). From disk, <video src=blob:recording.mp4>
 * also plays and seeks accurately in Chromium (both were compared frame by frame), but a single
 * MP4 cannot carry several periods (screen-size changes) and would be a second code path; MSE takes
 * a new init segment per period and is what served mode needs anyway. The blob path remains as a
 * fallback for browsers without MediaSource (period 1 only); `?video=blob` forces it for diagnosis.
 */
(function (root) {
  'use strict';
  var PSM = root.PSM;
  var $ = function (id) { return document.getElementById(id); };
  var IDLE_GAP = 3; // seconds without a screen change or event that count as idle
  var RATES = [1, 2, 4, 8, 16];

  // State visible to tests and to the console (read-only by convention).
  var state = (PSM.state = {
    mode: null, videoMode: null, manifest: null, events: [], changes: [], idle: [], duration: 0,
    integrity: null, ready: false, error: null
  });

  // ------------------------------------------------------------------ helpers
  var utf8 = new TextEncoder();
  function b64ToBytes(s) {
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function showError(msg) {
    state.error = msg;
    var box = $('error');
    box.textContent = msg;
    box.hidden = false;
    $('video-status').textContent = '';
  }
  function isoUtc(s) {
    if (!s) return '—';
    var d = new Date(s);
    if (isNaN(d.getTime())) return String(s);
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
  }
  function fmtDur(ms) {
    if (typeof ms !== 'number' || !isFinite(ms)) return '—';
    if (ms < 60000) return (Math.round(ms / 100) / 10) + ' s';
    var s = Math.round(ms / 1000);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    return (h ? h + ' h ' : '') + (h || m ? m + ' min ' : '') + (s % 60) + ' s';
  }

  // ------------------------------------------------------------------ sources
  /** Export mode: everything from data.js. */
  function exportSource(d) {
    var media = typeof d.media === 'string' ? b64ToBytes(d.media) : new Uint8Array(0);
    var map = d.files && typeof d.files === 'object' ? d.files : {};
    var events = d.events && typeof d.events === 'object' ? d.events : {};
    var manifest = d.manifest;
    if (typeof d.manifest_text === 'string') {
      try { manifest = JSON.parse(d.manifest_text); } catch (e) { /* verification reports it */ }
    }
    return {
      mode: 'export',
      manifest: manifest,
      shownManifest: d.manifest,
      chainText: typeof d.chain === 'string' ? d.chain : '',
      trustedKey: d.trusted_key || null,
      describe: 'Export opened from disk',
      getFile: function (path) {
        if (path === 'manifest.json') return Promise.resolve(typeof d.manifest_text === 'string' ? utf8.encode(d.manifest_text) : null);
        if (path === 'chain.jsonl') return Promise.resolve(utf8.encode(d.chain || ''));
        if (typeof events[path] === 'string') return Promise.resolve(utf8.encode(events[path]));
        var r = map[path];
        if (Array.isArray(r) && r.length === 2 && r[0] >= 0 && r[1] >= 0) {
          return Promise.resolve(media.subarray(r[0], Math.min(r[0] + r[1], media.length)));
        }
        return Promise.resolve(null);
      }
    };
  }

  /** Served mode: the gateway's admin API (same origin). A bearer token may be passed as #token=… */
  async function servedSource(id) {
    var base = '../api/recordings/' + encodeURIComponent(id);
    if (location.pathname.indexOf('/player/') < 0) base = '/api/recordings/' + encodeURIComponent(id);
    var hash = new URLSearchParams(location.hash.slice(1));
    var token = hash.get('token') || sessionStorage.getItem('psmgate-token');
    if (hash.get('token')) {
      sessionStorage.setItem('psmgate-token', hash.get('token'));
      history.replaceState(null, '', location.pathname + location.search);
    }
    var headers = token ? { Authorization: 'Bearer ' + token } : {};
    async function get(url) {
      var r = await fetch(url, { headers: headers, credentials: 'same-origin', cache: 'no-store' });
      if (r.status === 404) return null;
      if (!r.ok) throw new Error('GET ' + url + ' failed: HTTP ' + r.status);
      return new Uint8Array(await r.arrayBuffer());
    }
    var mBytes = await get(base + '/manifest');
    if (!mBytes) throw new Error('Recording ' + id + ' was not found');
    var manifest = JSON.parse(new TextDecoder().decode(mBytes));
    var chainBytes = await get(base + '/files/chain.jsonl');
    var cache = Object.create(null);
    var src = {
      mode: 'served',
      manifest: manifest,
      shownManifest: manifest,
      chainText: chainBytes ? new TextDecoder().decode(chainBytes) : '',
      trustedKey: new URLSearchParams(location.search).get('key'),
      describe: 'Served by the gateway',
      getFile: function (path) {
        if (path === 'chain.jsonl') return Promise.resolve(chainBytes);
        if (!cache[path]) {
          cache[path] = get(base + '/files/' + path.split('/').map(encodeURIComponent).join('/')).then(function (b) {
            // the sealed manifest: fall back to the manifest endpoint's bytes
            if (!b && path === 'manifest.json') return mBytes;
            return b;
          });
        }
        return cache[path];
      }
    };
    // Show the sealed manifest.json if there is one (that is what the chain covers).
    var sealed = await src.getFile('manifest.json').catch(function () { return null; });
    if (sealed && sealed !== mBytes) {
      try { src.manifest = src.shownManifest = JSON.parse(new TextDecoder().decode(sealed)); } catch (e) { /* reported by verify */ }
    }
    return src;
  }

  // ------------------------------------------------------------------ video model
  /**
   * Read every period's init and segments, parse their sample times, and compute where each
   * period sits on the session timeline.
   */
  async function buildVideoModel(src, manifest) {
    var periods = Array.isArray(manifest.periods) ? manifest.periods : [];
    var out = [];
    var changes = [];
    var warnings = [];
    for (var p = 0; p < periods.length; p++) {
      var per = periods[p];
      var init = await src.getFile(per.init);
      if (!init) { warnings.push(per.init + ' is not available; period ' + (p + 1) + ' cannot be played'); continue; }
      var info;
      try { info = PSM.mp4.parseInit(init); } catch (e) { warnings.push(per.init + ': ' + e.message); continue; }
      var segs = [];
      var firstBase = null;
      var segList = Array.isArray(per.segments) ? per.segments : [];
      for (var s = 0; s < segList.length; s++) {
        var bytes = await src.getFile(segList[s].file);
        if (!bytes) { warnings.push(segList[s].file + ' is not available'); continue; }
        var frags = [];
        try { frags = PSM.mp4.parseSegment(bytes, info); } catch (e) { warnings.push(segList[s].file + ': ' + e.message); }
        if (firstBase === null && frags.length) firstBase = frags[0].baseTime;
        segs.push({ file: segList[s].file, bytes: bytes, frags: frags });
      }
      var startSec = (typeof per.start_ms === 'number' ? per.start_ms : 0) / 1000;
      var offset = startSec - (firstBase || 0) / info.timescale;
      var end = startSec;
      segs.forEach(function (sg) {
        sg.frags.forEach(function (f) {
          f.samples.forEach(function (t) { changes.push(t / info.timescale + offset); });
          end = Math.max(end, (f.baseTime + f.duration) / info.timescale + offset);
        });
      });
      out.push({ index: p, period: per, init: init, info: info, segments: segs, offset: offset, start: startSec, end: end });
    }
    changes.sort(function (a, b) { return a - b; });
    return { periods: out, changes: changes, warnings: warnings };
  }

  function appendBuffer(sb, bytes) {
    return new Promise(function (resolve, reject) {
      function done() { sb.removeEventListener('error', fail); resolve(); }
      function fail() { sb.removeEventListener('updateend', done); reject(new Error('the browser rejected the video data')); }
      sb.addEventListener('updateend', done, { once: true });
      sb.addEventListener('error', fail, { once: true });
      try { sb.appendBuffer(bytes); } catch (e) {
        sb.removeEventListener('updateend', done);
        sb.removeEventListener('error', fail);
        reject(e);
      }
    });
  }

  async function attachMse(video, model, codec, duration) {
    var mime = 'video/mp4; codecs="' + codec + '"';
    if (!MediaSource.isTypeSupported(mime)) throw new Error('This browser cannot play ' + mime);
    var ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    await new Promise(function (r) { ms.addEventListener('sourceopen', r, { once: true }); });
    var sb = ms.addSourceBuffer(mime);
    for (var p = 0; p < model.periods.length; p++) {
      var per = model.periods[p];
      sb.timestampOffset = per.offset;
      await appendBuffer(sb, per.init);
      for (var s = 0; s < per.segments.length; s++) {
        try {
          await appendBuffer(sb, per.segments[s].bytes);
        } catch (e) {
          if (e && e.name === 'QuotaExceededError') {
            showError('The recording is larger than the browser\'s video buffer; playback stops at ' + PSM.fmtTime(per.segments[s].frags.length ? per.segments[s].frags[0].baseTime / per.info.timescale + per.offset : per.start) + '.');
            p = model.periods.length;
            break;
          }
          throw new Error(per.segments[s].file + ': ' + e.message);
        }
      }
    }
    var bufEnd = sb.buffered.length ? sb.buffered.end(sb.buffered.length - 1) : 0;
    ms.duration = Math.max(duration, bufEnd, 0.1);
    ms.endOfStream();
    return 'mse';
  }

  /** Fallback without MediaSource: period 1 as one fragmented MP4 blob. */
  function attachBlob(video, model) {
    var per = model.periods[0];
    var parts = [per.init].concat(per.segments.map(function (s) { return s.bytes; }));
    video.src = URL.createObjectURL(new Blob(parts, { type: 'video/mp4' }));
    return 'blob';
  }

  // ------------------------------------------------------------------ idle stretches
  function computeIdle(changes, events, duration) {
    var times = changes.slice();
    events.forEach(function (e) { times.push(e.t / 1000); });
    times.push(0, duration);
    times.sort(function (a, b) { return a - b; });
    var idle = [];
    for (var i = 1; i < times.length; i++) {
      if (times[i] - times[i - 1] > IDLE_GAP) idle.push([times[i - 1], times[i]]);
    }
    return idle;
  }

  // ------------------------------------------------------------------ header / metadata
  function renderMeta(m, model, events) {
    var title = (m.user || 'unknown user') + ' → ' + (m.target || 'unknown target');
    $('title').textContent = title;
    document.title = title + ' — psmgate recording';
    var sizes = (m.periods || []).map(function (p) { return p.width + '×' + p.height; });
    var resizes = events.filter(function (e) { return e.type === 'resize'; });
    var state_ = m.state || (m.ended_at ? 'ended' : 'recording');
    var rows = [
      ['User', m.user], ['Target', m.target], ['Protocol', m.protocol], ['Client', m.client_addr],
      ['Started', isoUtc(m.started_at)], ['Ended', m.ended_at ? isoUtc(m.ended_at) : '—'],
      ['Duration', fmtDur(m.duration_ms)], ['State', state_],
      ['Screen', sizes.join(' → ') || '—'],
      ['Resizes', (m.periods || []).length > 1 ? (m.periods || []).slice(1).map(function (p) {
        return PSM.fmtTime((p.start_ms || 0) / 1000) + ' → ' + p.width + '×' + p.height;
      }).join(', ') : (resizes.length > 1 ? resizes.length - 1 + ' resize event(s)' : 'none')],
      ['Codec', m.codec], ['Encoder', m.encoder], ['End reason', m.end_reason || '—'],
      ['Session', m.session_id], ['Gateway', m.gateway], ['Policy', m.policy_version],
      ['Masks', Array.isArray(m.mask_rule_ids) && m.mask_rule_ids.length ? m.mask_rule_ids.join(', ') : 'none'],
      ['Signing key', m.key_id]
    ];
    var dl = $('meta');
    dl.textContent = '';
    rows.forEach(function (r) {
      var div = el('div');
      div.appendChild(el('dt', '', r[0]));
      var dd = el('dd', r[0] === 'State' ? 'state-' + String(r[1]).toLowerCase() : '', r[1] === undefined || r[1] === null || r[1] === '' ? '—' : String(r[1]));
      dd.title = dd.textContent;
      div.appendChild(dd);
      dl.appendChild(div);
    });
  }

  // ------------------------------------------------------------------ badge
  function renderIntegrity(res) {
    state.integrity = res;
    document.body.setAttribute('data-integrity', res.status);
    var badge = $('badge');
    badge.className = 'badge badge-' + res.status;
    $('badge-text').textContent = res.title;
    badge.title = res.title;
    $('integrity-summary').textContent = res.title;
    var ol = $('integrity-problems');
    ol.textContent = '';
    res.problems.forEach(function (p) { ol.appendChild(el('li', '', p)); });
    var ul = $('integrity-notes');
    ul.textContent = '';
    res.notes.forEach(function (p) { ul.appendChild(el('li', '', p)); });
  }

  // ------------------------------------------------------------------ main
  /** Load the export's data.js (a classic script, so it also works from file://). */
  function loadDataScript() {
    return new Promise(function (resolve) {
      var s = document.createElement('script');
      s.src = 'data.js';
      s.onload = s.onerror = function () { resolve(); };
      document.body.appendChild(s);
    });
  }

  async function main() {
    var video = $('video');
    var id = new URLSearchParams(location.search).get('id');
    if (!id && !root.PSMGATE_RECORDING) await loadDataScript();
    var data = root.PSMGATE_RECORDING;
    var src;
    try {
      if (data && typeof data === 'object') src = exportSource(data);
      else if (id) src = await servedSource(id);
      else throw new Error('No recording: open an export folder\'s index.html, or /player/?id=<session-id> on the gateway.');
    } catch (e) {
      showError(e.message || String(e));
      $('title').textContent = 'Recording unavailable';
      renderIntegrity({ status: 'unavailable', title: 'Not checked', problems: [], notes: [] });
      document.body.setAttribute('data-ready', 'error');
      return;
    }
    state.mode = src.mode;
    var m = src.manifest && typeof src.manifest === 'object' ? src.manifest : {};
    state.manifest = m;
    $('source').textContent = src.describe + ' · ' + (m.session_id || '');

    // Integrity check runs alongside everything else.
    var integrityDone = PSM.integrity.verify({
      sessionId: m.session_id, chainText: src.chainText, manifest: src.shownManifest || m,
      getFile: src.getFile, trustedKey: src.trustedKey,
      onProgress: function (d, t) { $('badge-text').textContent = 'Checking integrity… ' + d + '/' + t; }
    }).then(renderIntegrity, function (e) {
      renderIntegrity({ status: 'fail', title: 'Integrity check failed: ' + (e.message || e), problems: [String(e.message || e)], notes: [] });
    });

    // Transcript
    var evFiles = [];
    var evList = Array.isArray(m.events) ? m.events : [];
    for (var i = 0; i < evList.length; i++) {
      var b = await src.getFile(evList[i]);
      if (b) evFiles.push({ file: evList[i], text: new TextDecoder().decode(b) });
    }
    var parsed = PSM.transcript.parse(evFiles);
    var events = parsed.events;
    state.events = events;

    // Video
    var model = await buildVideoModel(src, m);
    model.warnings.forEach(function (w) { console.warn(w); });
    var lastEvent = events.length ? events[events.length - 1].t / 1000 : 0;
    var videoEnd = model.periods.reduce(function (a, p) { return Math.max(a, p.end); }, 0);
    var duration = Math.max(typeof m.duration_ms === 'number' ? m.duration_ms / 1000 : 0, videoEnd, lastEvent, 0.1);
    state.duration = duration;
    state.changes = model.changes;
    state.idle = computeIdle(model.changes, events, duration);
    renderMeta(m, model, events);

    var ui = setupUi(video, events, model, duration);
    try {
      if (!model.periods.length) throw new Error('The recording has no playable video' + (model.warnings.length ? ': ' + model.warnings[0] : ''));
      var forceBlob = new URLSearchParams(location.search).get('video') === 'blob'; // diagnostics
      if (root.MediaSource && m.codec && !forceBlob) state.videoMode = await attachMse(video, model, m.codec, duration);
      else state.videoMode = attachBlob(video, model);
      if (model.warnings.length) showError('Some video could not be loaded: ' + model.warnings.join('; '));
    } catch (e) {
      showError('Video cannot be played: ' + (e.message || e));
    }
    await new Promise(function (r) {
      if (video.readyState >= 1 || state.error) r();
      else {
        video.addEventListener('loadedmetadata', r, { once: true });
        video.addEventListener('error', r, { once: true });
      }
    });
    $('video-status').textContent = '';
    ui.refresh();
    state.ready = true;
    document.body.setAttribute('data-ready', '1');
    await integrityDone;
  }

  // ------------------------------------------------------------------ UI wiring
  function setupUi(video, events, model, duration) {
    var T = PSM.transcript;
    var list = $('events');
    var search = $('transcript-search');
    var showAll = $('show-all');
    var skip = $('skip-idle');
    var rows = [];
    var matchIdx = -1;
    var currentRow = null;

    var timeline = new PSM.Timeline($('timeline'), {
      tooltip: $('timeline-tip'),
      onSeek: function (t) { seek(t); }
    });
    var markers = [];
    events.forEach(function (e) {
      var d = T.describe(e);
      e._d = d;
      if (d.marker) markers.push({ t: e.t / 1000, kind: d.marker, label: d.label, text: d.text });
    });
    timeline.setData({ duration: duration, events: events, changes: model.changes, idle: state.idle, markers: markers });

    function seek(t) {
      t = Math.min(Math.max(t, 0), duration);
      // Chromium does not repaint the last frame after a seek to exactly the end of the media.
      var max = isFinite(video.duration) ? Math.max(0, video.duration - 0.02) : duration;
      video.currentTime = Math.min(t, max);
      timeline.setTime(t);
      updateClock(t);
    }
    PSM.seek = seek;

    // ---- transcript list
    var frag = document.createDocumentFragment();
    events.forEach(function (e) {
      var d = e._d;
      var li = el('li');
      li.tabIndex = 0;
      li.dataset.t = String(e.t);
      li.appendChild(el('span', 't', PSM.fmtTime(e.t / 1000)));
      li.appendChild(el('span', 'k k-' + d.label, d.label));
      var x = el('span', 'x' + (d.masked ? ' masked' : ''), d.text);
      li.appendChild(x);
      li.setAttribute('aria-label', PSM.fmtTime(e.t / 1000) + ' ' + d.label + ' ' + d.text);
      li.addEventListener('click', function () { selectRow(rows[e._i]); });
      li.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); selectRow(rows[e._i]); }
      });
      rows.push({ ev: e, li: li, x: x, text: d.text, hidden: d.hidden, visible: true });
      frag.appendChild(li);
    });
    list.appendChild(frag);
    var empty = el('li', 'empty', 'No events.');
    list.appendChild(empty);

    function selectRow(r) {
      rows.forEach(function (o) { o.li.classList.remove('selected'); });
      r.li.classList.add('selected');
      seek(r.ev.t / 1000);
    }

    function applyFilter() {
      var q = search.value.trim();
      var n = 0;
      var times = [];
      rows.forEach(function (r) {
        var ms = q ? T.matches(r.text, q) : [];
        var show = (showAll.checked || !r.hidden) && (!q || ms.length > 0);
        r.visible = show;
        r.li.hidden = !show;
        r.x.textContent = '';
        if (ms.length) {
          var pos = 0;
          ms.forEach(function (m) {
            r.x.appendChild(document.createTextNode(r.text.slice(pos, m[0])));
            r.x.appendChild(el('mark', '', r.text.slice(m[0], m[1])));
            pos = m[1];
          });
          r.x.appendChild(document.createTextNode(r.text.slice(pos)));
          times.push(r.ev.t / 1000);
        } else {
          r.x.textContent = r.text;
        }
        if (show) n++;
      });
      empty.hidden = n > 0;
      empty.textContent = q ? 'No match for “' + q + '”.' : 'No events.';
      $('search-count').textContent = q ? times.length + (times.length === 1 ? ' match' : ' matches') : '';
      timeline.setMatches(times);
      matchIdx = -1;
    }
    search.addEventListener('input', applyFilter);
    showAll.addEventListener('change', applyFilter);
    search.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') { search.value = ''; applyFilter(); return; }
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      var hits = rows.filter(function (r) { return r.visible && search.value.trim(); });
      if (!hits.length) return;
      matchIdx = ev.shiftKey ? (matchIdx <= 0 ? hits.length - 1 : matchIdx - 1) : (matchIdx + 1) % hits.length;
      selectRow(hits[matchIdx]);
      hits[matchIdx].li.scrollIntoView({ block: 'nearest' });
    });
    applyFilter();

    // ---- controls
    var playBtn = $('play');
    function togglePlay() {
      if (video.paused || video.ended) {
        if (video.ended) seek(0);
        video.play().catch(function (e) { console.warn('play failed', e); });
      } else video.pause();
    }
    playBtn.addEventListener('click', togglePlay);
    video.addEventListener('click', togglePlay);
    function syncPlay() {
      var playing = !video.paused && !video.ended;
      playBtn.classList.toggle('playing', playing);
      playBtn.setAttribute('aria-label', playing ? 'Pause' : 'Play');
    }
    ['play', 'pause', 'ended'].forEach(function (n) { video.addEventListener(n, syncPlay); });

    var rateButtons = Array.prototype.slice.call(document.querySelectorAll('.speed button'));
    function setRate(r) {
      video.playbackRate = r;
      video.defaultPlaybackRate = r;
      rateButtons.forEach(function (b) {
        var on = Number(b.dataset.rate) === r;
        b.setAttribute('aria-checked', String(on));
        b.tabIndex = on ? 0 : -1;
      });
    }
    rateButtons.forEach(function (b, i) {
      b.addEventListener('click', function () { setRate(Number(b.dataset.rate)); });
      b.addEventListener('keydown', function (ev) {
        var d = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 }[ev.key];
        if (!d) return;
        ev.preventDefault();
        ev.stopPropagation();
        var nb = rateButtons[Math.min(Math.max(i + d, 0), rateButtons.length - 1)];
        setRate(Number(nb.dataset.rate));
        nb.focus();
      });
    });
    setRate(1);
    // keep the chosen rate when the media element resets it (e.g. after a new source)
    video.addEventListener('loadedmetadata', function () {
      var sel = rateButtons.filter(function (b) { return b.getAttribute('aria-checked') === 'true'; })[0];
      if (sel) video.playbackRate = Number(sel.dataset.rate);
    });

    $('badge').addEventListener('click', function () {
      var p = $('integrity-panel');
      p.hidden = !p.hidden;
      this.setAttribute('aria-expanded', String(!p.hidden));
    });

    // ---- keyboard
    document.addEventListener('keydown', function (ev) {
      var tag = (ev.target && ev.target.tagName) || '';
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (tag === 'INPUT' || tag === 'TEXTAREA') return;
      if (ev.key === '/') { ev.preventDefault(); search.focus(); return; }
      if ((ev.key === ' ' || ev.key === 'k') && tag !== 'BUTTON' && tag !== 'LI') { ev.preventDefault(); togglePlay(); return; }
      if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
        ev.preventDefault();
        var step = (ev.shiftKey ? 1 : 5) * (ev.key === 'ArrowLeft' ? -1 : 1);
        seek(video.currentTime + step);
        return;
      }
      if (ev.key === '<' || ev.key === '>') {
        var i = RATES.indexOf(video.playbackRate);
        if (i < 0) i = 0;
        setRate(RATES[Math.min(Math.max(i + (ev.key === '>' ? 1 : -1), 0), RATES.length - 1)]);
      }
    });

    // ---- clock, current event, idle skipping
    function updateClock(t) {
      $('clock').textContent = PSM.fmtTime(t) + ' / ' + PSM.fmtTime(duration);
      var per = null;
      model.periods.forEach(function (p) { if (t + 1e-3 >= p.start) per = p; });
      $('period-info').textContent = per ? per.period.width + '×' + per.period.height + (model.periods.length > 1 ? ' · period ' + (per.index + 1) + '/' + model.periods.length : '') : '';
    }
    function markCurrent(t) {
      var lo = 0;
      var hi = rows.length - 1;
      var best = -1;
      while (lo <= hi) {
        var mid = (lo + hi) >> 1;
        if (rows[mid].ev.t / 1000 <= t + 1e-3) { best = mid; lo = mid + 1; } else hi = mid - 1;
      }
      while (best >= 0 && !rows[best].visible) best--;
      var r = best >= 0 ? rows[best] : null;
      if (r === currentRow) return;
      if (currentRow) currentRow.li.classList.remove('current');
      currentRow = r;
      if (r) {
        r.li.classList.add('current');
        if (!video.paused && !list.matches(':hover') && document.activeElement !== search) {
          var lr = list.getBoundingClientRect();
          var rr = r.li.getBoundingClientRect();
          if (rr.top < lr.top || rr.bottom > lr.bottom) list.scrollTop += rr.top - lr.top - lr.height / 3;
        }
      }
    }
    function skipIdle(t) {
      if (!skip.checked || video.paused || video.seeking) return false;
      for (var i = 0; i < state.idle.length; i++) {
        var g = state.idle[i];
        if (t >= g[0] + 0.5 && t < g[1] - 0.5) {
          seek(g[1] - 0.5);
          return true;
        }
      }
      return false;
    }
    function tick() {
      var t = video.currentTime;
      if (!skipIdle(t)) {
        timeline.setTime(t);
        updateClock(t);
      }
      markCurrent(t);
    }
    video.addEventListener('timeupdate', tick);
    video.addEventListener('seeked', tick);
    (function loop() {
      if (!video.paused) tick();
      requestAnimationFrame(loop);
    })();
    return { refresh: function () { tick(); timeline.draw(); } };
  }

  main().catch(function (e) {
    console.error(e);
    showError(e.message || String(e));
    document.body.setAttribute('data-ready', 'error');
  });
})(window);
