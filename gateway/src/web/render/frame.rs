//! Screenshots into the session's screen: PNG from Chromium → `0x00RRGGBB` pixels → the
//! recorder's framebuffer, which keeps only what changed as damage.

use crate::recording::{Recorder, RecorderError};
use image::ImageDecoder;
use psmgate_codecs::framebuffer::{Framebuffer, FramebufferError};
use psmgate_codecs::Rect;

/// Why a screenshot did not become a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Not a PNG of the expected size.
    #[error("{0}")]
    Decode(String),
    /// The recorder refused it (stopped, failed).
    #[error(transparent)]
    Recorder(#[from] RecorderError),
}

/// A decoded screenshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `0x00RRGGBB`, row-major.
    pub pixels: Vec<u32>,
}

/// Decodes a PNG of at most `max_side` pixels a side (checked before any pixel is decoded).
pub fn decode_png(png: &[u8], max_side: u32) -> Result<Picture, FrameError> {
    let err = |e: image::ImageError| FrameError::Decode(e.to_string());
    let mut dec = image::codecs::png::PngDecoder::new(std::io::Cursor::new(png)).map_err(err)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(u64::from(max_side) * u64::from(max_side) * 8);
    dec.set_limits(limits).map_err(err)?;
    let (width, height) = dec.dimensions();
    if width == 0 || height == 0 {
        return Err(FrameError::Decode("empty image".into()));
    }
    let rgba = image::DynamicImage::from_decoder(dec)
        .map_err(err)?
        .into_rgba8();
    let pixels = rgba
        .as_raw()
        .chunks_exact(4)
        .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]))
        .collect();
    Ok(Picture {
        width,
        height,
        pixels,
    })
}

/// Makes `pic` the session's screen: resized when its size changed, then written whole (the
/// framebuffer compares row by row and damages only the tiles whose pixels changed).
pub fn show(rec: &Recorder, pic: &Picture) -> Result<(), FrameError> {
    rec.resize(pic.width, pic.height)?;
    rec.screen(|fb| put_whole(fb, pic))?;
    Ok(())
}

/// [`show`] as of transcript time `t_ms` (a video rendered after the session): waits until the
/// recorder made the frames due before `t_ms` (see `Recorder::screen_at`).
pub fn show_at(rec: &Recorder, t_ms: u64, pic: &Picture) -> Result<(), FrameError> {
    rec.resize_at(t_ms, pic.width, pic.height)?;
    rec.screen_at(t_ms, |fb| put_whole(fb, pic))?;
    Ok(())
}

/// Writes `pic` into `fb` from the top left corner, whole.
fn put_whole(fb: &mut Framebuffer, pic: &Picture) -> Result<(), FramebufferError> {
    fb.put_rect(
        Rect::new(0, 0, pic.width, pic.height),
        &pic.pixels,
        pic.width as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 4]) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba(f(x, y)));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn png_pixels_become_xrgb() {
        let p = decode_png(&png(3, 2, |x, y| [x as u8 * 100, y as u8 * 50, 7, 128]), 16).unwrap();
        assert_eq!((p.width, p.height), (3, 2));
        assert_eq!(p.pixels[0], 0x00_00_00_07);
        assert_eq!(p.pixels[5], (200 << 16) | (50 << 8) | 7);
    }

    #[test]
    fn oversized_or_broken_pngs_are_refused() {
        assert!(matches!(
            decode_png(&png(20, 2, |_, _| [0; 4]), 16),
            Err(FrameError::Decode(_))
        ));
        let good = png(4, 4, |_, _| [1, 2, 3, 255]);
        for cut in [0, 8, 20, good.len() - 13] {
            assert!(decode_png(&good[..cut], 16).is_err(), "cut at {cut}");
        }
        assert!(decode_png(b"GIF89a", 16).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn any_bytes_are_handled(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode_png(&bytes, 64);
            let mut b = png(2, 2, |_, _| [9; 4]);
            let n = b.len();
            for (i, x) in bytes.iter().enumerate() {
                b[(i * 7) % n] ^= x;
            }
            let _ = decode_png(&b, 64);
        }
    }
}
