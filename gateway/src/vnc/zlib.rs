//! Bounded inflation of the per-connection zlib streams (ZRLE, zlib, Tight).

use super::error::RfbError;
use flate2::{Decompress, FlushDecompress, Status};

/// Output is grown in steps of at most this many bytes, so a small bound allocates little.
const GROW_STEP: usize = 256 * 1024;

/// One zlib stream. RFB keeps a stream alive for the whole connection; each rectangle's
/// compressed chunk ends with a sync flush, so it inflates completely on its own.
pub(crate) struct Inflater {
    z: Decompress,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Inflater {
    /// A fresh stream expecting a zlib header.
    pub(crate) fn new() -> Self {
        Inflater {
            z: Decompress::new(true),
        }
    }

    /// Starts the stream over (Tight's reset bits).
    pub(crate) fn reset(&mut self) {
        self.z.reset(true);
    }

    /// Inflates all of `input`, returning the output, which may not exceed `max` bytes.
    pub(crate) fn inflate(&mut self, input: &[u8], max: usize) -> Result<Vec<u8>, RfbError> {
        let mut out: Vec<u8> = Vec::new();
        let mut used = 0usize;
        loop {
            if out.len() >= out.capacity().min(max) {
                if out.len() >= max {
                    // Full: any further output breaks the bound.
                    let mut probe = [0u8; 1];
                    let (di, dout, status) = self.step(&input[used..], &mut probe)?;
                    used += di;
                    if dout > 0 {
                        return Err(RfbError::too_large(
                            "inflated rectangle data",
                            max as u64 + 1,
                            max as u64,
                        ));
                    }
                    if di == 0 || status == Status::StreamEnd || used == input.len() {
                        break;
                    }
                    continue;
                }
                let grow = (max - out.len()).min(GROW_STEP.max(out.len()));
                out.reserve_exact(grow);
                continue;
            }
            let start = out.len();
            out.resize(out.capacity().min(max), 0);
            let (di, dout, status) = self.step(&input[used..], &mut out[start..])?;
            out.truncate(start + dout);
            used += di;
            if status == Status::StreamEnd || (di == 0 && dout == 0) {
                break;
            }
        }
        if used < input.len() {
            return Err(RfbError::Zlib(
                "data continues after the end of the stream".into(),
            ));
        }
        Ok(out)
    }

    /// Inflates `input`, which must produce exactly `len` bytes.
    pub(crate) fn inflate_exact(&mut self, input: &[u8], len: usize) -> Result<Vec<u8>, RfbError> {
        let out = self.inflate(input, len)?;
        if out.len() != len {
            return Err(RfbError::Zlib(format!(
                "inflated to {} bytes, expected {len}",
                out.len()
            )));
        }
        Ok(out)
    }

    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize, Status), RfbError> {
        let (in0, out0) = (self.z.total_in(), self.z.total_out());
        let status = self
            .z
            .decompress(input, out, FlushDecompress::Sync)
            .map_err(|e| RfbError::Zlib(e.to_string()))?;
        let di = usize::try_from(self.z.total_in() - in0).unwrap_or(usize::MAX);
        let dout = usize::try_from(self.z.total_out() - out0).unwrap_or(usize::MAX);
        Ok((di.min(input.len()), dout.min(out.len()), status))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    /// A compressing peer stream for tests: each chunk ends with a sync flush.
    pub(crate) struct Deflater(Compress);

    impl Deflater {
        pub(crate) fn new() -> Self {
            Deflater(Compress::new(Compression::default(), true))
        }

        pub(crate) fn chunk(&mut self, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(data.len() * 2 + 64);
            let start = self.0.total_in();
            loop {
                let done = (self.0.total_in() - start) as usize;
                if out.capacity() - out.len() < 64 {
                    out.reserve(1024);
                }
                self.0
                    .compress_vec(&data[done..], &mut out, FlushCompress::Sync)
                    .unwrap();
                if (self.0.total_in() - start) as usize == data.len() && out.capacity() > out.len()
                {
                    break;
                }
            }
            out
        }
    }

    #[test]
    fn chunks_share_one_stream() {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        let a = d.chunk(&[7u8; 1000]);
        let b = d.chunk(&[7u8; 1000]);
        assert!(b.len() < a.len(), "second chunk reuses the dictionary");
        assert_eq!(i.inflate_exact(&a, 1000).unwrap(), vec![7u8; 1000]);
        assert_eq!(i.inflate_exact(&b, 1000).unwrap(), vec![7u8; 1000]);
    }

    #[test]
    fn output_beyond_the_bound_is_an_error() {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        let a = d.chunk(&vec![0u8; 1 << 20]);
        assert!(matches!(
            i.inflate(&a, 4096),
            Err(RfbError::TooLarge { .. })
        ));
        let mut i = Inflater::new();
        assert!(i.inflate(&[0x78, 0x9c, 0xff, 0xff, 0xff], 100).is_err());
    }
}
