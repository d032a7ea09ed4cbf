// psmgate's replay glue: evaluated by the gateway in an about:blank page of the headless
// Chromium that renders a web session's video, after rrweb's replayer bundle (global `rrweb`).
// The gateway feeds the session's DOM recording (the masked rrweb events, as stored) with
// `window.__feed(page, events)`, then takes a screenshot of the viewport, which it sizes to what
// the promise returned by `__feed` says.
//
// - Events are applied as they arrive, in order: each replayer runs in live mode with a baseline
//   in the far future, so every event counts as past and is applied at once (rrweb's "sync"
//   path, without its virtual DOM); the gateway decides when frames are taken.
// - One replayer per page (browser tab or document), for the last few pages: a FullSnapshot
//   starts the page's replayer afresh (dropping its previous DOM and history), with the Meta
//   event that came just before it. Events of a page without a snapshot are ignored: they cannot
//   apply to any DOM.
// - The page shown is the one whose events came last (the admin's visible tab; hidden tabs stay
//   silent). Its replayed document lives in rrweb's sandboxed iframe (no scripts run), at the
//   top left of the viewport, at the size its Meta and ViewportResize events give.
// - Text and input values the recording masked (runs of `*`, which is how psmgate masks) are
//   drawn as plain grey boxes, so the video shows where something was masked but not even its
//   length.
(function () {
  'use strict';
  if (window.__feed || typeof rrweb === 'undefined') return;

  var META = 4;
  var FULL_SNAPSHOT = 2;
  var INCREMENTAL = 3;
  var VIEWPORT_RESIZE = 4;
  // Later than any timestamp (the largest Date): every event is "before" the baseline.
  var FAR_FUTURE = 8.64e15;
  var MAX_SIDE = 16384;
  // Pages whose replayers are kept (least recently shown goes first).
  var MAX_PAGES = 4;
  var MASKED = 'data-psmgate-masked';
  var STARS = /^\*+$/;

  var style = document.createElement('style');
  style.textContent = 'html,body{margin:0;padding:0;overflow:hidden;background:#fff}'
    + '.replayer-wrapper{position:relative}'
    + '.replayer-wrapper>iframe{border:0;display:block;background:#fff}'
    + '.replayer-mouse,.replayer-mouse-tail{display:none}';
  (document.head || document.documentElement).appendChild(style);

  // page id -> {root, replayer, size, used}
  var pages = new Map();
  // page id -> the Meta event waiting for its FullSnapshot
  var metas = new Map();
  var shown = null;
  var clock = 0;

  function validSide(v) {
    return typeof v === 'number' && isFinite(v) && v >= 1 && v <= MAX_SIDE;
  }

  function noteSize(entry, data) {
    if (data && validSide(data.width) && validSide(data.height)) {
      entry.size = { width: Math.round(data.width), height: Math.round(data.height) };
    }
  }

  function drop(page) {
    var entry = pages.get(page);
    if (!entry) return;
    pages.delete(page);
    try { entry.replayer.destroy(); } catch (e) { /* dropped all the same */ }
    if (entry.root.parentNode) entry.root.parentNode.removeChild(entry.root);
    if (shown === page) shown = null;
  }

  function start(page) {
    drop(page);
    if (pages.size >= MAX_PAGES) {
      var oldest = null;
      pages.forEach(function (e, p) { if (oldest === null || e.used < pages.get(oldest).used) oldest = p; });
      drop(oldest);
    }
    var root = document.createElement('div');
    root.style.display = 'none';
    document.body.appendChild(root);
    var replayer = new rrweb.Replayer([], {
      liveMode: true,
      root: root,
      mouseTail: false,
      UNSAFE_replayCanvas: false,
      showWarning: false,
      useVirtualDom: false,
      // No focus (a blinking caret repaints forever); CSS animations stay paused (rrweb's
      // default): a spinner would keep the renderer busy between frames.
      triggerFocus: false,
      insertStyleRules: [
        '[' + MASKED + ']{color:transparent!important;-webkit-text-fill-color:transparent!important;'
          + 'text-shadow:none!important;caret-color:transparent!important;'
          + 'background:#d0d0d0!important;background-image:none!important}',
        // A form field with a background loses its native look; its border stays plain.
        'input[' + MASKED + '],textarea[' + MASKED + '],select[' + MASKED + ']{border-style:solid!important;'
          + 'border-color:#a0a0a0!important}'
      ]
    });
    replayer.startLive(FAR_FUTURE);
    var entry = { root: root, replayer: replayer, size: null, used: ++clock };
    pages.set(page, entry);
    return entry;
  }

  function show(page) {
    var entry = pages.get(page);
    if (!entry) return;
    entry.used = ++clock;
    if (shown === page) return;
    var old = shown !== null && pages.get(shown);
    if (old) old.root.style.display = 'none';
    entry.root.style.display = '';
    shown = page;
  }

  function add(entry, event) {
    try { entry.replayer.addEvent(event); } catch (e) { /* one bad event does not stop the replay */ }
  }

  // Tags the elements of the page shown that show masked text or values (and untags those that
  // no longer do).
  function markMasked() {
    var entry = shown !== null && pages.get(shown);
    var doc = entry && entry.replayer.iframe && entry.replayer.iframe.contentDocument;
    if (!doc || !doc.documentElement) return;
    var tagged = new Set();
    var walker = doc.createTreeWalker(doc.documentElement, NodeFilter.SHOW_TEXT);
    for (var n = walker.nextNode(); n; n = walker.nextNode()) {
      var parent = n.parentElement;
      if (!parent || parent.tagName === 'STYLE' || parent.tagName === 'SCRIPT') continue;
      if (STARS.test(n.data)) tagged.add(parent);
    }
    var fields = doc.querySelectorAll('input,textarea,select');
    for (var i = 0; i < fields.length; i++) {
      var v = fields[i].value;
      if (typeof v === 'string' && STARS.test(v)) tagged.add(fields[i]);
    }
    var old = doc.querySelectorAll('[' + MASKED + ']');
    for (var j = 0; j < old.length; j++) {
      if (!tagged.has(old[j])) old[j].removeAttribute(MASKED);
    }
    tagged.forEach(function (el) {
      if (!el.hasAttribute(MASKED)) el.setAttribute(MASKED, '');
    });
  }

  function state() {
    var entry = shown !== null && pages.get(shown);
    var size = entry && entry.size;
    return {
      page: entry ? shown : null,
      width: size ? size.width : 0,
      height: size ? size.height : 0
    };
  }

  // Applies `events` of `page`; resolves, once they are in the DOM, to the page on screen and
  // its size (0 while no page was snapshotted).
  window.__feed = function (page, events) {
    if (typeof page !== 'string') page = String(page);
    if (!Array.isArray(events)) events = [];
    for (var i = 0; i < events.length; i++) {
      var e = events[i];
      if (!e || typeof e !== 'object') continue;
      if (e.type === META) {
        if (metas.size >= MAX_PAGES * 4 && !metas.has(page)) metas.clear();
        metas.set(page, e);
        continue;
      }
      var entry;
      if (e.type === FULL_SNAPSHOT) {
        try {
          entry = start(page);
        } catch (err) {
          drop(page);
          continue;
        }
        var meta = metas.get(page);
        metas.delete(page);
        if (meta) {
          noteSize(entry, meta.data);
          add(entry, meta);
        }
        add(entry, e);
        continue;
      }
      entry = pages.get(page);
      if (!entry) continue;
      if (e.type === INCREMENTAL && e.data && e.data.source === VIEWPORT_RESIZE) noteSize(entry, e.data);
      add(entry, e);
    }
    if (events.length) show(page);
    // The replayer applies added events in microtasks; a task later they are all in the DOM.
    return new Promise(function (resolve) {
      setTimeout(function () {
        try { markMasked(); } catch (err) { /* the frame is taken all the same */ }
        resolve(state());
      }, 0);
    });
  };
})();
