//! Tight encoding (7): fill, JPEG, or basic compression (copy, palette or gradient filter)
//! through one of four per-connection zlib streams.
//!
//! A Tight rectangle has no overall length, but its headers determine every length, so the
//! headers are re-read (a few bytes) until the whole rectangle is present; only then are zlib
//! streams reset or advanced and pixels written.

use super::{DecodeCtx, RectHeader};
use crate::vnc::error::RfbError;
use crate::vnc::limits::{MAX_DECODED_RECT_BYTES, MAX_TIGHT_LENGTH};
use crate::vnc::pixel::PixelReader;
use crate::vnc::wire::{Cur, Parse, Stop};
use crate::vnc::zlib::Inflater;
use psmgate_codecs::framebuffer::Framebuffer;

/// Filtered data shorter than this is sent without zlib.
const MIN_TO_COMPRESS: usize = 12;

const FILL: u8 = 0x8;
const JPEG: u8 = 0x9;
const BASIC_NO_ZLIB: u8 = 0xA;
const BASIC_NO_ZLIB_FILTER: u8 = 0xE;

const FILTER_COPY: u8 = 0;
const FILTER_PALETTE: u8 = 1;
const FILTER_GRADIENT: u8 = 2;

fn bad(what: &'static str) -> Stop {
    Stop::Fail(RfbError::Malformed(what))
}

/// Reads Tight's 1–3 byte compact length.
pub(crate) fn compact_length(c: &mut Cur<'_>) -> Parse<usize> {
    let b0 = c.u8()?;
    let mut len = usize::from(b0 & 0x7f);
    if b0 & 0x80 != 0 {
        let b1 = c.u8()?;
        len |= usize::from(b1 & 0x7f) << 7;
        if b1 & 0x80 != 0 {
            len |= usize::from(c.u8()?) << 14;
        }
    }
    debug_assert!(len <= MAX_TIGHT_LENGTH);
    Ok(len)
}

/// How the pixels of a basic-compression rectangle were filtered.
enum Filter<'a> {
    Copy,
    /// The palette's `TPIXEL`s (1..=256 of them).
    Palette(&'a [u8]),
    Gradient,
}

/// Everything a rectangle needs, read before anything is changed.
enum Plan<'a> {
    Fill(u32),
    Jpeg(&'a [u8]),
    Basic {
        filter: Filter<'a>,
        /// The zlib stream, or none when the data is sent as is.
        stream: Option<usize>,
        data: &'a [u8],
        plain_len: usize,
    },
}

fn read_plan<'a>(c: &mut Cur<'a>, h: &RectHeader, px: &PixelReader) -> Parse<Plan<'a>> {
    let ctl = c.u8()?;
    let kind = ctl >> 4;
    let tpl = px.tpixel_len();
    let (stream, has_filter) = match kind {
        FILL => return Ok(Plan::Fill(px.tpixel(c.take(tpl)?))),
        JPEG => {
            let len = compact_length(c)?;
            return Ok(Plan::Jpeg(c.take(len)?));
        }
        0..=7 => (Some(usize::from(kind & 3)), kind & 4 != 0),
        BASIC_NO_ZLIB => (None, false),
        BASIC_NO_ZLIB_FILTER => (None, true),
        _ => return Err(bad("invalid Tight compression control")),
    };
    let filter_id = if has_filter { c.u8()? } else { FILTER_COPY };
    let (w, hh) = (u64::from(h.w), u64::from(h.h));
    let (filter, plain_len) = match filter_id {
        FILTER_COPY => (Filter::Copy, w * hh * tpl as u64),
        FILTER_PALETTE => {
            let len = usize::from(c.u8()?) + 1;
            let bytes = c.take(len * tpl)?;
            let plain = if len == 2 { w.div_ceil(8) * hh } else { w * hh };
            (Filter::Palette(bytes), plain)
        }
        FILTER_GRADIENT => {
            if px.bpp() < 2 {
                return Err(bad("Tight gradient filter needs 16 or 32 bits per pixel"));
            }
            (Filter::Gradient, w * hh * tpl as u64)
        }
        _ => return Err(bad("unknown Tight filter")),
    };
    if plain_len > MAX_DECODED_RECT_BYTES as u64 {
        return Err(RfbError::too_large(
            "Tight rectangle data",
            plain_len,
            MAX_DECODED_RECT_BYTES as u64,
        )
        .into());
    }
    let plain_len = plain_len as usize;
    let (stream, data) = match stream {
        Some(id) if plain_len >= MIN_TO_COMPRESS => {
            let len = compact_length(c)?;
            (Some(id), c.take(len)?)
        }
        _ => (None, c.take(plain_len)?),
    };
    Ok(Plan::Basic {
        filter,
        stream,
        data,
        plain_len,
    })
}

