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
 * Video: MediaSource in both modes (video.js: a period's init segment, then its media segments, with a
 * timestampOffset that puts the period at its start_ms). A sealed recording loads progressively: the
 * first frame needs the manifest, the chain, the first period's init segment and the first media
 * segment (and the transcript); the other segments stream in the background, the segment of a seek
 * first. From disk, <video src=blob:recording.mp4>
 * also plays and seeks accurately in Chromium (both were compared frame by frame), but a single
 * MP4 cannot carry several periods (screen-size changes) and would be a second code path; MSE takes
 * a new init segment per period and is what served mode needs anyway. The blob path remains as a
 * fallback for browsers without MediaSource (period 1 only); `?video=blob` forces it for diagnosis.
 *
 * Web console sessions (protocol "web") also have a DOM replay view (domreplay.js: rrweb's Replayer
 * fed with the transcript's `dom` batches) next to the video, synchronised with the same clock;
 * without video (no periods) it is the only view and a wall-clock stand-in for the video element
 * (clock.js) is the clock. Their transcript gets filters (All / Pages / HTTP / Policy).
 *
 * Live: a served recording whose manifest is still the partial one (state "recording") is followed
 * (live.js): the player reads the chain's new lines as they are chained (the gateway holds each read
 * until there are some) and the newly chained bytes, feeds them to the same SourceBuffer, extends
 * timeline and transcript, and keeps the playhead at the live edge until the viewer seeks back
 * ("Go live" returns). The seal ends it with the full check.
 */
