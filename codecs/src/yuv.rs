//! 8-bit 4:2:0 frames (BT.709, limited range) and conversion from the framebuffer's xRGB.
//!
//! Conversion works on rectangles so the recorder only converts what changed. Rectangles are
//! grown to even edges first, so a chroma sample never mixes pixels from both sides of a
//! rectangle edge that is itself even-aligned (masks are aligned the same way; see [`crate::mask`]).

use crate::geometry::Rect;

/// Limited-range black.
pub const BLACK_Y: u8 = 16;
/// Neutral chroma.
pub const NEUTRAL_UV: u8 = 128;

/// A planar 4:2:0 frame. Width and height are even.
#[derive(Clone, PartialEq, Eq)]
pub struct YuvFrame {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Luma, `width * height` bytes, stride `width`.
    pub y: Vec<u8>,
    /// Cb, `(width/2) * (height/2)` bytes, stride `width/2`.
    pub u: Vec<u8>,
    /// Cr, same layout as `u`.
    pub v: Vec<u8>,
}

impl std::fmt::Debug for YuvFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print pixels: they may hold what a mask hides upstream of the encoder.
        write!(f, "YuvFrame({}x{})", self.width, self.height)
    }
}

/// Rounds a dimension up to the next even number (at least 2).
pub fn even(v: u32) -> u32 {
    (v.max(2) + 1) & !1
}

impl YuvFrame {
    /// A black frame of at least `width`×`height`, rounded up to even sizes.
    pub fn black(width: u32, height: u32) -> Self {
        let (w, h) = (even(width), even(height));
        let luma = (w * h) as usize;
        let chroma = luma / 4;
        Self {
            width: w,
            height: h,
            y: vec![BLACK_Y; luma],
            u: vec![NEUTRAL_UV; chroma],
            v: vec![NEUTRAL_UV; chroma],
        }
    }

    /// Paints `rect` (grown to even edges, clipped) black.
    pub fn fill_black(&mut self, rect: Rect) {
        let Some(r) = rect.align_even().clip(self.width, self.height) else {
            return;
        };
        let w = self.width as usize;
        for row in r.y..r.bottom() {
            let o = row as usize * w;
            self.y[o + r.x as usize..o + r.right() as usize].fill(BLACK_Y);
        }
        let cw = w / 2;
        for row in (r.y / 2)..(r.bottom() / 2) {
            let o = row as usize * cw;
            let (a, b) = ((r.x / 2) as usize, (r.right() / 2) as usize);
            self.u[o + a..o + b].fill(NEUTRAL_UV);
            self.v[o + a..o + b].fill(NEUTRAL_UV);
        }
    }

    /// Converts `rect` of an xRGB (`0x00RRGGBB`) image of `src_w`×`src_h` into this frame.
    /// Pixels outside the source (odd sizes padded to even) become black.
    pub fn convert_from_xrgb(&mut self, src: &[u32], src_w: u32, src_h: u32, rect: Rect) {
        let Some(r) = rect.align_even().clip(self.width, self.height) else {
            return;
        };
        let w = self.width as usize;
        let cw = w / 2;
        let px = |x: u32, y: u32| -> (i32, i32, i32) {
            if x < src_w && y < src_h {
                let p = src[(y * src_w + x) as usize];
                (
                    ((p >> 16) & 0xff) as i32,
                    ((p >> 8) & 0xff) as i32,
                    (p & 0xff) as i32,
                )
            } else {
                (0, 0, 0)
            }
        };
        for cy in (r.y / 2)..(r.bottom() / 2) {
            for cx in (r.x / 2)..(r.right() / 2) {
                let (mut rs, mut gs, mut bs) = (0, 0, 0);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let (x, y) = (cx * 2 + dx, cy * 2 + dy);
                    let (r8, g8, b8) = px(x, y);
                    self.y[y as usize * w + x as usize] = luma(r8, g8, b8);
                    rs += r8;
                    gs += g8;
                    bs += b8;
                }
                let (u, v) = chroma(rs, gs, bs);
                self.u[cy as usize * cw + cx as usize] = u;
                self.v[cy as usize * cw + cx as usize] = v;
            }
        }
    }
}

