//! Server stream tests: every encoding against known pixels, splitting, limits and errors.

use super::enc::{self, Img, TightKind, TileMode};
use super::{run, run_chunked, run_with, Run};
use crate::vnc::encoding as e;
use crate::vnc::limits::{MAX_COMPRESSED_RECT_BYTES, MAX_CUT_TEXT_KEPT};
use crate::vnc::zlib::tests::Deflater;
use crate::vnc::{CursorShape, Parsed, PixelFormat, RfbError, ServerEvent, ServerStream};
use psmgate_codecs::framebuffer::Framebuffer;

/// Asserts that `img` sits at (x, y) in `fb`.
fn assert_img(fb: &Framebuffer, x: u32, y: u32, img: &Img) {
    for row in 0..img.h {
        for col in 0..img.w {
            let got = fb.pixel(x + col as u32, y + row as u32);
            let want = img.px[row * img.w + col];
            assert_eq!(
                got, want,
                "pixel ({col},{row}) of the rectangle at ({x},{y})"
            );
        }
    }
}

fn ok(r: &Run) -> Vec<ServerEvent> {
    assert_eq!(r.error, None);
    r.events.iter().map(|p| p.event.clone()).collect()
}

fn done(rects: u16) -> ServerEvent {
    ServerEvent::UpdateDone { rects }
}

/// The run gives identical results whether fed whole, a byte at a time, or in odd chunks.
fn assert_split_invariant(bytes: &[u8], w: u32, h: u32) -> Run {
    let (whole, _) = run(bytes, w, h);
    for chunks in [&[1usize][..], &[2, 3, 5, 7, 11], &[4096, 1, 13]] {
        let mut fb = Framebuffer::new(w, h).unwrap();
        let r = run_chunked(bytes, &mut fb, chunks);
        assert_eq!(r, whole, "chunking {chunks:?} differs");
    }
    let total: usize = whole.events.iter().map(|p| p.len).sum();
    if whole.error.is_none() {
        assert_eq!(total, bytes.len(), "event lengths cover the stream");
    }
    whole
}

#[test]
fn raw_rectangles() {
    let a = Img::pattern(13, 7, 1, 200);
    let b = Img::pattern(1, 1, 2, 5);
    let bytes = enc::update(&[enc::raw(3, 4, &a), enc::raw(0, 0, &b)]);
    let r = assert_split_invariant(&bytes, 20, 12);
    assert_eq!(ok(&r), vec![done(2)]);
    let (_, fb) = run(&bytes, 20, 12);
    assert_img(&fb, 3, 4, &a);
    assert_img(&fb, 0, 0, &b);
    assert_eq!(fb.pixel(19, 11), 0);
}

#[test]
fn copy_rect_scrolls() {
    let a = Img::pattern(10, 10, 3, 30);
    let bytes = enc::update(&[enc::raw(0, 0, &a), enc::copy_rect(0, 2, 0, 0, 10, 8)]);
    let (r, fb) = run(&bytes, 10, 10);
    assert_eq!(ok(&r), vec![done(2)]);
    let mut want = Img::solid(10, 8, 0);
    want.px = a.px[20..].to_vec();
    assert_img(&fb, 0, 0, &want);
    assert_split_invariant(&bytes, 10, 10);
}

#[test]
fn rre_rectangles() {
    let a = Img::pattern(17, 9, 4, 4);
    let bytes = enc::update(&[enc::rre(2, 1, &a, a.px[0])]);
    let r = assert_split_invariant(&bytes, 20, 12);
    assert_eq!(ok(&r), vec![done(1)]);
    let (_, fb) = run(&bytes, 20, 12);
    assert_img(&fb, 2, 1, &a);
}

#[test]
fn hextile_all_tile_kinds() {
    // 1 colour (background only), 2 (foreground), 3-4 (coloured subrects), many (raw); sizes
    // that are not multiples of 16.
    let imgs = [
        Img::solid(40, 20, 0x123456),
        Img::pattern(37, 33, 5, 2),
        Img::pattern(33, 17, 6, 3),
        Img::pattern(50, 30, 7, 200),
    ];
    for img in &imgs {
        let bytes = enc::update(&[enc::hextile(1, 2, img)]);
        let r = assert_split_invariant(&bytes, 60, 40);
        assert_eq!(ok(&r), vec![done(1)]);
        let (_, fb) = run(&bytes, 60, 40);
        assert_img(&fb, 1, 2, img);
    }
}

