/*
 * psmgate player — transcript events: parsing the events/*.jsonl files, turning each event into a
 * readable line, and text search.
 */
(function (root) {
  'use strict';
  var PSM = (root.PSM = root.PSM || {});
  var MASKED = '••• masked';

  /** Events that mark the timeline, with their colour class. */
  var MARKER_TYPES = { policy: 'policy', marker: 'marker', resize: 'resize', title: 'title', url: 'page' };

  /**
   * Transcript filters of web sessions: which event groups each one shows ("all": every group).
   * An event belongs to the groups `describe` gives it (a denied request is HTTP and policy).
   */
  var FILTERS = ['all', 'page', 'http', 'policy'];
  var RECORDER_RULE = 'recorder-heartbeat';

  /**
   * Parse transcript files (in manifest order) into events sorted by time.
   * @param {Array<{file:string,text:string}>} files
   * @returns {{events:Array<object>, invalid:number}}
   */
  function parse(files) {
    var events = [];
    var invalid = 0;
    files.forEach(function (f) {
      String(f.text || '').split('\n').forEach(function (line) {
        if (!line.trim()) return;
        var e;
        try { e = JSON.parse(line); } catch (err) { invalid++; return; }
        if (!e || typeof e !== 'object' || typeof e.t !== 'number' || !isFinite(e.t) || typeof e.type !== 'string') { invalid++; return; }
        events.push(e);
      });
    });
    events.forEach(function (e, i) { e._i = i; });
    events.sort(function (a, b) { return a.t - b.t || a._i - b._i; });
    events.forEach(function (e, i) { e._i = i; });
    return { events: events, invalid: invalid };
  }

  function str(v) {
    return v === undefined || v === null ? '' : String(v);
  }
  function first(e, keys) {
    for (var i = 0; i < keys.length; i++) if (e[keys[i]] !== undefined && e[keys[i]] !== null && e[keys[i]] !== '') return e[keys[i]];
    return undefined;
  }
  function xy(e) {
    return typeof e.x === 'number' && typeof e.y === 'number' ? ' at ' + e.x + ', ' + e.y : '';
  }
  /** Remaining fields of an unknown event type, for display. */
  function rest(e) {
    var o = {};
    Object.keys(e).forEach(function (k) { if (k !== 't' && k !== 'type' && k.charAt(0) !== '_') o[k] = e[k]; });
    var s = JSON.stringify(o);
    return s === '{}' ? '' : s;
  }
  var KEY_GLYPH = { Return: '⏎ Enter', Enter: '⏎ Enter', BackSpace: '⌫ Backspace', Backspace: '⌫ Backspace', Tab: '⇥ Tab', Escape: 'Esc' };

  /** A byte count for people: 512 B, 1.5 kB, 2.3 MB. */
  function bytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return str(n) + ' B';
    if (n < 1000) return n + ' B';
    if (n < 1e6) return (Math.round(n / 100) / 10) + ' kB';
    return (Math.round(n / 1e5) / 10) + ' MB';
  }

  /**
   * Describe one event.
   * @returns {{label:string, text:string, masked:boolean, hidden:boolean, marker:string|null,
   *   groups:string[], level:string|undefined}}
   *   hidden: noisy events (pointer moves, key/button releases, DOM batches) that the list hides
   *   unless "all events" is on; they still count in the density histogram. groups: the filters
   *   (besides "all") that show the event. level (HTTP): ok, warn (4xx), bad (5xx, no response)
   *   or deny (refused by policy).
   */
  function describe(e) {
    var d = { label: e.type, text: '', masked: e.masked === true, hidden: false, marker: MARKER_TYPES[e.type] || null, groups: [] };
    switch (e.type) {
      case 'text':
        d.label = 'typed';
        d.text = str(first(e, ['text', 'value', 's', 'data']));
        break;
      case 'key': {
        var k = first(e, ['key', 'name', 'code']);
        if (k === undefined && typeof e.keysym === 'number') k = 'keysym 0x' + e.keysym.toString(16);
        d.text = KEY_GLYPH[k] || str(k);
        if (e.down === false || e.pressed === false) d.hidden = true;
        break;
      }
      case 'pointer':
        d.label = 'pointer';
        d.text = 'moved' + xy(e);
        d.hidden = true;
        break;
      case 'button':
        d.label = 'click';
        d.text = 'button ' + str(first(e, ['button', 'buttons'])) + xy(e);
        if (e.down === false || e.pressed === false) d.hidden = true;
        break;
      case 'wheel':
        d.label = 'scroll';
        d.text = [e.dx ? 'dx ' + e.dx : '', e.dy ? 'dy ' + e.dy : ''].filter(Boolean).join(' ') + xy(e);
        break;
      case 'clipboard': {
        var dir = first(e, ['direction', 'dir']);
        var len = first(e, ['len', 'length', 'bytes']);
        var body = first(e, ['text', 'value']);
        d.text = [dir ? str(dir) : '', len !== undefined ? len + ' chars' : '', body !== undefined ? '“' + str(body) + '”' : ''].filter(Boolean).join(' · ');
        break;
      }
      case 'resize':
        d.text = 'screen ' + str(first(e, ['width', 'w'])) + '×' + str(first(e, ['height', 'h']));
        break;
      case 'title':
        d.text = str(first(e, ['title', 'text']));
        d.groups = ['page'];
        break;
      case 'url':
        d.label = 'page';
        d.text = str(first(e, ['url', 'href']));
        d.groups = ['page'];
        break;
      case 'input':
        // what was typed into a page field (derived from the DOM recording)
        d.label = 'typed';
        d.text = str(e.text);
        break;
      case 'http': {
        var deny = e.action === 'deny';
        var hasStatus = typeof e.status === 'number';
        var size = e.resp_bytes !== undefined ? e.resp_bytes : e.bytes;
        var took = e.total_ms !== undefined ? e.total_ms : e.ms;
        var facts = deny ? [] : [size !== undefined ? bytes(size) : '', took !== undefined ? took + ' ms' : ''].filter(Boolean);
        var how = deny ? 'denied' : e.action === 'tunnel' ? 'tunnelled, not recorded' : '';
        d.text = [str(e.method), str(e.url), hasStatus ? '→ ' + e.status : (e.error ? '→ no response' : ''),
          how ? '[' + how + (e.rule ? ' · rule ' + str(e.rule) : '') + ']' : '',
          facts.length ? '(' + facts.join(', ') + ')' : '',
          e.error ? '— ' + str(e.error) : ''].filter(Boolean).join(' ');
        d.groups = deny ? ['http', 'policy'] : ['http'];
        d.level = deny ? 'deny' : (e.error || !hasStatus || e.status >= 500) && e.action !== 'tunnel' ? 'bad' : hasStatus && e.status >= 400 ? 'warn' : 'ok';
        if (deny) d.marker = 'policy';
        break;
      }
      case 'websocket':
        d.text = [str(e.direction), str(e.kind), str(e.url), e.bytes ? bytes(e.bytes) : ''].filter(Boolean).join(' ');
        d.hidden = e.direction !== 'open';
        d.groups = ['http'];
        break;
      case 'dom': {
        var n = Array.isArray(e.events) ? e.events.length : 0;
        d.label = 'dom';
        d.text = [str(e.url), n + (n === 1 ? ' page event' : ' page events'), e.page ? 'page ' + str(e.page) : ''].filter(Boolean).join(' · ');
        d.hidden = true;
        d.groups = ['page'];
        break;
      }
      case 'policy': {
        var act = first(e, ['action', 'decision']);
        var det = first(e, ['detail', 'message', 'reason', 'text']);
        var rule = first(e, ['rule', 'rule_id']);
        if (rule === RECORDER_RULE && act === 'terminated') {
          d.text = 'session terminated: the in-page recorder fell silent' + (det ? ' (' + str(det) + ')' : '') + ' · rule ' + rule;
        } else {
          d.text = [act ? str(act) : 'policy', det ? str(det) : '', rule ? 'rule ' + rule : ''].filter(Boolean).join(' · ');
        }
        d.groups = ['policy'];
        break;
      }
      case 'marker':
        d.text = str(first(e, ['label', 'text', 'name', 'note']));
        break;
      case 'session':
        d.text = [str(first(e, ['event', 'state', 'kind'])), str(first(e, ['detail', 'reason', 'message']))].filter(Boolean).join(' — ');
        break;
      default:
        d.text = rest(e);
    }
    if (d.masked) d.text = MASKED;
    return d;
  }

  /** Case-insensitive match positions of `q` in `text`: [[start, end], ...]. */
  function matches(text, q) {
    var out = [];
    if (!q) return out;
    var hay = text.toLowerCase();
    var needle = q.toLowerCase();
    var i = hay.indexOf(needle);
    while (i >= 0 && out.length < 50) {
      out.push([i, i + needle.length]);
      i = hay.indexOf(needle, i + needle.length);
    }
    return out;
  }

  /** Whether described event `d` shows under filter `f` (one of FILTERS). */
  function inFilter(d, f) {
    return !f || f === 'all' || d.groups.indexOf(f) >= 0;
  }

  PSM.transcript = {
    parse: parse, describe: describe, matches: matches, inFilter: inFilter, bytes: bytes,
    MASKED: MASKED, MARKER_TYPES: MARKER_TYPES, FILTERS: FILTERS
  };
})(window);
