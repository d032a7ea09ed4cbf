/*
 * psmgate player — timeline under the video: event density histogram, screen-change strip, idle
 * stretches, markers (policy / marker / resize / title / page), HTTP requests of web sessions (a
 * strip coloured by outcome), search hits and the playhead.
 * Click or drag to seek; it is also a keyboard slider (arrows, PageUp/PageDown, Home/End).
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});

  var COLORS = {
    bg: '#141a22', hist: '#3b82f6', changes: '#64748b', idle: 'rgba(148,163,184,0.10)',
    idleStroke: 'rgba(148,163,184,0.25)', played: 'rgba(59,130,246,0.14)', head: '#f8fafc',
    match: '#facc15', policy: '#ef4444', marker: '#f59e0b', resize: '#a78bfa', title: '#22c55e',
    page: '#22d3ee', http: { ok: '#0ea5e9', warn: '#f59e0b', bad: '#ef4444', deny: '#ef4444' }
  };

  function fmt(t) {
    if (!isFinite(t) || t < 0) t = 0;
    var s = Math.floor(t);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var ss = s % 60;
    return (h ? h + ':' + (m < 10 ? '0' : '') : '') + m + ':' + (ss < 10 ? '0' : '') + ss;
  }

  /**
   * @param {HTMLElement} host  element with role=slider that contains the canvas
   * @param {{onSeek:function(number), tooltip:HTMLElement}} opts
   */
  function Timeline(host, opts) {
    this.host = host;
    this.canvas = host.querySelector('canvas');
    this.tip = opts.tooltip;
    this.onSeek = opts.onSeek;
    this.duration = 0;
    this.time = 0;
    this.events = [];
    this.changes = [];
    this.idle = [];
    this.markers = [];
    this.http = [];
    this.matchTimes = [];
    var self = this;
    var dragging = false;
    function timeAt(ev) {
      var r = self.canvas.getBoundingClientRect();
      var x = Math.min(Math.max(ev.clientX - r.left, 0), r.width);
      return r.width ? (x / r.width) * self.duration : 0;
    }
    host.addEventListener('pointerdown', function (ev) {
      if (!self.duration) return;
      dragging = true;
      host.setPointerCapture(ev.pointerId);
      host.focus();
      self.onSeek(timeAt(ev));
    });
    host.addEventListener('pointermove', function (ev) {
      if (dragging) self.onSeek(timeAt(ev));
      self.hover(ev, timeAt(ev));
    });
    host.addEventListener('pointerup', function () { dragging = false; });
    host.addEventListener('pointercancel', function () { dragging = false; });
    host.addEventListener('pointerleave', function () { self.tip.hidden = true; });
    host.addEventListener('keydown', function (ev) {
      var step = { ArrowLeft: -5, ArrowRight: 5, ArrowDown: -1, ArrowUp: 1, PageDown: -30, PageUp: 30 }[ev.key];
      var t = null;
      if (step !== undefined) t = self.time + step;
      else if (ev.key === 'Home') t = 0;
      else if (ev.key === 'End') t = self.duration;
      if (t === null) return;
      ev.preventDefault();
      ev.stopPropagation();
      self.onSeek(Math.min(Math.max(t, 0), self.duration));
    });
    if (root.ResizeObserver) new ResizeObserver(function () { self.draw(); }).observe(this.canvas);
  }

  Timeline.prototype.setData = function (d) {
    this.duration = d.duration;
    this.events = d.events;
    this.changes = d.changes;
    this.idle = d.idle;
    this.markers = d.markers;
    this.http = d.http || [];
    this.host.setAttribute('aria-valuemax', String(Math.round(d.duration)));
    this.draw();
  };
  Timeline.prototype.setMatches = function (times) {
    this.matchTimes = times;
    this.draw();
  };
  Timeline.prototype.setTime = function (t) {
    this.time = t;
    this.host.setAttribute('aria-valuenow', String(Math.round(t)));
    this.host.setAttribute('aria-valuetext', fmt(t) + ' of ' + fmt(this.duration));
    this.draw();
  };

  Timeline.prototype.hover = function (ev, t) {
    if (!this.duration) return;
    var r = this.canvas.getBoundingClientRect();
    var near = null;
    var px = (4 / Math.max(r.width, 1)) * this.duration;
    for (var i = 0; i < this.markers.length; i++) {
      var m = this.markers[i];
      if (Math.abs(m.t - t) <= px && (!near || Math.abs(m.t - t) < Math.abs(near.t - t))) near = m;
    }
    this.tip.textContent = fmt(near ? near.t : t) + (near ? ' · ' + near.label + ': ' + near.text : '');
    this.tip.hidden = false;
    var x = Math.min(Math.max(ev.clientX - r.left, 0), r.width);
    this.tip.style.left = x + 'px';
  };

  Timeline.prototype.draw = function () {
    var c = this.canvas;
    var dpr = root.devicePixelRatio || 1;
    var w = c.clientWidth;
    var h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    var g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = COLORS.bg;
    g.fillRect(0, 0, w, h);
    var D = this.duration;
    if (!D) return;
    var X = function (t) { return (t / D) * w; };
    var markTop = 10;
    var histTop = markTop + 2;
    var stripH = 5;
    var httpH = this.http.length ? 4 : 0;
    var histBottom = h - stripH - 3 - (httpH ? httpH + 1 : 0);

    // idle stretches
    this.idle.forEach(function (r) {
      g.fillStyle = COLORS.idle;
      g.fillRect(X(r[0]), histTop, Math.max(1, X(r[1]) - X(r[0])), h - histTop);
      g.strokeStyle = COLORS.idleStroke;
      g.setLineDash([3, 3]);
      g.strokeRect(X(r[0]) + 0.5, histTop + 0.5, Math.max(1, X(r[1]) - X(r[0])) - 1, h - histTop - 1);
      g.setLineDash([]);
    });
    // played part
    g.fillStyle = COLORS.played;
    g.fillRect(0, histTop, X(this.time), h - histTop);

    // density histogram (events per bin)
    var bins = Math.max(1, Math.floor(w / 4));
    var counts = new Array(bins).fill(0);
    var max = 0;
    this.events.forEach(function (e) {
      var b = Math.min(bins - 1, Math.max(0, Math.floor((e.t / 1000 / D) * bins)));
      counts[b]++;
      if (counts[b] > max) max = counts[b];
    });
    g.fillStyle = COLORS.hist;
    var bw = w / bins;
    var hh = histBottom - histTop;
    for (var i = 0; i < bins; i++) {
      if (!counts[i]) continue;
      var bh = Math.max(2, (Math.sqrt(counts[i]) / Math.sqrt(max)) * hh);
      g.fillRect(i * bw + 0.5, histBottom - bh, Math.max(1, bw - 1), bh);
    }
    // screen-change strip
    g.fillStyle = COLORS.changes;
    var lastX = -2;
    this.changes.forEach(function (t) {
      var x = Math.floor(X(t));
      if (x === lastX) return;
      lastX = x;
      g.fillRect(x, h - stripH, 1, stripH);
    });
    // HTTP requests (web sessions), just above the screen-change strip
    var httpTop = h - stripH - 1 - httpH;
    this.http.forEach(function (r) {
      g.fillStyle = COLORS.http[r.level] || COLORS.http.ok;
      g.fillRect(Math.floor(X(r.t)), httpTop, 1, httpH);
    });
    // markers
    this.markers.forEach(function (m) {
      var x = Math.round(X(m.t)) + 0.5;
      g.strokeStyle = COLORS[m.kind] || COLORS.marker;
      g.fillStyle = g.strokeStyle;
      g.beginPath();
      g.moveTo(x, markTop);
      g.lineTo(x, h);
      g.globalAlpha = 0.55;
      g.stroke();
      g.globalAlpha = 1;
      g.beginPath();
      g.moveTo(x - 4, 1);
      g.lineTo(x + 4, 1);
      g.lineTo(x, markTop);
      g.closePath();
      g.fill();
    });
    // search hits
    g.fillStyle = COLORS.match;
    this.matchTimes.forEach(function (t) { g.fillRect(Math.round(X(t)) - 1, histTop, 3, 4); });
    // playhead
    var px = Math.round(X(this.time)) + 0.5;
    g.strokeStyle = COLORS.head;
    g.lineWidth = 2;
    g.beginPath();
    g.moveTo(px, 0);
    g.lineTo(px, h);
    g.stroke();
    g.lineWidth = 1;
  };

  PSM.Timeline = Timeline;
  PSM.fmtTime = fmt;
})(window);
