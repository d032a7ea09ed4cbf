/*
 * psmgate player — following a recording in progress (served mode only).
 *
 * The chain says what is complete: the recorder appends bytes to a file, then chains them. So the
 * follower tails chain.jsonl (a Range request from the bytes it has, asking the gateway to hold the
 * answer until there are new lines: `wait`) and, for every new data record, fetches exactly the
 * chained range of its file.
 * Bytes past the last record (a fragment being written) are never played, and the bytes played are
 * the bytes verified. The seal record followed by its checkpoint ends the recording.
 *
 * This file holds the byte store and the live-edge rule; player.js wires them to the video,
 * transcript, timeline and badge.
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});
  var NL = 10;
  /** Seconds the gateway may hold a read of the chain's tail until new lines are chained. */
  var WAIT_S = 10;

  /** An append-only byte buffer; earlier views stay valid (appends never rewrite them). */
  function Bytes() {
    this.buf = new Uint8Array(0);
    this.len = 0;
  }
  Bytes.prototype.append = function (b) {
    if (this.len + b.length > this.buf.length) {
      var next = new Uint8Array(Math.max(this.len + b.length, this.buf.length * 2, 4096));
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
    this.buf.set(b, this.len);
    this.len += b.length;
  };
  Bytes.prototype.view = function () { return this.buf.subarray(0, this.len); };

  /** Length of the prefix of `b` made of complete (newline-terminated) lines. */
  function completeLength(b) {
    for (var i = b.length - 1; i >= 0; i--) if (b[i] === NL) return i + 1;
    return 0;
  }

  /** Chain lines as objects; lines that do not parse are skipped (the integrity check reports them). */
  function parseChainLines(text) {
    var out = [];
    text.split('\n').forEach(function (line) {
      if (!line) return;
      try {
        var o = JSON.parse(line);
        if (o && typeof o === 'object') out.push(o);
      } catch (e) { /* reported by the integrity check */ }
    });
    return out;
  }

  function isRange(r) {
    return typeof r.file === 'string' && Number.isSafeInteger(r.offset) && Number.isSafeInteger(r.len) && r.offset >= 0 && r.len >= 0;
  }

  /**
   * The bytes of a recording in progress, kept up to date from the chain.
   * @param {object} o
   * @param {Uint8Array} o.chain  chain.jsonl as first read (a torn last line is left out)
   * @param {function(string, number, number=, object=): Promise<Uint8Array|null>} o.fetchRange
   *   bytes [start, end) of a file (end omitted: to its end); null when there is nothing there yet.
   *   The chain's tail is asked for with a fourth argument {wait: seconds}: the server may hold the
   *   answer that long for new lines (one that does not simply answers at once)
   * @param {(number|function(): number)=} o.wait  seconds the server may hold a chain read
   *   (default WAIT_S; 0: never), or a function asked before each read
   */
  function LiveStore(o) {
    this.fetchRange = o.fetchRange;
    this.wait = o.wait === undefined ? WAIT_S : o.wait;
    this.chain = new Bytes();
    this.extent = Object.create(null); // file -> end of its last chained range
    this.files = Object.create(null); // file -> Bytes, never past its extent
    this.locks = Object.create(null); // file -> promise of the fetch in flight
    this.checkpoints = 0;
    this.sealSeq = 0;
    this.sealed = false; // the seal record and its checkpoint are here
    this.takeChain(o.chain || new Uint8Array(0));
  }

  /**
   * Take the complete lines of `b` (the chain's next bytes); returns the files they name. Sets
   * `lastLines` to the number of lines taken.
   */
  LiveStore.prototype.takeChain = function (b) {
    var n = completeLength(b);
    this.lastLines = 0;
    if (!n) return [];
    var part = b.subarray(0, n);
    this.chain.append(part);
    var self = this;
    var named = [];
    var lines = parseChainLines(new TextDecoder().decode(part));
    this.lastLines = lines.length;
    lines.forEach(function (r) {
      if (r.checkpoint === true) {
        self.checkpoints++;
        if (self.sealSeq && r.seq === self.sealSeq) self.sealed = true;
        return;
      }
      if (!isRange(r)) return;
      self.extent[r.file] = Math.max(self.extent[r.file] || 0, r.offset + r.len);
      if (r.file === 'manifest.json') self.sealSeq = r.seq;
      if (named.indexOf(r.file) < 0) named.push(r.file);
    });
    return named;
  };

  /** Fetch the chained bytes of `file` that are not here yet (one fetch per file at a time). */
  LiveStore.prototype.fill = function (file) {
    var self = this;
    var prev = this.locks[file] || Promise.resolve();
    var next = prev.then(function () { return self.fillNow(file); });
    this.locks[file] = next.catch(function () { return false; });
    return next;
  };
  LiveStore.prototype.fillNow = async function (file) {
    var want = this.extent[file] || 0;
    var have = this.files[file] || (this.files[file] = new Bytes());
    if (have.len >= want) return false;
    var b = await this.fetchRange(file, have.len, want);
    if (!b || b.length !== want - have.len) return false; // not readable yet: the next poll retries
    have.append(b);
    return true;
  };

  /** File bytes as chained so far (null when the chain does not name the file). */
  LiveStore.prototype.getFile = async function (file) {
    if (file === 'chain.jsonl') return this.chain.view();
    if (!this.extent[file]) return null;
    await this.fill(file);
    return this.files[file].view();
  };

  /** Text of the chain as read so far. */
  LiveStore.prototype.chainText = function () {
    return new TextDecoder().decode(this.chain.view());
  };

  /**
   * One poll: read the chain's new lines (the server may hold the read until there are some),
   * then the new chained bytes of every file.
   * @returns {Promise<{changed:string[], named:string[], lines:number}>} files that grew; files the
   *   new lines name; how many new lines there were (0: nothing new)
   */
  LiveStore.prototype.poll = async function () {
    var tail = await this.chainTail();
    var named = tail ? this.takeChain(tail) : [];
    var lines = tail ? this.lastLines : 0;
    var changed = [];
    var files = Object.keys(this.extent);
    for (var i = 0; i < files.length; i++) {
      if (await this.fill(files[i])) changed.push(files[i]);
    }
    return { changed: changed, named: named, lines: lines };
  };

  /**
   * The chain's bytes past what is here. The request starts one byte early (the newline that ends
   * the last line read), so it is always satisfiable and "nothing new" is a one-byte answer; the
   * gateway holds it (up to `wait` s) until new lines are chained.
   */
  LiveStore.prototype.chainTail = async function () {
    var have = this.chain.len;
    var wait = typeof this.wait === 'function' ? this.wait() : this.wait;
    var opts = have && wait > 0 ? { wait: wait } : undefined;
    var b = await this.fetchRange('chain.jsonl', Math.max(0, have - 1), undefined, opts);
    if (!b || !have) return b;
    if (b[0] !== NL) throw new Error('chain.jsonl changed: it no longer matches the lines read before');
    return b.subarray(1);
  };

  /** End of the last buffered range of a media element (0 when nothing is buffered). */
  function bufferedEnd(video) {
    var b = video.buffered;
    return b && b.length ? b.end(b.length - 1) : 0;
  }

  /** Seconds behind the buffered end that are played at normal speed. */
  var EDGE_SLACK = 0.15;
  /** Fastest catch-up rate. */
  var MAX_CATCH_UP = 4;
  /** Seconds behind the buffered end from which the playhead jumps instead of catching up. */
  var EDGE_JUMP = 5;

  /**
   * How to stay at the live edge when `behind` seconds of buffered video are still to be played:
   * catch up by playing faster the further behind (1.25× just past EDGE_SLACK, 2.5× 1 s behind,
   * at most MAX_CATCH_UP), or jump when far behind (a hidden tab, a slow network: a jump decodes
   * from the segment's keyframe, which may be minutes back).
   * @returns {{rate:number, jump:boolean}}
   */
  function edgeAction(behind) {
    if (!(behind > 0)) return { rate: 1, jump: false };
    if (behind > EDGE_JUMP) return { rate: 1, jump: true };
    if (behind <= EDGE_SLACK) return { rate: 1, jump: false };
    return { rate: Math.min(MAX_CATCH_UP, Math.round((1 + 1.5 * behind) * 4) / 4), jump: false };
  }

  PSM.live = {
    LiveStore: LiveStore, Bytes: Bytes, completeLength: completeLength, bufferedEnd: bufferedEnd,
    edgeAction: edgeAction, POLL_MS: 500, WAIT_S: WAIT_S, EDGE_JUMP_BACK: 0.3
  };
})(window);
