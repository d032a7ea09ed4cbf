// psmgate's in-page recorder: started by the script psmgate injects into every intercepted
// HTML page, after rrweb's recorder (global `rrwebRecord`). It captures the page as rrweb
// events, masks in the browser (password inputs always; the configured selectors and text
// patterns), and posts batches to the proxy's reserved path, which never forwards them and
// masks again. A batch goes at least every `heartbeat_ms` even when nothing changed: the proxy
// ends a session whose pages stop reporting while it keeps making requests.
//
// The placeholder assigned to `cfg` below is replaced by the proxy with a JSON object:
//   {"page": "id psmgate gave this page", "post": "/__psmgate/events", "flush_ms": 1000, "heartbeat_ms": 5000,
//    "mask_selectors": "css list or empty", "mask_patterns": ["regex", ...]}
(function () {
  'use strict';
  var cfg = PSMGATE_CONFIG;
  if (window.__psmgateRecorder || typeof rrwebRecord === 'undefined' || !cfg) return;
  window.__psmgateRecorder = true;

  var page = cfg.page || randomId();
  var seq = 0;
  var queue = [];
  var lastSent = 0;
  var selectors = cfg.mask_selectors || '';
  var patterns = (cfg.mask_patterns || []).map(function (p) {
    try { return new RegExp(p, 'g'); } catch (e) { return null; }
  }).filter(Boolean);

  function randomId() {
    var a = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }
  function stars(text) {
    return new Array(Math.min(String(text).length, 64) + 1).join('*');
  }
  function maskPatterns(text) {
    var out = String(text);
    for (var i = 0; i < patterns.length; i++) {
      out = out.replace(patterns[i], function (m) { return stars(m); });
    }
    return out;
  }
  function inMasked(el) {
    if (!selectors || !el) return false;
    var e = el.nodeType === 1 ? el : el.parentElement;
    try { return !!(e && e.closest && e.closest(selectors)); } catch (err) { return true; }
  }

  // A hidden page (background tab) says so and stops its heartbeat: browsers throttle timers
  // there, and a hidden page shows the admin nothing. It reports again once visible.
  var saidHidden = false;
  function send(final) {
    var now = Date.now();
    var hidden = document.visibilityState === 'hidden';
    if (!queue.length && !final) {
      if (hidden ? saidHidden : now - lastSent < cfg.heartbeat_ms) return;
    }
    saidHidden = hidden;
    var batch = {
      page: page, seq: seq++, url: maskPatterns(location.href), title: maskPatterns(document.title),
      heartbeat: true, gone: !!(final || hidden), events: queue.splice(0, queue.length)
    };
    lastSent = now;
    var body = JSON.stringify(batch);
    if (final && navigator.sendBeacon) {
      navigator.sendBeacon(cfg.post, new Blob([body], { type: 'application/json' }));
      return;
    }
    try {
      fetch(cfg.post, {
        method: 'POST', body: body, credentials: 'omit', keepalive: body.length < 60000,
        headers: { 'content-type': 'application/json' }
      }).catch(function () {});
    } catch (e) { /* the next batch carries on */ }
  }

  rrwebRecord.record({
    emit: function (event) {
      queue.push(event);
      if (queue.length >= 500) send(false);
    },
    // Every input value goes through maskInputFn; every text node through maskTextFn.
    maskAllInputs: true,
    maskInputOptions: { password: true },
    maskInputFn: function (text, el) {
      if (el && ((el.type || '').toLowerCase() === 'password' || inMasked(el))) return stars(text);
      return maskPatterns(text);
    },
    maskTextSelector: '*',
    maskTextFn: function (text, el) {
      if (inMasked(el)) return stars(text);
      return maskPatterns(text);
    },
    recordCanvas: false,
    collectFonts: false,
    inlineImages: false,
    checkoutEveryNms: 5 * 60 * 1000
  });

  setInterval(function () { send(false); }, Math.max(200, cfg.flush_ms || 1000));
  send(false);
  window.addEventListener('pagehide', function () { send(true); });
  document.addEventListener('visibilitychange', function () { send(false); });
})();
