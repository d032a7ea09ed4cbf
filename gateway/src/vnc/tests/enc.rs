//! Hand-written RFB encoders for tests, producing wire bytes for known pixel content in
//! [`PixelFormat::FORCED`] (PIXEL = B,G,R,0; CPIXEL = B,G,R; TPIXEL = R,G,B).

use crate::vnc::encoding as enc;
use crate::vnc::zlib::tests::Deflater;

/// A test image: `w × h` pixels of `0x00RRGGBB`.
#[derive(Debug, Clone)]
pub(crate) struct Img {
    pub w: usize,
    pub h: usize,
    pub px: Vec<u32>,
}

impl Img {
    /// Deterministic content from a small palette with horizontal runs, so every
    /// subencoding finds material.
    pub(crate) fn pattern(w: usize, h: usize, seed: u32, colours: u32) -> Img {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut px = Vec::with_capacity(w * h);
        let mut cur = 0;
        for i in 0..w * h {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            if i == 0 || s.is_multiple_of(4) {
                cur = palette_colour((s >> 8) % colours.max(1));
            }
            px.push(cur);
        }
        Img { w, h, px }
    }

    pub(crate) fn solid(w: usize, h: usize, c: u32) -> Img {
        Img {
            w,
            h,
            px: vec![c; w * h],
        }
    }

    pub(crate) fn tile(&self, x: usize, y: usize, tw: usize, th: usize) -> Vec<u32> {
        let mut v = Vec::with_capacity(tw * th);
        for row in y..y + th {
            v.extend_from_slice(&self.px[row * self.w + x..row * self.w + x + tw]);
        }
        v
    }
}

pub(crate) fn palette_colour(i: u32) -> u32 {
    (i.wrapping_mul(0x0049_2f1b) ^ 0x00a5_5a3c) & 0x00ff_ffff
}

pub(crate) fn pixel(c: u32) -> [u8; 4] {
    [c as u8, (c >> 8) as u8, (c >> 16) as u8, 0]
}

pub(crate) fn cpixel(c: u32) -> [u8; 3] {
    [c as u8, (c >> 8) as u8, (c >> 16) as u8]
}

pub(crate) fn tpixel(c: u32) -> [u8; 3] {
    [(c >> 16) as u8, (c >> 8) as u8, c as u8]
}

pub(crate) fn header(x: u16, y: u16, w: u16, h: u16, encoding: i32) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    for n in [x, y, w, h] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    v.extend_from_slice(&encoding.to_be_bytes());
    v
}

/// A FramebufferUpdate from already encoded rectangles (header + body each).
pub(crate) fn update(rects: &[Vec<u8>]) -> Vec<u8> {
    update_with_count(rects, rects.len() as u16)
}

pub(crate) fn update_with_count(rects: &[Vec<u8>], count: u16) -> Vec<u8> {
    let mut v = vec![0, 0];
    v.extend_from_slice(&count.to_be_bytes());
    for r in rects {
        v.extend_from_slice(r);
    }
    v
}

pub(crate) fn raw(x: u16, y: u16, img: &Img) -> Vec<u8> {
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::RAW);
    for &p in &img.px {
        v.extend_from_slice(&pixel(p));
    }
    v
}

pub(crate) fn copy_rect(sx: u16, sy: u16, x: u16, y: u16, w: u16, h: u16) -> Vec<u8> {
    let mut v = header(x, y, w, h, enc::COPY_RECT);
    v.extend_from_slice(&sx.to_be_bytes());
    v.extend_from_slice(&sy.to_be_bytes());
    v
}

/// RRE: background plus one subrectangle per run of non-background pixels in each row.
pub(crate) fn rre(x: u16, y: u16, img: &Img, bg: u32) -> Vec<u8> {
    let mut subs = Vec::new();
    for row in 0..img.h {
        let mut col = 0;
        while col < img.w {
            let c = img.px[row * img.w + col];
            let start = col;
            while col < img.w && img.px[row * img.w + col] == c {
                col += 1;
            }
            if c != bg {
                subs.push((c, start as u16, row as u16, (col - start) as u16, 1u16));
            }
        }
    }
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::RRE);
    v.extend_from_slice(&(subs.len() as u32).to_be_bytes());
    v.extend_from_slice(&pixel(bg));
    for (c, sx, sy, sw, sh) in subs {
        v.extend_from_slice(&pixel(c));
        for n in [sx, sy, sw, sh] {
            v.extend_from_slice(&n.to_be_bytes());
        }
    }
    v
}

