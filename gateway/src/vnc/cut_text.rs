//! Clipboard text (ServerCutText / ClientCutText), streamed so that its length never drives an
//! allocation beyond [`MAX_CUT_TEXT_KEPT`].

use super::limits::MAX_CUT_TEXT_KEPT;

/// A clipboard transfer in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutText {
    /// Payload length announced on the wire.
    pub total_len: u32,
    /// The first bytes of the payload, at most [`MAX_CUT_TEXT_KEPT`]. ISO 8859-1 text for
    /// classic messages, the raw extended-clipboard message otherwise.
    pub text: Vec<u8>,
    /// The message uses the Extended Clipboard format (negative length on the wire).
    pub extended: bool,
}

impl CutText {
    /// True when the payload was longer than what was kept.
    pub fn truncated(&self) -> bool {
        (self.text.len() as u64) < u64::from(self.total_len)
    }

    /// The kept text decoded as ISO 8859-1 (meaningful for non-extended messages).
    pub fn latin1(&self) -> String {
        self.text.iter().map(|&b| char::from(b)).collect()
    }

    /// Appends the message body after the type byte (3 padding bytes, length, kept payload).
    /// The length written is that of the kept payload, so a truncated text re-encodes as a
    /// shorter but well-formed message.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0, 0]);
        let len = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        let wire = if self.extended {
            (len as i32).wrapping_neg() as u32
        } else {
            len
        };
        out.extend_from_slice(&wire.to_be_bytes());
        out.extend_from_slice(&self.text);
    }
}

/// Reads the signed/unsigned length word: returns (payload length, extended).
pub(crate) fn decode_length(word: u32) -> (u32, bool) {
    let signed = word as i32;
    if signed < 0 {
        (signed.unsigned_abs(), true)
    } else {
        (word, false)
    }
}

/// Collects a cut-text payload as it arrives.
#[derive(Debug)]
pub(crate) struct TextSink {
    remaining: u32,
    text: CutText,
}

impl TextSink {
    /// Starts collecting a payload of `total_len` bytes.
    pub(crate) fn new(total_len: u32, extended: bool) -> Self {
        let keep = (total_len as usize).min(MAX_CUT_TEXT_KEPT);
        TextSink {
            remaining: total_len,
            text: CutText {
                total_len,
                // Reserve no more than what is already known to be worth keeping in one go.
                text: Vec::with_capacity(keep.min(64 * 1024)),
                extended,
            },
        }
    }

    /// Takes payload bytes from `input`; returns how many were used.
    pub(crate) fn absorb(&mut self, input: &[u8]) -> usize {
        let n = input.len().min(self.remaining as usize);
        let room = MAX_CUT_TEXT_KEPT.saturating_sub(self.text.text.len());
        self.text.text.extend_from_slice(&input[..n.min(room)]);
        self.remaining -= n as u32;
        n
    }

    /// True when the whole payload went by.
    pub(crate) fn done(&self) -> bool {
        self.remaining == 0
    }

    /// Heap bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.text.text.capacity()
    }

    /// The finished text.
    pub(crate) fn finish(self) -> CutText {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_truncated_not_buffered() {
        let total = MAX_CUT_TEXT_KEPT as u32 + 10;
        let mut s = TextSink::new(total, false);
        let chunk = vec![b'a'; 1 << 20];
        let mut left = total as usize;
        while left > 0 {
            let n = s.absorb(&chunk[..left.min(chunk.len())]);
            left -= n;
        }
        assert!(s.done());
        let t = s.finish();
        assert_eq!(t.text.len(), MAX_CUT_TEXT_KEPT);
        assert!(t.truncated());
    }

    #[test]
    fn negative_length_is_extended() {
        assert_eq!(decode_length((-5i32) as u32), (5, true));
        assert_eq!(decode_length(5), (5, false));
        assert_eq!(decode_length(0x8000_0000), (0x8000_0000, true));
    }
}
