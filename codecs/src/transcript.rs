//! The input-event transcript: protocol-neutral events, masked per policy, as JSON lines.
//!
//! Protocol code reports [`Input`] (keys by name, pointer, buttons, wheel) and metadata
//! ([`EventKind::Title`], clipboard, …). A [`Transcriber`] applies the keystroke mode and the
//! screen masks *before* anything is serialised: a masked key keeps its timing and direction but
//! loses its identity, a pointer inside a masked region loses its coordinates. Printable keys in
//! `record` mode are also gathered into committed `text` runs, which is what reviewers search.

use crate::mask::MaskSet;
use serde::{Deserialize, Serialize};

pub mod keysym;

/// How keystrokes are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeystrokeMode {
    /// Key names, characters and text runs.
    #[default]
    Record,
    /// Timing and direction only.
    Mask,
    /// No key events at all.
    Off,
}

/// Direction of clipboard data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipboardDirection {
    /// From the admin's machine to the target.
    ToTarget,
    /// From the target to the admin's machine.
    ToClient,
}

/// One transcript line: `{"t":ms,"type":…,…}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the session started.
    pub t: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Transcript event types (see docs/recording-format.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A key went down or up.
    Key {
        /// Key name (X11 keysym name style: `a`, `Return`, `Shift_L`); absent when masked.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        key: Option<String>,
        /// The printable character, if any; absent when masked.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        char: Option<String>,
        /// Pressed (true) or released.
        down: bool,
        /// True when identity was removed by policy.
        #[serde(skip_serializing_if = "is_false", default)]
        masked: bool,
    },
    /// A committed run of typed text, for search.
    Text {
        /// The text.
        text: String,
    },
    /// Pointer position.
    Pointer {
        /// X, absent inside a masked region.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        x: Option<u32>,
        /// Y, absent inside a masked region.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        y: Option<u32>,
        /// True when coordinates were removed.
        #[serde(skip_serializing_if = "is_false", default)]
        masked: bool,
    },
    /// A mouse button went down or up.
    Button {
        /// 1 left, 2 middle, 3 right.
        button: u8,
        /// Pressed or released.
        down: bool,
        /// X, absent inside a masked region.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        x: Option<u32>,
        /// Y, absent inside a masked region.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        y: Option<u32>,
        /// True when coordinates were removed.
        #[serde(skip_serializing_if = "is_false", default)]
        masked: bool,
    },
    /// Wheel movement.
    Wheel {
        /// Horizontal steps.
        dx: i32,
        /// Vertical steps (positive = down).
        dy: i32,
    },
    /// Clipboard transfer.
    Clipboard {
        /// Direction.
        direction: ClipboardDirection,
        /// Length in bytes.
        len: u64,
        /// SHA-256 of the content, when policy logs a digest.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        sha256: Option<String>,
        /// The content, when policy logs it.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        text: Option<String>,
        /// Whether the transfer was allowed.
        allowed: bool,
    },
    /// Screen size changed.
    Resize {
        /// New width.
        width: u32,
        /// New height.
        height: u32,
    },
    /// Window or desktop title.
    Title {
        /// The title.
        title: String,
    },
    /// Page URL (web sessions).
    Url {
        /// The URL.
        url: String,
    },
    /// One HTTP exchange through the web proxy (web sessions). Secret-bearing headers, query
    /// parameters and body fields are redacted before the event is made.
    Http(Box<HttpExchange>),
    /// WebSocket traffic through the web proxy: the upgrade and each message's size (never its
    /// content).
    Websocket {
        /// The socket's URL (query redacted like HTTP URLs).
        url: String,
        /// `open`, `to_server`, `to_client` or `close`.
        direction: String,
        /// `text`, `binary`, `ping`, `pong` or `close` for messages.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        kind: Option<String>,
        /// Message size in bytes.
        #[serde(skip_serializing_if = "is_zero", default)]
        bytes: u64,
    },
    /// A batch of the in-page recorder's DOM events (rrweb format) for one page, masked in the
    /// browser and again by the proxy.
    Dom {
        /// The page (one per loaded document).
        page: String,
        /// Batch number within the page.
        seq: u64,
        /// The page's URL (secret query values redacted).
        url: String,
        /// rrweb events.
        events: Vec<serde_json::Value>,
    },
    /// A policy decision or enforcement.
    Policy {
        /// Rule id.
        rule: String,
        /// What was done (`blocked`, `terminated`, `masked`, …).
        action: String,
        /// Human-readable detail.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        detail: Option<String>,
    },
    /// A named point of interest.
    Marker {
        /// Label.
        label: String,
    },
    /// Session lifecycle (`start`, `end`).
    Session {
        /// `start` or `end`.
        phase: String,
        /// Reason or detail.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        detail: Option<String>,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An HTTP request and its response as the web proxy saw them (the `http` event).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpExchange {
    /// Request method (`CONNECT` for a tunnel).
    pub method: String,
    /// Absolute URL (`host:port` for a tunnel), secret query values redacted.
    pub url: String,
    /// What policy did: `record`, `tunnel` or `deny`.
    pub action: String,
    /// The rule that decided.
    pub rule: String,
    /// Response status; absent when no response came (see `error`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// Milliseconds from the request to the response headers.
    #[serde(default)]
    pub ms: u64,
    /// Milliseconds from the request to the end of the response body.
    #[serde(default)]
    pub total_ms: u64,
    /// Request body bytes sent upstream.
    #[serde(default)]
    pub req_bytes: u64,
    /// Response body bytes sent to the browser.
    #[serde(default)]
    pub resp_bytes: u64,
    /// Response `Content-Type`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    /// Request headers as `[name, value]`, secret values replaced by `[redacted]`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub request_headers: Vec<(String, String)>,
    /// Response headers as `[name, value]`, secret values replaced by `[redacted]`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub response_headers: Vec<(String, String)>,
    /// The request body with secret fields redacted, when policy records bodies.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body: Option<String>,
    /// Why the exchange failed or was cut short.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// Raw input as a protocol reports it, before policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A key by name with its printable character.
    Key {
        /// Key name.
        key: String,
        /// Printable character, if the key produces one.
        ch: Option<char>,
        /// Pressed or released.
        down: bool,
    },
    /// Pointer moved.
    Pointer {
        /// X.
        x: u32,
        /// Y.
        y: u32,
    },
    /// Button pressed or released at a position.
    Button {
        /// 1 left, 2 middle, 3 right.
        button: u8,
        /// Pressed or released.
        down: bool,
        /// X.
        x: u32,
        /// Y.
        y: u32,
    },
    /// Wheel steps.
    Wheel {
        /// Horizontal.
        dx: i32,
        /// Vertical.
        dy: i32,
    },
}

/// Turns raw input into masked transcript events.
#[derive(Debug, Clone)]
pub struct Transcriber {
    mode: KeystrokeMode,
    masks: MaskSet,
    text: String,
    text_started: u64,
    last_key: u64,
    last_pointer: Option<(u64, u32, u32)>,
    pointer_interval_ms: u64,
    commit_pause_ms: u64,
}

/// Longest text run kept before it is committed.
const MAX_TEXT_RUN: usize = 4096;

impl Transcriber {
    /// A transcriber for a keystroke mode and the masks in force.
    pub fn new(mode: KeystrokeMode, masks: MaskSet) -> Self {
        Self {
            mode,
            masks,
            text: String::new(),
            text_started: 0,
            last_key: 0,
            last_pointer: None,
            pointer_interval_ms: 100,
            commit_pause_ms: 2000,
        }
    }

    /// Replaces the masks (screen resized).
    pub fn set_masks(&mut self, masks: MaskSet) {
        self.masks = masks;
    }

    /// The keystroke mode.
    pub fn mode(&self) -> KeystrokeMode {
        self.mode
    }

    /// Processes one input at `t`, appending resulting events to `out`.
    pub fn input(&mut self, t: u64, input: Input, out: &mut Vec<Event>) {
        if !self.text.is_empty() && t.saturating_sub(self.last_key) >= self.commit_pause_ms {
            self.commit(out);
        }
        match input {
            Input::Key { key, ch, down } => self.key(t, key, ch, down, out),
            Input::Pointer { x, y } => {
                // Pointer motion is sampled (at most one position per interval, the last one
                // wins on the next button or sample) to keep transcripts small.
                if let Some((lt, lx, ly)) = self.last_pointer {
                    if (lx, ly) == (x, y) || t.saturating_sub(lt) < self.pointer_interval_ms {
                        return;
                    }
                }
                self.last_pointer = Some((t, x, y));
                let (x, y, masked) = self.place(x, y);
                out.push(Event {
                    t,
                    kind: EventKind::Pointer { x, y, masked },
                });
            }
            Input::Button { button, down, x, y } => {
                if down {
                    self.commit(out);
                }
                let (x, y, masked) = self.place(x, y);
                out.push(Event {
                    t,
                    kind: EventKind::Button {
                        button,
                        down,
                        x,
                        y,
                        masked,
                    },
                });
            }
            Input::Wheel { dx, dy } => out.push(Event {
                t,
                kind: EventKind::Wheel { dx, dy },
            }),
        }
    }

    fn place(&self, x: u32, y: u32) -> (Option<u32>, Option<u32>, bool) {
        if self.masks.covers(x, y) {
            (None, None, true)
        } else {
            (Some(x), Some(y), false)
        }
    }

    fn key(&mut self, t: u64, key: String, ch: Option<char>, down: bool, out: &mut Vec<Event>) {
        match self.mode {
            KeystrokeMode::Off => {}
            KeystrokeMode::Mask => out.push(Event {
                t,
                kind: EventKind::Key {
                    key: None,
                    char: None,
                    down,
                    masked: true,
                },
            }),
            KeystrokeMode::Record => {
                if down {
                    self.last_key = t;
                    match (key.as_str(), ch) {
                        ("Return" | "KP_Enter" | "Tab", _) => {
                            self.commit_at(out, t);
                        }
                        ("BackSpace", _) => {
                            self.text.pop();
                        }
                        (_, Some(c)) if !c.is_control() => {
                            if self.text.is_empty() {
                                self.text_started = t;
                            }
                            self.text.push(c);
                            if self.text.len() >= MAX_TEXT_RUN {
                                self.commit(out);
                            }
                        }
                        _ => {}
                    }
                }
                out.push(Event {
                    t,
                    kind: EventKind::Key {
                        key: Some(key),
                        char: ch.filter(|c| !c.is_control()).map(String::from),
                        down,
                        masked: false,
                    },
                });
            }
        }
    }

    fn commit_at(&mut self, out: &mut Vec<Event>, _t: u64) {
        self.commit(out);
    }

    /// Emits the pending text run, if any (stamped with the time typing started).
    pub fn commit(&mut self, out: &mut Vec<Event>) {
        if !self.text.is_empty() {
            out.push(Event {
                t: self.text_started,
                kind: EventKind::Text {
                    text: std::mem::take(&mut self.text),
                },
            });
        }
    }

    /// Commits a pending text run if typing paused long enough by `now`.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Event>) {
        if !self.text.is_empty() && now.saturating_sub(self.last_key) >= self.commit_pause_ms {
            self.commit(out);
        }
    }
}

