//! Drawing primitives and the 8×16 font. Everything is clipped to the framebuffer, so
//! drawing never fails.

use crate::framebuffer::Framebuffer;
use crate::geometry::Rect;

pub(super) fn fill(fb: &mut Framebuffer, r: Rect, color: u32) {
    if let Some(r) = r.clip(fb.width(), fb.height()) {
        // Clipped to the screen, so the only possible error cannot occur.
        let _ = fb.fill_rect(r, color);
    }
}

/// Writes `w`×`h` pixels (row stride `stride`) at `(x, y)`, clipped to the screen.
pub(super) fn blit(
    fb: &mut Framebuffer,
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    data: &[u32],
    stride: usize,
) {
    let Some(r) = Rect::new(x, y, w, h).clip(fb.width(), fb.height()) else {
        return;
    };
    let off = (r.y - y) as usize * stride + (r.x - x) as usize;
    if let Some(src) = data.get(off..) {
        let _ = fb.put_rect(r, src, stride);
    }
}

pub(super) fn glyph(c: u8) -> [u8; 8] {
    let c = if c.is_ascii() && !c.is_ascii_control() {
        c
    } else {
        b'?'
    };
    font8x8::legacy::BASIC_LEGACY[c as usize]
}

/// Renders cells (char, foreground) on `bg` into `buf` (stride `ncells * 8 * scale`), padding
/// with spaces to `ncells`. Glyphs are the 8×8 font doubled vertically (8×16 cells) times `scale`.
pub(super) fn render(buf: &mut Vec<u32>, cells: &[(u8, u32)], ncells: usize, bg: u32, scale: u32) {
    let s = scale as usize;
    let stride = ncells * 8 * s;
    buf.clear();
    buf.resize(stride * 16 * s, bg);
    for (i, &(c, fg)) in cells.iter().take(ncells).enumerate() {
        let g = glyph(c);
        for (gy, bits) in g.iter().enumerate() {
            if *bits == 0 {
                continue;
            }
            for gx in 0..8 {
                if bits >> gx & 1 == 1 {
                    for dy in 0..2 * s {
                        let row = (gy * 2 * s + dy) * stride + i * 8 * s + gx * s;
                        buf[row..row + s].fill(fg);
                    }
                }
            }
        }
    }
}

/// Cells of `text` in one colour.
pub(super) fn cells(text: &str, fg: u32) -> Vec<(u8, u32)> {
    text.bytes().map(|b| (b, fg)).collect()
}
