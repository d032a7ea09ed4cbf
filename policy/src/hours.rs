//! Time windows of `rules[].hours` (`"mon-fri 08:00-18:00"`) and the fixed UTC offset of
//! `gateway.timezone_offset` they are read in.

use serde::{Serialize, Serializer};
use std::fmt;
use time::{OffsetDateTime, UtcOffset, Weekday};

/// Minutes in a day; the largest end of a window (`24:00`).
const DAY_MINUTES: u16 = 24 * 60;

/// Day names in the order of [`TimeWindow`]'s day bits (Monday first).
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Every day of the week as a day set.
const ALL_DAYS: u8 = 0b111_1111;

/// Why a time window or a UTC offset did not parse. The message quotes the text it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HoursError(String);

/// A weekly time window: some days of the week and a time of day range, such as
/// `"mon-fri 08:00-18:00"`, `"sat 10:00-12:00"` or `"22:00-06:00"` (every day).
///
/// Written as `[<days> ]<start>-<end>`:
/// - `<days>` is a comma-separated list of days (`mon`, `tue`, `wed`, `thu`, `fri`, `sat`,
///   `sun`, any case) and day ranges (`mon-fri`; `fri-mon` wraps over the weekend); left out, it
///   means every day. No day may be listed twice.
/// - `<start>` and `<end>` are `HH:MM` with two-digit hours and minutes; `24:00` is allowed as
///   an end. The window holds from `start` (included) to `end` (excluded).
/// - A window whose end is not after its start crosses midnight: `"fri 22:00-06:00"` holds from
///   Friday 22:00 to Saturday 06:00. The days name the day a window starts on.
/// - The start and end may not be the same time; `00:00-24:00` is the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeWindow {
    /// Bit `i` set: the window starts on day `i` (0 = Monday).
    days: u8,
    /// Minutes after midnight, `0..1440`.
    start: u16,
    /// Minutes after midnight, `0..=1440`; not after `start` means the window crosses midnight.
    end: u16,
}

impl TimeWindow {
    /// Parses a window (see the type's documentation for the format).
    pub fn parse(text: &str) -> Result<Self, HoursError> {
        let err = |why: String| HoursError(format!("{text:?}: {why}"));
        let mut parts = text.split_whitespace();
        let (days, times) = match (parts.next(), parts.next(), parts.next()) {
            (Some(times), None, None) => (ALL_DAYS, times),
            (Some(days), Some(times), None) => (parse_days(days).map_err(err)?, times),
            (None, ..) => {
                return Err(err(
                    "is empty; write a window such as \"mon-fri 08:00-18:00\"".to_owned(),
                ))
            }
            _ => {
                return Err(err(
                    "expected days and a time range such as \"mon-fri 08:00-18:00\", or a time range alone for every day".to_owned(),
                ))
            }
        };
        let (start, end) = times.split_once('-').ok_or_else(|| {
            err(format!(
                "{times:?} is not a time range such as \"08:00-18:00\""
            ))
        })?;
        let start = parse_time(start, false).map_err(err)?;
        let end = parse_time(end, true).map_err(err)?;
        if start == end {
            return Err(err(
                "starts and ends at the same time; write 00:00-24:00 for the whole day".to_owned(),
            ));
        }
        Ok(Self { days, start, end })
    }

    /// True when the window starts on `day`.
    pub fn starts_on(&self, day: Weekday) -> bool {
        self.days & day_bit(day) != 0
    }

    /// Start, in minutes after midnight (`0..1440`).
    pub fn start_minute(&self) -> u16 {
        self.start
    }

    /// End, in minutes after midnight (`0..=1440`); not after the start when the window
    /// crosses midnight.
    pub fn end_minute(&self) -> u16 {
        self.end
    }

    /// True when the window crosses midnight (its end is not after its start).
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }

    /// True when `at`, read in its own UTC offset (weekday, hour and minute), is inside the
    /// window. Seconds are ignored: `08:00-18:00` holds at 17:59:59 and not at 18:00:00.
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        let minute = u16::from(at.hour()) * 60 + u16::from(at.minute());
        let today = at.weekday();
        if self.crosses_midnight() {
            (self.starts_on(today) && minute >= self.start)
                || (self.starts_on(today.previous()) && minute < self.end)
        } else {
            self.starts_on(today) && minute >= self.start && minute < self.end
        }
    }
}

impl fmt::Display for TimeWindow {
    /// The canonical form: lower-case days in week order with runs as ranges (`mon-fri,sun`),
    /// left out when every day is listed, then `HH:MM-HH:MM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days != ALL_DAYS {
            let mut first = true;
            let mut i = 0;
            while i < 7 {
                if self.days & (1 << i) == 0 {
                    i += 1;
                    continue;
                }
                let mut j = i;
                while j + 1 < 7 && self.days & (1 << (j + 1)) != 0 {
                    j += 1;
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                if i == j {
                    f.write_str(DAY_NAMES[i])?;
                } else {
                    write!(f, "{}-{}", DAY_NAMES[i], DAY_NAMES[j])?;
                }
                i = j + 1;
            }
            f.write_str(" ")?;
        }
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

impl Serialize for TimeWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn day_bit(day: Weekday) -> u8 {
    1 << day.number_days_from_monday()
}

fn parse_day(name: &str) -> Result<usize, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            format!("unknown day {name:?} (expected mon, tue, wed, thu, fri, sat or sun)")
        })
}

