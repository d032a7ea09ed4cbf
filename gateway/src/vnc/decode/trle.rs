//! TRLE encoding (15) and the tile format it shares with ZRLE (16): each tile is raw, solid,
//! packed-palette, plain RLE or palette RLE. TRLE tiles are 16×16 and arrive uncompressed, so
//! they are decoded one at a time as they arrive.

use super::{DecodeCtx, Outcome, RectHeader};
use crate::vnc::error::RfbError;
use crate::vnc::pixel::PixelReader;
use crate::vnc::wire::{Cur, Parse, Stop};
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::Rect;

/// TRLE tile side.
pub(super) const TRLE_TILE: u16 = 16;

/// Largest palette a tile can carry (subencodings 2..=127 and 130..=255).
const MAX_PALETTE: usize = 127;

/// Which tile dialect is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// TRLE: subencodings 127 and 129 reuse the previous tile's palette.
    Trle,
    /// ZRLE: 17..=127 and 129 are unused.
    Zrle,
}

/// A decoded tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tile {
    /// One colour.
    Solid(u32),
    /// Pixels were written to the output buffer.
    Pixels,
}

fn bad(what: &'static str) -> Stop {
    Stop::Fail(RfbError::Malformed(what))
}

/// Reads a run length: one plus the sum of bytes up to the first that is not 255. Fails as
/// soon as the run would exceed `left` pixels, so long chains of 255 are never scanned twice.
fn run_length(c: &mut Cur<'_>, left: usize) -> Parse<usize> {
    let mut len = 1usize;
    loop {
        let b = c.u8()?;
        len += usize::from(b);
        if len > left {
            return Err(bad("run longer than its tile"));
        }
        if b != 255 {
            return Ok(len);
        }
    }
}

/// Reads one `tw × th` tile. Pixels go to `out`; `palette` is the previous tile's palette and
/// is replaced only when the tile is complete.
pub(super) fn read_tile(
    c: &mut Cur<'_>,
    tw: usize,
    th: usize,
    px: &PixelReader,
    dialect: Dialect,
    palette: &mut Vec<u32>,
    out: &mut Vec<u32>,
) -> Parse<Tile> {
    let cp = px.cpixel_len();
    let n = tw * th;
    let sub = c.u8()?;
    let mut pal = [0u32; MAX_PALETTE];
    let read_palette = |c: &mut Cur<'_>, pal: &mut [u32; MAX_PALETTE], size: usize| -> Parse<()> {
        let bytes = c.take(size * cp)?;
        for (slot, p) in pal.iter_mut().zip(bytes.chunks_exact(cp)) {
            *slot = px.cpixel(p);
        }
        Ok(())
    };
    let reuse = |pal: &mut [u32; MAX_PALETTE], palette: &Vec<u32>| -> usize {
        pal[..palette.len()].copy_from_slice(palette);
        palette.len()
    };
    let (size, packed) = match sub {
        0 => {
            let bytes = c.take(n * cp)?;
            out.clear();
            out.extend(bytes.chunks_exact(cp).map(|p| px.cpixel(p)));
            return Ok(Tile::Pixels);
        }
        1 => {
            let colour = px.cpixel(c.take(cp)?);
            palette.clear();
            palette.push(colour);
            return Ok(Tile::Solid(colour));
        }
        2..=16 => {
            let size = usize::from(sub);
            read_palette(c, &mut pal, size)?;
            (size, true)
        }
        127 if dialect == Dialect::Trle => (reuse(&mut pal, palette), true),
        128 => {
            out.clear();
            while out.len() < n {
                let colour = px.cpixel(c.take(cp)?);
                let len = run_length(c, n - out.len())?;
                out.resize(out.len() + len, colour);
            }
            return Ok(Tile::Pixels);
        }
        129 if dialect == Dialect::Trle => (reuse(&mut pal, palette), false),
        130..=255 => {
            let size = usize::from(sub - 128);
            read_palette(c, &mut pal, size)?;
            (size, false)
        }
        _ => return Err(bad("unused TRLE/ZRLE subencoding")),
    };
    let pal = &pal[..size];
    out.clear();
    if packed {
        let bits = match size {
            2 => 1,
            3 | 4 => 2,
            5..=16 => 4,
            _ => return Err(bad("packed palette size outside 2..=16")),
        };
        let row_bytes = (tw * bits).div_ceil(8);
        let data = c.take(row_bytes * th)?;
        let mask = (1u8 << bits) - 1;
        for row in data.chunks_exact(row_bytes.max(1)).take(th) {
            for x in 0..tw {
                let bit = x * bits;
                let idx = (row[bit / 8] >> (8 - bits - bit % 8)) & mask;
                out.push(
                    *pal.get(usize::from(idx))
                        .ok_or(bad("palette index out of range"))?,
                );
            }
        }
    } else {
        while out.len() < n {
            let b = c.u8()?;
            let colour = *pal
                .get(usize::from(b & 0x7f))
                .ok_or(bad("palette index out of range"))?;
            let len = if b & 0x80 != 0 {
                run_length(c, n - out.len())?
            } else {
                1
            };
            out.resize(out.len() + len, colour);
        }
    }
    if size > 0 {
        palette.clear();
        palette.extend_from_slice(pal);
    }
    Ok(Tile::Pixels)
}

