//! RFB pixel formats and conversion of wire pixels to `0x00RRGGBB`.
//!
//! [`PixelFormat`] is the 16-byte PIXEL_FORMAT structure wherever it appears on the wire: in
//! the handshake's ServerInit ([`crate::vnc_handshake::ServerInit`]) and in SetPixelFormat. It
//! has two checks:
//!
//! * [`PixelFormat::validate_for_handshake`]: what a ServerInit may carry. Colour-map formats
//!   are allowed there (psmgate then switches the session to true colour).
//! * [`PixelFormat::validate_for_decoder`]: what psmgate's decoder reads. True colour only.
//!
//! psmgate asks the target for [`PixelFormat::FORCED`] (32 bits per pixel, depth 24,
//! little-endian, true colour, shifts 16/8/0), but decoding works for any true-colour format a
//! viewer may negotiate, so a viewer's own SetPixelFormat can be passed through unchanged.
//! Colour-map formats are refused by the decoder: psmgate never lets one reach the target.

use super::error::RfbError;

/// The 16-byte PIXEL_FORMAT structure of RFC 6143 §7.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PixelFormat {
    /// Bits per pixel on the wire: 8, 16 or 32.
    pub bits_per_pixel: u8,
    /// Significant bits.
    pub depth: u8,
    /// Multi-byte pixels are big-endian.
    pub big_endian: bool,
    /// True colour (otherwise colour-map indices).
    pub true_colour: bool,
    /// Largest red value.
    pub red_max: u16,
    /// Largest green value.
    pub green_max: u16,
    /// Largest blue value.
    pub blue_max: u16,
    /// Red position in the pixel value.
    pub red_shift: u8,
    /// Green position in the pixel value.
    pub green_shift: u8,
    /// Blue position in the pixel value.
    pub blue_shift: u8,
}

/// Length of the serialised PIXEL_FORMAT.
pub const PIXEL_FORMAT_LEN: usize = 16;

/// Why a [`PixelFormat`] is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PixelFormatError {
    /// Colour-map formats cannot be decoded.
    #[error("colour-map formats are not supported")]
    ColourMap,
    /// Bits per pixel other than 8, 16 or 32.
    #[error("{0} bits per pixel")]
    BitsPerPixel(u8),
    /// Depth zero or above the bits per pixel.
    #[error("depth {depth} with {bits_per_pixel} bits per pixel")]
    Depth {
        /// The depth.
        depth: u8,
        /// The bits per pixel.
        bits_per_pixel: u8,
    },
    /// A colour channel with maximum zero (the decoder scales by the maximum).
    #[error("{0} maximum is zero")]
    ZeroMaximum(&'static str),
    /// A colour channel does not fit the pixel at its shift.
    #[error("{channel} channel (max {max}, shift {shift}) exceeds {bits_per_pixel} bits")]
    ChannelOutside {
        /// `"red"`, `"green"` or `"blue"`.
        channel: &'static str,
        /// The channel's maximum.
        max: u16,
        /// The channel's shift.
        shift: u8,
        /// The bits per pixel.
        bits_per_pixel: u8,
    },
}