#[test]
fn trle_all_subencodings() {
    let modes = [
        TileMode::Auto,
        TileMode::Raw,
        TileMode::PlainRle,
        TileMode::PaletteRle,
        TileMode::Reuse,
    ];
    for colours in [1, 2, 3, 7, 40, 300] {
        let img = Img::pattern(45, 35, colours, colours);
        let rect = enc::trle(3, 0, &img, |i| modes[i % modes.len()]);
        let bytes = enc::update(&[rect]);
        let r = assert_split_invariant(&bytes, 50, 40);
        assert_eq!(ok(&r), vec![done(1)], "{colours} colours");
        let (_, fb) = run(&bytes, 50, 40);
        assert_img(&fb, 3, 0, &img);
    }
}

#[test]
fn trle_palette_reuse_is_exercised() {
    // Two identical two-colour tiles: the second reuses the first's palette (127).
    let mut img = Img::pattern(16, 16, 9, 2);
    let right = img.clone();
    img.w = 32;
    img.px = (0..16)
        .flat_map(|r| {
            let row = right.px[r * 16..r * 16 + 16].to_vec();
            row.iter().chain(row.iter()).copied().collect::<Vec<_>>()
        })
        .collect();
    let rect = enc::trle(0, 0, &img, |i| {
        if i == 0 {
            TileMode::Auto
        } else {
            TileMode::Reuse
        }
    });
    assert_eq!(rect[12], 2, "first tile is packed with two colours");
    let second = 12 + 1 + 2 * 3 + 2 * 16;
    assert_eq!(rect[second], 127, "second tile reuses the palette");
    let (r, fb) = run(&enc::update(&[rect]), 32, 16);
    assert_eq!(ok(&r), vec![done(1)]);
    assert_img(&fb, 0, 0, &img);
}

#[test]
fn zrle_rectangles_share_one_zlib_stream() {
    let mut z = Deflater::new();
    let a = Img::pattern(130, 70, 10, 6);
    let b = Img::pattern(64, 64, 11, 100);
    let c = Img::pattern(3, 200, 12, 300);
    let modes = [
        TileMode::Auto,
        TileMode::PlainRle,
        TileMode::PaletteRle,
        TileMode::Raw,
    ];
    let rects = vec![
        enc::zrle(0, 0, &a, &mut z, |i| modes[i % 4]),
        enc::zrle(140, 0, &b, &mut z, |_| TileMode::Auto),
    ];
    let mut bytes = enc::update(&rects);
    bytes.extend(enc::update(&[enc::zrle(205, 0, &c, &mut z, |i| {
        modes[(i + 1) % 4]
    })]));
    let r = assert_split_invariant(&bytes, 210, 200);
    assert_eq!(ok(&r), vec![done(2), done(1)]);
    let (_, fb) = run(&bytes, 210, 200);
    assert_img(&fb, 0, 0, &a);
    assert_img(&fb, 140, 0, &b);
    assert_img(&fb, 205, 0, &c);
}

#[test]
fn zlib_rectangles_share_one_stream() {
    let mut z = Deflater::new();
    let a = Img::pattern(20, 10, 13, 8);
    let b = Img::pattern(7, 9, 14, 8);
    let bytes = enc::update(&[enc::zlib(0, 0, &a, &mut z), enc::zlib(20, 0, &b, &mut z)]);
    let r = assert_split_invariant(&bytes, 30, 10);
    assert_eq!(ok(&r), vec![done(2)]);
    let (_, fb) = run(&bytes, 30, 10);
    assert_img(&fb, 0, 0, &a);
    assert_img(&fb, 20, 0, &b);
}

