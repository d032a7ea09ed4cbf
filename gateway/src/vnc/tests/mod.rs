//! Tests of the RFB codecs against hand-built wire bytes.

mod client;
mod enc;
mod fuzz;
mod server;

use super::{Parsed, PixelFormat, ServerEvent, ServerStream};
use psmgate_codecs::framebuffer::Framebuffer;

/// Everything a run produced: events, and the error that ended it if any.
#[derive(Debug, PartialEq)]
pub(crate) struct Run {
    pub events: Vec<Parsed<ServerEvent>>,
    pub error: Option<String>,
    pub pixels: Vec<u32>,
    pub size: (u32, u32),
}

/// Feeds `bytes` in chunks of the given sizes (cycled), polling after each chunk.
pub(crate) fn run_chunked(bytes: &[u8], fb: &mut Framebuffer, chunks: &[usize]) -> Run {
    let mut s = ServerStream::new(PixelFormat::FORCED).unwrap();
    run_with(&mut s, bytes, fb, chunks)
}

pub(crate) fn run_with(
    s: &mut ServerStream,
    bytes: &[u8],
    fb: &mut Framebuffer,
    chunks: &[usize],
) -> Run {
    let mut events = Vec::new();
    let mut error = None;
    let mut at = 0;
    let mut i = 0;
    'outer: while at < bytes.len() {
        let n = chunks[i % chunks.len()].max(1).min(bytes.len() - at);
        i += 1;
        s.feed(&bytes[at..at + n]);
        at += n;
        loop {
            match s.next_event(fb) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break 'outer;
                }
            }
        }
    }
    Run {
        events,
        error,
        pixels: fb.pixels().to_vec(),
        size: (fb.width(), fb.height()),
    }
}

/// Runs `bytes` on a fresh `w × h` framebuffer, all at once.
pub(crate) fn run(bytes: &[u8], w: u32, h: u32) -> (Run, Framebuffer) {
    let mut fb = Framebuffer::new(w, h).unwrap();
    let r = run_chunked(bytes, &mut fb, &[usize::MAX]);
    (r, fb)
}