impl PixelFormat {
    /// The format psmgate requests from targets: 32bpp, depth 24, little-endian, true colour,
    /// red/green/blue at shifts 16/8/0, so a pixel is `0x00RRGGBB` as four bytes B, G, R, 0.
    pub const FORCED: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// Reads the 16-byte wire form (padding ignored; flags are true when non-zero). Any byte
    /// pattern parses; see [`PixelFormat::validate_for_handshake`] and
    /// [`PixelFormat::validate_for_decoder`].
    pub fn from_bytes(b: &[u8; PIXEL_FORMAT_LEN]) -> Self {
        PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    /// The 16-byte wire form (padding zeroed).
    pub fn to_bytes(&self) -> [u8; PIXEL_FORMAT_LEN] {
        let [rh, rl] = self.red_max.to_be_bytes();
        let [gh, gl] = self.green_max.to_be_bytes();
        let [bh, bl] = self.blue_max.to_be_bytes();
        [
            self.bits_per_pixel,
            self.depth,
            u8::from(self.big_endian),
            u8::from(self.true_colour),
            rh,
            rl,
            gh,
            gl,
            bh,
            bl,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
            0,
            0,
            0,
        ]
    }

    /// Bytes per pixel on the wire.
    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Checks what a handshake may carry (the ServerInit of a target): 8, 16 or 32 bits per
    /// pixel, depth 1..=bits per pixel and, for true colour, channels that fit the pixel at
    /// their shifts. Colour-map formats are allowed; see [`PixelFormat::validate_for_decoder`]
    /// for what psmgate can decode.
    pub fn validate_for_handshake(&self) -> Result<(), PixelFormatError> {
        self.check_layout(false)
    }

    /// Checks that pixels in this format can be decoded: true colour, 8/16/32 bits per pixel,
    /// depth 1..=bits per pixel, non-zero channel maxima that fit the pixel at their shifts.
    /// Every format accepted here is also accepted by [`PixelFormat::validate_for_handshake`].
    pub fn validate_for_decoder(&self) -> Result<(), PixelFormatError> {
        if !self.true_colour {
            return Err(PixelFormatError::ColourMap);
        }
        self.check_layout(true)
    }

    /// The checks both validations share; channels are checked for true colour only, and with
    /// `nonzero_maxima` a zero channel maximum is refused.
    fn check_layout(&self, nonzero_maxima: bool) -> Result<(), PixelFormatError> {
        if !matches!(self.bits_per_pixel, 8 | 16 | 32) {
            return Err(PixelFormatError::BitsPerPixel(self.bits_per_pixel));
        }
        if self.depth == 0 || self.depth > self.bits_per_pixel {
            return Err(PixelFormatError::Depth {
                depth: self.depth,
                bits_per_pixel: self.bits_per_pixel,
            });
        }
        if !self.true_colour {
            return Ok(());
        }
        for (channel, max, shift) in [
            ("red", self.red_max, self.red_shift),
            ("green", self.green_max, self.green_shift),
            ("blue", self.blue_max, self.blue_shift),
        ] {
            if nonzero_maxima && max == 0 {
                return Err(PixelFormatError::ZeroMaximum(channel));
            }
            let top = u32::from(shift) + (16 - max.leading_zeros());
            if top > u32::from(self.bits_per_pixel) {
                return Err(PixelFormatError::ChannelOutside {
                    channel,
                    max,
                    shift,
                    bits_per_pixel: self.bits_per_pixel,
                });
            }
        }
        Ok(())
    }
}

/// Where the 3-byte compressed pixel (ZRLE/TRLE `CPIXEL`) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CPixel {
    /// Same as a full pixel.
    Full,
    /// Three bytes; the dropped byte of the 4-byte pixel is at this wire index.
    Drop(usize),
}

/// Converts wire pixels of one validated [`PixelFormat`] to `0x00RRGGBB`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PixelReader {
    format: PixelFormat,
    bpp: usize,
    cpixel: CPixel,
    tpixel_rgb: bool,
    plain_8bit: bool,
}

impl PixelReader {
    /// A reader for `format`, which must be valid.
    pub(crate) fn new(format: PixelFormat) -> Result<Self, RfbError> {
        format.validate_for_decoder()?;
        let mask = (u64::from(format.red_max) << format.red_shift)
            | (u64::from(format.green_max) << format.green_shift)
            | (u64::from(format.blue_max) << format.blue_shift);
        let cpixel = if format.bits_per_pixel == 32 && format.depth <= 24 {
            if mask < 1 << 24 {
                // Most significant byte unused.
                CPixel::Drop(if format.big_endian { 0 } else { 3 })
            } else if mask & 0xff == 0 {
                // Least significant byte unused.
                CPixel::Drop(if format.big_endian { 3 } else { 0 })
            } else {
                CPixel::Full
            }
        } else {
            CPixel::Full
        };
        let all_255 = format.red_max == 255 && format.green_max == 255 && format.blue_max == 255;
        Ok(PixelReader {
            format,
            bpp: format.bytes_per_pixel(),
            cpixel,
            tpixel_rgb: format.bits_per_pixel == 32 && format.depth == 24 && all_255,
            plain_8bit: all_255,
        })
    }

