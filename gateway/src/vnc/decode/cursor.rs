//! Cursor (-239) and X Cursor (-240) pseudo-encodings: the pointer shape the viewer draws.

use super::{DecodeCtx, RectHeader};
use crate::vnc::error::RfbError;
use crate::vnc::limits::MAX_CURSOR_SIDE;
use crate::vnc::server_msg::ServerEvent;
use crate::vnc::wire::{Cur, Parse};

/// A pointer shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorShape {
    /// Hotspot column.
    pub hotspot_x: u16,
    /// Hotspot row.
    pub hotspot_y: u16,
    /// Width in pixels (0 hides the cursor).
    pub width: u16,
    /// Height in pixels (0 hides the cursor).
    pub height: u16,
    /// `width × height` pixels, row-major, `0xAARRGGBB` with alpha 0xFF where the mask is set
    /// and 0 elsewhere.
    pub argb: Vec<u32>,
}

fn check_size(h: &RectHeader) -> Result<(), RfbError> {
    let side = h.w.max(h.h);
    if side > MAX_CURSOR_SIDE {
        return Err(RfbError::too_large(
            "cursor side",
            u64::from(side),
            u64::from(MAX_CURSOR_SIDE),
        ));
    }
    Ok(())
}

/// True when bit `x` of a MSB-first row is set.
fn bit(row: &[u8], x: usize) -> bool {
    row.get(x / 8).is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
}

/// Pixels in the connection's pixel format, then a bitmask.
pub(super) fn decode_cursor(
    h: &RectHeader,
    input: &[u8],
    ctx: &DecodeCtx,
) -> Parse<(usize, Option<ServerEvent>)> {
    check_size(h)?;
    let (w, hh) = (usize::from(h.w), usize::from(h.h));
    let bpp = ctx.px.bpp();
    let row_mask = w.div_ceil(8);
    let mut c = Cur::new(input);
    let pixels = c.take(w * hh * bpp)?;
    let mask = c.take(row_mask * hh)?;
    let mut argb = Vec::with_capacity(w * hh);
    for (y, row) in pixels.chunks_exact((w * bpp).max(1)).take(hh).enumerate() {
        let mrow = &mask[y * row_mask..(y + 1) * row_mask];
        for (x, p) in row.chunks_exact(bpp).enumerate() {
            let alpha = if bit(mrow, x) { 0xff00_0000 } else { 0 };
            argb.push(alpha | ctx.px.pixel(p));
        }
    }
    Ok((c.pos(), Some(shape(h, argb))))
}

/// Two colours, a colour bitmap and a bitmask; no data when the shape is empty.
pub(super) fn decode_x_cursor(h: &RectHeader, input: &[u8]) -> Parse<(usize, Option<ServerEvent>)> {
    check_size(h)?;
    if h.w == 0 || h.h == 0 {
        return Ok((0, Some(shape(h, Vec::new()))));
    }
    let (w, hh) = (usize::from(h.w), usize::from(h.h));
    let row_mask = w.div_ceil(8);
    let mut c = Cur::new(input);
    let colours = c.take(6)?;
    let rgb = |p: &[u8]| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]);
    let (primary, secondary) = (rgb(&colours[..3]), rgb(&colours[3..]));
    let bitmap = c.take(row_mask * hh)?;
    let mask = c.take(row_mask * hh)?;
    let mut argb = Vec::with_capacity(w * hh);
    for y in 0..hh {
        let brow = &bitmap[y * row_mask..(y + 1) * row_mask];
        let mrow = &mask[y * row_mask..(y + 1) * row_mask];
        for x in 0..w {
            let colour = if bit(brow, x) { primary } else { secondary };
            let alpha = if bit(mrow, x) { 0xff00_0000 } else { 0 };
            argb.push(alpha | colour);
        }
    }
    Ok((c.pos(), Some(shape(h, argb))))
}

fn shape(h: &RectHeader, argb: Vec<u32>) -> ServerEvent {
    ServerEvent::Cursor(CursorShape {
        hotspot_x: h.x,
        hotspot_y: h.y,
        width: h.w,
        height: h.h,
        argb,
    })
}