fn parse_days(text: &str) -> Result<u8, String> {
    let mut days = 0u8;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!(
                "{text:?} has an empty entry; separate days with single commas, e.g. \"mon,wed-fri\""
            ));
        }
        let (from, to) = match item.split_once('-') {
            Some((a, b)) => (parse_day(a)?, parse_day(b)?),
            None => {
                let d = parse_day(item)?;
                (d, d)
            }
        };
        let mut d = from;
        loop {
            let bit = 1u8 << d;
            if days & bit != 0 {
                return Err(format!("{} is listed twice", DAY_NAMES[d]));
            }
            days |= bit;
            if d == to {
                break;
            }
            d = (d + 1) % 7;
        }
    }
    Ok(days)
}

/// `HH:MM` as minutes after midnight; `24:00` only when `is_end`.
fn parse_time(text: &str, is_end: bool) -> Result<u16, String> {
    let b = text.as_bytes();
    let digits_ok =
        b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
    if !digits_ok {
        return Err(format!(
            "{text:?} is not a time written HH:MM with two-digit hours and minutes (e.g. \"08:00\")"
        ));
    }
    let hour = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let minute = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    let value = hour * 60 + minute;
    let in_day = hour < 24 && minute < 60;
    if in_day || (is_end && value == DAY_MINUTES) {
        Ok(value)
    } else if is_end {
        Err(format!(
            "{text:?} is not a time of day (00:00 to 23:59, or 24:00 as an end)"
        ))
    } else {
        Err(format!("{text:?} is not a time of day (00:00 to 23:59)"))
    }
}

/// Parses a fixed UTC offset written `+HH:MM` or `-HH:MM` (`"+00:00"`, `"+02:00"`,
/// `"-05:30"`), hours 00..=23 and minutes 00..=59.
pub fn parse_utc_offset(text: &str) -> Result<UtcOffset, HoursError> {
    let bad = || {
        HoursError(format!(
            "{text:?} is not a UTC offset written +HH:MM or -HH:MM, such as \"+00:00\", \"+02:00\" or \"-05:30\""
        ))
    };
    let b = text.as_bytes();
    if b.len() != 6
        || !matches!(b[0], b'+' | b'-')
        || b[3] != b':'
        || ![1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit())
    {
        return Err(bad());
    }
    let hours = (b[1] - b'0') * 10 + (b[2] - b'0');
    let minutes = (b[4] - b'0') * 10 + (b[5] - b'0');
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    let sign: i8 = if b[0] == b'-' { -1 } else { 1 };
    // Both fit i8 and are within the range `time` accepts (±25:59:59).
    let (h, m) = (sign * hours as i8, sign * minutes as i8);
    UtcOffset::from_hms(h, m, 0).map_err(|_| bad())
}

/// `+HH:MM` / `-HH:MM`, the form [`parse_utc_offset`] reads.
pub(crate) fn format_utc_offset(offset: UtcOffset) -> String {
    let (h, m, _) = offset.as_hms();
    let sign = if h < 0 || m < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

/// Serialises a UTC offset as [`format_utc_offset`] writes it.
pub(crate) fn serialize_utc_offset<S: Serializer>(
    offset: &UtcOffset,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_utc_offset(*offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_round_trip() {
        for (text, canon) in [
            ("mon-fri 08:00-18:00", "mon-fri 08:00-18:00"),
            ("Sat 10:00-12:00", "sat 10:00-12:00"),
            ("22:00-06:00", "22:00-06:00"),
            ("mon-sun 00:00-24:00", "00:00-24:00"),
            ("fri-mon 09:00-17:00", "mon,fri-sun 09:00-17:00"),
            ("sun,mon,wed 01:00-02:00", "mon,wed,sun 01:00-02:00"),
            ("  tue   23:30-00:00 ", "tue 23:30-00:00"),
        ] {
            let w = TimeWindow::parse(text).unwrap();
            assert_eq!(w.to_string(), canon, "{text}");
            assert_eq!(TimeWindow::parse(canon), Ok(w), "{text}");
        }
    }

    #[test]
    fn bad_windows_say_why() {
        for (text, fragment) in [
            ("", "is empty"),
            ("mon fri 08:00-18:00", "expected days and a time range"),
            ("mon-fry 08:00-18:00", "unknown day \"fry\""),
            ("mon 8:00-18:00", "\"8:00\" is not a time written HH:MM"),
            ("mon 08:00", "is not a time range"),
            ("08:00-25:00", "\"25:00\" is not a time of day"),
            (
                "24:00-06:00",
                "\"24:00\" is not a time of day (00:00 to 23:59)",
            ),
            ("08:60-09:00", "\"08:60\" is not a time of day"),
            ("08:00-08:00", "same time"),
            ("mon-fri,wed 08:00-09:00", "wed is listed twice"),
            ("mon,,tue 08:00-09:00", "empty entry"),
            ("0８:00-09:00", "is not a time written HH:MM"),
        ] {
            let e = TimeWindow::parse(text).unwrap_err().to_string();
            assert!(e.contains(fragment), "{text}: {e}");
        }
    }

    #[test]
    fn offsets() {
        for (text, secs) in [
            ("+00:00", 0),
            ("+02:00", 7200),
            ("-05:30", -19800),
            ("+23:59", 86_340),
        ] {
            let o = parse_utc_offset(text).unwrap();
            assert_eq!(o.whole_seconds(), secs, "{text}");
            assert_eq!(format_utc_offset(o), text);
        }
        assert_eq!(format_utc_offset(UtcOffset::UTC), "+00:00");
        for bad in [
            "", "Z", "UTC", "+2:00", "+02", "+0200", "02:00", "+24:00", "+02:60", "−02:00",
        ] {
            assert!(parse_utc_offset(bad).is_err(), "{bad}");
        }
    }
}