/// Hextile, choosing per tile: solid background (omitted when unchanged), two colours with a
/// foreground (omitted when unchanged), coloured subrectangles, or raw.
pub(crate) fn hextile(x: u16, y: u16, img: &Img) -> Vec<u8> {
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::HEXTILE);
    let (mut last_bg, mut last_fg) = (None, None);
    for ty in (0..img.h).step_by(16) {
        for tx in (0..img.w).step_by(16) {
            let (tw, th) = ((img.w - tx).min(16), (img.h - ty).min(16));
            let t = img.tile(tx, ty, tw, th);
            let mut colours: Vec<u32> = Vec::new();
            for &p in &t {
                if !colours.contains(&p) {
                    colours.push(p);
                }
            }
            let bg = t[0];
            // Runs of non-background pixels, one row high.
            let mut runs = Vec::new();
            for row in 0..th {
                let mut col = 0;
                while col < tw {
                    let c = t[row * tw + col];
                    let s = col;
                    while col < tw && t[row * tw + col] == c {
                        col += 1;
                    }
                    if c != bg {
                        runs.push((c, s, row, col - s));
                    }
                }
            }
            if colours.len() > 4 || runs.len() > 255 {
                v.push(1);
                for &p in &t {
                    v.extend_from_slice(&pixel(p));
                }
                last_bg = None;
                last_fg = None;
                continue;
            }
            let mut mask = 0u8;
            let mut body = Vec::new();
            if last_bg != Some(bg) {
                mask |= 2;
                body.extend_from_slice(&pixel(bg));
                last_bg = Some(bg);
            }
            if colours.len() == 2 {
                let fg = colours[1];
                if last_fg != Some(fg) {
                    mask |= 4;
                    body.extend_from_slice(&pixel(fg));
                    last_fg = Some(fg);
                }
                mask |= 8;
                body.push(runs.len() as u8);
                for (_, s, row, len) in &runs {
                    body.push(((s << 4) | row) as u8);
                    body.push(((len - 1) << 4) as u8);
                }
            } else if colours.len() > 2 {
                mask |= 8 | 16;
                body.push(runs.len() as u8);
                for (c, s, row, len) in &runs {
                    body.extend_from_slice(&pixel(*c));
                    body.push(((s << 4) | row) as u8);
                    body.push(((len - 1) << 4) as u8);
                }
                last_fg = None;
            }
            v.push(mask);
            v.extend_from_slice(&body);
        }
    }
    v
}

/// Tile subencoding choices for TRLE/ZRLE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TileMode {
    Raw,
    /// Solid when possible, packed palette up to 16 colours, palette RLE up to 127, else
    /// plain RLE.
    Auto,
    PlainRle,
    PaletteRle,
    /// TRLE only: reuse the previous tile's palette (127/129) when it covers the tile.
    Reuse,
}

fn run_bytes(out: &mut Vec<u8>, len: usize) {
    let mut l = len - 1;
    while l >= 255 {
        out.push(255);
        l -= 255;
    }
    out.push(l as u8);
}

fn runs(t: &[u32]) -> Vec<(u32, usize)> {
    let mut r: Vec<(u32, usize)> = Vec::new();
    for &p in t {
        match r.last_mut() {
            Some((c, n)) if *c == p => *n += 1,
            _ => r.push((p, 1)),
        }
    }
    r
}

