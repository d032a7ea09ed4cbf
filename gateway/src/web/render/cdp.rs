//! The Chrome DevTools Protocol as it runs over `--remote-debugging-pipe`, without I/O: JSON
//! messages, each ended by a NUL byte, in both directions.
//!
//! [`Framer`] cuts the bytes Chromium writes into messages, [`parse`] reads one, [`encode`] writes
//! a command. Nothing here trusts the peer: a message that is too long, not JSON or not shaped
//! like a response or an event is an error, never a panic.

use serde_json::{Map, Value};

/// Longest message accepted from Chromium: a PNG screenshot of the largest viewport rendered,
/// base64-encoded, fits with room to spare.
pub const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// Protocol errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdpError {
    /// A message grew past the limit without its terminating NUL.
    #[error("a DevTools message is longer than {0} bytes")]
    TooLarge(usize),
    /// A message is not a JSON object shaped like a response or an event.
    #[error("malformed DevTools message: {0}")]
    Malformed(String),
    /// Chromium answered a command with an error.
    #[error("{method} failed: {message} (code {code})")]
    Remote {
        /// The command.
        method: String,
        /// Chromium's error code.
        code: i64,
        /// Chromium's message.
        message: String,
    },
}

/// Cuts a byte stream into NUL-terminated messages.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already known to hold no NUL.
    scanned: usize,
    max: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(MAX_MESSAGE)
    }
}

impl Framer {
    /// A framer accepting messages of at most `max` bytes (the NUL apart).
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::new(),
            scanned: 0,
            max,
        }
    }

    /// Appends bytes read from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that do not form a whole message yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole message (without its NUL), `None` when more bytes are needed. After an
    /// error the stream cannot be resynchronised: the caller drops the connection.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, CdpError> {
        match self.buf[self.scanned..].iter().position(|&b| b == 0) {
            Some(i) => {
                let end = self.scanned + i;
                if end > self.max {
                    return Err(CdpError::TooLarge(self.max));
                }
                let msg = self.buf[..end].to_vec();
                self.buf.drain(..=end);
                self.scanned = 0;
                Ok(Some(msg))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() > self.max {
                    return Err(CdpError::TooLarge(self.max));
                }
                Ok(None)
            }
        }
    }
}

/// A command as written to Chromium: `{"id","method","params","sessionId"?}` and the NUL.
pub fn encode(id: u64, method: &str, params: Value, session: Option<&str>) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    m.insert("method".into(), method.into());
    m.insert("params".into(), params);
    if let Some(s) = session {
        m.insert("sessionId".into(), s.into());
    }
    // serde_json escapes every control character in strings, so the text holds no NUL.
    let mut out = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
    out.push(0);
    out
}

/// A message from Chromium.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to command `id`.
    Response {
        /// The command's id.
        id: u64,
        /// The session the command was sent to (`None`: the browser).
        session: Option<String>,
        /// `result`, or Chromium's error code and message.
        result: Result<Value, (i64, String)>,
    },
    /// A notification.
    Event {
        /// Domain and event name, e.g. `Target.detachedFromTarget`.
        method: String,
        /// The session it concerns (`None`: the browser).
        session: Option<String>,
        /// Its parameters (`null` when absent).
        params: Value,
    },
}

