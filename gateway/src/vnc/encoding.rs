//! Rectangle encoding numbers and the set this codec can decode.
//!
//! The proxy rewrites the viewer's SetEncodings with [`filter_encodings`] so the target never
//! sends an encoding the recorder cannot decode.

/// Raw pixels.
pub const RAW: i32 = 0;
/// Copy from another framebuffer area.
pub const COPY_RECT: i32 = 1;
/// Rise-and-run-length encoding.
pub const RRE: i32 = 2;
/// Hextile: 16×16 tiles with background, foreground and subrectangles.
pub const HEXTILE: i32 = 5;
/// Raw pixels through one zlib stream per connection.
pub const ZLIB: i32 = 6;
/// Tight: fill, palette/gradient filters through four zlib streams, JPEG.
pub const TIGHT: i32 = 7;
/// Tiled run-length encoding (16×16 tiles, uncompressed).
pub const TRLE: i32 = 15;
/// Zlib run-length encoding (64×64 tiles, one zlib stream per connection).
pub const ZRLE: i32 = 16;

/// JPEG quality levels for Tight (client hint only), lowest.
pub const JPEG_QUALITY_FIRST: i32 = -32;
/// JPEG quality levels for Tight (client hint only), highest.
pub const JPEG_QUALITY_LAST: i32 = -23;
/// Server-side cursor shape with pixels and a bitmask.
pub const CURSOR: i32 = -239;
/// Two-colour X11 cursor shape.
pub const X_CURSOR: i32 = -240;
/// The framebuffer size changed.
pub const DESKTOP_SIZE: i32 = -223;
/// Ends a FramebufferUpdate before its announced rectangle count.
pub const LAST_RECT: i32 = -224;
/// The server moved the pointer.
pub const POINTER_POS: i32 = -232;
/// Compression levels (client hint only), lowest.
pub const COMPRESS_LEVEL_FIRST: i32 = -256;
/// Compression levels (client hint only), highest.
pub const COMPRESS_LEVEL_LAST: i32 = -247;
/// QEMU extended key events (scan codes alongside keysyms).
pub const QEMU_EXTENDED_KEY: i32 = -258;
/// The desktop name changed.
pub const DESKTOP_NAME: i32 = -307;
/// Framebuffer size with multi-screen layout, also the answer to SetDesktopSize.
pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
/// XVP power control messages.
pub const XVP: i32 = -309;
/// Fence messages.
pub const FENCE: i32 = -312;
/// Continuous updates.
pub const CONTINUOUS_UPDATES: i32 = -313;
/// JPEG fine-grained quality (client hint only), lowest.
pub const FINE_QUALITY_FIRST: i32 = -512;
/// JPEG fine-grained quality (client hint only), highest.
pub const FINE_QUALITY_LAST: i32 = -412;
/// JPEG chroma subsampling (client hint only), lowest.
pub const SUBSAMPLING_FIRST: i32 = -768;
/// JPEG chroma subsampling (client hint only), highest.
pub const SUBSAMPLING_LAST: i32 = -763;
/// Extended clipboard (signed cut-text lengths), 0xC0A1E5CE.
pub const EXTENDED_CLIPBOARD: i32 = 0xC0A1_E5CE_u32 as i32;

/// True when this codec can decode what the server sends once the viewer has asked for
/// `encoding`: a real encoding it decodes, a pseudo-encoding it understands, or a pure
/// client-side hint that changes nothing in the server's stream.
pub fn is_supported(encoding: i32) -> bool {
    matches!(
        encoding,
        RAW | COPY_RECT
            | RRE
            | HEXTILE
            | ZLIB
            | TIGHT
            | TRLE
            | ZRLE
            | CURSOR
            | X_CURSOR
            | DESKTOP_SIZE
            | LAST_RECT
            | POINTER_POS
            | QEMU_EXTENDED_KEY
            | DESKTOP_NAME
            | EXTENDED_DESKTOP_SIZE
            | XVP
            | FENCE
            | CONTINUOUS_UPDATES
            | EXTENDED_CLIPBOARD
            | JPEG_QUALITY_FIRST..=JPEG_QUALITY_LAST
            | COMPRESS_LEVEL_FIRST..=COMPRESS_LEVEL_LAST
            | FINE_QUALITY_FIRST..=FINE_QUALITY_LAST
            | SUBSAMPLING_FIRST..=SUBSAMPLING_LAST
    )
}

/// The viewer's encodings restricted to [`is_supported`] ones, order kept (it is the viewer's
/// preference), duplicates dropped. Raw is always decodable and needs no advertising.
pub fn filter_encodings(requested: &[i32]) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::with_capacity(requested.len());
    for &e in requested {
        if is_supported(e) && !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_keeps_supported_in_order() {
        let req = [
            ZRLE,
            17,
            TIGHT,
            -1,
            CURSOR,
            ZRLE,
            -26,
            -257,
            EXTENDED_CLIPBOARD,
        ];
        assert_eq!(
            filter_encodings(&req),
            vec![ZRLE, TIGHT, CURSOR, -26, EXTENDED_CLIPBOARD]
        );
        assert_eq!(EXTENDED_CLIPBOARD, -1_063_131_698);
    }
}