#[test]
fn tight_basic_fill_and_filters_across_streams() {
    let mut zs = [
        Deflater::new(),
        Deflater::new(),
        Deflater::new(),
        Deflater::new(),
    ];
    let fill = Img::solid(30, 10, 0x00ff8800);
    let copy = Img::pattern(40, 20, 15, 500);
    let pal2 = Img::pattern(19, 11, 16, 2);
    let pal5 = Img::pattern(25, 9, 17, 5);
    let grad = Img::pattern(31, 12, 18, 60);
    let raw_small = Img::pattern(3, 1, 19, 3); // 9 bytes: sent without zlib
    let nozlib = Img::pattern(6, 5, 20, 9);
    let again = Img::pattern(40, 20, 21, 500);
    let rects = vec![
        enc::tight(0, 0, &fill, TightKind::Fill, 0, 0, &mut zs),
        enc::tight(0, 10, &copy, TightKind::Copy, 0, 0, &mut zs),
        enc::tight(40, 0, &pal2, TightKind::Palette, 1, 0, &mut zs),
        enc::tight(40, 11, &pal5, TightKind::Palette, 2, 0, &mut zs),
        enc::tight(0, 30, &grad, TightKind::Gradient, 3, 0, &mut zs),
        enc::tight(60, 0, &raw_small, TightKind::Copy, 0, 0, &mut zs),
        enc::tight(60, 5, &nozlib, TightKind::CopyNoZlib, 0, 0, &mut zs),
        // Stream 0 again, continuing its dictionary.
        enc::tight(31, 30, &again, TightKind::Copy, 0, 0, &mut zs),
    ];
    let mut bytes = enc::update(&rects);
    // A second update resets stream 1 and uses it afresh.
    zs[1] = Deflater::new();
    let after_reset = Img::pattern(12, 12, 22, 2);
    bytes.extend(enc::update(&[enc::tight(
        72,
        30,
        &after_reset,
        TightKind::Palette,
        1,
        0b0010,
        &mut zs,
    )]));
    let r = assert_split_invariant(&bytes, 90, 50);
    assert_eq!(ok(&r), vec![done(8), done(1)]);
    let (_, fb) = run(&bytes, 90, 50);
    assert_img(&fb, 0, 0, &fill);
    assert_img(&fb, 0, 10, &copy);
    assert_img(&fb, 40, 0, &pal2);
    assert_img(&fb, 40, 11, &pal5);
    assert_img(&fb, 0, 30, &grad);
    assert_img(&fb, 60, 0, &raw_small);
    assert_img(&fb, 60, 5, &nozlib);
    assert_img(&fb, 31, 30, &again);
    assert_img(&fb, 72, 30, &after_reset);
}

#[test]
fn tight_without_the_reset_bit_fails_on_a_fresh_encoder_stream() {
    // The encoder restarts stream 1 but does not say so: the decoder's stream is mid-flow and
    // the new zlib header is corrupt data for it.
    let mut zs = [
        Deflater::new(),
        Deflater::new(),
        Deflater::new(),
        Deflater::new(),
    ];
    let img = Img::pattern(12, 12, 23, 2);
    let first = enc::tight(0, 0, &img, TightKind::Palette, 1, 0, &mut zs);
    zs[1] = Deflater::new();
    let second = enc::tight(0, 0, &img, TightKind::Palette, 1, 0, &mut zs);
    let (r, _) = run(&enc::update(&[first, second]), 20, 20);
    assert!(r.error.is_some());
}

#[test]
fn tight_jpeg_matches_a_reference_decode() {
    let img = Img::pattern(32, 24, 24, 3);
    let (rect, jpeg) = enc::tight_jpeg(4, 4, &img);
    let bytes = enc::update(&[rect]);
    let r = assert_split_invariant(&bytes, 40, 40);
    assert_eq!(ok(&r), vec![done(1)]);
    let reference = image::load_from_memory(&jpeg).unwrap().into_rgb8();
    let (_, fb) = run(&bytes, 40, 40);
    for (i, p) in reference.pixels().enumerate() {
        let (x, y) = ((i % 32) as u32 + 4, (i / 32) as u32 + 4);
        let want = (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]);
        assert_eq!(fb.pixel(x, y), want);
    }
    // A JPEG whose size differs from its rectangle is refused.
    let mut wrong = enc::header(0, 0, 16, 24, e::TIGHT);
    wrong.extend_from_slice(&rect_body_after_header(&enc::tight_jpeg(0, 0, &img).0));
    let (r, _) = run(&enc::update(&[wrong]), 40, 40);
    assert!(r.error.unwrap().contains("JPEG"));
}

