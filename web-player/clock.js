/*
 * psmgate player — a playback clock for recordings without video (web console sessions recorded
 * as page events only).
 *
 * It stands in for the <video> element wherever the player drives or reads playback: the same
 * properties (currentTime, paused, ended, seeking, playbackRate, defaultPlaybackRate, duration,
 * buffered, readyState: 2 while it waits at the live edge) and the same events (play, pause,
 * ended, seeked, timeupdate, ratechange), so controls, timeline, idle skipping and live following
 * work unchanged. Time advances with the
 * wall clock times the rate and stops at `limit`: the end of the recording, or, while a recording
 * is followed live, the last moment its data reaches (like video waiting for more data).
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});

  function now() {
    return root.performance && performance.now ? performance.now() : Date.now();
  }

  /**
   * @param {{duration?:number, live?:boolean}} o  duration in seconds; live: the limit still grows
   */
  function Clock(o) {
    o = o || {};
    this.target = document.createElement('span'); // event target (EventTarget() is not everywhere)
    this.t = 0; // position at wall time `since` (s)
    this.since = now();
    this.rate = 1;
    this.defaultRate = 1;
    this.isPaused = true;
    this.isEnded = false;
    this.limit = Math.max(0, Number(o.duration) || 0);
    this.live = !!o.live;
    this.timer = null;
    this.seeking = false;
    this.videoWidth = 0;
    this.videoHeight = 0;
  }

  Clock.prototype.addEventListener = function (n, f, o) { this.target.addEventListener(n, f, o); };
  Clock.prototype.removeEventListener = function (n, f, o) { this.target.removeEventListener(n, f, o); };
  Clock.prototype.emit = function (n) { this.target.dispatchEvent(new Event(n)); };
  /** Events fire after the current task, like a media element's. */
  Clock.prototype.emitSoon = function (n) {
    var self = this;
    setTimeout(function () { self.emit(n); }, 0);
  };
  Clock.prototype.getAttribute = function () { return null; };

  /** Position now, without side effects. */
  Clock.prototype.position = function () {
    var t = this.t;
    if (!this.isPaused) t += ((now() - this.since) / 1000) * this.rate;
    return Math.min(Math.max(t, 0), this.limit);
  };
  /** Fix the position at `t` from now on (the base for the next advance). */
  Clock.prototype.rebase = function (t) {
    this.t = t;
    this.since = now();
  };

  Object.defineProperty(Clock.prototype, 'currentTime', {
    get: function () { return this.position(); },
    set: function (v) {
      var t = Number(v);
      if (!isFinite(t)) return;
      this.rebase(Math.min(Math.max(t, 0), this.limit));
      this.isEnded = false;
      this.emitSoon('seeked');
      this.emitSoon('timeupdate');
    }
  });
  Object.defineProperty(Clock.prototype, 'paused', { get: function () { return this.isPaused; } });
  /** Like a media element's: 2 (HAVE_CURRENT_DATA) while playing waits at the live edge, else 4. */
  Object.defineProperty(Clock.prototype, 'readyState', {
    get: function () { return this.live && !this.isPaused && this.position() >= this.limit ? 2 : 4; }
  });
  Object.defineProperty(Clock.prototype, 'ended', { get: function () { return this.isEnded; } });
  Object.defineProperty(Clock.prototype, 'duration', { get: function () { return this.limit; } });
  Object.defineProperty(Clock.prototype, 'playbackRate', {
    get: function () { return this.rate; },
    set: function (v) {
      var r = Number(v);
      if (!(r > 0) || r === this.rate) return;
      this.rebase(this.position());
      this.rate = r;
      this.emitSoon('ratechange');
    }
  });
  Object.defineProperty(Clock.prototype, 'defaultPlaybackRate', {
    get: function () { return this.defaultRate; },
    set: function (v) { if (Number(v) > 0) this.defaultRate = Number(v); }
  });
  /** Everything up to the limit is "buffered". */
  Object.defineProperty(Clock.prototype, 'buffered', {
    get: function () {
      var end = this.limit;
      return { length: 1, start: function () { return 0; }, end: function () { return end; } };
    }
  });

  Clock.prototype.play = function () {
    if (this.isEnded || (!this.live && this.position() >= this.limit)) this.rebase(0);
    this.isEnded = false;
    if (this.isPaused) {
      this.rebase(this.position());
      this.isPaused = false;
      this.emitSoon('play');
      this.startTimer();
    }
    return Promise.resolve();
  };

  Clock.prototype.pause = function () {
    if (this.isPaused) return;
    this.rebase(this.position());
    this.isPaused = true;
    this.stopTimer();
    this.emitSoon('pause');
  };

  /** New end of the data (s); `live`: more may follow (playback waits at the limit). */
  Clock.prototype.setLimit = function (limit, live) {
    var t = this.position();
    this.limit = Math.max(0, Number(limit) || 0);
    this.live = !!live;
    this.rebase(Math.min(t, this.limit));
  };

  Clock.prototype.startTimer = function () {
    var self = this;
    this.stopTimer();
    this.timer = setInterval(function () { self.step(); }, 100);
  };
  Clock.prototype.stopTimer = function () {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  };

  /** While playing: time updates, waiting at the live edge, the end. */
  Clock.prototype.step = function () {
    if (this.isPaused) return;
    var t = this.position();
    if (t >= this.limit) {
      this.rebase(this.limit); // waits here (live) or ends
      if (!this.live) {
        this.isPaused = true;
        this.isEnded = true;
        this.stopTimer();
        this.emit('timeupdate');
        this.emit('pause');
        this.emit('ended');
        return;
      }
    }
    this.emit('timeupdate');
  };

  PSM.Clock = Clock;
})(window);
