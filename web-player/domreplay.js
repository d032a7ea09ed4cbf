/*
 * psmgate player — DOM replay of web console sessions.
 *
 * The in-page recorder sends rrweb events in batches; the transcript keeps each batch as a `dom`
 * event: {"t": <ms since session start, when the batch arrived>, "page": <one id per loaded
 * document>, "seq", "url", "events": [rrweb events]}. This file
 *  - maps rrweb times (`timestamp`, ms since the epoch on the browser's clock) to session time
 *    with one shift taken from the first batch: its newest event is placed at the batch's `t`
 *    (the batch is sent right after it). The shift never changes afterwards, so what is shown
 *    while following a recording live stays where it was;
 *  - keeps the events of each page in arrival order, and which page is shown when: from the
 *    first event of each batch on, its page (a new page id → a replayer built from that page's
 *    events; the last few replayers are kept, so going back and forth between pages is quick);
 *  - drives rrweb's Replayer from the player's clock: paused → `pause(offset)` (events before
 *    the offset applied at once), playing → `play(offset)` at the player's speed, started again
 *    when they drift apart (a seek, a video that waits for data). New events of a recording in
 *    progress go to the replayer with `addEvent`;
 *  - derives "typed" transcript rows from rrweb Input events (one row per run of input into
 *    the same field within a batch), so the transcript search finds what was typed.
 *
 * The replayer runs in rrweb's sandboxed iframe (`sandbox="allow-same-origin"`, no scripts):
 * recorded page scripts never run; canvas replay is off and no extra style rules are inserted.
 * rrweb's bundle is loaded on demand from vendor/rrweb.min.js (a classic script, so exports
 * opened from disk load it too); without it the view says DOM replay is unavailable.
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});
  var KEEP_REPLAYERS = 3; // replayers kept (the shown page and the last ones shown)
  var RR_FULL_SNAPSHOT = 2;
  var RR_INCREMENTAL = 3;
  var RR_INPUT = 5;

  function isRrEvent(ev) {
    return !!ev && typeof ev === 'object' && typeof ev.type === 'number' && typeof ev.timestamp === 'number' && isFinite(ev.timestamp);
  }

  // ------------------------------------------------------------------ model
  /** The dom batches of a transcript: pages, which page is shown when, and the time mapping. */
  function DomModel() {
    this.shift = null; // session ms = rrweb timestamp + shift
    this.pages = Object.create(null); // id -> {id, events, hasSnapshot, url}
    this.pageCount = 0;
    this.spans = []; // one per batch, sorted by start: {start (session ms), page, url, t}
    this.titles = []; // {t, title}, sorted
    this.changes = []; // session seconds of every rrweb event (page changes, for idle and the strip)
    this.batches = 0;
    this.listener = null; // function(pageId, newEvents)
  }

  /** Session ms of an rrweb timestamp (the shift must be known). */
  DomModel.prototype.toSession = function (ts) {
    return ts + this.shift;
  };

  /**
   * Take new transcript events (sorted by time, after everything taken before).
   * @returns {Array<object>} derived transcript events (`input`: what was typed)
   */
  DomModel.prototype.add = function (events) {
    var derived = [];
    var before = this.batches;
    for (var i = 0; i < events.length; i++) {
      var e = events[i];
      if (e.type === 'title' && typeof e.title === 'string') insertSorted(this.titles, { t: e.t, title: e.title }, 't');
      if (e.type !== 'dom' || typeof e.page !== 'string' || !Array.isArray(e.events)) continue;
      var list = e.events.filter(isRrEvent);
      if (!list.length) continue;
      var lo = Infinity;
      var hi = -Infinity;
      list.forEach(function (ev) { lo = Math.min(lo, ev.timestamp); hi = Math.max(hi, ev.timestamp); });
      if (this.shift === null) this.shift = e.t - hi;
      var page = this.pages[e.page];
      if (!page) {
        page = this.pages[e.page] = { id: e.page, events: [], hasSnapshot: false, url: '' };
        this.pageCount++;
      }
      for (var k = 0; k < list.length; k++) {
        page.events.push(list[k]);
        if (list[k].type === RR_FULL_SNAPSHOT) page.hasSnapshot = true;
        this.changes.push(Math.max(0, this.toSession(list[k].timestamp)) / 1000);
      }
      if (typeof e.url === 'string' && e.url) page.url = e.url;
      this.batches++;
      // A batch cannot start after it arrived (a browser clock running fast since the first batch).
      var start = Math.max(0, Math.min(this.toSession(lo), e.t));
      insertSorted(this.spans, { start: start, page: e.page, url: typeof e.url === 'string' ? e.url : '', t: e.t }, 'start');
      derived = derived.concat(this.inputs(e, list));
      if (this.listener) this.listener(e.page, list);
    }
    if (this.batches !== before) this.changes.sort(function (a, b) { return a - b; });
    return derived;
  };

  /** Typed text of one batch: a row per run of Input events into the same field. */
  DomModel.prototype.inputs = function (batch, list) {
    var out = [];
    var last = null;
    for (var i = 0; i < list.length; i++) {
      var ev = list[i];
      var d = ev.data;
      if (ev.type !== RR_INCREMENTAL || !d || d.source !== RR_INPUT || typeof d.text !== 'string' || typeof d.id !== 'number') continue;
      if (!last || last.node !== d.id) {
        last = { t: 0, type: 'input', page: batch.page, node: d.id, text: '', derived: true };
        out.push(last);
      }
      last.t = Math.max(0, Math.min(this.toSession(ev.timestamp), batch.t));
      last.text = d.isChecked === true ? d.text + ' (checked)' : d.text;
      // masked in the browser and again by the proxy: one * per character
      if (/^\*+$/.test(d.text)) last.masked = true; else delete last.masked;
    }
    return out;
  };

  /** The batch shown at session time `ms` (the last one started by then), or null. */
  DomModel.prototype.spanAt = function (ms) {
    var lo = 0;
    var hi = this.spans.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (this.spans[mid].start <= ms) lo = mid + 1; else hi = mid;
    }
    return lo > 0 ? this.spans[lo - 1] : null;
  };

  /** The page title at session time `ms` ('' before the first one). */
  DomModel.prototype.titleAt = function (ms) {
    var title = '';
    for (var i = 0; i < this.titles.length && this.titles[i].t <= ms; i++) title = this.titles[i].title;
    return title;
  };

  function insertSorted(arr, item, key) {
    var i = arr.length;
    while (i > 0 && arr[i - 1][key] > item[key]) i--;
    arr.splice(i, 0, item);
  }

  // ------------------------------------------------------------------ loading rrweb
  var loading = null;
  /** rrweb's bundle (global `rrweb`), loaded once; resolves to null when it is not there. */
  function loadRrweb() {
    if (loading) return loading;
    loading = new Promise(function (resolve) {
      if (root.rrweb && root.rrweb.Replayer) { resolve(root.rrweb); return; }
      var css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = 'vendor/rrweb.min.css';
      css.onerror = function () { css.remove(); };
      document.head.appendChild(css);
      var s = document.createElement('script');
      s.src = 'vendor/rrweb.min.js';
      s.onload = function () { resolve(root.rrweb && root.rrweb.Replayer ? root.rrweb : null); };
      s.onerror = function () { resolve(null); };
      document.head.appendChild(s);
    });
    return loading;
  }

  // ------------------------------------------------------------------ view
  /**
   * The DOM replay view.
   * @param {object} o
   * @param {HTMLElement} o.stage   where the replayers go
   * @param {HTMLElement} o.status  message over the stage
   * @param {HTMLElement} o.url     address shown above the stage
   * @param {HTMLElement} o.title   page title shown above the stage
   * @param {DomModel} o.model
   * @param {object} o.state        PSM.state.dom, kept up to date
   */
  function DomView(o) {
    this.stage = o.stage;
    this.statusEl = o.status;
    this.urlEl = o.url;
    this.titleEl = o.title;
    this.model = o.model;
    this.state = o.state;
    this.rr = null;
    this.entries = []; // {page, wrap, replayer, playing, at, speed, dims, used}
    this.shown = null;
    this.uses = 0;
    this.last = null; // last update arguments, replayed when rrweb arrives
    var self = this;
    this.model.listener = function (page, list) { self.feed(page, list); };
    if (root.ResizeObserver) new ResizeObserver(function () { if (self.shown) self.fit(self.shown); }).observe(this.stage);
    this.setStatus('Loading the DOM replayer…');
    this.state.status = 'loading';
  }

  /** Load rrweb; the view works once it is there. */
  DomView.prototype.start = function () {
    var self = this;
    return loadRrweb().then(function (rr) {
      if (!rr) {
        self.state.status = 'unavailable';
        self.setStatus('DOM replay is unavailable: this player was built without rrweb\'s replayer (vendor/rrweb.min.js).');
        document.body.setAttribute('data-dom', 'unavailable');
        return;
      }
      self.rr = rr;
      self.state.status = 'ready';
      self.setStatus('');
      document.body.setAttribute('data-dom', 'ready');
      if (self.last) self.update(self.last[0], self.last[1], self.last[2]);
    });
  };

  DomView.prototype.setStatus = function (msg) {
    this.statusEl.textContent = msg || '';
    this.state.message = msg || '';
  };

  /** New events of a page: the replayer of that page (if there is one) takes them. */
  DomView.prototype.feed = function (page, list) {
    for (var i = 0; i < this.entries.length; i++) {
      var en = this.entries[i];
      if (en.page !== page) continue;
      for (var k = 0; k < list.length; k++) en.replayer.addEvent(list[k]);
    }
  };

  /** The replayer of a page, built on first use from the page's events so far. */
  DomView.prototype.entryFor = function (pageId) {
    for (var i = 0; i < this.entries.length; i++) if (this.entries[i].page === pageId) return this.entries[i];
    var page = this.model.pages[pageId];
    if (!page || !page.events.length) return null;
    this.evict();
    var wrap = document.createElement('div');
    wrap.className = 'dom-page';
    wrap.dataset.page = pageId;
    wrap.hidden = true;
    this.stage.appendChild(wrap);
    var entry = { page: pageId, wrap: wrap, replayer: null, playing: false, at: -1, speed: 0, dims: null, used: 0 };
    try {
      entry.replayer = new this.rr.Replayer(page.events.slice(), {
        root: wrap,
        liveMode: true, // never "finished": a recording in progress adds events, and the player's clock decides the end
        UNSAFE_replayCanvas: false,
        insertStyleRules: [],
        skipInactive: false, // the player skips idle stretches itself
        triggerFocus: false, // never move the focus into the replayed page
        mouseTail: false,
        showWarning: false,
        speed: 1
      });
    } catch (e) {
      wrap.remove();
      this.setStatus('This page cannot be replayed: ' + (e && e.message ? e.message : e));
      return null;
    }
    var self = this;
    entry.replayer.on('resize', function (d) {
      if (!d || !(d.width > 0) || !(d.height > 0)) return;
      entry.dims = { width: d.width, height: d.height };
      self.fit(entry);
    });
    this.entries.push(entry);
    this.state.built = (this.state.built || 0) + 1;
    return entry;
  };

  /** Drop the least recently shown replayers beyond KEEP_REPLAYERS - 1 (one is about to come). */
  DomView.prototype.evict = function () {
    while (this.entries.length >= KEEP_REPLAYERS) {
      var self = this;
      var old = this.entries.filter(function (x) { return x !== self.shown; }).sort(function (a, b) { return a.used - b.used; })[0];
      if (!old) return;
      this.entries.splice(this.entries.indexOf(old), 1);
      try { old.replayer.destroy(); } catch (e) { /* already gone */ }
      old.wrap.remove();
    }
  };

  /** Scale the recorded viewport into the stage, centred. */
  DomView.prototype.fit = function (entry) {
    if (!entry || !entry.dims) return;
    var cw = this.stage.clientWidth;
    var ch = this.stage.clientHeight;
    if (!cw || !ch) return;
    var s = Math.min(cw / entry.dims.width, ch / entry.dims.height);
    var x = (cw - entry.dims.width * s) / 2;
    var y = (ch - entry.dims.height * s) / 2;
    entry.wrap.style.width = entry.dims.width + 'px';
    entry.wrap.style.height = entry.dims.height + 'px';
    entry.wrap.style.transform = 'translate(' + x + 'px, ' + y + 'px) scale(' + s + ')';
  };

  DomView.prototype.show = function (entry) {
    if (this.shown === entry) return;
    if (this.shown) {
      this.shown.wrap.hidden = true;
      if (this.shown.playing) this.shown.replayer.pause();
      this.shown.playing = false;
      this.shown.at = -1;
    }
    this.shown = entry;
    if (entry) {
      entry.wrap.hidden = false;
      entry.used = ++this.uses;
      this.fit(entry);
    }
  };

  /**
   * Show the page as it was at `t` seconds of the session.
   * @param {number} t  the player's clock
   * @param {boolean} playing  the clock is running
   * @param {number} rate  playback speed
   */
  DomView.prototype.update = function (t, playing, rate) {
    this.last = [t, playing, rate];
    var st = this.state;
    st.t = t;
    st.playing = playing;
    if (!this.rr) return;
    var ms = t * 1000;
    var span = this.model.spanAt(ms);
    var url = span ? span.url : '';
    var title = this.model.titleAt(ms);
    if (this.urlEl.textContent !== url) this.urlEl.textContent = this.urlEl.title = url;
    if (this.titleEl.textContent !== title) this.titleEl.textContent = title;
    st.url = span ? span.url : null;
    st.page = span ? span.page : null;
    st.pages = this.model.pageCount;
    if (!span) {
      this.show(null);
      var first = this.model.spans[0];
      this.setStatus(first ? 'No page yet: the first one was recorded ' + (first.start / 1000).toFixed(1) + ' s into the session.' : 'No page has been recorded yet.');
      return;
    }
    var entry = this.entryFor(span.page);
    if (!entry) { this.show(null); return; }
    this.show(entry);
    var page = this.model.pages[span.page];
    this.setStatus(page && page.hasSnapshot ? '' : 'The start of this page was not recorded; it cannot be shown.');
    var r = entry.replayer;
    var target = Math.max(0, ms - this.model.shift - r.getMetaData().startTime);
    if (entry.speed !== rate) {
      r.setConfig({ speed: rate });
      entry.speed = rate;
    }
    if (playing) {
      // rrweb's own timer plays between updates; start it again when the two clocks drift apart
      var drift = entry.playing ? Math.abs(r.getCurrentTime() - target) : Infinity;
      if (drift > Math.max(300, 100 * rate)) {
        r.play(target);
        entry.playing = true;
      }
    } else if (entry.playing || entry.at !== target) {
      r.pause(target);
      entry.playing = false;
    }
    entry.at = target;
    st.speed = rate;
  };

  /** The iframe of the page shown now (tests and diagnostics). */
  DomView.prototype.iframe = function () {
    return this.shown && this.shown.replayer ? this.shown.replayer.iframe : null;
  };

  PSM.dom = { DomModel: DomModel, DomView: DomView, loadRrweb: loadRrweb };
})(window);
