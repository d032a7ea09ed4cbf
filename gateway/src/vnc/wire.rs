//! Byte-level reading shared by the stream parsers: the input buffer and a cursor whose reads
//! report "need more bytes" instead of failing.

use super::error::RfbError;
use psmgate_codecs::framebuffer::FramebufferError;

/// Why a parse step stopped early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The input ends before the item does; retry with more bytes.
    More,
    /// The input is invalid.
    Fail(RfbError),
}

impl From<RfbError> for Stop {
    fn from(e: RfbError) -> Self {
        Stop::Fail(e)
    }
}

impl From<FramebufferError> for Stop {
    fn from(e: FramebufferError) -> Self {
        Stop::Fail(e.into())
    }
}

impl Stop {
    /// For data known to be complete (already decompressed): running out is corruption.
    pub(crate) fn truncated(self, what: &'static str) -> RfbError {
        match self {
            Stop::More => RfbError::Malformed(what),
            Stop::Fail(e) => e,
        }
    }
}

/// Result of a parse step that may need more input.
pub(crate) type Parse<T> = Result<T, Stop>;

/// A read position over a byte slice; every read fails with [`Stop::More`] when short.
#[derive(Debug, Clone)]
pub(crate) struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cur { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        if self.remaining() < n {
            return Err(Stop::More);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Skips `n` bytes.
    pub(crate) fn skip(&mut self, n: usize) -> Parse<()> {
        self.take(n).map(|_| ())
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian `u16`.
    pub(crate) fn u16(&mut self) -> Parse<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    pub(crate) fn u32(&mut self) -> Parse<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Bytes fed but not yet consumed. Consumed bytes are dropped lazily so that consuming is O(1)
/// and compaction is amortised.
#[derive(Debug, Default)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    pos: usize,
}

/// Consumed bytes are only moved out once at least this many have accumulated.
const COMPACT_AFTER: usize = 64 * 1024;

impl InBuf {
    /// Appends bytes.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.pos == self.data.len() {
            self.data.clear();
            self.pos = 0;
        } else if self.pos >= COMPACT_AFTER && self.pos * 2 >= self.data.len() {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        self.data.extend_from_slice(bytes);
    }

    /// The unconsumed bytes.
    pub(crate) fn available(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// Marks `n` available bytes consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.data.len());
    }

    /// Unconsumed byte count.
    pub(crate) fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Heap bytes held.
    pub(crate) fn capacity(&self) -> usize {
        self.data.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_reports_more_then_reads() {
        let mut c = Cur::new(&[0, 1, 0, 0, 0, 2, 9]);
        assert_eq!(c.u16().unwrap(), 1);
        assert_eq!(c.u32().unwrap(), 2);
        assert!(matches!(c.u16(), Err(Stop::More)));
        assert_eq!(c.u8().unwrap(), 9);
        assert_eq!(c.remaining(), 0);
    }

    #[test]
    fn inbuf_consumes_and_compacts() {
        let mut b = InBuf::default();
        b.feed(&[1, 2, 3]);
        b.consume(2);
        assert_eq!(b.available(), &[3]);
        b.feed(&[4]);
        assert_eq!(b.available(), &[3, 4]);
        b.consume(2);
        b.feed(&[5]);
        assert_eq!(b.available(), &[5]);
        assert_eq!(b.len(), 1);
    }
}