/// Serialises events as JSON lines.
pub fn to_jsonl(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 48);
    for e in events {
        // Serialising these plain data types cannot fail.
        if serde_json::to_writer(&mut out, e).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rect;
    use crate::mask::Mask;

    fn typed(tr: &mut Transcriber, s: &str, t0: u64) -> Vec<Event> {
        let mut out = Vec::new();
        for (i, c) in s.chars().enumerate() {
            let t = t0 + i as u64 * 100;
            let (key, ch) = keysym::describe(keysym::from_char(c));
            tr.input(
                t,
                Input::Key {
                    key: key.clone(),
                    ch,
                    down: true,
                },
                &mut out,
            );
            tr.input(
                t + 30,
                Input::Key {
                    key,
                    ch,
                    down: false,
                },
                &mut out,
            );
        }
        out
    }

    #[test]
    fn record_mode_builds_text_runs_and_key_events() {
        let mut tr = Transcriber::new(KeystrokeMode::Record, MaskSet::default());
        let mut out = typed(&mut tr, "ls -la\r", 1000);
        tr.commit(&mut out);
        let text: Vec<_> = out
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Text { text } => Some((e.t, text.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(text, vec![(1000, "ls -la".to_string())]);
        assert!(out.iter().any(|e| matches!(&e.kind, EventKind::Key { key: Some(k), char: Some(c), down: true, .. } if k == "minus" && c == "-")));
        let line = String::from_utf8(to_jsonl(&out[..1])).unwrap();
        assert_eq!(
            line,
            "{\"t\":1000,\"type\":\"key\",\"key\":\"l\",\"char\":\"l\",\"down\":true}\n"
        );
    }

    #[test]
    fn mask_mode_drops_identity_and_off_drops_keys() {
        let mut tr = Transcriber::new(KeystrokeMode::Mask, MaskSet::default());
        let mut out = typed(&mut tr, "hunter2", 0);
        tr.commit(&mut out);
        let json = String::from_utf8(to_jsonl(&out)).unwrap();
        assert_eq!(out.len(), 14);
        assert!(
            !json.contains("hunter") && !json.contains("\"h\"") && json.contains("\"masked\":true")
        );
        let mut tr = Transcriber::new(KeystrokeMode::Off, MaskSet::default());
        let out = typed(&mut tr, "hunter2", 0);
        assert!(out.is_empty());
    }

    #[test]
    fn pointer_in_masked_region_loses_coordinates() {
        let masks = MaskSet::new(
            [Mask {
                id: "m".into(),
                rect: Rect::new(0, 0, 100, 100),
            }],
            640,
            480,
        );
        let mut tr = Transcriber::new(KeystrokeMode::Record, masks);
        let mut out = Vec::new();
        tr.input(
            0,
            Input::Button {
                button: 1,
                down: true,
                x: 50,
                y: 50,
            },
            &mut out,
        );
        tr.input(
            10,
            Input::Button {
                button: 1,
                down: true,
                x: 300,
                y: 200,
            },
            &mut out,
        );
        assert_eq!(
            out[0].kind,
            EventKind::Button {
                button: 1,
                down: true,
                x: None,
                y: None,
                masked: true
            }
        );
        assert_eq!(
            out[1].kind,
            EventKind::Button {
                button: 1,
                down: true,
                x: Some(300),
                y: Some(200),
                masked: false
            }
        );
    }

    #[test]
    fn pause_commits_and_backspace_edits() {
        let mut tr = Transcriber::new(KeystrokeMode::Record, MaskSet::default());
        let mut out = typed(&mut tr, "abx", 0);
        let (k, ch) = keysym::describe(0xff08);
        tr.input(
            400,
            Input::Key {
                key: k,
                ch,
                down: true,
            },
            &mut out,
        );
        out.extend(typed(&mut tr, "c", 500));
        tr.tick(5000, &mut out);
        assert!(out
            .iter()
            .any(|e| e.kind == EventKind::Text { text: "abc".into() }));
    }

    #[test]
    fn pointer_motion_is_sampled() {
        let mut tr = Transcriber::new(KeystrokeMode::Record, MaskSet::default());
        let mut out = Vec::new();
        for i in 0..100u32 {
            tr.input(u64::from(i) * 10, Input::Pointer { x: i, y: i }, &mut out);
        }
        assert_eq!(out.len(), 10);
    }
}
