//! DesktopSize (-223), ExtendedDesktopSize (-308) and DesktopName (-307) pseudo-encodings.

use super::RectHeader;
use crate::vnc::error::RfbError;
use crate::vnc::limits::MAX_DESKTOP_NAME;
use crate::vnc::screen::{Screen, SCREEN_LEN};
use crate::vnc::server_msg::{ScreenLayout, ServerEvent};
use crate::vnc::wire::{Cur, Parse};
use psmgate_codecs::framebuffer::Framebuffer;

/// The framebuffer takes the rectangle's size.
pub(super) fn desktop_size(h: &RectHeader, fb: &mut Framebuffer) -> Result<ServerEvent, RfbError> {
    fb.resize(u32::from(h.w), u32::from(h.h))?;
    Ok(ServerEvent::Resize {
        width: h.w,
        height: h.h,
    })
}

/// Reason in x, status in y, size in w×h, then the screens. The framebuffer is resized only
/// when the status reports success.
pub(super) fn extended_desktop_size(
    h: &RectHeader,
    input: &[u8],
    fb: &mut Framebuffer,
) -> Parse<(usize, Option<ServerEvent>)> {
    let mut c = Cur::new(input);
    let count = c.u8()?;
    c.skip(3)?;
    // At most 255 screens of 16 bytes: wait for all of them before reading.
    c.take(usize::from(count) * SCREEN_LEN)?;
    let mut s = Cur::new(&input[4..]);
    let mut screens = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        screens.push(Screen::read(&mut s)?);
    }
    if h.y == 0 {
        fb.resize(u32::from(h.w), u32::from(h.h))?;
    }
    Ok((
        c.pos(),
        Some(ServerEvent::ScreenLayout(ScreenLayout {
            reason: h.x,
            status: h.y,
            width: h.w,
            height: h.h,
            screens,
        })),
    ))
}

/// A length-prefixed UTF-8 name.
pub(super) fn desktop_name(input: &[u8]) -> Parse<(usize, Option<ServerEvent>)> {
    let mut c = Cur::new(input);
    let len = c.u32()?;
    if len > MAX_DESKTOP_NAME {
        return Err(RfbError::too_large(
            "desktop name length",
            u64::from(len),
            u64::from(MAX_DESKTOP_NAME),
        )
        .into());
    }
    let name = String::from_utf8_lossy(c.take(len as usize)?).into_owned();
    Ok((c.pos(), Some(ServerEvent::DesktopName(name))))
}
