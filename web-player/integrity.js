/*
 * psmgate player — integrity verification in the browser (docs/recording-format.md, "Verification").
 *
 * Recomputes every chain record (SHA-256 of the byte range, head chaining), checks per-file
 * contiguity and coverage, verifies the Ed25519 checkpoint signatures with WebCrypto, checks the
 * seal record against the manifest bytes and the signing key against the trusted key.
 *
 * The result names the FIRST problem precisely and lists all of them; nothing here throws on
 * malformed input (problems become findings).
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});
  var TAG = 'psmgate-chain-v1\0';
  var enc = new TextEncoder();

  function hex(buf) {
    var b = new Uint8Array(buf);
    var s = '';
    for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
    return s;
  }
  function unhex(s) {
    if (typeof s !== 'string' || !/^[0-9a-f]{64}$/.test(s)) return null;
    var out = new Uint8Array(32);
    for (var i = 0; i < 32; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
    return out;
  }
  function b64(s) {
    if (typeof s !== 'string') return null;
    try {
      var bin = atob(s);
      var out = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    } catch (e) {
      return null;
    }
  }
  function u64be(n) {
    var b = new Uint8Array(8);
    var hi = Math.floor(n / 4294967296);
    var lo = n >>> 0;
    b[0] = hi >>> 24; b[1] = (hi >>> 16) & 255; b[2] = (hi >>> 8) & 255; b[3] = hi & 255;
    b[4] = lo >>> 24; b[5] = (lo >>> 16) & 255; b[6] = (lo >>> 8) & 255; b[7] = lo & 255;
    return b;
  }
  function concat(parts) {
    var n = 0;
    parts.forEach(function (p) { n += p.length; });
    var out = new Uint8Array(n);
    var o = 0;
    parts.forEach(function (p) { out.set(p, o); o += p.length; });
    return out;
  }
  function sha256(bytes) {
    return crypto.subtle.digest('SHA-256', bytes).then(function (d) { return new Uint8Array(d); });
  }
  function isUint(n) {
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  }
  function isRecord(o) {
    return o && isUint(o.seq) && typeof o.file === 'string' && o.file.length > 0 && isUint(o.offset) && isUint(o.len) &&
      typeof o.sha256 === 'string' && typeof o.prev === 'string' && typeof o.head === 'string';
  }
  /** Canonical JSON (sorted keys) for comparing two manifest objects. */
  function canon(v) {
    if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
    if (v && typeof v === 'object') {
      return '{' + Object.keys(v).sort().map(function (k) { return JSON.stringify(k) + ':' + canon(v[k]); }).join(',') + '}';
    }
    return JSON.stringify(v);
  }
  /** Every file the manifest lists (init segments, media segments, transcript files). */
  function manifestFiles(m) {
    var out = [];
    (Array.isArray(m && m.periods) ? m.periods : []).forEach(function (p) {
      if (p && typeof p.init === 'string') out.push({ file: p.init });
      (Array.isArray(p && p.segments) ? p.segments : []).forEach(function (s) {
        if (s && typeof s.file === 'string') out.push({ file: s.file, bytes: s.bytes });
      });
    });
    (Array.isArray(m && m.events) ? m.events : []).forEach(function (e) {
      if (typeof e === 'string') out.push({ file: e });
    });
    return out;
  }

  /**
   * Verify a recording.
   * @param {object} o
   * @param {string} o.sessionId            session id (genesis input)
   * @param {string} o.chainText            chain.jsonl content
   * @param {object} o.manifest             the manifest the player shows
   * @param {function(string):Promise<Uint8Array|null>} o.getFile  file bytes by relative path
   * @param {string|null} o.trustedKey      base64 raw Ed25519 key the verifier trusts, or null
   * @param {function(number,number)=} o.onProgress
   * @returns {Promise<{status:string,title:string,problems:string[],notes:string[],records:number,signedSeq:number,keyId:string|null,sealed:boolean}>}
   *   status: "ok" (sealed and intact), "partial" (unsealed, intact so far), "fail", "unavailable".
   */
  async function verify(o) {
    var problems = [];
    var notes = [];
    var result = { status: 'fail', title: '', problems: problems, notes: notes, records: 0, signedSeq: 0, keyId: null, sealed: false };
    function finish() {
      if (problems.length) {
        result.status = 'fail';
        result.title = problems[0];
      } else if (result.sealed) {
        result.status = 'ok';
        result.title = 'Verified: ' + result.records + ' records, signed by ' + result.keyId;
      } else {
        result.status = 'partial';
        result.title = 'Recording in progress/interrupted — verified up to record ' + result.signedSeq;
      }
      return result;
    }
    if (!root.crypto || !crypto.subtle) {
      result.status = 'unavailable';
      result.title = 'Integrity cannot be checked: WebCrypto is only available on https:// or file:// pages';
      return result;
    }
    var sessionId = String(o.sessionId || '');
    if (!sessionId) problems.push('the manifest has no session_id, so the chain genesis cannot be computed');

    // ---- signing key
    var m = o.manifest || {};
    var pub = b64(m.public_key);
    var key = null;
    if (!pub || pub.length !== 32) {
      problems.push('the manifest has no valid Ed25519 public_key (32 bytes, base64); signatures cannot be checked');
    } else {
      result.keyId = hex(await sha256(pub)).slice(0, 16);
      if (m.key_id && m.key_id !== result.keyId) {
        problems.push('manifest key_id ' + m.key_id + ' does not match its public key (id ' + result.keyId + ')');
      }
      try {
        key = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
      } catch (e) {
        result.status = 'unavailable';
        result.title = 'Integrity cannot be checked: this browser does not support Ed25519 in WebCrypto';
        return result;
      }
      if (o.trustedKey) {
        var trusted = b64(o.trustedKey);
        if (!trusted || trusted.length !== 32) {
          problems.push('the trusted key supplied with this recording is not a 32-byte base64 Ed25519 key');
        } else if (hex(trusted) !== hex(pub)) {
          var tid = hex(await sha256(trusted)).slice(0, 16);
          problems.push('signing key ' + result.keyId + ' is not the trusted gateway key ' + tid);
        } else {
          notes.push('Signing key ' + result.keyId + ' is the trusted gateway key.');
        }
      } else {
        notes.push('No trusted gateway key was supplied: signatures were checked against the key in the manifest (' + result.keyId + ').');
      }
    }

    // ---- parse chain lines
    var text = typeof o.chainText === 'string' ? o.chainText : '';
    var lines = text.split('\n');
    var tail = lines.pop(); // '' when the text ends with a newline
    var incompleteTail = tail !== '';
    var items = [];
    for (var i = 0; i < lines.length; i++) {
      var obj = null;
      try { obj = JSON.parse(lines[i]); } catch (e) { obj = null; }
      if (!obj || typeof obj !== 'object') {
        problems.push('chain.jsonl line ' + (i + 1) + ' is not valid JSON');
        break;
      }
      if (obj.checkpoint === true) {
        items.push({ kind: 'cp', line: i + 1, v: obj });
      } else if (isRecord(obj)) {
        items.push({ kind: 'rec', line: i + 1, v: obj });
      } else {
        problems.push('chain.jsonl line ' + (i + 1) + ' is neither a data record nor a checkpoint');
        break;
      }
    }
    if (!lines.length && !incompleteTail) {
      // A recording that has only just started has no chain record yet: intact so far, with
      // nothing verified. Anything else must have records.
      if (m.state === 'recording') notes.push('No chain record yet: the recording has just started.');
      else problems.push('chain.jsonl is empty');
    }

    // ---- walk records and checkpoints in order
    var prev = await sha256(enc.encode(TAG + sessionId));
    var heads = [null];
    var files = Object.create(null); // file -> {end, bytes}
    var total = items.filter(function (x) { return x.kind === 'rec'; }).length;
    var done = 0;
    var lastKind = null;
    var lastCp = null;
    var sealSeq = 0;
    for (var k = 0; k < items.length; k++) {
      var it = items[k];
      var r = it.v;
      if (it.kind === 'cp') {
        lastKind = 'cp';
        lastCp = r;
        if (!isUint(r.seq) || r.seq < 1 || r.seq >= heads.length) {
          problems.push('checkpoint on chain.jsonl line ' + it.line + ' names record ' + r.seq + ', which does not exist');
          continue;
        }
        if (r.head !== heads[r.seq]) {
          problems.push('checkpoint for record ' + r.seq + ' names head ' + String(r.head).slice(0, 16) + '…, but record ' + r.seq + ' has head ' + heads[r.seq].slice(0, 16) + '…');
          continue;
        }
        if (result.keyId && r.key_id !== result.keyId) {
          problems.push('checkpoint for record ' + r.seq + ' is signed by key ' + r.key_id + ', not by the manifest key ' + result.keyId);
          continue;
        }
        if (!key) continue;
        var sig = b64(r.sig);
        var msg = concat([enc.encode(TAG + sessionId + '\0'), u64be(r.seq), unhex(r.head)]);
        var ok = false;
        try { ok = !!sig && sig.length === 64 && (await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, msg)); } catch (e) { ok = false; }
        if (!ok) {
          problems.push('checkpoint signature for record ' + r.seq + ' does not verify with key ' + result.keyId);
          continue;
        }
        result.signedSeq = Math.max(result.signedSeq, r.seq);
        continue;
      }
      lastKind = 'rec';
      var seq = heads.length;
      if (r.seq !== seq) {
        problems.push('chain record ' + r.seq + ' is out of sequence (expected record ' + seq + ')');
        break;
      }
      if (sealSeq) problems.push('chain record ' + seq + ' follows the seal record ' + sealSeq);
      if (r.prev !== hex(prev)) problems.push('chain record ' + seq + ' does not link to record ' + (seq - 1) + ' (prev differs)');
      var name = enc.encode(r.file);
      var digestRaw = unhex(r.sha256);
      var headRaw = null;
      if (!digestRaw || name.length > 65535) {
        problems.push('chain record ' + seq + ' has a malformed sha256 or file name');
      } else {
        headRaw = await sha256(concat([unhex(r.prev) || new Uint8Array(32), u64be(seq), new Uint8Array([name.length >> 8, name.length & 255]), name, u64be(r.offset), u64be(r.len), digestRaw]));
        if (hex(headRaw) !== r.head) problems.push('chain record ' + seq + ' (' + r.file + ') head does not recompute: the chain was edited');
      }
      heads.push(r.head);
      prev = unhex(r.head) || headRaw || new Uint8Array(32);
      if (r.file === 'manifest.json') sealSeq = seq;

      var st = files[r.file];
      if (!st) {
        var bytes = null;
        try { bytes = await o.getFile(r.file); } catch (e) { bytes = null; }
        st = files[r.file] = { end: 0, bytes: bytes };
      }
      var range = r.file + ' bytes ' + r.offset + '..' + (r.offset + r.len);
      if (r.offset !== st.end) {
        problems.push(r.file + ': chain record ' + seq + ' starts at byte ' + r.offset + ', expected ' + st.end + ' (ranges must be contiguous)');
      }
      if (!st.bytes) {
        problems.push(r.file + ' is missing (chain record ' + seq + ' covers ' + range + ')');
      } else if (r.offset + r.len > st.bytes.length) {
        problems.push(r.file + ' is truncated: chain record ' + seq + ' covers ' + range + ' but the file has ' + st.bytes.length + ' bytes');
      } else {
        var d = await sha256(st.bytes.subarray(r.offset, r.offset + r.len));
        if (hex(d) !== r.sha256) problems.push(range + ' do not match chain record ' + seq);
      }
      st.end = Math.max(st.end, r.offset + r.len);
      done++;
      if (o.onProgress) o.onProgress(done, total);
    }
    result.records = heads.length - 1;
    result.sealed = sealSeq > 0;

    // ---- coverage: no bytes past the last range
    Object.keys(files).forEach(function (f) {
      var s = files[f];
      if (s.bytes && s.bytes.length > s.end) {
        var msg = f + ' has ' + (s.bytes.length - s.end) + ' bytes past the last chain record (bytes ' + s.end + '..' + s.bytes.length + ')';
        if (result.sealed) problems.push(msg);
        else notes.push(msg + ' — not yet chained (recording in progress or interrupted)');
      }
    });
    if (incompleteTail) {
      var t = 'chain.jsonl ends with an incomplete line';
      if (result.sealed) problems.push(t); else notes.push(t + ' (interrupted write)');
    }

    // ---- seal
    var listed = manifestFiles(m);
    if (result.sealed) {
      if (lastKind !== 'cp' || !lastCp || lastCp.seq !== sealSeq) {
        problems.push('the seal record ' + sealSeq + ' is not followed by its signed checkpoint');
      } else if (result.signedSeq < sealSeq) {
        problems.push('the checkpoint of the seal record ' + sealSeq + ' is not validly signed');
      }
      var mb = files['manifest.json'] && files['manifest.json'].bytes;
      var sealed = null;
      try { sealed = mb ? JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(mb)) : null; } catch (e) { sealed = null; }
      if (!sealed) {
        problems.push('manifest.json (sealed by record ' + sealSeq + ') is not valid JSON');
      } else {
        var c = sealed.chain || {};
        if (c.records !== sealSeq - 1 || c.head !== heads[sealSeq - 1]) {
          problems.push('manifest chain.records/chain.head (' + c.records + ', ' + String(c.head).slice(0, 16) + '…) do not match chain record ' + (sealSeq - 1));
        }
        if (sealed.session_id !== sessionId) problems.push('manifest.json session_id differs from the session being verified');
        if (canon(sealed) !== canon(m)) problems.push('the manifest shown differs from the sealed manifest.json');
      }
      listed.forEach(function (f) {
        var s = files[f.file];
        if (!s) problems.push(f.file + ' is listed in the manifest but not covered by the chain');
        else if (isUint(f.bytes) && f.bytes !== s.end) problems.push('manifest lists ' + f.file + ' with ' + f.bytes + ' bytes, the chain covers ' + s.end);
      });
    } else {
      listed.forEach(function (f) {
        if (!files[f.file]) notes.push(f.file + ' is listed in the manifest but not chained yet');
      });
      if (result.records > result.signedSeq) {
        notes.push('Records ' + (result.signedSeq + 1) + '..' + result.records + ' chain correctly but are not covered by a signed checkpoint yet.');
      }
      notes.push('No seal record: the recording is still in progress or was interrupted.');
    }
    notes.unshift(result.records + ' chain records, ' + items.filter(function (x) { return x.kind === 'cp'; }).length +
      ' checkpoints, ' + Object.keys(files).length + ' files checked.');
    return finish();
  }

  PSM.integrity = { verify: verify, manifestFiles: manifestFiles, canon: canon };
})(window);
