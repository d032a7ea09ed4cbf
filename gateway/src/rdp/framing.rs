//! Splitting an RDP byte stream into frames.
//!
//! After the X.224 connection sequence an RDP connection carries two kinds of frames on the
//! same stream ([MS-RDPBCGR] 2.2.9.1.2 and 2.2.9.1.1): slow-path TPKT frames (first byte
//! `0x03`, 16-bit length in bytes 2–3) and fast-path frames (low two bits of the first byte
//! zero, 7- or 15-bit length after it). [`FrameSplitter`] buffers what arrives and hands out
//! whole frames; the relay forwards and parses frame by frame, so a frame split across TCP or
//! TLS records is never seen half.
//!
//! Both encodings bound a frame to 65 535 bytes (TPKT) or 32 767 bytes (fast path), so a peer
//! cannot make the splitter hold more than one such frame plus what is already buffered.

use ironrdp_pdu::Action;

/// Largest frame either encoding can describe (TPKT's 16-bit length).
pub const MAX_FRAME: usize = 0xFFFF;

/// A frame the peer sent that cannot be an RDP frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The first byte is neither TPKT nor fast path, or a length field is impossible.
    #[error("malformed RDP frame header: {0}")]
    Malformed(String),
}

/// One complete frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Slow path (TPKT/X.224) or fast path.
    pub action: Action,
    /// The whole frame, headers included.
    pub bytes: Vec<u8>,
}

/// Buffers a byte stream and yields whole frames.
#[derive(Debug, Default)]
pub struct FrameSplitter {
    buf: Vec<u8>,
    start: usize,
}

impl FrameSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        let pending = &self.buf[self.start..];
        // Slow path is TPKT version 3; the low two bits alone (all `find_size` looks at) would
        // take any byte ending in binary 11 for one.
        if pending
            .first()
            .is_some_and(|b| b & 0x3 == 0x3 && *b != 0x03)
        {
            return Err(FramingError::Malformed(format!(
                "first byte {:#04x} is neither TPKT nor fast path",
                pending[0]
            )));
        }
        let info = match ironrdp_pdu::find_size(pending) {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(None),
            Err(e) => return Err(FramingError::Malformed(e.to_string())),
        };
        if info.length < 2 || info.length > MAX_FRAME {
            return Err(FramingError::Malformed(format!(
                "frame length {} out of range",
                info.length
            )));
        }
        let Some(bytes) = pending.get(..info.length) else {
            return Ok(None);
        };
        let frame = Frame {
            action: info.action,
            bytes: bytes.to_vec(),
        };
        self.start += info.length;
        Ok(Some(frame))
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes the buffered bytes that are not part of a returned frame (for handing the stream
    /// to another parser, e.g. TLS after the X.224 negotiation).
    pub fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..].to_vec();
        self.buf.clear();
        self.start = 0;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tpkt(payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() + 4) as u16;
        let mut v = vec![3, 0];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn fast_path(payload: &[u8]) -> Vec<u8> {
        let len = payload.len() + 3;
        let mut v = vec![0x00, 0x80 | (len >> 8) as u8, len as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn splits_mixed_frames_fed_byte_by_byte() {
        let a = tpkt(&[2, 0xf0, 0x80, 1, 2, 3]);
        let b = fast_path(&[9; 300]);
        let c = tpkt(&[2, 0xf0, 0x80]);
        let stream: Vec<u8> = [a.clone(), b.clone(), c.clone()].concat();
        let mut s = FrameSplitter::new();
        let mut frames = Vec::new();
        for byte in stream {
            s.feed(&[byte]);
            while let Some(f) = s.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].bytes, a);
        assert_eq!(frames[0].action, Action::X224);
        assert_eq!(frames[1].bytes, b);
        assert_eq!(frames[1].action, Action::FastPath);
        assert_eq!(frames[2].bytes, c);
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn short_fast_path_length_header() {
        let f = vec![0x00, 4, 0xAA, 0xBB];
        let mut s = FrameSplitter::new();
        s.feed(&f);
        s.feed(&[3, 0]);
        assert_eq!(s.next_frame().unwrap().unwrap().bytes, f);
        assert!(s.next_frame().unwrap().is_none());
        assert_eq!(s.take_rest(), vec![3, 0]);
    }

    #[test]
    fn rejects_impossible_headers() {
        let mut s = FrameSplitter::new();
        s.feed(&[3, 0, 0, 1]);
        assert!(s.next_frame().is_err());
        let mut s = FrameSplitter::new();
        s.feed(&[0xFF, 0, 0, 8, 0, 0, 0, 0]);
        assert!(s.next_frame().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics_and_never_overreads(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut s = FrameSplitter::new();
            let total: usize = chunks.iter().map(Vec::len).sum();
            let mut out = 0usize;
            'outer: for c in &chunks {
                s.feed(c);
                loop {
                    match s.next_frame() {
                        Ok(Some(f)) => {
                            prop_assert!(f.bytes.len() <= MAX_FRAME);
                            out += f.bytes.len();
                        }
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            prop_assert!(out <= total);
        }
    }
}