fn rect_body_after_header(rect: &[u8]) -> Vec<u8> {
    rect[12..].to_vec()
}

#[test]
fn cursor_pseudo_encodings() {
    let img = Img::pattern(10, 3, 25, 4);
    let mask = [0b1010_0000, 0b0100_0000, 0xff, 0xc0, 0, 0];
    let mut x = enc::header(1, 2, 9, 2, e::X_CURSOR);
    x.extend_from_slice(&[255, 0, 0, 0, 0, 255]);
    x.extend_from_slice(&[0b1000_0000, 0, 0b0000_0000, 0x80]); // bitmap
    x.extend_from_slice(&[0b1100_0000, 0, 0, 0x80]); // mask
    let bytes = enc::update(&[
        enc::cursor(3, 1, &img, &mask),
        x,
        enc::header(0, 0, 0, 0, e::X_CURSOR),
    ]);
    let r = assert_split_invariant(&bytes, 8, 8);
    let ev = ok(&r);
    let ServerEvent::Cursor(c) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!((c.hotspot_x, c.hotspot_y, c.width, c.height), (3, 1, 10, 3));
    assert_eq!(c.argb[0], 0xff00_0000 | img.px[0]);
    assert_eq!(c.argb[1], img.px[1]);
    assert_eq!(c.argb[2], 0xff00_0000 | img.px[2]);
    assert_eq!(c.argb[11], 0xff00_0000 | img.px[11]);
    assert_eq!(c.argb[9], 0xff00_0000 | img.px[9]);
    assert_eq!(c.argb[8], img.px[8]);
    assert_eq!(c.argb[19], 0xff00_0000 | img.px[19]);
    assert_eq!(c.argb[29], img.px[29]);
    let ServerEvent::Cursor(x) = &ev[1] else {
        panic!("{ev:?}")
    };
    let (fg, bg) = (0xff00_0000 | 0xff0000, 0x0000ff);
    assert_eq!(&x.argb[..3], &[fg, 0xff00_0000 | 0x0000ff, bg]);
    assert_eq!(x.argb[9 + 8], fg);
    assert_eq!(
        ev[2],
        ServerEvent::Cursor(CursorShape {
            hotspot_x: 0,
            hotspot_y: 0,
            width: 0,
            height: 0,
            argb: vec![]
        })
    );
    assert_eq!(ev[3], done(3));
}

#[test]
fn desktop_size_resizes_mid_update() {
    let big = Img::pattern(30, 20, 26, 9);
    let bytes = enc::update(&[
        enc::header(0, 0, 30, 20, e::DESKTOP_SIZE),
        enc::raw(0, 0, &big),
    ]);
    let r = assert_split_invariant(&bytes, 10, 10);
    assert_eq!(
        ok(&r),
        vec![
            ServerEvent::Resize {
                width: 30,
                height: 20
            },
            done(2)
        ]
    );
    assert_eq!(r.events[0].len, 4 + 12);
    let (_, fb) = run(&bytes, 10, 10);
    assert_img(&fb, 0, 0, &big);
}