// BT.709 limited range, fixed point with 16 fractional bits.
#[inline]
fn luma(r: i32, g: i32, b: i32) -> u8 {
    // Y = 16 + (0.1826 R + 0.6142 G + 0.0620 B)
    (((16 << 16) + 11967 * r + 40252 * g + 4063 * b + (1 << 15)) >> 16).clamp(0, 255) as u8
}

#[inline]
fn chroma(rs: i32, gs: i32, bs: i32) -> (u8, u8) {
    // Sums of four pixels: divide by 4 through the shift (16 + 2 bits).
    // Cb = 128 + (-0.1006 R - 0.3386 G + 0.4392 B); Cr = 128 + (0.4392 R - 0.3989 G - 0.0403 B)
    let u = ((128 << 18) - 6593 * rs - 22190 * gs + 28783 * bs + (1 << 17)) >> 18;
    let v = ((128 << 18) + 28783 * rs - 26142 * gs - 2641 * bs + (1 << 17)) >> 18;
    (u.clamp(0, 255) as u8, v.clamp(0, 255) as u8)
}

/// Converts a limited-range BT.709 sample triple back to RGB (for tests and thumbnails).
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> (u8, u8, u8) {
    let c = (y as f32 - 16.0) * 1.164_383_6;
    let d = u as f32 - 128.0;
    let e = v as f32 - 128.0;
    let r = c + 1.792_741 * e;
    let g = c - 0.213_248_6 * d - 0.532_909_3 * e;
    let b = c + 2.112_402 * d;
    let q = |x: f32| x.round().clamp(0.0, 255.0) as u8;
    (q(r), q(g), q(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn black_white_and_primaries_round_trip() {
        for rgb in [
            (0u8, 0u8, 0u8),
            (255, 255, 255),
            (255, 0, 0),
            (0, 255, 0),
            (0, 0, 255),
            (90, 140, 200),
        ] {
            let p = (rgb.0 as u32) << 16 | (rgb.1 as u32) << 8 | rgb.2 as u32;
            let mut f = YuvFrame::black(2, 2);
            f.convert_from_xrgb(&[p; 4], 2, 2, Rect::new(0, 0, 2, 2));
            let back = yuv_to_rgb(f.y[0], f.u[0], f.v[0]);
            for (a, b) in [(rgb.0, back.0), (rgb.1, back.1), (rgb.2, back.2)] {
                assert!((a as i32 - b as i32).abs() <= 2, "{rgb:?} -> {back:?}");
            }
        }
        let mut f = YuvFrame::black(2, 2);
        f.convert_from_xrgb(&[0; 4], 2, 2, Rect::new(0, 0, 2, 2));
        assert_eq!((f.y[0], f.u[0], f.v[0]), (16, 128, 128));
        f.convert_from_xrgb(&[0xffffff; 4], 2, 2, Rect::new(0, 0, 2, 2));
        assert_eq!((f.y[0], f.u[0], f.v[0]), (235, 128, 128));
    }

    #[test]
    fn odd_sizes_pad_black_and_fill_black_aligns() {
        let src = vec![0xffffffu32; 3 * 3];
        let mut f = YuvFrame::black(3, 3);
        assert_eq!((f.width, f.height), (4, 4));
        f.convert_from_xrgb(&src, 3, 3, Rect::new(0, 0, 3, 3));
        assert_eq!(f.y[3], BLACK_Y, "padding column is black");
        assert_eq!(f.y[0], 235);
        f.fill_black(Rect::new(1, 1, 1, 1));
        assert_eq!(f.y[0], BLACK_Y, "mask grows to the enclosing even block");
        assert_eq!(f.y[2 * 4 + 2], 235);
    }
}
