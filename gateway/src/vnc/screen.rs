//! Screen layouts of the ExtendedDesktopSize pseudo-encoding and SetDesktopSize message.

use super::wire::{Cur, Parse};

/// Bytes of one serialised screen.
pub(crate) const SCREEN_LEN: usize = 16;

/// One monitor of a multi-screen desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    /// Server-chosen screen identifier.
    pub id: u32,
    /// Left edge within the framebuffer.
    pub x: u16,
    /// Top edge within the framebuffer.
    pub y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// Unused flags.
    pub flags: u32,
}

impl Screen {
    pub(crate) fn read(c: &mut Cur<'_>) -> Parse<Screen> {
        Ok(Screen {
            id: c.u32()?,
            x: c.u16()?,
            y: c.u16()?,
            width: c.u16()?,
            height: c.u16()?,
            flags: c.u32()?,
        })
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        for v in [self.x, self.y, self.width, self.height] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&self.flags.to_be_bytes());
    }
}
