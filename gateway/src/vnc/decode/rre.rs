//! RRE encoding (2): a background colour and a list of solid subrectangles, applied one by one
//! as they arrive so their peer-chosen count never drives buffering.

use super::{DecodeCtx, Outcome, RectHeader};
use crate::vnc::error::RfbError;
use crate::vnc::wire::{Cur, Stop};
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::Rect;

/// Progress through an RRE rectangle.
#[derive(Debug, Default)]
pub(crate) enum Rre {
    /// Expecting the subrectangle count and background.
    #[default]
    Header,
    /// Subrectangles still to come.
    Subrects(u32),
}

impl Rre {
    pub(crate) fn step(
        &mut self,
        h: &RectHeader,
        input: &[u8],
        ctx: &mut DecodeCtx,
        fb: &mut Framebuffer,
    ) -> Result<(usize, Outcome), RfbError> {
        let bpp = ctx.px.bpp();
        let mut c = Cur::new(input);
        loop {
            let mark = c.pos();
            let res = match self {
                Rre::Header => (|| {
                    let n = c.u32()?;
                    let bg = ctx.px.pixel(c.take(bpp)?);
                    fb.fill_rect(h.rect(), bg)?;
                    *self = Rre::Subrects(n);
                    Ok(())
                })(),
                Rre::Subrects(0) => return Ok((c.pos(), Outcome::Done(None))),
                Rre::Subrects(left) => (|| {
                    let colour = ctx.px.pixel(c.take(bpp)?);
                    let (x, y) = (u32::from(c.u16()?), u32::from(c.u16()?));
                    let (w, hh) = (u32::from(c.u16()?), u32::from(c.u16()?));
                    if x + w > u32::from(h.w) || y + hh > u32::from(h.h) {
                        return Err(Stop::Fail(RfbError::Malformed(
                            "RRE subrectangle outside its rectangle",
                        )));
                    }
                    let r = Rect::new(u32::from(h.x) + x, u32::from(h.y) + y, w, hh);
                    fb.fill_rect(r, colour)?;
                    *left -= 1;
                    Ok(())
                })(),
            };
            match res {
                Ok(()) => {}
                Err(Stop::More) => return Ok((mark, Outcome::Pending)),
                Err(Stop::Fail(e)) => return Err(e),
            }
        }
    }
}