/// Decodes a Tight rectangle; returns the bytes used.
pub(super) fn decode(
    h: &RectHeader,
    input: &[u8],
    ctx: &mut DecodeCtx,
    fb: &mut Framebuffer,
) -> Parse<usize> {
    let mut c = Cur::new(input);
    let px = ctx.px;
    let plan = read_plan(&mut c, h, &px)?;
    // The whole rectangle is present: act.
    let resets = input.first().copied().unwrap_or(0) & 0x0f;
    for (i, s) in ctx.tight.iter_mut().enumerate() {
        if resets & (1 << i) != 0 {
            if let Some(s) = s {
                s.reset();
            }
        }
    }
    let r = h.rect();
    match plan {
        Plan::Fill(colour) => fb.fill_rect(r, colour)?,
        Plan::Jpeg(data) => {
            if !r.is_empty() {
                let pixels = decode_jpeg(data, h)?;
                fb.put_rect(r, &pixels, usize::from(h.w))?;
            }
        }
        Plan::Basic {
            filter,
            stream,
            data,
            plain_len,
        } => {
            let inflated;
            let plain = match stream {
                Some(id) => {
                    inflated = ctx.tight[id]
                        .get_or_insert_with(Inflater::new)
                        .inflate_exact(data, plain_len)?;
                    &inflated[..]
                }
                None => data,
            };
            if r.is_empty() {
                return Ok(c.pos());
            }
            let out = &mut ctx.scratch;
            out.clear();
            let tpl = px.tpixel_len();
            match filter {
                Filter::Copy => out.extend(plain.chunks_exact(tpl).map(|p| px.tpixel(p))),
                Filter::Palette(bytes) => {
                    let mut colours = [0u32; 256];
                    let mut len = 0;
                    for (slot, p) in colours.iter_mut().zip(bytes.chunks_exact(tpl)) {
                        *slot = px.tpixel(p);
                        len += 1;
                    }
                    unpalette(plain, h, &colours[..len], out)?
                }
                Filter::Gradient => ungradient(plain, h, &px, out),
            }
            fb.put_rect(r, out, usize::from(h.w))?;
        }
    }
    Ok(c.pos())
}

/// Expands palette indices (1 bit per pixel for two colours, else one byte).
fn unpalette(plain: &[u8], h: &RectHeader, pal: &[u32], out: &mut Vec<u32>) -> Parse<()> {
    let w = usize::from(h.w);
    if pal.len() == 2 {
        let row_bytes = w.div_ceil(8);
        for row in plain.chunks_exact(row_bytes) {
            for x in 0..w {
                let bit = (row[x / 8] >> (7 - x % 8)) & 1;
                out.push(pal[usize::from(bit)]);
            }
        }
    } else {
        for &i in plain {
            out.push(
                *pal.get(usize::from(i))
                    .ok_or(bad("palette index out of range"))?,
            );
        }
    }
    Ok(())
}

/// Undoes the gradient filter: each component is predicted from its left, upper and
/// upper-left neighbours (zero outside the rectangle) and the wire carries the difference.
fn ungradient(plain: &[u8], h: &RectHeader, px: &PixelReader, out: &mut Vec<u32>) {
    let w = usize::from(h.w);
    let tpl = px.tpixel_len();
    let max = if px.tpixel_is_rgb() {
        [255; 3]
    } else {
        px.maxima()
    };
    let mut above = vec![[0u32; 3]; w];
    let mut row_vals = vec![[0u32; 3]; w];
    for row in plain.chunks_exact(w * tpl) {
        let mut left = [0u32; 3];
        let mut up_left = [0u32; 3];
        for (x, p) in row.chunks_exact(tpl).enumerate() {
            let diff = if px.tpixel_is_rgb() {
                [u32::from(p[0]), u32::from(p[1]), u32::from(p[2])]
            } else {
                px.components(px.value(p))
            };
            let up = above[x];
            let mut v = [0u32; 3];
            for c in 0..3 {
                let pred = (i64::from(left[c]) + i64::from(up[c]) - i64::from(up_left[c]))
                    .clamp(0, i64::from(max[c])) as u32;
                v[c] = (pred + diff[c]) % (max[c] + 1);
            }
            row_vals[x] = v;
            left = v;
            up_left = up;
            out.push(if px.tpixel_is_rgb() {
                (v[0] << 16) | (v[1] << 8) | v[2]
            } else {
                px.rgb_from_components(v)
            });
        }
        std::mem::swap(&mut above, &mut row_vals);
    }
}

/// Decodes a JPEG rectangle to `0x00RRGGBB`, refusing images whose size differs from the
/// rectangle before decoding any pixel.
fn decode_jpeg(data: &[u8], h: &RectHeader) -> Result<Vec<u32>, RfbError> {
    use image::ImageDecoder;
    let jerr = |e: image::ImageError| RfbError::Jpeg(e.to_string());
    let mut dec =
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(data)).map_err(jerr)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(u32::from(h.w));
    limits.max_image_height = Some(u32::from(h.h));
    limits.max_alloc = Some(MAX_DECODED_RECT_BYTES as u64);
    dec.set_limits(limits).map_err(jerr)?;
    if dec.dimensions() != (u32::from(h.w), u32::from(h.h)) {
        return Err(RfbError::Jpeg(format!(
            "image is {:?}, rectangle is {}x{}",
            dec.dimensions(),
            h.w,
            h.h
        )));
    }
    let rgb = image::DynamicImage::from_decoder(dec)
        .map_err(jerr)?
        .into_rgb8();
    Ok(rgb
        .as_raw()
        .chunks_exact(3)
        .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_length_forms() {
        for (bytes, v) in [
            (&[0x05][..], 5usize),
            (&[0x90, 0x4e][..], 10000),
            (&[0xff, 0xff, 0xff][..], MAX_TIGHT_LENGTH),
        ] {
            let mut c = Cur::new(bytes);
            assert_eq!(compact_length(&mut c).unwrap(), v);
            assert_eq!(c.remaining(), 0);
        }
        assert!(matches!(
            compact_length(&mut Cur::new(&[0x80])),
            Err(Stop::More)
        ));
    }
}
