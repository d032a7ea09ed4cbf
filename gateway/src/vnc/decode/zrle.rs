//! ZRLE (16) and zlib (6) encodings: a length-prefixed chunk of the connection's zlib stream.
//! The chunk is buffered whole (bounded by [`MAX_COMPRESSED_RECT_BYTES`]) and inflated with an
//! output bound derived from the rectangle's size and [`MAX_DECODED_RECT_BYTES`].

use super::trle::{put_tile, read_tile, tile_count, tile_rect, Dialect};
use super::{DecodeCtx, RectHeader};
use crate::vnc::error::RfbError;
use crate::vnc::limits::{MAX_COMPRESSED_RECT_BYTES, MAX_DECODED_RECT_BYTES};
use crate::vnc::wire::{Cur, Parse};
use crate::vnc::zlib::Inflater;
use psmgate_codecs::framebuffer::Framebuffer;

/// ZRLE tile side.
const ZRLE_TILE: u16 = 64;

/// Reads the 4-byte length and the chunk it announces.
fn chunk<'a>(c: &mut Cur<'a>) -> Parse<&'a [u8]> {
    let len = c.u32()?;
    if u64::from(len) > MAX_COMPRESSED_RECT_BYTES as u64 {
        return Err(RfbError::too_large(
            "compressed rectangle length",
            u64::from(len),
            MAX_COMPRESSED_RECT_BYTES as u64,
        )
        .into());
    }
    c.take(len as usize)
}

/// Most bytes a well-formed ZRLE rectangle can inflate to: per pixel a CPIXEL plus a run byte,
/// per tile a subencoding byte and a full palette.
fn zrle_bound(h: &RectHeader, cpixel: usize) -> usize {
    let tiles = tile_count(h, ZRLE_TILE) as usize;
    let worst = h.area() * (cpixel + 1) + tiles * (1 + 127 * cpixel);
    worst.min(MAX_DECODED_RECT_BYTES)
}

/// Decodes a ZRLE rectangle; returns the bytes used.
pub(super) fn decode_zrle(
    h: &RectHeader,
    input: &[u8],
    ctx: &mut DecodeCtx,
    fb: &mut Framebuffer,
) -> Parse<usize> {
    let mut c = Cur::new(input);
    let data = chunk(&mut c)?;
    let px = ctx.px;
    let plain = ctx
        .zrle
        .get_or_insert_with(Inflater::new)
        .inflate(data, zrle_bound(h, px.cpixel_len()))?;
    let mut t = Cur::new(&plain);
    let mut palette = Vec::new();
    for i in 0..tile_count(h, ZRLE_TILE) {
        let r = tile_rect(h, ZRLE_TILE, i);
        let tile = read_tile(
            &mut t,
            r.w as usize,
            r.h as usize,
            &px,
            Dialect::Zrle,
            &mut palette,
            &mut ctx.scratch,
        )
        .map_err(|s| s.truncated("ZRLE data ends inside a tile"))?;
        put_tile(fb, r, tile, &ctx.scratch)?;
    }
    Ok(c.pos())
}

/// Decodes a zlib rectangle (raw pixels through the zlib stream); returns the bytes used.
pub(super) fn decode_zlib(
    h: &RectHeader,
    input: &[u8],
    ctx: &mut DecodeCtx,
    fb: &mut Framebuffer,
) -> Parse<usize> {
    let mut c = Cur::new(input);
    let data = chunk(&mut c)?;
    let px = ctx.px;
    let need = h.area() * px.bpp();
    if need > MAX_DECODED_RECT_BYTES {
        return Err(RfbError::too_large(
            "zlib rectangle size",
            need as u64,
            MAX_DECODED_RECT_BYTES as u64,
        )
        .into());
    }
    let plain = ctx
        .zlib
        .get_or_insert_with(Inflater::new)
        .inflate_exact(data, need)?;
    if need > 0 {
        px.pixels_into(&plain, &mut ctx.scratch);
        fb.put_rect(h.rect(), &ctx.scratch, usize::from(h.w))?;
    }
    Ok(c.pos())
}