/// Encodes one TRLE/ZRLE tile. `prev` is the previous tile's palette (for [`TileMode::Reuse`]).
pub(crate) fn tile(t: &[u32], tw: usize, mode: TileMode, prev: &mut Vec<u32>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut colours: Vec<u32> = Vec::new();
    for &p in t {
        if !colours.contains(&p) {
            colours.push(p);
        }
    }
    let packed = |out: &mut Vec<u8>, pal: &[u32]| {
        let bits = match pal.len() {
            2 => 1,
            3 | 4 => 2,
            _ => 4,
        };
        for row in t.chunks(tw) {
            let mut byte = 0u8;
            let mut used = 0;
            for &p in row {
                let idx = pal.iter().position(|&c| c == p).unwrap() as u8;
                byte |= idx << (8 - bits - used);
                used += bits;
                if used == 8 {
                    out.push(byte);
                    byte = 0;
                    used = 0;
                }
            }
            if used > 0 {
                out.push(byte);
            }
        }
    };
    let palette_rle = |out: &mut Vec<u8>, pal: &[u32]| {
        for (c, n) in runs(t) {
            let idx = pal.iter().position(|&x| x == c).unwrap() as u8;
            if n == 1 {
                out.push(idx);
            } else {
                out.push(idx | 128);
                run_bytes(out, n);
            }
        }
    };
    match mode {
        TileMode::Raw => {
            out.push(0);
            for &p in t {
                out.extend_from_slice(&cpixel(p));
            }
        }
        TileMode::PlainRle => {
            out.push(128);
            for (c, n) in runs(t) {
                out.extend_from_slice(&cpixel(c));
                run_bytes(&mut out, n);
            }
        }
        TileMode::Reuse if !prev.is_empty() && colours.iter().all(|c| prev.contains(c)) => {
            if prev.len() <= 16 && prev.len() >= 2 {
                out.push(127);
                packed(&mut out, prev);
            } else {
                out.push(129);
                palette_rle(&mut out, prev);
            }
            return out;
        }
        TileMode::PaletteRle if colours.len() >= 2 && colours.len() <= 127 => {
            out.push(128 + colours.len() as u8);
            for &c in &colours {
                out.extend_from_slice(&cpixel(c));
            }
            palette_rle(&mut out, &colours);
        }
        _ => {
            if colours.len() == 1 {
                out.push(1);
                out.extend_from_slice(&cpixel(colours[0]));
            } else if colours.len() <= 16 {
                out.push(colours.len() as u8);
                for &c in &colours {
                    out.extend_from_slice(&cpixel(c));
                }
                packed(&mut out, &colours);
            } else if colours.len() <= 127 {
                out.push(128 + colours.len() as u8);
                for &c in &colours {
                    out.extend_from_slice(&cpixel(c));
                }
                palette_rle(&mut out, &colours);
            } else {
                out.push(128);
                for (c, n) in runs(t) {
                    out.extend_from_slice(&cpixel(c));
                    run_bytes(&mut out, n);
                }
            }
        }
    }
    if out[0] != 0 && out[0] != 128 {
        *prev = colours;
    }
    out
}

/// All tiles of `img` with side `side`; `mode(i)` picks the subencoding of tile `i`.
pub(crate) fn tiles(img: &Img, side: usize, mode: impl Fn(usize) -> TileMode) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = Vec::new();
    let mut i = 0;
    for ty in (0..img.h).step_by(side) {
        for tx in (0..img.w).step_by(side) {
            let (tw, th) = ((img.w - tx).min(side), (img.h - ty).min(side));
            out.extend(tile(&img.tile(tx, ty, tw, th), tw, mode(i), &mut prev));
            i += 1;
        }
    }
    out
}

pub(crate) fn trle(x: u16, y: u16, img: &Img, mode: impl Fn(usize) -> TileMode) -> Vec<u8> {
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::TRLE);
    v.extend(tiles(img, 16, mode));
    v
}

pub(crate) fn zrle(
    x: u16,
    y: u16,
    img: &Img,
    z: &mut Deflater,
    mode: impl Fn(usize) -> TileMode,
) -> Vec<u8> {
    let data = z.chunk(&tiles(img, 64, mode));
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::ZRLE);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend(data);
    v
}

pub(crate) fn zlib(x: u16, y: u16, img: &Img, z: &mut Deflater) -> Vec<u8> {
    let plain: Vec<u8> = img.px.iter().flat_map(|&p| pixel(p)).collect();
    let data = z.chunk(&plain);
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::ZLIB);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend(data);
    v
}

pub(crate) fn compact_len(out: &mut Vec<u8>, len: usize) {
    if len < 128 {
        out.push(len as u8);
    } else if len < 16384 {
        out.extend_from_slice(&[(len as u8 & 0x7f) | 0x80, (len >> 7) as u8]);
    } else {
        out.extend_from_slice(&[
            (len as u8 & 0x7f) | 0x80,
            ((len >> 7) as u8 & 0x7f) | 0x80,
            (len >> 14) as u8,
        ]);
    }
}

/// Tight rectangle kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TightKind {
    Fill,
    Copy,
    Palette,
    Gradient,
    CopyNoZlib,
}

