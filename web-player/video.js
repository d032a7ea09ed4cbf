/*
 * psmgate player — the video of a recording: its model, the order its files are fetched in, and
 * MediaSource.
 *
 * Model. The manifest lists every period (init segment, screen size, start) and every media
 * segment (file, start_ms, duration_ms, bytes). layout() builds the model from the manifest and
 * the files read so far: a loaded segment gives its exact fragment and sample times (moof/trun,
 * mp4.js), one not loaded yet its span from the manifest, listed as `unknown` (its screen changes
 * are not known yet, so it never counts as idle).
 *
 * Progressive loading (Loader, sealed recordings). The segment at the playhead comes first — its
 * period's init segment and the segment itself — so the first frame needs two files; the others
 * stream in the background: those after the playhead in order, then those before it. A seek to a
 * segment not loaded yet fetches it at once. Fetches go through FileQueue: an urgent one (what
 * the viewer waits for) starts at once; the others start while nothing urgent is in flight, at
 * most three at a time, the playback ones before the integrity check's. The check reads the same
 * fetches, so every file is fetched once and the bytes played are the bytes verified.
 *
 * MediaSource. One SourceBuffer. A period's init segment, with the period's timestampOffset, is
 * appended before a segment of that period whenever the last init segment appended was another
 * period's, so segments can be appended in any order. Appends never overlap (Loader.serial).
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});

  /** Fetch priorities: what the viewer waits for, what playback needs next, everything else. */
  var PRIO = { now: 0, ahead: 1, background: 2 };
  var FETCH_LIMIT = 3; // fetches in flight, urgent ones aside
  var STREAMS = 2; // segments the background loading fetches at a time

  // ------------------------------------------------------------------ fetch queue
  /**
   * Fetches each file once and keeps the answer; the most urgent first.
   * @param {function(string): Promise<Uint8Array|null>} fetchFile  one file's bytes (null: none)
   */
  function FileQueue(fetchFile) {
    this.fetchFile = fetchFile;
    this.entries = Object.create(null);
    this.waiting = [];
    this.active = 0;
    this.urgent = 0;
    this.count = 0;
  }

  /**
   * The bytes of `path`, fetched once. Asking again with a more urgent priority moves a fetch
   * that has not started forward.
   * @param {string} path
   * @param {number=} prio  PRIO.now, PRIO.ahead or PRIO.background (the default)
   * @returns {Promise<Uint8Array|null>}
   */
  FileQueue.prototype.get = function (path, prio) {
    if (prio !== PRIO.now && prio !== PRIO.ahead) prio = PRIO.background;
    var e = this.entries[path];
    if (!e) {
      e = this.entries[path] = { path: path, prio: prio, n: this.count++, started: false };
      e.promise = new Promise(function (resolve, reject) { e.resolve = resolve; e.reject = reject; });
      this.waiting.push(e);
    } else if (!e.started && prio < e.prio) {
      e.prio = prio;
    }
    this.pump();
    return e.promise;
  };

  FileQueue.prototype.pump = function () {
    this.waiting.sort(function (a, b) { return a.prio - b.prio || a.n - b.n; });
    while (this.waiting.length) {
      var e = this.waiting[0];
      if (e.prio !== PRIO.now && (this.urgent > 0 || this.active >= FETCH_LIMIT)) break;
      this.waiting.shift();
      this.start(e);
    }
  };

  FileQueue.prototype.start = function (e) {
    var self = this;
    var urgent = e.prio === PRIO.now;
    e.started = true;
    this.active++;
    if (urgent) this.urgent++;
    var run;
    try { run = Promise.resolve(this.fetchFile(e.path)); } catch (err) { run = Promise.reject(err); }
    run.then(e.resolve, e.reject).then(function () {
      self.active--;
      if (urgent) self.urgent--;
      self.pump();
    });
  };

  // ------------------------------------------------------------------ model
  function seconds(ms) {
    return typeof ms === 'number' && isFinite(ms) ? ms / 1000 : null;
  }
  function isBytes(b) {
    return b instanceof Uint8Array;
  }
  function unavailable(file, v) {
    return file + ' is not available' + (v && v.error ? ' (' + v.error + ')' : '');
  }
  function errorText(e) {
    return (e && e.message) || String(e);
  }

  /**
   * The video model from the manifest and the files read so far.
   * @param {object} manifest
   * @param {Object<string, *>} have  file -> its bytes (Uint8Array); null or {error} when it could
   *   not be read; files not read yet are absent
   * @param {object=} prev  the previous model: parsing is reused while a file's length stays the
   *   same, and a period keeps the offset it was given first
   * @returns {{periods:Array<object>, changes:number[], unknown:Array<number[]>, warnings:string[],
   *   parsed:object, offsets:object, segments:number, loaded:number}}
   *   periods: {index, period (manifest entry), init (bytes|null), info (parseInit|null), segments,
   *   offset (session time minus media time, s; null until a segment is loaded), start, end};
   *   segments: {file, period, index, start, end (s; null when unknown), bytes, frags};
   *   changes: every frame's session time (s); unknown: [start, end] of the segments not loaded
   */
  function layout(manifest, have, prev) {
    var list = Array.isArray(manifest && manifest.periods) ? manifest.periods : [];
    var old = prev ? prev.parsed : Object.create(null);
    var offsets = prev ? prev.offsets : Object.create(null);
    var parsed = Object.create(null);
    var warnings = [];
    var periods = [];
    var changes = [];
    var unknown = [];
    var total = 0;
    var loaded = 0;
    for (var p = 0; p < list.length; p++) {
      var mp = list[p] && typeof list[p] === 'object' ? list[p] : {};
      var initFile = typeof mp.init === 'string' ? mp.init : null;
      var start = seconds(mp.start_ms) || 0;
      var init = initFile ? have[initFile] : undefined;
      var info = null;
      if (isBytes(init)) {
        var pi = old[initFile] && old[initFile].length === init.length ? old[initFile] : parseInitEntry(init);
        parsed[initFile] = pi;
        if (pi.error) warnings.push(initFile + ': ' + pi.error);
        else info = pi.info;
      } else if (initFile && init !== undefined) {
        warnings.push(unavailable(initFile, init) + '; period ' + (p + 1) + ' cannot be played');
      }
      var segs = [];
      var mlist = Array.isArray(mp.segments) ? mp.segments : [];
      for (var s = 0; s < mlist.length; s++) {
        var ms = mlist[s] && typeof mlist[s] === 'object' ? mlist[s] : {};
        if (typeof ms.file !== 'string') continue;
        total++;
        var seg = { file: ms.file, period: p, index: segs.length, start: seconds(ms.start_ms), end: null, bytes: null, frags: null };
        var dur = seconds(ms.duration_ms);
        if (seg.start !== null && dur !== null) seg.end = seg.start + dur;
        var b = have[ms.file];
        if (isBytes(b)) {
          loaded++;
          seg.bytes = b;
          if (info) {
            var o = old[ms.file];
            var ps = o && o.length === b.length && o.info === info ? o : parseSegmentEntry(b, info);
            parsed[ms.file] = ps;
            if (ps.error) warnings.push(ms.file + ': ' + ps.error);
            seg.frags = ps.frags;
          }
        } else if (b !== undefined) {
          warnings.push(unavailable(ms.file, b));
        }
        segs.push(seg);
      }
      var offset = initFile && typeof offsets[initFile] === 'number' ? offsets[initFile] : null;
      if (offset === null && info) {
        // The period's first segment starts where the period does; a later one (loaded first
        // after a seek) where the manifest says it starts.
        for (var k = 0; k < segs.length && offset === null; k++) {
          var f0 = segs[k].frags && segs[k].frags[0];
          if (!f0) continue;
          offset = (k === 0 || segs[k].start === null ? start : segs[k].start) - f0.baseTime / info.timescale;
        }
        if (offset !== null) offsets[initFile] = offset;
      }
      var end = start;
      for (var j = 0; j < segs.length; j++) {
        var sg = segs[j];
        if (sg.frags && offset !== null) {
          for (var f = 0; f < sg.frags.length; f++) {
            var fr = sg.frags[f];
            for (var t = 0; t < fr.samples.length; t++) changes.push(fr.samples[t] / info.timescale + offset);
            end = Math.max(end, (fr.baseTime + fr.duration) / info.timescale + offset);
          }
          if (sg.frags.length) {
            var last = sg.frags[sg.frags.length - 1];
            sg.start = sg.frags[0].baseTime / info.timescale + offset;
            sg.end = (last.baseTime + last.duration) / info.timescale + offset;
          }
          continue;
        }
        if (sg.end !== null) end = Math.max(end, sg.end);
        if (!sg.frags && sg.start !== null && sg.end !== null && sg.end > sg.start) unknown.push([sg.start, sg.end]);
      }
      periods.push({
        index: p, period: mp, init: isBytes(init) && info ? init : null, info: info, segments: segs,
        offset: offset, start: start, end: end
      });
    }
    changes.sort(function (a, b) { return a - b; });
    return {
      periods: periods, changes: changes, unknown: unknown, warnings: warnings, parsed: parsed, offsets: offsets,
      segments: total, loaded: loaded
    };
  }

  function parseInitEntry(bytes) {
    try {
      return { length: bytes.length, info: PSM.mp4.parseInit(bytes), error: null };
    } catch (e) {
      return { length: bytes.length, info: null, error: errorText(e) };
    }
  }
  function parseSegmentEntry(bytes, info) {
    try {
      return { length: bytes.length, info: info, frags: PSM.mp4.parseSegment(bytes, info), error: null };
    } catch (e) {
      return { length: bytes.length, info: info, frags: [], error: errorText(e) };
    }
  }

  /** Every segment of the model, in manifest order (which is time order). */
  function allSegments(model) {
    var out = [];
    model.periods.forEach(function (per) { out.push.apply(out, per.segments); });
    return out;
  }

  /**
   * The segment that holds session time `t` (s): the last one that starts at or before it (the
   * first one when none does). Segments start with a keyframe, so it is all a frame at `t` needs.
   * @returns {object|null}
   */
  function segmentAt(model, t) {
    var best = null;
    var first = null;
    allSegments(model).forEach(function (seg) {
      if (seg.start === null) return;
      if (!first || seg.start < first.start) first = seg;
      if (seg.start <= t + 1e-3 && (!best || seg.start >= best.start)) best = seg;
    });
    return best || first || allSegments(model)[0] || null;
  }

  /**
   * Read every video file the manifest lists, one after the other (a period's segments only when
   * its init segment is there). Used where everything is needed at once: the blob fallback and
   * live recordings (whose store holds the chained bytes).
   * @param {function(string): Promise<Uint8Array|null>} getFile
   * @returns {Promise<Object<string, Uint8Array|null>>} file -> bytes (null: not available)
   */
  async function readAll(getFile, manifest) {
    var have = Object.create(null);
    var list = Array.isArray(manifest && manifest.periods) ? manifest.periods : [];
    for (var p = 0; p < list.length; p++) {
      var mp = list[p] && typeof list[p] === 'object' ? list[p] : {};
      if (typeof mp.init !== 'string') continue;
      have[mp.init] = (await getFile(mp.init)) || null;
      if (!have[mp.init]) continue;
      var segs = Array.isArray(mp.segments) ? mp.segments : [];
      for (var s = 0; s < segs.length; s++) {
        if (segs[s] && typeof segs[s].file === 'string') have[segs[s].file] = (await getFile(segs[s].file)) || null;
      }
    }
    return have;
  }

  // ------------------------------------------------------------------ MediaSource
  function bufferedEnd(buffered) {
    return buffered && buffered.length ? buffered.end(buffered.length - 1) : 0;
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

  /**
   * A MediaSource on the video element with one SourceBuffer; a live one has no duration yet.
   * @returns {Promise<{ms:MediaSource, sb:SourceBuffer, fed:Object<string,number>, period:number, full:boolean, onFull:?function(number)}>}
   *   fed: file -> bytes appended; period: index of the period whose init segment was appended last;
   *   onFull(t): called with the start (s) of the segment that did not fit when the buffer is full
   */
  async function openMse(video, codec, live) {
    var mime = 'video/mp4; codecs="' + codec + '"';
    if (!MediaSource.isTypeSupported(mime)) throw new Error('This browser cannot play ' + mime);
    var ms = new MediaSource();
    video.src = URL.createObjectURL(ms);
    await new Promise(function (r) { ms.addEventListener('sourceopen', r, { once: true }); });
    var sb = ms.addSourceBuffer(mime);
    if (live) ms.duration = Infinity;
    return { ms: ms, sb: sb, fed: Object.create(null), period: -1, full: false, onFull: null };
  }

  /**
   * Append the bytes of `seg` the SourceBuffer does not have yet, after its period's init segment
   * (and timestampOffset) when the init segment appended last was another period's.
   * @returns {Promise<boolean>} whether bytes were appended (false: nothing new, nothing playable,
   *   or the buffer is full)
   */
  async function appendSegment(mse, per, seg) {
    if (mse.full || !seg.bytes || !per.init || per.offset === null) return false;
    var done = mse.fed[seg.file] || 0;
    if (seg.bytes.length <= done) return false;
    try {
      if (mse.period !== per.index) {
        mse.sb.timestampOffset = per.offset;
        await appendBuffer(mse.sb, per.init);
        mse.period = per.index;
      }
      await appendBuffer(mse.sb, seg.bytes.subarray(done));
      mse.fed[seg.file] = seg.bytes.length;
      return true;
    } catch (e) {
      if (!e || e.name !== 'QuotaExceededError') throw new Error(seg.file + ': ' + errorText(e));
      mse.full = true;
      if (mse.onFull) mse.onFull(seg.start === null ? per.start : seg.start);
      return false;
    }
  }

  /**
   * Append, in order, everything the SourceBuffer does not have yet. While live, a period waits for
   * its first fragment (its offset depends on it), and so do the periods after it.
   */
  async function feedMse(mse, model, live) {
    for (var p = 0; p < model.periods.length && !mse.full; p++) {
      var per = model.periods[p];
      if (!per.init) continue;
      if (per.offset === null) {
        if (live) break;
        continue;
      }
      for (var s = 0; s < per.segments.length && !mse.full; s++) await appendSegment(mse, per, per.segments[s]);
    }
  }

  /** Set the stream's duration (never below what is buffered); not while an append runs. */
  function setDuration(mse, duration) {
    if (mse.ms.readyState !== 'open' || mse.sb.updating) return;
    var d = Math.max(duration, bufferedEnd(mse.sb.buffered), 0.1);
    if (Math.abs(mse.ms.duration - d) < 1e-3) return;
    try { mse.ms.duration = d; } catch (e) { /* a concurrent change: the next call sets it */ }
  }

  /** Everything is appended: fix the duration and end the stream. */
  function finishMse(mse, duration) {
    if (mse.ms.readyState !== 'open' || mse.sb.updating) return;
    setDuration(mse, duration);
    mse.ms.endOfStream();
  }

  /** Fallback without MediaSource: the first playable period as one fragmented MP4 blob. */
  function attachBlob(video, model) {
    var per = model.periods.filter(function (p) { return p.init; })[0];
    var parts = [per.init].concat(per.segments.filter(function (s) { return s.bytes; }).map(function (s) { return s.bytes; }));
    video.src = URL.createObjectURL(new Blob(parts, { type: 'video/mp4' }));
    return 'blob';
  }

  // ------------------------------------------------------------------ progressive loading
  /**
   * Progressive loading of a sealed recording's video into MediaSource (see the top of this file).
   * @param {object} o
   * @param {object} o.manifest
   * @param {function(string, number=): Promise<Uint8Array|null>} o.getFile  file bytes, with a PRIO
   * @param {HTMLVideoElement} o.video
   * @param {function()=} o.onChange  the model (`loader.model`) took a new segment
   */
  function Loader(o) {
    this.o = o;
    this.have = Object.create(null); // file -> bytes | null | {error}
    this.pending = Object.create(null); // segment file -> promise of its load
    this.model = layout(o.manifest, this.have, null);
    this.mse = null;
    this.opened = null;
    this.lock = Promise.resolve();
    this.sought = null; // the latest time a seek asked for, while an earlier one loads
    this.seeking = null;
    this.onFull = null;
  }

  /** Open the MediaSource (once). */
  Loader.prototype.open = function () {
    var self = this;
    if (!this.opened) {
      this.opened = openMse(this.o.video, this.o.manifest.codec, false).then(function (mse) {
        mse.onFull = function (t) { if (self.onFull) self.onFull(t); };
        self.mse = mse;
        return mse;
      });
    }
    return this.opened;
  };

  /** Run `fn` after the appends queued before it (one SourceBuffer, one append at a time). */
  Loader.prototype.serial = function (fn) {
    var run = this.lock.then(fn);
    this.lock = run.catch(function () {});
    return run;
  };

  /** Fetch a file unless it was read already (asking again raises the priority of a queued fetch). */
  Loader.prototype.fetch = function (file, prio) {
    var have = this.have;
    if (typeof file !== 'string' || file in have) return Promise.resolve();
    return Promise.resolve(this.o.getFile(file, prio)).then(function (b) {
      if (!(file in have)) have[file] = b || null;
    }, function (e) {
      if (!(file in have)) have[file] = { error: errorText(e) };
    });
  };

  /**
   * Load one segment and its period's init segment, and append it.
   * @returns {Promise<boolean>} whether it was appended
   */
  Loader.prototype.load = function (seg, prio) {
    var self = this;
    var mp = this.o.manifest.periods[seg.period] || {};
    var fetches = [this.fetch(mp.init, prio), this.fetch(seg.file, prio)];
    if (!this.pending[seg.file]) {
      this.pending[seg.file] = Promise.all(fetches.concat(this.open())).then(function () { return self.place(seg.period, seg.index); });
    }
    return this.pending[seg.file];
  };

  Loader.prototype.place = function (p, s) {
    var self = this;
    this.model = layout(this.o.manifest, this.have, this.model);
    var per = this.model.periods[p];
    var seg = per && per.segments[s];
    return this.serial(function () {
      return per && seg ? appendSegment(self.mse, per, seg) : false;
    }).then(function (appended) {
      if (self.o.onChange) self.o.onChange();
      return appended;
    });
  };

  /** Whether period `p`'s init segment may be used: not read yet, or read and parsed. */
  Loader.prototype.initOk = function (p) {
    var mp = this.o.manifest.periods[p] || {};
    if (typeof mp.init !== 'string') return false;
    return !(mp.init in this.have) || !!(this.model.periods[p] && this.model.periods[p].info);
  };

  /**
   * Show the start: load the first segment at once (when it cannot be played, the next one; a
   * period whose init segment is unusable is passed over).
   */
  Loader.prototype.first = async function () {
    var order = allSegments(this.model);
    for (var i = 0; i < order.length; i++) {
      if (!this.initOk(order[i].period)) continue;
      if (await this.load(order[i], PRIO.now)) return;
      if (this.mse && this.mse.full) break;
    }
    var w = this.model.warnings;
    throw new Error('The recording has no playable video' + (w.length ? ': ' + w[0] : ''));
  };

  /** The viewer wants time `t` (s): load its segment at once unless it is loaded or on its way. */
  Loader.prototype.want = function (t) {
    var seg = segmentAt(this.model, t);
    return seg ? this.load(seg, PRIO.now) : Promise.resolve(false);
  };

  /**
   * The viewer moved to time `t` (s): want(t). While such a load runs, only the latest time asked
   * for is kept, so dragging across the timeline does not fetch every segment it passes.
   */
  Loader.prototype.seek = function (t) {
    var self = this;
    this.sought = t;
    if (!this.seeking) {
      this.seeking = (async function () {
        try {
          while (self.sought !== null) {
            var at = self.sought;
            self.sought = null;
            await self.want(at);
          }
        } finally {
          self.seeking = null;
        }
      })();
    }
    return this.seeking;
  };

  /** The next segment to load in the background: after time `t` first, then from the start. */
  Loader.prototype.next = function (t) {
    var order = allSegments(this.model);
    var at = segmentAt(this.model, t);
    var from = Math.max(0, at ? order.indexOf(at) : 0);
    for (var i = 0; i < order.length; i++) {
      var seg = order[(from + i) % order.length];
      if (!this.pending[seg.file] && this.initOk(seg.period)) return seg;
    }
    return null;
  };

  /**
   * Load every other segment in the background (STREAMS at a time, so a fetch never waits for an
   * append); resolves when every segment was loaded.
   */
  Loader.prototype.stream = async function () {
    var self = this;
    async function worker() {
      for (;;) {
        var seg = self.next(self.o.video.currentTime);
        if (!seg) return;
        await self.load(seg, PRIO.ahead);
      }
    }
    var workers = [];
    for (var i = 0; i < STREAMS; i++) workers.push(worker());
    await Promise.all(workers);
    var pending = this.pending;
    await Promise.all(Object.keys(pending).map(function (k) { return pending[k].catch(function () { return false; }); }));
  };

  /** Everything is loaded: set the final duration (s) and end the stream. */
  Loader.prototype.end = function (duration) {
    var self = this;
    return this.serial(function () { if (self.mse) finishMse(self.mse, duration); });
  };

  /** The session's duration (s): the stream's, while it is open. */
  Loader.prototype.setDuration = function (d) {
    var self = this;
    return this.serial(function () { if (self.mse) setDuration(self.mse, d); });
  };

  PSM.video = {
    PRIO: PRIO, FileQueue: FileQueue, layout: layout, segmentAt: segmentAt, readAll: readAll,
    openMse: openMse, feedMse: feedMse, finishMse: finishMse, setDuration: setDuration, attachBlob: attachBlob,
    Loader: Loader
  };
})(window);