#[test]
fn extended_desktop_size_and_last_rect() {
    let mut ext = enc::header(0, 0, 32, 16, e::EXTENDED_DESKTOP_SIZE);
    ext.extend_from_slice(&[1, 0, 0, 0]);
    ext.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0, 0, 32, 0, 16, 0, 0, 0, 0]);
    // Status 3 (error): the size is reported but not applied.
    let mut failed = enc::header(1, 3, 99, 99, e::EXTENDED_DESKTOP_SIZE);
    failed.extend_from_slice(&[0, 0, 0, 0]);
    let tail = Img::solid(2, 2, 0xabcdef);
    // Count 0xFFFF: the update ends at LastRect, and a Bell follows.
    let mut bytes = enc::update_with_count(
        &[
            ext,
            failed,
            enc::raw(30, 14, &tail),
            enc::header(0, 0, 0, 0, e::LAST_RECT),
        ],
        0xffff,
    );
    bytes.push(2);
    let r = assert_split_invariant(&bytes, 8, 8);
    let ev = ok(&r);
    let ServerEvent::ScreenLayout(l) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!((l.reason, l.status, l.width, l.height), (0, 0, 32, 16));
    assert_eq!(l.screens.len(), 1);
    assert_eq!(l.screens[0].id, 7);
    assert_eq!(l.screens[0].width, 32);
    let ServerEvent::ScreenLayout(f) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!((f.reason, f.status), (1, 3));
    assert_eq!(&ev[2..], &[done(4), ServerEvent::Bell]);
    assert_eq!(r.size, (32, 16));
    let (_, fb) = run(&bytes, 8, 8);
    assert_img(&fb, 30, 14, &tail);
}

#[test]
fn name_pointer_and_simple_messages() {
    let mut name = enc::header(0, 0, 0, 0, e::DESKTOP_NAME);
    name.extend_from_slice(&[0, 0, 0, 4]);
    name.extend_from_slice("héj".as_bytes());
    let mut bytes = enc::update(&[
        name,
        enc::header(5, 6, 0, 0, e::POINTER_POS),
        enc::header(0, 0, 0, 0, e::QEMU_EXTENDED_KEY),
    ]);
    bytes.extend_from_slice(&[1, 0, 0, 3, 0, 2]); // SetColourMapEntries, 2 entries
    bytes.extend_from_slice(&[0; 12]);
    bytes.push(2); // Bell
    bytes.extend(enc::cut_text(b"hello \xe9"));
    bytes.push(150); // EndOfContinuousUpdates
    bytes.extend_from_slice(&[248, 0, 0, 0, 0, 0, 0, 1, 2, 9, 8]); // Fence
    bytes.extend_from_slice(&[250, 0, 1, 1]); // XVP
    bytes.extend_from_slice(&[0, 0, 0, 0]); // empty update
    let r = assert_split_invariant(&bytes, 8, 8);
    let ev = ok(&r);
    assert_eq!(ev[0], ServerEvent::DesktopName("héj".into()));
    assert_eq!(ev[1], ServerEvent::PointerPosition { x: 5, y: 6 });
    assert_eq!(ev[2], done(3));
    assert_eq!(ev[3], ServerEvent::ColourMapIgnored { first: 3, count: 2 });
    assert_eq!(ev[4], ServerEvent::Bell);
    let ServerEvent::CutText(t) = &ev[5] else {
        panic!("{ev:?}")
    };
    assert_eq!(t.latin1(), "hello é");
    assert!(!t.truncated() && !t.extended);
    assert_eq!(ev[6], ServerEvent::EndOfContinuousUpdates);
    assert_eq!(
        ev[7],
        ServerEvent::Fence {
            flags: 1,
            payload: vec![9, 8]
        }
    );
    assert_eq!(
        ev[8],
        ServerEvent::Xvp {
            version: 1,
            code: 1
        }
    );
    assert_eq!(ev[9], done(0));
    let lens: Vec<usize> = r.events.iter().map(|p| p.len).collect();
    assert_eq!(&lens[..3], &[24, 12, 12]);
    assert_eq!(&lens[3..], &[18, 1, 15, 1, 11, 4, 4]);
}