/// A Tight rectangle through `streams[stream]`; `reset` bits are set in the control byte (the
/// caller resets its own deflaters to match).
pub(crate) fn tight(
    x: u16,
    y: u16,
    img: &Img,
    kind: TightKind,
    stream: usize,
    reset: u8,
    streams: &mut [Deflater; 4],
) -> Vec<u8> {
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::TIGHT);
    let mut plain = Vec::new();
    let ctl_stream = ((stream as u8) << 4) | reset;
    match kind {
        TightKind::Fill => {
            v.push(0x80 | reset);
            v.extend_from_slice(&tpixel(img.px[0]));
            return v;
        }
        TightKind::CopyNoZlib => {
            v.push(0xA0 | reset);
            for &p in &img.px {
                v.extend_from_slice(&tpixel(p));
            }
            return v;
        }
        TightKind::Copy => {
            v.push(ctl_stream);
            for &p in &img.px {
                plain.extend_from_slice(&tpixel(p));
            }
        }
        TightKind::Palette => {
            let mut colours: Vec<u32> = Vec::new();
            for &p in &img.px {
                if !colours.contains(&p) {
                    colours.push(p);
                }
            }
            assert!(colours.len() >= 2 && colours.len() <= 256);
            v.push(ctl_stream | 0x40);
            v.push(1);
            v.push((colours.len() - 1) as u8);
            for &c in &colours {
                v.extend_from_slice(&tpixel(c));
            }
            let idx = |p: u32| colours.iter().position(|&c| c == p).unwrap() as u8;
            if colours.len() == 2 {
                for row in img.px.chunks(img.w) {
                    for byte in row.chunks(8) {
                        let mut b = 0u8;
                        for (i, &p) in byte.iter().enumerate() {
                            b |= idx(p) << (7 - i);
                        }
                        plain.push(b);
                    }
                }
            } else {
                plain.extend(img.px.iter().map(|&p| idx(p)));
            }
        }
        TightKind::Gradient => {
            v.push(ctl_stream | 0x40);
            v.push(2);
            let comp = |p: u32| [(p >> 16) & 255, (p >> 8) & 255, p & 255];
            for y in 0..img.h {
                for x in 0..img.w {
                    let at = |xx: isize, yy: isize| -> [u32; 3] {
                        if xx < 0 || yy < 0 {
                            [0; 3]
                        } else {
                            comp(img.px[yy as usize * img.w + xx as usize])
                        }
                    };
                    let (l, u, ul) = (
                        at(x as isize - 1, y as isize),
                        at(x as isize, y as isize - 1),
                        at(x as isize - 1, y as isize - 1),
                    );
                    let v0 = comp(img.px[y * img.w + x]);
                    for c in 0..3 {
                        let pred = (l[c] as i64 + u[c] as i64 - ul[c] as i64).clamp(0, 255) as u32;
                        plain.push(v0[c].wrapping_sub(pred) as u8);
                    }
                }
            }
        }
    }
    if plain.len() < 12 {
        v.extend(plain);
    } else {
        let data = streams[stream].chunk(&plain);
        compact_len(&mut v, data.len());
        v.extend(data);
    }
    v
}

/// A Tight JPEG rectangle.
pub(crate) fn tight_jpeg(x: u16, y: u16, img: &Img) -> (Vec<u8>, Vec<u8>) {
    let rgb: Vec<u8> = img.px.iter().flat_map(|&p| tpixel(p)).collect();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode(
            &rgb,
            img.w as u32,
            img.h as u32,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    let mut v = header(x, y, img.w as u16, img.h as u16, enc::TIGHT);
    v.push(0x90);
    compact_len(&mut v, jpeg.len());
    v.extend_from_slice(&jpeg);
    (v, jpeg)
}

pub(crate) fn cursor(hx: u16, hy: u16, img: &Img, mask: &[u8]) -> Vec<u8> {
    let mut v = header(hx, hy, img.w as u16, img.h as u16, enc::CURSOR);
    for &p in &img.px {
        v.extend_from_slice(&pixel(p));
    }
    v.extend_from_slice(mask);
    v
}

pub(crate) fn cut_text(text: &[u8]) -> Vec<u8> {
    let mut v = vec![3, 0, 0, 0];
    v.extend_from_slice(&(text.len() as u32).to_be_bytes());
    v.extend_from_slice(text);
    v
}