/// Writes a decoded tile.
pub(super) fn put_tile(
    fb: &mut Framebuffer,
    r: Rect,
    tile: Tile,
    out: &[u32],
) -> Result<(), RfbError> {
    match tile {
        Tile::Solid(colour) => fb.fill_rect(r, colour)?,
        Tile::Pixels => fb.put_rect(r, out, r.w as usize)?,
    }
    Ok(())
}

/// The rectangle of tile number `index` of side `side` within `h`.
pub(super) fn tile_rect(h: &RectHeader, side: u16, index: u32) -> Rect {
    let tiles_x = u32::from(h.w.div_ceil(side)).max(1);
    let tx = (index % tiles_x) * u32::from(side);
    let ty = (index / tiles_x) * u32::from(side);
    let tw = (u32::from(h.w) - tx).min(u32::from(side));
    let th = (u32::from(h.h) - ty).min(u32::from(side));
    Rect::new(u32::from(h.x) + tx, u32::from(h.y) + ty, tw, th)
}

/// Number of tiles of side `side` in `h`.
pub(super) fn tile_count(h: &RectHeader, side: u16) -> u32 {
    u32::from(h.w.div_ceil(side)) * u32::from(h.h.div_ceil(side))
}

/// Progress through a TRLE rectangle.
#[derive(Debug, Default)]
pub(crate) struct Trle {
    tile: u32,
}

impl Trle {
    pub(crate) fn step(
        &mut self,
        h: &RectHeader,
        input: &[u8],
        ctx: &mut DecodeCtx,
        fb: &mut Framebuffer,
    ) -> Result<(usize, Outcome), RfbError> {
        let tiles = tile_count(h, TRLE_TILE);
        let mut used = 0;
        while self.tile < tiles {
            let r = tile_rect(h, TRLE_TILE, self.tile);
            let mut c = Cur::new(&input[used..]);
            let px = ctx.px;
            let tile = match read_tile(
                &mut c,
                r.w as usize,
                r.h as usize,
                &px,
                Dialect::Trle,
                &mut ctx.trle_palette,
                &mut ctx.scratch,
            ) {
                Ok(t) => t,
                Err(Stop::More) => return Ok((used, Outcome::Pending)),
                Err(Stop::Fail(e)) => return Err(e),
            };
            put_tile(fb, r, tile, &ctx.scratch)?;
            used += c.pos();
            self.tile += 1;
        }
        Ok((used, Outcome::Done(None)))
    }
}
