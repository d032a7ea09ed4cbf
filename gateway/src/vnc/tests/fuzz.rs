//! Robustness: random bytes and mutations of valid streams never panic, never grow memory
//! beyond the input, and fail with clean errors.

use super::enc::{self, Img, TightKind, TileMode};
use crate::vnc::encoding as e;
use crate::vnc::zlib::tests::Deflater;
use crate::vnc::{ClientEvent, ClientStream, PixelFormat, ServerStream};
use proptest::prelude::*;
use psmgate_codecs::framebuffer::Framebuffer;
use std::time::{Duration, Instant};

/// A valid 96×64 stream using every encoding and server message.
pub(crate) fn corpus() -> Vec<u8> {
    let mut z = Deflater::new();
    let mut zl = Deflater::new();
    let mut zs = [
        Deflater::new(),
        Deflater::new(),
        Deflater::new(),
        Deflater::new(),
    ];
    let a = Img::pattern(20, 18, 31, 60);
    let b = Img::pattern(18, 17, 32, 3);
    let c = Img::pattern(33, 20, 33, 9);
    let modes = [
        TileMode::Auto,
        TileMode::PlainRle,
        TileMode::PaletteRle,
        TileMode::Raw,
        TileMode::Reuse,
    ];
    let mut ext = enc::header(0, 0, 96, 64, e::EXTENDED_DESKTOP_SIZE);
    ext.extend_from_slice(&[0, 0, 0, 0]);
    let mut out = enc::update(&[
        ext,
        enc::raw(0, 0, &a),
        enc::copy_rect(0, 0, 20, 0, 20, 18),
        enc::rre(40, 0, &b, b.px[0]),
        enc::hextile(60, 0, &c),
        enc::trle(0, 20, &c, |i| modes[i % 5]),
        enc::zrle(33, 20, &c, &mut z, |i| modes[i % 4]),
        enc::zlib(66, 20, &b, &mut zl),
        enc::cursor(1, 1, &Img::pattern(4, 4, 34, 3), &[0xf0, 0x90, 0x90, 0xf0]),
    ]);
    out.push(2);
    out.extend(enc::cut_text(b"clip"));
    out.extend(enc::update(&[
        enc::tight(0, 40, &a, TightKind::Copy, 0, 0, &mut zs),
        enc::tight(20, 40, &b, TightKind::Palette, 1, 0, &mut zs),
        enc::tight(40, 40, &c, TightKind::Gradient, 2, 0, &mut zs),
        enc::tight(73, 40, &a, TightKind::Fill, 3, 0, &mut zs),
        enc::tight(
            73,
            58,
            &Img::pattern(5, 5, 35, 2),
            TightKind::Palette,
            3,
            0,
            &mut zs,
        ),
        enc::tight_jpeg(80, 0, &Img::pattern(16, 16, 36, 4)).0,
        enc::header(0, 0, 0, 0, e::LAST_RECT),
    ]));
    out.extend_from_slice(&[1, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6]);
    out
}

/// Bytes of memory the parser may legitimately hold beyond what it was fed.
const SLACK: usize = 256 * 1024;

/// Runs a server stream over `bytes` in `chunk`-sized pieces, checking the memory bound.
fn drive_server(bytes: &[u8], chunk: usize) {
    let mut fb = Framebuffer::new(96, 64).unwrap();
    let mut s = ServerStream::new(PixelFormat::FORCED).unwrap();
    for c in bytes.chunks(chunk.max(1)) {
        s.feed(c);
        loop {
            match s.next_event(&mut fb) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    return;
                }
            }
        }
        assert!(
            s.heap_bytes() <= 2 * bytes.len() + SLACK,
            "{} heap bytes for {} input bytes",
            s.heap_bytes(),
            bytes.len()
        );
    }
}

fn drive_client(bytes: &[u8], chunk: usize) {
    let mut s = ClientStream::new();
    for c in bytes.chunks(chunk.max(1)) {
        s.feed(c);
        loop {
            match s.next_event() {
                Ok(Some(p)) => {
                    // Whatever parses re-encodes to a message that parses the same.
                    if !matches!(p.event, ClientEvent::CutText(_)) {
                        let mut again = ClientStream::new();
                        again.feed(&p.event.to_bytes());
                        let q = again.next_event().unwrap().unwrap();
                        assert_eq!(q.event, p.event);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(s.heap_bytes() <= 2 * bytes.len() + SLACK);
    }
}

/// A small deterministic generator for the smoke fuzzer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len());
        match rng.below(6) {
            0 => v[at] = rng.next() as u8,
            1 => v[at] ^= 1 << rng.below(8),
            2 => v.truncate(at),
            3 => v.insert(at, rng.next() as u8),
            4 => {
                v.remove(at.min(v.len().saturating_sub(1)));
            }
            _ => {
                // Interesting values.
                let vals = [0u8, 1, 0x7f, 0x80, 0xff];
                v[at] = vals[rng.below(vals.len())];
            }
        }
        if v.is_empty() {
            break;
        }
    }
    v
}

#[test]
fn fuzz_smoke_mutated_streams() {
    let base = corpus();
    let mut client_base = Vec::new();
    for m in [
        ClientEvent::SetPixelFormat(PixelFormat::FORCED),
        ClientEvent::SetEncodings(vec![16, 7, 5, -239]),
        ClientEvent::Key {
            keysym: 0x61,
            down: true,
        },
        ClientEvent::Pointer {
            mask: 1,
            x: 3,
            y: 4,
        },
    ] {
        client_base.extend(m.to_bytes());
    }
    client_base.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 2, b'o', b'k']);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let deadline = Instant::now() + Duration::from_millis(2500);
    let mut runs = 0;
    while Instant::now() < deadline && runs < 5000 {
        let m = mutate(&mut rng, &base);
        let chunk = [1, 7, 64, 4096, usize::MAX][rng.below(5)];
        drive_server(&m, chunk);
        drive_client(&mutate(&mut rng, &client_base), 1 + rng.below(9));
        let noise: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        drive_server(&noise, 1 + rng.below(50));
        drive_client(&noise, 1 + rng.below(50));
        runs += 1;
    }
    assert!(runs >= 50, "only {runs} runs");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), chunk in 1usize..64) {
        drive_server(&bytes, chunk);
        drive_client(&bytes, chunk);
    }

    #[test]
    fn random_update_headers_never_panic(
        rects in proptest::collection::vec((any::<u16>(), any::<u16>(), 0u16..40, 0u16..40,
            prop::sample::select(vec![0i32, 1, 2, 5, 6, 7, 15, 16, -239, -240, -223, -224, -232, -307, -308]),
            proptest::collection::vec(any::<u8>(), 0..200)), 1..6)
    ) {
        let mut bytes = vec![0, 0, 0, rects.len() as u8];
        for (x, y, w, h, enc, body) in rects {
            bytes.extend(enc::header(x % 100, y % 70, w, h, enc));
            bytes.extend(body);
        }
        drive_server(&bytes, 1);
        drive_server(&bytes, 4096);
    }

    #[test]
    fn mutations_of_a_valid_stream_fail_cleanly(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = corpus();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let end = cut.index(bytes.len() + 1);
        bytes.truncate(end.max(1));
        // Whole and byte-by-byte give the same outcome.
        let (whole, _) = super::run(&bytes, 96, 64);
        let mut fb = Framebuffer::new(96, 64).unwrap();
        let split = super::run_chunked(&bytes, &mut fb, &[1]);
        prop_assert_eq!(whole, split);
    }
}
