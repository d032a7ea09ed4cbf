//! Screen regions blacked out before encoding.

use serde::{Serialize, Serializer};
use std::fmt;

/// One coordinate or length of a mask: absolute pixels or a percentage of the screen side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dim {
    /// Absolute pixels (written as an integer, or `"120px"`).
    Px(u32),
    /// Percent of the screen width (for `x`, `width`) or height (for `y`, `height`), written `"25%"`.
    Percent(f32),
}

/// Why a mask coordinate did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a pixel count (e.g. 120 or \"120px\") nor a percentage (e.g. \"25%\")")]
pub struct DimError(pub String);

impl Dim {
    /// Parses `"25%"`, `"12.5%"`, `"120px"` or `"120"`.
    pub fn parse(text: &str) -> Result<Self, DimError> {
        let t = text.trim();
        let bad = || DimError(text.to_owned());
        if let Some(p) = t.strip_suffix('%') {
            let p = p.trim_end();
            // Digits and at most one dot; rejects "inf", "nan", exponents and signs.
            if p.is_empty()
                || !p.chars().all(|c| c.is_ascii_digit() || c == '.')
                || p.matches('.').count() > 1
                || p == "."
            {
                return Err(bad());
            }
            return p.parse::<f32>().map(Dim::Percent).map_err(|_| bad());
        }
        let n = t.strip_suffix("px").map(str::trim_end).unwrap_or(t);
        if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        n.parse::<u32>().map(Dim::Px).map_err(|_| bad())
    }

    /// This value in pixels on a side of `screen_len` pixels, rounded down and clamped to it.
    pub fn resolve(&self, screen_len: u32) -> u32 {
        match *self {
            Dim::Px(v) => v.min(screen_len),
            Dim::Percent(_) => (self.exact(screen_len).floor() as u32).min(screen_len),
        }
    }

    /// The unrounded pixel value (percentages are clamped to 0..=100).
    fn exact(&self, screen_len: u32) -> f64 {
        match *self {
            Dim::Px(v) => f64::from(v),
            Dim::Percent(p) => {
                let p = if p.is_finite() {
                    f64::from(p).clamp(0.0, 100.0)
                } else {
                    0.0
                };
                p * f64::from(screen_len) / 100.0
            }
        }
    }

    /// True for a zero length.
    pub fn is_zero(&self) -> bool {
        match *self {
            Dim::Px(v) => v == 0,
            Dim::Percent(p) => p == 0.0,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Px(v) => write!(f, "{v}"),
            Dim::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Dim {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Dim::Px(v) => s.serialize_u32(v),
            Dim::Percent(_) => s.collect_str(self),
        }
    }
}

/// A named screen region that is blacked out in every recorded frame of a target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaskRegion {
    /// Rule id, unique within the target; recorded in the manifest's `mask_rule_ids`.
    pub id: String,
    /// Left edge.
    pub x: Dim,
    /// Top edge.
    pub y: Dim,
    /// Width.
    pub width: Dim,
    /// Height.
    pub height: Dim,
}

impl MaskRegion {
    /// The region in pixels `(x, y, w, h)` on a `screen_w`×`screen_h` screen, clipped to it.
    ///
    /// Edges given in percent round outward (start down, end up) so the mask never covers less
    /// than asked. A region entirely off screen resolves to a zero-sized rectangle.
    pub fn resolve(&self, screen_w: u32, screen_h: u32) -> (u32, u32, u32, u32) {
        let (x, w) = span(self.x, self.width, screen_w);
        let (y, h) = span(self.y, self.height, screen_h);
        (x, y, w, h)
    }
}

/// Start and length along one axis, rounded outward and clipped to `0..len`.
fn span(start: Dim, size: Dim, len: u32) -> (u32, u32) {
    let s = start.exact(len);
    let e = s + size.exact(len);
    let s0 = (s.floor().max(0.0) as u64).min(u64::from(len)) as u32;
    let e0 = (e.ceil().max(0.0) as u64).min(u64::from(len)) as u32;
    (s0, e0.saturating_sub(s0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_parse() {
        assert_eq!(Dim::parse("25%"), Ok(Dim::Percent(25.0)));
        assert_eq!(Dim::parse("12.5 %"), Ok(Dim::Percent(12.5)));
        assert_eq!(Dim::parse("120px"), Ok(Dim::Px(120)));
        assert_eq!(Dim::parse("120"), Ok(Dim::Px(120)));
        for bad in [
            "",
            "%",
            "-5%",
            "nan%",
            "inf%",
            "1e3%",
            "1.2.3%",
            "abc",
            "-3",
            ".%",
            "99999999999",
        ] {
            assert!(Dim::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dims_resolve() {
        assert_eq!(Dim::Percent(50.0).resolve(1001), 500);
        assert_eq!(Dim::Px(5000).resolve(1920), 1920);
        assert_eq!(Dim::Percent(100.0).resolve(1080), 1080);
    }

    #[test]
    fn regions_round_outward_and_clip() {
        let m = MaskRegion {
            id: "a".into(),
            x: Dim::Percent(75.0),
            y: Dim::Px(0),
            width: Dim::Percent(25.0),
            height: Dim::Percent(20.0),
        };
        assert_eq!(m.resolve(1920, 1080), (1440, 0, 480, 216));
        assert_eq!(m.resolve(1001, 101), (750, 0, 251, 21));
        let off = MaskRegion {
            x: Dim::Px(100),
            y: Dim::Px(200),
            width: Dim::Px(300),
            height: Dim::Px(150),
            ..m
        };
        assert_eq!(off.resolve(250, 1000), (100, 200, 150, 150));
        assert_eq!(off.resolve(50, 100), (50, 100, 0, 0));
    }
}
