/*
 * psmgate player — minimal ISO-BMFF (fragmented MP4) reader.
 *
 * Only what the player needs: the track timescale and trex defaults of an init segment, and the
 * sample times of each fragment (tfdt + cumulative trun/tfhd/trex durations) of a media segment.
 * All reads are bounds-checked; malformed input throws Mp4Error and never loops forever.
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});

  function Mp4Error(message) {
    this.name = 'Mp4Error';
    this.message = message;
  }
  Mp4Error.prototype = Object.create(Error.prototype);

  var CONTAINERS = { moov: 1, trak: 1, mdia: 1, minf: 1, stbl: 1, mvex: 1, moof: 1, traf: 1, edts: 1 };

  function u32(b, o) {
    if (o + 4 > b.length) throw new Mp4Error('truncated box data');
    return ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
  }
  function u64(b, o) {
    return u32(b, o) * 4294967296 + u32(b, o + 4);
  }
  function fourcc(b, o) {
    return String.fromCharCode(b[o], b[o + 1], b[o + 2], b[o + 3]);
  }

  /** Boxes directly inside [start, end): [{type, start, size, body, end}]. */
  function readBoxes(b, start, end) {
    var out = [];
    var i = start;
    while (i < end) {
      if (i + 8 > end) throw new Mp4Error('truncated box header at byte ' + i);
      var size = u32(b, i);
      var type = fourcc(b, i + 4);
      var hdr = 8;
      if (size === 1) {
        if (i + 16 > end) throw new Mp4Error('truncated large box header at byte ' + i);
        size = u64(b, i + 8);
        hdr = 16;
      } else if (size === 0) {
        size = end - i;
      }
      if (size < hdr || i + size > end) throw new Mp4Error('box "' + type + '" at byte ' + i + ' overruns its parent');
      out.push({ type: type, start: i, size: size, body: i + hdr, end: i + size });
      i += size;
    }
    return out;
  }

  function find(b, box, type) {
    var kids = readBoxes(b, box.body, box.end);
    for (var i = 0; i < kids.length; i++) if (kids[i].type === type) return kids[i];
    return null;
  }
  function findAll(b, box, type) {
    return readBoxes(b, box.body, box.end).filter(function (k) { return k.type === type; });
  }

  /**
   * Parse an init segment (ftyp + moov).
   * @returns {{timescale:number, trackId:number, defaultDuration:number, width:number, height:number}}
   */
  function parseInit(b) {
    var top = readBoxes(b, 0, b.length);
    var moov = top.filter(function (x) { return x.type === 'moov'; })[0];
    if (!moov) throw new Mp4Error('init segment has no moov box');
    var traks = findAll(b, moov, 'trak');
    var info = null;
    for (var t = 0; t < traks.length && !info; t++) {
      var mdia = find(b, traks[t], 'mdia');
      var hdlr = mdia && find(b, mdia, 'hdlr');
      if (!hdlr || fourcc(b, hdlr.body + 8) !== 'vide') continue;
      var mdhd = find(b, mdia, 'mdhd');
      var tkhd = find(b, traks[t], 'tkhd');
      if (!mdhd || !tkhd) throw new Mp4Error('video track without mdhd/tkhd');
      var v = b[mdhd.body];
      var timescale = v === 1 ? u32(b, mdhd.body + 4 + 16) : u32(b, mdhd.body + 4 + 8);
      var tv = b[tkhd.body];
      var trackId = tv === 1 ? u32(b, tkhd.body + 4 + 16) : u32(b, tkhd.body + 4 + 8);
      var dimOff = tkhd.end - 8;
      info = {
        timescale: timescale,
        trackId: trackId,
        defaultDuration: 0,
        width: u32(b, dimOff) / 65536,
        height: u32(b, dimOff + 4) / 65536
      };
    }
    if (!info) throw new Mp4Error('init segment has no video track');
    if (!info.timescale) throw new Mp4Error('video track timescale is 0');
    var mvex = find(b, moov, 'mvex');
    if (mvex) {
      findAll(b, mvex, 'trex').forEach(function (trex) {
        if (u32(b, trex.body + 4) === info.trackId) info.defaultDuration = u32(b, trex.body + 12);
      });
    }
    return info;
  }

  /**
   * Fragments of a media segment (styp? then moof+mdat pairs).
   * @returns {Array<{offset:number, size:number, baseTime:number, samples:number[], duration:number}>}
   *   sample decode times and durations in track timescale units.
   */
  function parseSegment(b, init) {
    var top = readBoxes(b, 0, b.length);
    var frags = [];
    for (var i = 0; i < top.length; i++) {
      if (top[i].type !== 'moof') continue;
      var trafs = findAll(b, top[i], 'traf');
      for (var t = 0; t < trafs.length; t++) {
        var traf = trafs[t];
        var tfhd = find(b, traf, 'tfhd');
        if (!tfhd) throw new Mp4Error('traf without tfhd');
        var tfFlags = u32(b, tfhd.body) & 0xffffff;
        if (u32(b, tfhd.body + 4) !== init.trackId) continue;
        var p = tfhd.body + 8;
        if (tfFlags & 0x1) p += 8;
        if (tfFlags & 0x2) p += 4;
        var defDur = init.defaultDuration;
        if (tfFlags & 0x8) defDur = u32(b, p);
        var tfdt = find(b, traf, 'tfdt');
        var time = 0;
        if (tfdt) time = b[tfdt.body] === 1 ? u64(b, tfdt.body + 4) : u32(b, tfdt.body + 4);
        else if (frags.length) time = frags[frags.length - 1].baseTime + frags[frags.length - 1].duration;
        var base = time;
        var samples = [];
        var truns = findAll(b, traf, 'trun');
        for (var r = 0; r < truns.length; r++) {
          var trun = truns[r];
          var flags = u32(b, trun.body) & 0xffffff;
          var count = u32(b, trun.body + 4);
          var q = trun.body + 8;
          if (flags & 0x1) q += 4;
          if (flags & 0x4) q += 4;
          var per = ((flags & 0x100) ? 4 : 0) + ((flags & 0x200) ? 4 : 0) + ((flags & 0x400) ? 4 : 0) + ((flags & 0x800) ? 4 : 0);
          if (q + per * count > trun.end) throw new Mp4Error('trun sample table overruns its box');
          for (var s = 0; s < count; s++) {
            samples.push(time);
            var d = defDur;
            if (flags & 0x100) { d = u32(b, q); q += 4; }
            q += per - ((flags & 0x100) ? 4 : 0);
            time += d;
          }
        }
        frags.push({ offset: top[i].start, size: top[i].size, baseTime: base, samples: samples, duration: time - base });
      }
    }
    return frags;
  }

  PSM.mp4 = { Mp4Error: Mp4Error, readBoxes: readBoxes, parseInit: parseInit, parseSegment: parseSegment };
})(window);