#[test]
fn other_pixel_formats_decode() {
    // RGB565 big-endian: CPIXEL is the full 2-byte pixel.
    let f = PixelFormat {
        bits_per_pixel: 16,
        depth: 16,
        big_endian: true,
        true_colour: true,
        red_max: 31,
        green_max: 63,
        blue_max: 31,
        red_shift: 11,
        green_shift: 5,
        blue_shift: 0,
    };
    let mut bytes = enc::update(&[]);
    bytes.truncate(2);
    bytes.extend_from_slice(&[0, 2]);
    bytes.extend(enc::header(0, 0, 2, 1, e::RAW));
    bytes.extend_from_slice(&[0xf8, 0x00, 0x07, 0xe0]);
    let zrle_plain = [1u8, 0x00, 0x1f]; // solid tile, pure blue
    let data = Deflater::new().chunk(&zrle_plain);
    bytes.extend(enc::header(0, 1, 2, 1, e::ZRLE));
    bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
    bytes.extend(data);
    let mut s = ServerStream::new(f).unwrap();
    let mut fb = Framebuffer::new(2, 2).unwrap();
    let r = run_with(&mut s, &bytes, &mut fb, &[usize::MAX]);
    assert_eq!(ok(&r), vec![done(2)]);
    assert_eq!(fb.pixels(), &[0xff0000, 0x00ff00, 0x0000ff, 0x0000ff]);
    assert_eq!(s.pixel_format(), f);
    assert!(s
        .set_pixel_format(PixelFormat {
            true_colour: false,
            ..f
        })
        .is_err());
}

#[test]
fn every_encoding_in_one_stream_is_split_invariant() {
    let bytes = super::fuzz::corpus();
    let r = assert_split_invariant(&bytes, 96, 64);
    assert_eq!(r.error, None);
    assert!(r.events.len() > 5);
}

#[test]
fn errors_are_clean_and_final() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![7], "unknown server message type 7"),
        (
            enc::update(&[enc::header(0, 0, 1, 1, 99)]),
            "unsupported rectangle encoding 99",
        ),
        (
            enc::update(&[enc::raw(5, 5, &Img::solid(4, 4, 1))]),
            "outside",
        ),
        (enc::update(&[enc::copy_rect(6, 6, 0, 0, 4, 4)]), "outside"),
        (
            {
                let mut r = enc::header(0, 0, 4, 4, e::ZRLE);
                r.extend_from_slice(&(MAX_COMPRESSED_RECT_BYTES as u32 + 1).to_be_bytes());
                enc::update(&[r])
            },
            "exceeds the limit",
        ),
        (
            {
                let mut r = enc::header(0, 0, 2000, 2000, e::CURSOR);
                r.extend_from_slice(&[0; 8]);
                enc::update(&[r])
            },
            "cursor side",
        ),
        (
            {
                let mut r = enc::header(0, 0, 0, 0, e::DESKTOP_NAME);
                r.extend_from_slice(&u32::MAX.to_be_bytes());
                enc::update(&[r])
            },
            "desktop name",
        ),
        (
            enc::update(&[enc::header(0, 0, 0, 5, e::DESKTOP_SIZE)]),
            "screen size",
        ),
        (
            {
                // Hextile subrectangle reaching outside its 4x4 tile.
                let mut r = enc::header(0, 0, 4, 4, e::HEXTILE);
                r.extend_from_slice(&[2 | 4 | 8, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0x33, 0x11]);
                enc::update(&[r])
            },
            "Hextile subrectangle",
        ),
        (
            {
                // TRLE packed palette of 3 with index 3.
                let mut r = enc::header(0, 0, 1, 1, e::TRLE);
                r.extend_from_slice(&[3, 0, 0, 0, 1, 1, 1, 2, 2, 2, 0b1100_0000]);
                enc::update(&[r])
            },
            "palette index",
        ),
        (
            {
                let mut r = enc::header(0, 0, 2, 2, e::TRLE);
                r.extend_from_slice(&[128, 1, 2, 3, 4]);
                enc::update(&[r])
            },
            "run longer",
        ),
        (
            {
                let mut r = enc::header(0, 0, 2, 2, e::TIGHT);
                r.extend_from_slice(&[0xb0]);
                enc::update(&[r])
            },
            "compression control",
        ),
        (
            {
                let mut r = enc::header(0, 0, 2, 2, e::ZRLE);
                r.extend_from_slice(&[0, 0, 0, 3, 1, 2, 3]);
                enc::update(&[r])
            },
            "zlib",
        ),
    ];
    for (bytes, want) in cases {
        let mut fb = Framebuffer::new(8, 8).unwrap();
        let mut s = ServerStream::new(PixelFormat::FORCED).unwrap();
        s.feed(&bytes);
        let err = loop {
            match s.next_event(&mut fb) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error for {want}"),
                Err(e) => break e,
            }
        };
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want}"
        );
        assert!(matches!(s.next_event(&mut fb), Err(RfbError::Failed(_))));
        s.feed(&[2]);
        assert!(matches!(s.next_event(&mut fb), Err(RfbError::Failed(_))));
    }
}