/// Reads one message.
pub fn parse(msg: &[u8]) -> Result<Incoming, CdpError> {
    let v: Value =
        serde_json::from_slice(msg).map_err(|e| CdpError::Malformed(format!("not JSON: {e}")))?;
    let Value::Object(mut o) = v else {
        return Err(CdpError::Malformed("not a JSON object".into()));
    };
    let session = match o.remove("sessionId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(CdpError::Malformed("sessionId is not a string".into())),
    };
    if let Some(id) = o.get("id") {
        let id = id
            .as_u64()
            .ok_or_else(|| CdpError::Malformed("id is not an unsigned integer".into()))?;
        let result = match (o.remove("result"), o.remove("error")) {
            (_, Some(Value::Object(e))) => Err((
                e.get("code").and_then(Value::as_i64).unwrap_or(0),
                e.get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
            )),
            (_, Some(_)) => return Err(CdpError::Malformed("error is not an object".into())),
            (Some(r), None) => Ok(r),
            (None, None) => return Err(CdpError::Malformed("a response without result".into())),
        };
        return Ok(Incoming::Response {
            id,
            session,
            result,
        });
    }
    match o.remove("method") {
        Some(Value::String(method)) => Ok(Incoming::Event {
            method,
            session,
            params: o.remove("params").unwrap_or(Value::Null),
        }),
        _ => Err(CdpError::Malformed(
            "neither a response nor an event".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_cut_at_nul_whatever_the_reads() {
        let stream =
            b"{\"id\":1,\"result\":{}}\0{\"method\":\"A.b\",\"params\":{\"x\":1}}\0{\"id\":2";
        for split in 0..stream.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                f.push(part);
                while let Some(m) = f.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0], b"{\"id\":1,\"result\":{}}");
            assert_eq!(f.pending(), b"{\"id\":2".len());
        }
    }

    #[test]
    fn an_endless_message_is_refused() {
        let mut f = Framer::new(8);
        f.push(b"12345678");
        assert_eq!(f.next_message(), Ok(None));
        f.push(b"9");
        assert_eq!(f.next_message(), Err(CdpError::TooLarge(8)));
        let mut f = Framer::new(8);
        f.push(b"123456789\0");
        assert_eq!(f.next_message(), Err(CdpError::TooLarge(8)));
        let mut f = Framer::new(8);
        f.push(b"12345678\0");
        assert_eq!(f.next_message(), Ok(Some(b"12345678".to_vec())));
    }

    #[test]
    fn commands_are_json_and_one_nul() {
        let m = encode(
            7,
            "Runtime.evaluate",
            json!({"expression": "a\u{0}b"}),
            Some("S1"),
        );
        assert_eq!(m.iter().filter(|&&b| b == 0).count(), 1);
        assert_eq!(m.last(), Some(&0));
        let v: Value = serde_json::from_slice(&m[..m.len() - 1]).unwrap();
        assert_eq!(
            v,
            json!({"id": 7, "method": "Runtime.evaluate", "params": {"expression": "a\u{0}b"}, "sessionId": "S1"})
        );
        let m = encode(1, "Browser.close", json!({}), None);
        assert!(!String::from_utf8_lossy(&m).contains("sessionId"));
    }

    #[test]
    fn responses_and_events_are_read() {
        assert_eq!(
            parse(br#"{"id":3,"result":{"targetId":"T"},"sessionId":"S"}"#).unwrap(),
            Incoming::Response {
                id: 3,
                session: Some("S".into()),
                result: Ok(json!({"targetId": "T"}))
            }
        );
        assert_eq!(
            parse(br#"{"id":4,"error":{"code":-32601,"message":"'X.y' wasn't found"}}"#).unwrap(),
            Incoming::Response {
                id: 4,
                session: None,
                result: Err((-32601, "'X.y' wasn't found".into()))
            }
        );
        assert_eq!(
            parse(br#"{"method":"Target.detachedFromTarget","params":{"sessionId":"S"}}"#).unwrap(),
            Incoming::Event {
                method: "Target.detachedFromTarget".into(),
                session: None,
                params: json!({"sessionId": "S"})
            }
        );
        for bad in [
            &b"nope"[..],
            b"[1]",
            br#"{"id":-1,"result":{}}"#,
            br#"{"id":1}"#,
            br#"{"id":1,"error":"x"}"#,
            br#"{"id":1,"result":{},"sessionId":5}"#,
            br#"{"params":{}}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(CdpError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn any_bytes_are_handled(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..12),
            max in 1usize..96,
        ) {
            let mut f = Framer::new(max);
            'outer: for c in &chunks {
                f.push(c);
                loop {
                    match f.next_message() {
                        Ok(Some(m)) => {
                            proptest::prop_assert!(m.len() <= max && !m.contains(&0));
                            let _ = parse(&m);
                        }
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
        }

        #[test]
        fn any_json_is_handled(s in "[{}\\[\\]\":,a-z0-9 .-]{0,80}") {
            let _ = parse(s.as_bytes());
            let _ = parse(format!("{{\"id\":1,\"result\":{s}}}").as_bytes());
            let _ = parse(format!("{{\"method\":{s}}}").as_bytes());
        }
    }
}
