//! Durations and byte sizes written the way people write them: `"500ms"`, `"5m"`, `"2MiB"`.

use serde::{Serialize, Serializer};
use std::fmt;

/// Why a duration or size did not parse. The message never repeats more than the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The text is empty.
    #[error("is empty")]
    Empty,
    /// A number is missing its unit or the unit is not known.
    #[error("{0:?} has no known unit (expected {1})")]
    BadUnit(String, &'static str),
    /// A number could not be read.
    #[error("{0:?} is not a number followed by a unit")]
    BadNumber(String),
    /// The value does not fit.
    #[error("{0:?} is too large")]
    Overflow(String),
}

const DURATION_UNITS: &str = "ms, s, m, h or d, e.g. \"500ms\", \"10s\", \"5m\", \"1h30m\"";
const SIZE_UNITS: &str = "B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, e.g. \"512KiB\", \"2MiB\"";

/// A span of time with millisecond resolution.
///
/// Written as one or more `<integer><unit>` parts with units `ms`, `s`, `m`, `h`, `d`
/// (`"500ms"`, `"10s"`, `"5m"`, `"1h30m"`). Bare numbers are rejected because their unit would be
/// a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    /// Whole milliseconds.
    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// The standard library value.
    pub const fn get(&self) -> std::time::Duration {
        self.0
    }

    /// Parses `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"2d"` or compounds such as `"1h30m"`.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(UnitError::Empty);
        }
        let mut total: u64 = 0;
        let mut rest = t;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(UnitError::BadNumber(text.to_owned()));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| UnitError::Overflow(text.to_owned()))?;
            rest = rest[digits..].trim_start();
            let unit_len = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(UnitError::BadUnit(text.to_owned(), DURATION_UNITS)),
            };
            rest = rest[unit_len..].trim_start();
            total = n
                .checked_mul(factor)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| UnitError::Overflow(text.to_owned()))?;
        }
        Ok(Self::from_millis(total))
    }
}

impl fmt::Display for Duration {
    /// The canonical form: largest units first, e.g. `1h30m`, `2s500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A number of bytes.
///
/// Written as an integer (bytes) or a string `<integer>[ ]<unit>` with decimal (`KB`, `MB`, `GB`,
/// `TB`, powers of 1000) or binary (`KiB`, `MiB`, `GiB`, `TiB`, powers of 1024) units, or `B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The number of bytes.
    pub const fn bytes(&self) -> u64 {
        self.0
    }

    /// Parses `"512KiB"`, `"2MiB"`, `"1GB"`, `"100B"` or a bare integer number of bytes.
    pub fn parse(text: &str) -> Result<Self, UnitError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(UnitError::Empty);
        }
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        if digits == 0 {
            return Err(UnitError::BadNumber(text.to_owned()));
        }
        let n: u64 = t[..digits]
            .parse()
            .map_err(|_| UnitError::Overflow(text.to_owned()))?;
        let unit = t[digits..].trim_start();
        let factor: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(UnitError::BadUnit(text.to_owned(), SIZE_UNITS)),
        };
        n.checked_mul(factor)
            .map(Self)
            .ok_or_else(|| UnitError::Overflow(text.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides exactly, else a decimal one, else bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n > 0 {
            for (unit, size) in [
                ("TiB", 1u64 << 40),
                ("GiB", 1 << 30),
                ("MiB", 1 << 20),
                ("KiB", 1 << 10),
            ] {
                if n.is_multiple_of(size) {
                    return write!(f, "{}{unit}", n / size);
                }
            }
            for (unit, size) in [
                ("TB", 1_000_000_000_000u64),
                ("GB", 1_000_000_000),
                ("MB", 1_000_000),
                ("KB", 1_000),
            ] {
                if n.is_multiple_of(size) {
                    return write!(f, "{}{unit}", n / size);
                }
            }
        }
        write!(f, "{n}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_canonically() {
        for (text, ms, canon) in [
            ("500ms", 500, "500ms"),
            ("10s", 10_000, "10s"),
            ("5m", 300_000, "5m"),
            ("1h", 3_600_000, "1h"),
            ("1h30m", 5_400_000, "1h30m"),
            ("90s", 90_000, "1m30s"),
            ("2d", 172_800_000, "2d"),
            (" 1s 500ms ", 1_500, "1s500ms"),
            ("0s", 0, "0s"),
        ] {
            let d = Duration::parse(text).unwrap();
            assert_eq!(d.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), canon, "{text}");
            assert_eq!(Duration::parse(canon).unwrap(), d);
        }
    }

    #[test]
    fn bad_durations_are_rejected() {
        assert_eq!(Duration::parse(""), Err(UnitError::Empty));
        assert!(matches!(Duration::parse("10"), Err(UnitError::BadUnit(..))));
        assert!(matches!(
            Duration::parse("10 parsecs"),
            Err(UnitError::BadUnit(..))
        ));
        assert!(matches!(
            Duration::parse("m5"),
            Err(UnitError::BadNumber(..))
        ));
        assert!(matches!(
            Duration::parse("-5s"),
            Err(UnitError::BadNumber(..))
        ));
        assert!(matches!(
            Duration::parse("99999999999999999999s"),
            Err(UnitError::Overflow(..))
        ));
        assert!(matches!(
            Duration::parse("999999999999999999d"),
            Err(UnitError::Overflow(..))
        ));
    }

    #[test]
    fn sizes_parse_and_print_canonically() {
        for (text, bytes, canon) in [
            ("512KiB", 524_288, "512KiB"),
            ("2MiB", 2 * 1024 * 1024, "2MiB"),
            ("1GB", 1_000_000_000, "1GB"),
            ("10 mb", 10_000_000, "10MB"),
            ("100", 100, "100B"),
            ("1500B", 1500, "1500B"),
            ("0", 0, "0B"),
        ] {
            let s = ByteSize::parse(text).unwrap();
            assert_eq!(s.bytes(), bytes, "{text}");
            assert_eq!(s.to_string(), canon, "{text}");
        }
        assert!(matches!(
            ByteSize::parse("2 furlongs"),
            Err(UnitError::BadUnit(..))
        ));
        assert!(matches!(
            ByteSize::parse("MiB"),
            Err(UnitError::BadNumber(..))
        ));
        assert!(matches!(
            ByteSize::parse("99999999TiB"),
            Err(UnitError::Overflow(..))
        ));
    }
}