    /// The format being read.
    pub(crate) fn format(&self) -> &PixelFormat {
        &self.format
    }

    /// Bytes of a `PIXEL`.
    pub(crate) fn bpp(&self) -> usize {
        self.bpp
    }

    /// Bytes of a ZRLE/TRLE `CPIXEL`.
    pub(crate) fn cpixel_len(&self) -> usize {
        match self.cpixel {
            CPixel::Full => self.bpp,
            CPixel::Drop(_) => 3,
        }
    }

    /// Bytes of a Tight `TPIXEL`.
    pub(crate) fn tpixel_len(&self) -> usize {
        if self.tpixel_rgb {
            3
        } else {
            self.bpp
        }
    }

    /// True when Tight's `TPIXEL` is three bytes R, G, B.
    pub(crate) fn tpixel_is_rgb(&self) -> bool {
        self.tpixel_rgb
    }

    /// The raw pixel value of `b` (exactly [`PixelReader::bpp`] bytes).
    pub(crate) fn value(&self, b: &[u8]) -> u32 {
        match (b.len(), self.format.big_endian) {
            (1, _) => u32::from(b[0]),
            (2, false) => u32::from(u16::from_le_bytes([b[0], b[1]])),
            (2, true) => u32::from(u16::from_be_bytes([b[0], b[1]])),
            (4, false) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (4, true) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            _ => 0,
        }
    }

    /// The red, green and blue fields of a raw pixel value, unscaled.
    pub(crate) fn components(&self, v: u32) -> [u32; 3] {
        let f = &self.format;
        [
            v.checked_shr(u32::from(f.red_shift)).unwrap_or(0) & u32::from(f.red_max),
            v.checked_shr(u32::from(f.green_shift)).unwrap_or(0) & u32::from(f.green_max),
            v.checked_shr(u32::from(f.blue_shift)).unwrap_or(0) & u32::from(f.blue_max),
        ]
    }

    /// Channel maxima, in red, green, blue order.
    pub(crate) fn maxima(&self) -> [u32; 3] {
        let f = &self.format;
        [
            u32::from(f.red_max),
            u32::from(f.green_max),
            u32::from(f.blue_max),
        ]
    }

    /// Unscaled components to `0x00RRGGBB`.
    pub(crate) fn rgb_from_components(&self, c: [u32; 3]) -> u32 {
        if self.plain_8bit {
            return (c[0] << 16) | (c[1] << 8) | c[2];
        }
        let m = self.maxima();
        let scale = |v: u32, max: u32| (v.min(max) * 255 + max / 2) / max;
        (scale(c[0], m[0]) << 16) | (scale(c[1], m[1]) << 8) | scale(c[2], m[2])
    }

    /// A raw pixel value to `0x00RRGGBB`.
    pub(crate) fn rgb(&self, v: u32) -> u32 {
        self.rgb_from_components(self.components(v))
    }

    /// A `PIXEL` (exactly [`PixelReader::bpp`] bytes) to `0x00RRGGBB`.
    pub(crate) fn pixel(&self, b: &[u8]) -> u32 {
        self.rgb(self.value(b))
    }

    /// A `CPIXEL` (exactly [`PixelReader::cpixel_len`] bytes) to `0x00RRGGBB`.
    pub(crate) fn cpixel(&self, b: &[u8]) -> u32 {
        match self.cpixel {
            CPixel::Full => self.pixel(b),
            CPixel::Drop(at) => {
                let mut full = [0u8; 4];
                let mut src = b.iter();
                for (i, byte) in full.iter_mut().enumerate() {
                    if i != at {
                        *byte = src.next().copied().unwrap_or(0);
                    }
                }
                self.pixel(&full)
            }
        }
    }

