//! Hextile encoding (5): 16×16 tiles, each raw or a background with subrectangles. Tiles are
//! decoded one at a time as they arrive; a partial tile is retried from its start (at most a
//! few kilobytes).

use super::{DecodeCtx, Outcome, RectHeader};
use crate::vnc::error::RfbError;
use crate::vnc::wire::{Cur, Parse, Stop};
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::Rect;

const TILE: u16 = 16;
const RAW: u8 = 1;
const BACKGROUND: u8 = 2;
const FOREGROUND: u8 = 4;
const ANY_SUBRECTS: u8 = 8;
const SUBRECTS_COLOURED: u8 = 16;

/// Progress through a Hextile rectangle. Background and foreground carry over between tiles;
/// like common viewers, a colour never specified reads as black.
#[derive(Debug, Default)]
pub(crate) struct Hextile {
    tile: u32,
    bg: u32,
    fg: u32,
}

impl Hextile {
    pub(crate) fn step(
        &mut self,
        h: &RectHeader,
        input: &[u8],
        ctx: &mut DecodeCtx,
        fb: &mut Framebuffer,
    ) -> Result<(usize, Outcome), RfbError> {
        let tiles_x = u32::from(h.w.div_ceil(TILE));
        let tiles = tiles_x * u32::from(h.h.div_ceil(TILE));
        let mut used = 0;
        while self.tile < tiles {
            let tx = (self.tile % tiles_x) * u32::from(TILE);
            let ty = (self.tile / tiles_x) * u32::from(TILE);
            let tw = (u32::from(h.w) - tx).min(u32::from(TILE));
            let th = (u32::from(h.h) - ty).min(u32::from(TILE));
            let r = Rect::new(u32::from(h.x) + tx, u32::from(h.y) + ty, tw, th);
            let mut c = Cur::new(&input[used..]);
            match self.tile_step(&mut c, r, ctx) {
                Ok(()) => {}
                Err(Stop::More) => return Ok((used, Outcome::Pending)),
                Err(Stop::Fail(e)) => return Err(e),
            }
            fb.put_rect(r, &ctx.scratch, tw as usize)?;
            used += c.pos();
            self.tile += 1;
        }
        Ok((used, Outcome::Done(None)))
    }

    /// Parses one tile into `ctx.scratch`; colours are only committed when it is complete.
    fn tile_step(&mut self, c: &mut Cur<'_>, r: Rect, ctx: &mut DecodeCtx) -> Parse<()> {
        let px = ctx.px;
        let bpp = px.bpp();
        let (tw, th) = (r.w as usize, r.h as usize);
        let mask = c.u8()?;
        let out = &mut ctx.scratch;
        if mask & RAW != 0 {
            let bytes = c.take(tw * th * bpp)?;
            px.pixels_into(bytes, out);
            return Ok(());
        }
        let mut bg = self.bg;
        let mut fg = self.fg;
        if mask & BACKGROUND != 0 {
            bg = px.pixel(c.take(bpp)?);
        }
        if mask & FOREGROUND != 0 {
            fg = px.pixel(c.take(bpp)?);
        }
        let count = if mask & ANY_SUBRECTS != 0 { c.u8()? } else { 0 };
        let coloured = mask & SUBRECTS_COLOURED != 0;
        let per = if coloured { bpp + 2 } else { 2 };
        let subrects = c.take(usize::from(count) * per)?;
        out.clear();
        out.resize(tw * th, bg);
        for s in subrects.chunks_exact(per) {
            let (colour, geo) = if coloured {
                (px.pixel(&s[..bpp]), &s[bpp..])
            } else {
                (fg, s)
            };
            let (sx, sy) = (usize::from(geo[0] >> 4), usize::from(geo[0] & 15));
            let (sw, sh) = (usize::from(geo[1] >> 4) + 1, usize::from(geo[1] & 15) + 1);
            if sx + sw > tw || sy + sh > th {
                return Err(Stop::Fail(RfbError::Malformed(
                    "Hextile subrectangle outside its tile",
                )));
            }
            for row in sy..sy + sh {
                out[row * tw + sx..row * tw + sx + sw].fill(colour);
            }
        }
        self.bg = bg;
        self.fg = fg;
        Ok(())
    }
}
