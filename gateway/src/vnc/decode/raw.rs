//! Raw encoding (0): `w × h` pixels, decoded a row at a time as rows arrive.

use super::{DecodeCtx, Outcome, RectHeader};
use crate::vnc::error::RfbError;
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::Rect;

/// Rows are converted in batches of at most this many pixels.
const BATCH_PIXELS: usize = 64 * 1024;

/// Progress through a Raw rectangle.
#[derive(Debug, Default)]
pub(crate) struct Raw {
    rows_done: u16,
}

impl Raw {
    pub(crate) fn step(
        &mut self,
        h: &RectHeader,
        input: &[u8],
        ctx: &mut DecodeCtx,
        fb: &mut Framebuffer,
    ) -> Result<(usize, Outcome), RfbError> {
        if h.w == 0 || h.h == 0 {
            return Ok((0, Outcome::Done(None)));
        }
        let w = usize::from(h.w);
        let row_bytes = w * ctx.px.bpp();
        let rows_per_batch = (BATCH_PIXELS / w).max(1);
        let mut used = 0;
        while self.rows_done < h.h {
            let left = usize::from(h.h - self.rows_done);
            let rows = ((input.len() - used) / row_bytes)
                .min(left)
                .min(rows_per_batch);
            if rows == 0 {
                return Ok((used, Outcome::Pending));
            }
            let bytes = &input[used..used + rows * row_bytes];
            let px = ctx.px;
            px.pixels_into(bytes, &mut ctx.scratch);
            let r = Rect::new(
                u32::from(h.x),
                u32::from(h.y) + u32::from(self.rows_done),
                u32::from(h.w),
                rows as u32,
            );
            fb.put_rect(r, &ctx.scratch, w)?;
            used += rows * row_bytes;
            // `rows <= left`, which fits u16.
            self.rows_done += rows as u16;
        }
        Ok((used, Outcome::Done(None)))
    }
}