#[test]
fn large_cut_text_streams_through_with_bounded_memory() {
    let total = MAX_CUT_TEXT_KEPT + 3 * 1024 * 1024;
    let mut s = ServerStream::new(PixelFormat::FORCED).unwrap();
    let mut fb = Framebuffer::new(4, 4).unwrap();
    let mut head = vec![3, 0, 0, 0];
    head.extend_from_slice(&(total as u32).to_be_bytes());
    s.feed(&head);
    let chunk = vec![b'x'; 256 * 1024];
    let mut sent = 0;
    let mut events = Vec::new();
    while sent < total {
        let n = chunk.len().min(total - sent);
        s.feed(&chunk[..n]);
        sent += n;
        while let Some(ev) = s.next_event(&mut fb).unwrap() {
            events.push(ev);
        }
        assert!(
            s.heap_bytes() <= MAX_CUT_TEXT_KEPT * 2 + 2 * chunk.len(),
            "{} heap bytes",
            s.heap_bytes()
        );
    }
    assert_eq!(events.len(), 1);
    let Parsed {
        event: ServerEvent::CutText(t),
        len,
    } = &events[0]
    else {
        panic!()
    };
    assert_eq!(*len, total + 8);
    assert_eq!(t.total_len as usize, total);
    assert_eq!(t.text.len(), MAX_CUT_TEXT_KEPT);
    assert!(t.truncated());
}

#[test]
fn huge_claims_are_not_buffered_or_allocated() {
    // A Raw rectangle is consumed row by row: a full-screen one never sits in the buffer.
    let img = Img::pattern(200, 100, 27, 50);
    let bytes = enc::update(&[enc::raw(0, 0, &img)]);
    let mut s = ServerStream::new(PixelFormat::FORCED).unwrap();
    let mut fb = Framebuffer::new(200, 100).unwrap();
    let mut max_buffered = 0;
    for c in bytes.chunks(1000) {
        s.feed(c);
        while s.next_event(&mut fb).unwrap().is_some() {}
        max_buffered = max_buffered.max(s.buffered());
    }
    assert!(max_buffered < 800, "{max_buffered} bytes held");
    assert_img(&fb, 0, 0, &img);
    // An RRE rectangle announcing 4 billion subrectangles costs nothing until they arrive.
    let mut r = enc::header(0, 0, 4, 4, e::RRE);
    r.extend_from_slice(&u32::MAX.to_be_bytes());
    r.extend_from_slice(&[0; 4]);
    let mut s = ServerStream::new(PixelFormat::FORCED).unwrap();
    let mut fb = Framebuffer::new(4, 4).unwrap();
    s.feed(&enc::update(&[r]));
    assert!(s.next_event(&mut fb).unwrap().is_none());
    assert!(s.heap_bytes() < 4096);
}

#[test]
fn message_boundary_tracks_partial_updates() {
    let bytes = enc::update(&[enc::raw(0, 0, &Img::pattern(4, 4, 40, 5))]);
    let mut s = ServerStream::new(PixelFormat::FORCED).unwrap();
    let mut fb = Framebuffer::new(4, 4).unwrap();
    assert!(s.at_message_boundary());
    s.feed(&bytes[..53]);
    assert!(s.next_event(&mut fb).unwrap().is_none());
    assert!(!s.at_message_boundary());
    assert_eq!(
        s.buffered(),
        5,
        "two whole rows consumed, a partial one kept"
    );
    s.feed(&bytes[53..]);
    let p = s.next_event(&mut fb).unwrap().unwrap();
    assert_eq!((p.event, p.len), (done(1), bytes.len()));
    assert!(s.at_message_boundary());
    assert_eq!(s.buffered(), 0);
}
