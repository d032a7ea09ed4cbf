//! CopyRect encoding (1): copy an area of the framebuffer.

use super::{check_inside, RectHeader};
use crate::vnc::wire::{Cur, Parse};
use psmgate_codecs::framebuffer::Framebuffer;
use psmgate_codecs::Rect;

/// Source position (4 bytes); returns the bytes used.
pub(super) fn decode(h: &RectHeader, input: &[u8], fb: &mut Framebuffer) -> Parse<usize> {
    let mut c = Cur::new(input);
    let sx = u32::from(c.u16()?);
    let sy = u32::from(c.u16()?);
    let dst = h.rect();
    check_inside(Rect::new(sx, sy, dst.w, dst.h), fb)?;
    if !dst.is_empty() {
        fb.copy_rect(sx, sy, dst)?;
    }
    Ok(c.pos())
}