    /// A `TPIXEL` (exactly [`PixelReader::tpixel_len`] bytes) to `0x00RRGGBB`.
    pub(crate) fn tpixel(&self, b: &[u8]) -> u32 {
        if self.tpixel_rgb {
            match b {
                [r, g, bl, ..] => (u32::from(*r) << 16) | (u32::from(*g) << 8) | u32::from(*bl),
                _ => 0,
            }
        } else {
            self.pixel(b)
        }
    }

    /// Converts consecutive `PIXEL`s into `out` (one value per pixel).
    pub(crate) fn pixels_into(&self, bytes: &[u8], out: &mut Vec<u32>) {
        out.clear();
        out.extend(bytes.chunks_exact(self.bpp).map(|p| self.pixel(p)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forced_format_round_trips_and_reads_bgr0() {
        let b = PixelFormat::FORCED.to_bytes();
        assert_eq!(b, [32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
        assert_eq!(PixelFormat::from_bytes(&b), PixelFormat::FORCED);
        let r = PixelReader::new(PixelFormat::FORCED).unwrap();
        assert_eq!(r.pixel(&[0x33, 0x22, 0x11, 0xee]), 0x112233);
        assert_eq!(r.cpixel_len(), 3);
        assert_eq!(r.cpixel(&[0x33, 0x22, 0x11]), 0x112233);
        assert_eq!(r.tpixel(&[0x11, 0x22, 0x33]), 0x112233);
    }

    #[test]
    fn other_true_colour_formats_decode() {
        // noVNC's choice: red at shift 0, little-endian.
        let rgbx = PixelFormat {
            red_shift: 0,
            blue_shift: 16,
            ..PixelFormat::FORCED
        };
        let r = PixelReader::new(rgbx).unwrap();
        assert_eq!(r.pixel(&[0x11, 0x22, 0x33, 0]), 0x112233);
        // Big-endian with the colour in the top three bytes: CPIXEL drops the last byte.
        let be = PixelFormat {
            big_endian: true,
            red_shift: 24,
            green_shift: 16,
            blue_shift: 8,
            ..PixelFormat::FORCED
        };
        let r = PixelReader::new(be).unwrap();
        assert_eq!(r.pixel(&[0x11, 0x22, 0x33, 0]), 0x112233);
        assert_eq!(r.cpixel(&[0x11, 0x22, 0x33]), 0x112233);
        // RGB565 big-endian: full white and pure red scale to 8 bits.
        let rgb565 = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            true_colour: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        };
        let r = PixelReader::new(rgb565).unwrap();
        assert_eq!(r.pixel(&[0xff, 0xff]), 0xffffff);
        assert_eq!(r.pixel(&[0xf8, 0x00]), 0xff0000);
        assert_eq!(r.cpixel_len(), 2);
        assert_eq!(r.tpixel_len(), 2);
    }

    #[test]
    fn invalid_formats_are_refused() {
        let bad = [
            PixelFormat {
                true_colour: false,
                ..PixelFormat::FORCED
            },
            PixelFormat {
                bits_per_pixel: 24,
                ..PixelFormat::FORCED
            },
            PixelFormat {
                red_max: 0,
                ..PixelFormat::FORCED
            },
            PixelFormat {
                red_shift: 30,
                ..PixelFormat::FORCED
            },
            PixelFormat {
                depth: 0,
                ..PixelFormat::FORCED
            },
        ];
        for f in bad {
            assert!(PixelReader::new(f).is_err(), "{f:?}");
        }
    }

    #[test]
    fn handshake_check_allows_colour_maps_and_refuses_bad_shapes() {
        let pf = PixelFormat::FORCED;
        assert_eq!(PixelFormat::from_bytes(&pf.to_bytes()), pf);
        assert_eq!(pf.validate_for_handshake(), Ok(()));
        assert_eq!(pf.validate_for_decoder(), Ok(()));
        let rgb565 = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
            ..pf
        };
        assert_eq!(rgb565.validate_for_handshake(), Ok(()));
        assert_eq!(rgb565.validate_for_decoder(), Ok(()));
        // A ServerInit may carry a colour map (with any maxima and shifts) and zero maxima; the
        // decoder refuses both.
        let colour_map = PixelFormat {
            bits_per_pixel: 8,
            depth: 8,
            true_colour: false,
            red_shift: 200,
            ..pf
        };
        assert_eq!(colour_map.validate_for_handshake(), Ok(()));
        assert_eq!(
            colour_map.validate_for_decoder(),
            Err(PixelFormatError::ColourMap)
        );
        let zero_blue = PixelFormat { blue_max: 0, ..pf };
        assert_eq!(zero_blue.validate_for_handshake(), Ok(()));
        assert_eq!(
            zero_blue.validate_for_decoder(),
            Err(PixelFormatError::ZeroMaximum("blue"))
        );
        // Shapes both refuse.
        assert_eq!(
            PixelFormat {
                bits_per_pixel: 24,
                ..pf
            }
            .validate_for_handshake(),
            Err(PixelFormatError::BitsPerPixel(24))
        );
        assert_eq!(
            PixelFormat { depth: 0, ..pf }.validate_for_handshake(),
            Err(PixelFormatError::Depth {
                depth: 0,
                bits_per_pixel: 32
            })
        );
        let shifted = PixelFormat {
            red_shift: 30,
            ..pf
        };
        assert_eq!(
            shifted.validate_for_handshake(),
            Err(PixelFormatError::ChannelOutside {
                channel: "red",
                max: 255,
                shift: 30,
                bits_per_pixel: 32
            })
        );
        assert_eq!(
            shifted.validate_for_handshake().unwrap_err().to_string(),
            "red channel (max 255, shift 30) exceeds 32 bits"
        );
        assert!(shifted.validate_for_decoder().is_err());
        let colour_map_24 = PixelFormat {
            bits_per_pixel: 24,
            ..colour_map
        };
        assert!(colour_map_24.validate_for_handshake().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The wire form round-trips once padding is zeroed and flags are 0 or 1.
        #[test]
        fn bytes_round_trip(mut b in any::<[u8; PIXEL_FORMAT_LEN]>()) {
            let pf = PixelFormat::from_bytes(&b);
            b[2] = u8::from(b[2] != 0);
            b[3] = u8::from(b[3] != 0);
            b[13..].fill(0);
            prop_assert_eq!(pf.to_bytes(), b);
            prop_assert_eq!(PixelFormat::from_bytes(&pf.to_bytes()), pf);
        }

        /// Whatever the decoder accepts, a handshake may carry; the decoder accepts exactly the
        /// true-colour formats with non-zero maxima among those, and reads any bytes in them
        /// without panicking.
        #[test]
        fn decoder_formats_are_handshake_formats(
            b in any::<[u8; PIXEL_FORMAT_LEN]>(),
            pixels in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let pf = PixelFormat::from_bytes(&b);
            let handshake = pf.validate_for_handshake().is_ok();
            let decoder = pf.validate_for_decoder().is_ok();
            let nonzero = pf.red_max != 0 && pf.green_max != 0 && pf.blue_max != 0;
            prop_assert_eq!(decoder, handshake && pf.true_colour && nonzero);
            prop_assert_eq!(PixelReader::new(pf).is_ok(), decoder);
            if let Ok(r) = PixelReader::new(pf) {
                let mut out = Vec::new();
                r.pixels_into(&pixels, &mut out);
                prop_assert_eq!(out.len(), pixels.len() / r.bpp());
                prop_assert!(out.iter().all(|&v| v <= 0xff_ffff));
                for chunk in pixels.chunks_exact(r.cpixel_len()) {
                    prop_assert!(r.cpixel(chunk) <= 0xff_ffff);
                }
                for chunk in pixels.chunks_exact(r.tpixel_len()) {
                    prop_assert!(r.tpixel(chunk) <= 0xff_ffff);
                }
            }
        }
    }
}