(function (root) {
  'use strict';
  var PSM = root.PSM;
  var $ = function (id) { return document.getElementById(id); };
  var IDLE_GAP = 3; // seconds without a screen change or event that count as idle
  var RATES = [1, 2, 4, 8, 16];
  var V = PSM.video;
  var PRIO = V.PRIO;
  var REFRESH_MS = 200; // at most this often, the timeline takes newly loaded segments

  // State visible to tests and to the console (read-only by convention).
  var state = (PSM.state = {
    mode: null, videoMode: null, manifest: null, events: [], changes: [], idle: [], duration: 0,
    integrity: null, ready: false, loaded: false, segments: { total: 0, loaded: 0 }, error: null, view: 'video', markers: [], filter: 'all',
    dom: { status: 'none' },
    live: { active: false, following: false, sealed: false, edge: 0, lag: null, polls: 0 }
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
  function decode(b) {
    return new TextDecoder().decode(b);
  }
  function sleep(ms) {
    return new Promise(function (r) { setTimeout(r, ms); });
  }
  function bufferedEnd(video) {
    var b = video.buffered;
    return b && b.length ? b.end(b.length - 1) : 0;
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
    function fileUrl(path) {
      return base + '/files/' + path.split('/').map(encodeURIComponent).join('/');
    }
    /**
     * Bytes [start, end) of a file (to its end without `end`); null when there are none yet (416).
     * opts.wait: seconds the gateway may hold the answer until the file grows (the chain's tail).
     */
    async function getRange(path, start, end, opts) {
      var h = {};
      if (start > 0 || end !== undefined) h.Range = 'bytes=' + start + '-' + (end === undefined ? '' : end - 1);
      if (headers.Authorization) h.Authorization = headers.Authorization;
      var url = fileUrl(path) + (opts && opts.wait > 0 ? '?wait=' + Math.round(opts.wait) : '');
      var r = await fetch(url, { headers: h, credentials: 'same-origin', cache: 'no-store' });
      if (r.status === 404 || r.status === 416) return null;
      if (!r.ok) throw new Error('GET ' + path + ' failed: HTTP ' + r.status);
      var b = new Uint8Array(await r.arrayBuffer());
      // a server that ignores Range sends the whole file
      return r.status === 206 ? b : b.subarray(Math.min(start, b.length), end === undefined ? b.length : end);
    }
    var mBytes = await get(base + '/manifest');
    if (!mBytes) throw new Error('Recording ' + id + ' was not found');
    var manifest = JSON.parse(decode(mBytes));
    // Each file is fetched once, the most urgent first (video.js); the integrity check's reads are
    // the least urgent.
    var files = new V.FileQueue(function (path) {
      return get(fileUrl(path)).then(function (b) {
        // the sealed manifest: fall back to the manifest endpoint's bytes
        if (!b && path === 'manifest.json') return mBytes;
        return b;
      });
    });
    // Show the sealed manifest.json if there is one (that is what the chain covers). The manifest
    // endpoint prefers it, so a partial one ("recording") means there was none.
    var got = await Promise.all([
      get(base + '/files/chain.jsonl'),
      manifest.state === 'recording' ? mBytes : files.get('manifest.json', PRIO.now).catch(function () { return null; })
    ]);
    var chainBytes = got[0];
    var sealed = got[1];
    var src = {
      mode: 'served',
      manifest: manifest,
      shownManifest: manifest,
      chainText: chainBytes ? new TextDecoder().decode(chainBytes) : '',
      trustedKey: new URLSearchParams(location.search).get('key'),
      describe: 'Served by the gateway',
      getFile: function (path, prio) {
        if (path === 'chain.jsonl') return Promise.resolve(chainBytes);
        return files.get(path, prio);
      }
    };
    if (sealed && sealed !== mBytes) {
      try { src.manifest = src.shownManifest = JSON.parse(decode(sealed)); } catch (e) { /* reported by verify */ }
    } else if (manifest.state === 'recording' && canFollow()) {
      makeLive(src, chainBytes, getRange, async function () {
        var b = await get(base + '/manifest');
        return b ? JSON.parse(decode(b)) : null;
      });
    }
    return src;
  }

  /** Live needs MediaSource (the blob fallback cannot grow). */
  function canFollow() {
    return !!(root.MediaSource && PSM.live) && new URLSearchParams(location.search).get('video') !== 'blob';
  }

  /** Turn a served source into a live one: every byte comes from the chain-driven store. */
  function makeLive(src, chainBytes, getRange, fetchManifest) {
    var store = new PSM.live.LiveStore({
      chain: chainBytes || new Uint8Array(0), fetchRange: getRange,
      // A held read keeps one of the browser's few connections to the gateway: only a tab that is
      // shown holds one, a hidden tab asks every POLL_MS.
      wait: function () { return document.hidden ? 0 : PSM.live.WAIT_S; }
    });
    src.live = store;
    src.chainText = store.chainText();
    src.getFile = function (path) { return store.getFile(path); };
    src.fetchManifest = fetchManifest;
    src.describe = 'Served by the gateway, recording in progress';
  }

  // ------------------------------------------------------------------ video
  /** MediaSource unless it is missing, the codec is unknown or `?video=blob` asks for the fallback. */
  function useMse(m) {
    return !!(root.MediaSource && m.codec) && new URLSearchParams(location.search).get('video') !== 'blob';
  }

  /** Whether a period of the model can be played (its init segment was read and parsed). */
  function playable(model) {
    return model.periods.some(function (p) { return !!p.init; });
  }

  /** The SourceBuffer is full: say from when on the video is missing. */
  function bufferFull(t) {
    showError('The recording is larger than the browser\'s video buffer; video from ' + PSM.fmtTime(t) + ' on that is not buffered yet cannot be played.');
  }

  // ------------------------------------------------------------------ idle stretches
  /**
   * Stretches longer than IDLE_GAP without a screen change or an event. `unknown` spans (video not
   * loaded yet: its screen changes are not known) are never idle.
   */
  function computeIdle(changes, events, duration, unknown) {
    var times = changes.slice();
    events.forEach(function (e) { times.push(e.t / 1000); });
    times.push(0, duration);
    (unknown || []).forEach(function (u) { times.push(u[0], u[1]); });
    times.sort(function (a, b) { return a - b; });
    var idle = [];
    for (var i = 1; i < times.length; i++) {
      var a = times[i - 1];
      var b = times[i];
      if (b - a <= IDLE_GAP) continue;
      var inUnknown = (unknown || []).some(function (u) { return a >= u[0] && b <= u[1]; });
      if (!inUnknown) idle.push([a, b]);
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
    if (m.protocol === 'web') {
      var pages = Object.create(null);
      var http = 0;
      events.forEach(function (e) {
        if (e.type === 'dom' && typeof e.page === 'string') pages[e.page] = true;
        if (e.type === 'http') http++;
      });
      rows.splice(8, 0, ['Pages', String(Object.keys(pages).length)], ['HTTP requests', String(http)]);
      if (!(m.periods || []).length) rows = rows.filter(function (r) { return ['Screen', 'Resizes', 'Codec', 'Encoder'].indexOf(r[0]) < 0; });
    }
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
    // Everything the live follower updates later.
    var ctx = {
      src: src, video: video, manifest: m, events: [], evSeen: Object.create(null), model: null, mse: null, ui: null, duration: 0, verifyGen: 0,
      dom: null, // web sessions: PSM.dom.DomModel of the transcript's dom batches
      clock: null, // web sessions without video: the PSM.Clock that stands in for the video element
      loader: null, // sealed recordings played through MediaSource: the progressive loader (video.js)
      refreshTimer: null
    };
    var web = m.protocol === 'web';
    if (web) {
      ctx.dom = new PSM.dom.DomModel();
      document.body.setAttribute('data-web', '1');
    }

    // Integrity check runs alongside everything else (and reads every file).
    var integrityDone = runVerify(ctx, true);

    // A sealed recording shows its first segment as soon as it is here (at the same time as the
    // transcript); the rest follows in the background. The blob fallback and live recordings read
    // all the video there is first.
    var hasPeriods = Array.isArray(m.periods) && m.periods.length > 0;
    var firstShown = null;
    if (hasPeriods && !src.live && useMse(m)) {
      ctx.loader = new V.Loader({ manifest: m, getFile: src.getFile, video: video, onChange: function () { loaderChanged(ctx); } });
      ctx.loader.onFull = bufferFull;
      firstShown = ctx.loader.first().then(function () {
        ctx.mse = ctx.loader.mse;
        state.videoMode = 'mse';
      }, function (e) {
        showError('Video cannot be played: ' + (e.message || e));
      });
    }
    ctx.events = withDerived(ctx, await readEvents(src, m, ctx.evSeen));
    if (firstShown) {
      await firstShown;
      ctx.model = ctx.loader.model;
    } else {
      ctx.model = V.layout(m, hasPeriods ? await V.readAll(src.getFile, m) : Object.create(null), null);
      ctx.model.warnings.forEach(function (w) { console.warn(w); });
    }
    ctx.duration = sessionDuration(m, ctx.model, ctx.events);
    if (ctx.loader) await ctx.loader.setDuration(ctx.duration);
    if (web && !hasPeriods) ctx.clock = new PSM.Clock({ duration: ctx.duration, live: !!src.live });
    publish(ctx);
    renderMeta(m, ctx.model, ctx.events);

    var ui = (ctx.ui = setupUi(ctx.clock || video, ctx));
    if (ctx.clock) {
      state.videoMode = 'none';
      $('video-status').textContent = '';
    } else if (!ctx.loader) await attachVideo(ctx);
    if (ctx.domView) await ctx.domView.start();
    var nothingYet = !ctx.clock && (!video.getAttribute('src') || (ctx.mse && ctx.mse.period < 0)); // live, no fragment yet
    await new Promise(function (r) {
      if (ctx.clock || video.readyState >= 1 || state.error || nothingYet) r();
      else {
        video.addEventListener('loadedmetadata', r, { once: true });
        video.addEventListener('error', r, { once: true });
      }
    });
    if (!ctx.clock) $('video-status').textContent = nothingYet && src.live ? 'Waiting for video…' : '';
    ui.refresh();
    state.ready = true;
    document.body.setAttribute('data-ready', '1');
    if (ctx.loader && ctx.mse) streamVideo(ctx);
    else markLoaded();
    if (src.live) followLive(ctx);
    await integrityDone;
  }

  /** Every segment is in the SourceBuffer (or all there is, for a live recording). */
  function markLoaded() {
    state.loaded = true;
    document.body.setAttribute('data-loaded', '1');
  }

  /**
   * The rest of a sealed recording's video, in the background; a seek to a segment not loaded yet
   * loads that one first.
   */
  function streamVideo(ctx) {
    function failed(e) { showError('Video cannot be played: ' + (e.message || e)); }
    ctx.video.addEventListener('seeking', function () { ctx.loader.seek(ctx.video.currentTime).catch(failed); });
    ctx.loader.stream().then(function () {
      refreshLoaded(ctx);
      if (ctx.model.warnings.length) showError('Some video could not be loaded: ' + ctx.model.warnings.join('; '));
      return ctx.loader.end(ctx.duration);
    }).catch(failed).then(markLoaded);
  }

  /** The loader took a segment: update duration, timeline and idle stretches (at most every REFRESH_MS). */
  function loaderChanged(ctx) {
    if (ctx.refreshTimer) return;
    ctx.refreshTimer = setTimeout(function () { refreshLoaded(ctx); }, REFRESH_MS);
  }

  function refreshLoaded(ctx) {
    clearTimeout(ctx.refreshTimer);
    ctx.refreshTimer = null;
    ctx.model = ctx.loader.model;
    ctx.duration = sessionDuration(ctx.manifest, ctx.model, ctx.events);
    ctx.loader.setDuration(ctx.duration);
    publish(ctx);
    if (ctx.ui) ctx.ui.update([]);
  }

  /**
   * Put video that is read already on the element: MediaSource (a live recording), or the blob
   * fallback. (Sealed recordings through MediaSource load progressively instead: streamVideo.)
   */
  async function attachVideo(ctx) {
    var m = ctx.manifest;
    var model = ctx.model;
    try {
      if (!playable(model)) {
        if (ctx.src.live) return; // the first period is still to come
        throw new Error('The recording has no playable video' + (model.warnings.length ? ': ' + model.warnings[0] : ''));
      }
      if (useMse(m)) {
        ctx.mse = await V.openMse(ctx.video, m.codec, !!ctx.src.live);
        ctx.mse.onFull = bufferFull;
        await V.feedMse(ctx.mse, model, !!ctx.src.live);
        if (!ctx.src.live) V.finishMse(ctx.mse, ctx.duration);
        state.videoMode = 'mse';
      } else state.videoMode = V.attachBlob(ctx.video, model);
      if (model.warnings.length && !ctx.src.live) showError('Some video could not be loaded: ' + model.warnings.join('; '));
    } catch (e) {
      showError('Video cannot be played: ' + (e.message || e));
    }
  }

  /** Run the integrity check on what the source holds now; only the latest run is shown. */
  function runVerify(ctx, progress) {
    var gen = ++ctx.verifyGen;
    var src = ctx.src;
    function show(res) { if (gen === ctx.verifyGen) renderIntegrity(res); }
    return PSM.integrity.verify({
      sessionId: ctx.manifest.session_id, chainText: src.chainText, manifest: src.shownManifest || ctx.manifest,
      getFile: src.getFile, trustedKey: src.trustedKey,
      onProgress: function (d, t) { if (progress && gen === ctx.verifyGen) $('badge-text').textContent = 'Checking integrity… ' + d + '/' + t; }
    }).then(show, function (e) {
      show({ status: 'fail', title: 'Integrity check failed: ' + (e.message || e), problems: [String(e.message || e)], notes: [] });
    });
  }

  // ------------------------------------------------------------------ transcript and timing
  /**
   * Events of the transcript files past what was read already (`seen`: file -> bytes read). The
   * files are fetched at the same time, ahead of the video in the background.
   */
  async function readEvents(src, m, seen) {
    var files = [];
    var list = (Array.isArray(m.events) ? m.events : []).filter(function (f) { return typeof f === 'string'; });
    var got = await Promise.all(list.map(function (f) { return src.getFile(f, PRIO.now); }));
    for (var i = 0; i < list.length; i++) {
      var b = got[i];
      var from = seen[list[i]] || 0;
      if (!b || b.length <= from) continue;
      files.push({ file: list[i], text: decode(b.subarray(from)) });
      seen[list[i]] = b.length;
    }
    return PSM.transcript.parse(files).events;
  }

  /** Web sessions: feed new events to the DOM model and add the rows it derives (typed text). */
  function withDerived(ctx, fresh) {
    if (!ctx.dom || !fresh.length) return fresh;
    var derived = ctx.dom.add(fresh);
    if (!derived.length) return fresh;
    return fresh.concat(derived).sort(function (a, b) { return a.t - b.t; });
  }

  function sessionDuration(m, model, events) {
    var lastEvent = events.length ? events[events.length - 1].t / 1000 : 0;
    var videoEnd = model.periods.reduce(function (a, p) { return Math.max(a, p.end); }, 0);
    return Math.max(typeof m.duration_ms === 'number' ? m.duration_ms / 1000 : 0, videoEnd, lastEvent, 0.1);
  }

  /** Copy the current model into the state the page exposes. */
  function publish(ctx) {
    state.manifest = ctx.manifest;
    state.events = ctx.events;
    state.duration = ctx.duration;
    var changes = ctx.model.changes;
    if (ctx.dom && ctx.dom.changes.length) changes = changes.concat(ctx.dom.changes).sort(function (a, b) { return a - b; });
    state.changes = changes;
    state.idle = computeIdle(changes, ctx.events, ctx.duration, ctx.model.unknown);
    state.segments = { total: ctx.model.segments, loaded: ctx.model.loaded };
    state.markers = markersOf(ctx.events);
  }

  // ------------------------------------------------------------------ live
  /**
   * Follow the chain until the recording is sealed, then run the full check. Each read of the
   * chain's tail is held by the gateway until new lines are chained, so the next read starts as
   * soon as the last one's bytes are in; a read that brought nothing new (a server that answers at
   * once) or failed is followed by the next one POLL_MS after it started.
   */
  async function followLive(ctx) {
    var store = ctx.src.live;
    ctx.ui.live.start(Date.parse(ctx.manifest.started_at));
    var verifiedCps = store.checkpoints;
    var verifiedAt = Date.now();
    while (!store.sealed) {
      var began = Date.now();
      var fresh = false;
      try {
        fresh = await liveStep(ctx);
        ctx.ui.live.status('');
      } catch (e) {
        console.warn('live update failed', e);
        ctx.ui.live.status('Live update failed (' + (e.message || e) + '); retrying');
      }
      state.live.polls++;
      if (!fresh && !store.sealed) await sleep(Math.max(0, PSM.live.POLL_MS - (Date.now() - began)));
      // Re-check at most every 10 s when new signed checkpoints arrived.
      if (!store.sealed && store.checkpoints > verifiedCps && Date.now() - verifiedAt >= 10000) {
        verifiedCps = store.checkpoints;
        verifiedAt = Date.now();
        ctx.src.chainText = store.chainText();
        runVerify(ctx, false);
      }
    }
    await finishLive(ctx);
  }

  /** Files the chain names that the manifest does not list yet (a new segment, period or transcript file). */
  function unlisted(store, m) {
    var listed = Object.create(null);
    PSM.integrity.manifestFiles(m).forEach(function (f) { listed[f.file] = true; });
    return Object.keys(store.extent).filter(function (f) { return !listed[f] && f !== 'manifest.json'; });
  }

  /** One read of the chain's new lines and their bytes; true when there were new lines. */
  async function liveStep(ctx) {
    var store = ctx.src.live;
    var r = await store.poll();
    var reload = !store.sealed && unlisted(store, ctx.manifest).length > 0;
    if (reload) {
      var m = await ctx.src.fetchManifest();
      if (m && typeof m === 'object') ctx.manifest = m;
    }
    if (r.changed.length || reload) await liveRefresh(ctx, reload);
    return r.lines > 0;
  }

  /** Take the new bytes: transcript, video model, SourceBuffer, timeline. */
  async function liveRefresh(ctx, manifestChanged) {
    var fresh = withDerived(ctx, await readEvents(ctx.src, ctx.manifest, ctx.evSeen));
    if (fresh.length) ctx.events = ctx.events.concat(fresh).sort(function (a, b) { return a.t - b.t; });
    ctx.model = V.layout(ctx.manifest, await V.readAll(ctx.src.getFile, ctx.manifest), ctx.model);
    // (a session shown without video keeps its clock: video arriving later is not played)
    if (!ctx.clock && !ctx.mse && playable(ctx.model) && ctx.manifest.codec) await attachVideo(ctx);
    else if (ctx.mse) await V.feedMse(ctx.mse, ctx.model, !ctx.src.live.sealed);
    if (ctx.mse && ctx.mse.period >= 0) $('video-status').textContent = '';
    ctx.duration = sessionDuration(ctx.manifest, ctx.model, ctx.events);
    if (ctx.clock) ctx.clock.setLimit(ctx.duration, !ctx.src.live.sealed);
    publish(ctx);
    ctx.ui.update(fresh);
    if (manifestChanged) renderMeta(ctx.manifest, ctx.model, ctx.events);
  }

  /** Sealed: take the last bytes and the sealed manifest, end the stream, verify everything. */
  async function finishLive(ctx) {
    var store = ctx.src.live;
    var sealed = await store.getFile('manifest.json');
    try {
      if (sealed) ctx.manifest = JSON.parse(decode(sealed));
    } catch (e) { /* reported by the integrity check */ }
    ctx.src.manifest = ctx.src.shownManifest = ctx.manifest;
    ctx.src.chainText = store.chainText();
    ctx.src.describe = 'Served by the gateway';
    $('source').textContent = ctx.src.describe + ' · ' + (ctx.manifest.session_id || '');
    await liveRefresh(ctx, true);
    if (ctx.mse) V.finishMse(ctx.mse, ctx.duration);
    ctx.ui.live.end();
    await runVerify(ctx, true);
  }

  // ------------------------------------------------------------------ UI wiring
  /** Markers for the timeline from events (and each event's description, kept on the event). */
  function markersOf(events) {
    var markers = [];
    events.forEach(function (e) {
      var d = e._d || (e._d = PSM.transcript.describe(e));
      if (d.marker) markers.push({ t: e.t / 1000, kind: d.marker, label: d.label, text: d.text });
    });
    return markers;
  }

  /** HTTP requests for the timeline strip: {t (s), level}, the failures drawn last (on top). */
  function httpOf(events) {
    var order = { ok: 0, warn: 1, bad: 2, deny: 3 };
    var out = [];
    events.forEach(function (e) {
      if (e.type !== 'http') return;
      var d = e._d || (e._d = PSM.transcript.describe(e));
      out.push({ t: e.t / 1000, level: d.level || 'ok' });
    });
    return out.sort(function (a, b) { return order[a.level] - order[b.level]; });
  }

  /** Index of the first row later than `t` (rows are sorted by time). */
  function upperBound(rows, t) {
    var lo = 0;
    var hi = rows.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (rows[mid].ev.t <= t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /**
   * Controls, transcript list, timeline and keyboard. `ctx` holds events, model and duration; a
   * live recording updates them and calls update(newEvents).
   */
  function setupUi(video, ctx) {
    var T = PSM.transcript;
    var list = $('events');
    var search = $('transcript-search');
    var showAll = $('show-all');
    var skip = $('skip-idle');
    var rows = [];
    var matchIdx = -1;
    var currentRow = null;
    var live = state.live;

    var timeline = new PSM.Timeline($('timeline'), {
      tooltip: $('timeline-tip'),
      onSeek: function (t) { seek(t); }
    });
    var matchTimes = [];
    function setTimeline() {
      timeline.setData({ duration: ctx.duration, events: ctx.events, changes: state.changes, idle: state.idle, markers: state.markers, http: httpOf(ctx.events) });
    }
    setTimeline();

    // ---- DOM replay view (web sessions) and the Video / DOM replay tabs
    var domView = null;
    if (ctx.dom) {
      domView = ctx.domView = new PSM.dom.DomView({
        stage: $('dom-stage'), status: $('dom-status'), url: $('dom-url'), title: $('dom-title'), model: ctx.dom, state: state.dom
      });
      PSM.domView = domView;
      $('dom-stage').addEventListener('click', function () { togglePlay(); });
      var tabs = [$('tab-video'), $('tab-dom')];
      $('view-tabs').hidden = false;
      if (ctx.clock) {
        $('tab-video').disabled = true;
        $('tab-video').title = 'This recording has no video';
      }
      tabs.forEach(function (tab, i) {
        tab.addEventListener('click', function () { setView(i ? 'dom' : 'video'); });
        tab.addEventListener('keydown', function (ev) {
          if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
          ev.preventDefault();
          ev.stopPropagation();
          var next = tabs[1 - i];
          if (next.disabled) return;
          setView(i ? 'video' : 'dom');
          next.focus();
        });
      });
      setView(ctx.clock ? 'dom' : 'video');
    }
    /** Show the video or the DOM replay (both follow the same clock). */
    function setView(v) {
      // the replay rests while hidden (paused where the clock is) and catches up when shown again
      if (domView && v !== 'dom' && state.view === 'dom') domView.update(video.currentTime, false, video.playbackRate);
      state.view = v;
      document.body.setAttribute('data-view', v);
      $('video-wrap').hidden = v !== 'video';
      $('dom-view').hidden = v !== 'dom';
      [['video', $('tab-video')], ['dom', $('tab-dom')]].forEach(function (p) {
        p[1].setAttribute('aria-selected', String(p[0] === v));
        p[1].tabIndex = p[0] === v ? 0 : -1;
      });
      syncDom();
    }
    /** Bring the DOM replay to the clock's time, state and speed. */
    function syncDom() {
      if (!domView || state.view !== 'dom') return;
      var playing = !video.paused && !video.ended && !video.seeking && video.readyState >= 3;
      domView.update(video.currentTime, playing, video.playbackRate);
    }

    /** Seek on the viewer's behalf; while live, seeking back stops following the edge. */
    function seek(t) {
      t = Math.min(Math.max(t, 0), ctx.duration);
      // Chromium does not repaint the last frame after a seek to exactly the end of the media.
      var max = isFinite(video.duration) ? Math.max(0, video.duration - 0.02) : ctx.duration;
      video.currentTime = Math.min(t, max);
      timeline.setTime(t);
      updateClock(t);
      if (live.active) follow(t >= bufferedEnd(video) - 1);
      syncDom();
    }
    PSM.seek = seek;
    PSM.player = video; // what playback runs on: the video element, or the clock of a recording without video

    // ---- transcript list
    var empty = el('li', 'empty', 'No events.');
    list.appendChild(empty);
    function makeRow(e) {
      var d = e._d || (e._d = T.describe(e));
      var li = el('li');
      li.tabIndex = 0;
      li.dataset.t = String(e.t);
      li.appendChild(el('span', 't', PSM.fmtTime(e.t / 1000)));
      li.appendChild(el('span', 'k k-' + d.label, d.label));
      var x = el('span', 'x' + (d.masked ? ' masked' : ''), d.text);
      li.appendChild(x);
      li.setAttribute('aria-label', PSM.fmtTime(e.t / 1000) + ' ' + d.label + ' ' + d.text);
      if (d.level) li.classList.add('http-' + d.level);
      var row = { ev: e, d: d, li: li, x: x, text: d.text, hidden: d.hidden, visible: true, q: '' };
      li.addEventListener('click', function () { selectRow(row); });
      li.addEventListener('keydown', function (ev) {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); selectRow(row); }
      });
      return row;
    }
    /** Add rows in time order (new events usually come last). */
    function insertRows(events) {
      events.forEach(function (e) {
        var row = makeRow(e);
        var i = upperBound(rows, e.t);
        list.insertBefore(row.li, i < rows.length ? rows[i].li : empty);
        rows.splice(i, 0, row);
      });
    }
    insertRows(ctx.events);

    function selectRow(r) {
      rows.forEach(function (o) { o.li.classList.remove('selected'); });
      r.li.classList.add('selected');
      seek(r.ev.t / 1000);
    }

    /** Show or hide one row for query `q`, highlighting matches; true when it matches. */
    function filterRow(r, q) {
      var ms = q ? T.matches(r.text, q) : [];
      var show = (showAll.checked || !r.hidden) && T.inFilter(r.d, state.filter) && (!q || ms.length > 0);
      r.visible = show;
      r.li.hidden = !show;
      if (r.q === q) return ms.length > 0;
      r.q = q;
      r.x.textContent = '';
      if (!ms.length) { r.x.textContent = r.text; return false; }
      var pos = 0;
      ms.forEach(function (m) {
        r.x.appendChild(document.createTextNode(r.text.slice(pos, m[0])));
        r.x.appendChild(el('mark', '', r.text.slice(m[0], m[1])));
        pos = m[1];
      });
      r.x.appendChild(document.createTextNode(r.text.slice(pos)));
      return true;
    }
    function applyFilter(keepMatch) {
      var q = search.value.trim();
      var n = 0;
      matchTimes = [];
      rows.forEach(function (r) {
        if (filterRow(r, q)) matchTimes.push(r.ev.t / 1000);
        if (r.visible) n++;
      });
      empty.hidden = n > 0;
      empty.textContent = q ? 'No match for “' + q + '”.' : 'No events.';
      $('search-count').textContent = q ? matchTimes.length + (matchTimes.length === 1 ? ' match' : ' matches') : '';
      timeline.setMatches(matchTimes);
      if (!keepMatch) matchIdx = -1;
    }
    search.addEventListener('input', function () { applyFilter(false); });
    showAll.addEventListener('change', function () { applyFilter(false); });

    // ---- filters (web sessions): All / Pages / HTTP / Policy
    var filterButtons = Array.prototype.slice.call(document.querySelectorAll('#filters button'));
    function setFilter(f) {
      state.filter = T.FILTERS.indexOf(f) >= 0 ? f : 'all';
      filterButtons.forEach(function (b) {
        var on = b.dataset.filter === state.filter;
        b.setAttribute('aria-checked', String(on));
        b.tabIndex = on ? 0 : -1;
      });
      applyFilter(false);
    }
    /** Number of shown-by-default events per filter, on the buttons. */
    function countFilters() {
      var n = { page: 0, http: 0, policy: 0 };
      rows.forEach(function (r) {
        if (r.hidden) return;
        r.d.groups.forEach(function (g) { if (n[g] !== undefined) n[g]++; });
      });
      filterButtons.forEach(function (b) {
        var c = b.querySelector('.n');
        if (c) c.textContent = String(n[b.dataset.filter] || 0);
      });
    }
    filterButtons.forEach(function (b, i) {
      b.addEventListener('click', function () { setFilter(b.dataset.filter); });
      b.addEventListener('keydown', function (ev) {
        var d = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 }[ev.key];
        if (!d) return;
        ev.preventDefault();
        ev.stopPropagation();
        var nb = filterButtons[Math.min(Math.max(i + d, 0), filterButtons.length - 1)];
        setFilter(nb.dataset.filter);
        nb.focus();
      });
    });
    if (ctx.dom) {
      $('filters').hidden = false;
      countFilters();
    }
    PSM.setFilter = setFilter;
    search.addEventListener('keydown', function (ev) {
      if (ev.key === 'Escape') { search.value = ''; applyFilter(false); return; }
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      var hits = rows.filter(function (r) { return r.visible && search.value.trim(); });
      if (!hits.length) return;
      matchIdx = ev.shiftKey ? (matchIdx <= 0 ? hits.length - 1 : matchIdx - 1) : (matchIdx + 1) % hits.length;
      selectRow(hits[matchIdx]);
      hits[matchIdx].li.scrollIntoView({ block: 'nearest' });
    });
    applyFilter(false);

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
    ['play', 'playing', 'pause', 'ended', 'waiting', 'ratechange', 'seeking'].forEach(function (n) { video.addEventListener(n, syncDom); });

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
    function selectedRate() {
      var sel = rateButtons.filter(function (b) { return b.getAttribute('aria-checked') === 'true'; })[0];
      return sel ? Number(sel.dataset.rate) : 1;
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
    video.addEventListener('loadedmetadata', function () { video.playbackRate = selectedRate(); });

    $('badge').addEventListener('click', function () {
      var p = $('integrity-panel');
      p.hidden = !p.hidden;
      this.setAttribute('aria-expanded', String(!p.hidden));
    });

    // ---- live: follow the edge of a recording in progress
    var startedAt = NaN;
    function renderLive() {
      $('live').hidden = !live.active;
      $('live').classList.toggle('live-behind', live.active && !live.following);
      $('go-live').hidden = !live.active || live.following;
      document.body.setAttribute('data-live', live.active ? (live.following ? 'following' : 'behind') : (live.sealed ? 'sealed' : 'no'));
    }
    /** Start or stop following the live edge. */
    function follow(on) {
      var was = live.following;
      live.following = !!on && live.active;
      if (live.following && !was) {
        var edge = bufferedEnd(video);
        if (edge - video.currentTime > 1) video.currentTime = Math.max(0, edge - PSM.live.EDGE_JUMP_BACK);
        keepAtEdge();
        video.play().catch(function (e) { console.warn('play failed', e); });
      }
      if (!live.following && was) video.playbackRate = selectedRate();
      renderLive();
    }
    /** While following: catch up with the buffered end (faster playback, or a jump when far behind). */
    function keepAtEdge() {
      if (!live.active) return;
      live.edge = bufferedEnd(video);
      live.lag = isNaN(startedAt) ? null : (Date.now() - startedAt) / 1000 - video.currentTime;
      if (!live.following || !live.edge) return;
      var a = PSM.live.edgeAction(live.edge - video.currentTime);
      if (a.jump) video.currentTime = Math.max(0, live.edge - PSM.live.EDGE_JUMP_BACK);
      if (video.playbackRate !== a.rate) video.playbackRate = a.rate;
      if (video.paused && !video.seeking) video.play().catch(function () { /* retried next time */ });
    }
    $('go-live').addEventListener('click', function () { follow(true); });
    // a pause by the viewer (button, key, click, or the element itself) stops following
    video.addEventListener('pause', function () { if (live.following && !video.ended) follow(false); });
    var liveTimer = null;
    var liveApi = {
      start: function (started) {
        startedAt = started;
        live.active = true;
        liveTimer = setInterval(keepAtEdge, 250);
        follow(true);
      },
      end: function () {
        follow(false);
        live.active = false;
        live.sealed = true;
        clearInterval(liveTimer);
        $('live').title = '';
        renderLive();
      },
      status: function (msg) { $('live').title = msg || 'Recording in progress: following its live edge'; }
    };
    renderLive();

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
        var i = RATES.indexOf(selectedRate());
        if (i < 0) i = 0;
        setRate(RATES[Math.min(Math.max(i + (ev.key === '>' ? 1 : -1), 0), RATES.length - 1)]);
      }
    });

    // ---- clock, current event, idle skipping
    function updateClock(t) {
      $('clock').textContent = PSM.fmtTime(t) + ' / ' + PSM.fmtTime(ctx.duration);
      var per = null;
      ctx.model.periods.forEach(function (p) { if (t + 1e-3 >= p.start) per = p; });
      $('period-info').textContent = per ? per.period.width + '×' + per.period.height + (ctx.model.periods.length > 1 ? ' · period ' + (per.index + 1) + '/' + ctx.model.periods.length : '') : '';
    }
    function markCurrent(t) {
      var best = upperBound(rows, t * 1000 + 1) - 1;
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
      if (!skip.checked || video.paused || video.seeking || live.following) return false;
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
        syncDom();
      }
      markCurrent(t);
    }
    video.addEventListener('timeupdate', tick);
    video.addEventListener('seeked', tick);
    (function loop() {
      if (!video.paused) tick();
      requestAnimationFrame(loop);
    })();
    return {
      refresh: function () { tick(); timeline.draw(); },
      /** The live follower took new data: add the new events, redraw. */
      update: function (fresh) {
        if (fresh.length) {
          insertRows(fresh);
          applyFilter(true);
          if (ctx.dom) countFilters();
        }
        setTimeline();
        tick();
      },
      live: liveApi
    };
  }

  main().catch(function (e) {
    console.error(e);
    showError(e.message || String(e));
    document.body.setAttribute('data-ready', 'error');
  });
})(window);
