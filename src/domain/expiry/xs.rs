//! The lexical forms of XML Schema's `xs:duration` and `xs:dateTime`, checked by hand: jiff
//! parses far more than XML Schema allows (`P1W`, lowercase designators, commas), so only the
//! arithmetic is left to it.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};

use super::ExpiryError;

/// A lexically valid `xs:duration`, kept component by component so calendar units stay calendar
/// units (`P1M` from 31 January is the end of February, not 30 days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XsDuration {
    /// A leading minus sign.
    pub negative: bool,
    /// The `Y` component.
    pub years: u64,
    /// The `M` component before `T`.
    pub months: u64,
    /// The `D` component.
    pub days: u64,
    /// The `H` component.
    pub hours: u64,
    /// The `M` component after `T`.
    pub minutes: u64,
    /// Whole seconds of the `S` component.
    pub seconds: u64,
    /// Fractional seconds of the `S` component, in nanoseconds (digits past the ninth dropped).
    pub nanos: u32,
}

impl XsDuration {
    /// Parses the lexical form `-?PnYnMnDTnHnMnS` as XML Schema defines it: upper-case
    /// designators in this order, at least one component, and a `T` only before time components.
    pub fn parse(text: &str) -> Option<XsDuration> {
        let mut rest = text.as_bytes();
        let mut out = XsDuration {
            negative: false,
            years: 0,
            months: 0,
            days: 0,
            hours: 0,
            minutes: 0,
            seconds: 0,
            nanos: 0,
        };
        if let [b'-', tail @ ..] = rest {
            out.negative = true;
            rest = tail;
        }
        rest = rest.strip_prefix(b"P")?;
        let mut components = 0;
        // Date part: each designator at most once and in order Y, M, D.
        let mut order = 0;
        while !rest.is_empty() && rest[0] != b'T' {
            let (value, after) = take_digits(rest)?;
            let (&designator, after) = after.split_first()?;
            let slot = match designator {
                b'Y' if order < 1 => {
                    order = 1;
                    &mut out.years
                }
                b'M' if order < 2 => {
                    order = 2;
                    &mut out.months
                }
                b'D' if order < 3 => {
                    order = 3;
                    &mut out.days
                }
                _ => return None,
            };
            *slot = value;
            components += 1;
            rest = after;
        }
        if let Some(time) = rest.strip_prefix(b"T") {
            rest = time;
            let mut time_components = 0;
            let mut order = 0;
            while !rest.is_empty() {
                let (value, after) = take_digits(rest)?;
                if let Some(fraction) = after.strip_prefix(b".") {
                    // Only seconds may carry a fraction, and it needs at least one digit.
                    let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
                    if digits == 0 || fraction.get(digits) != Some(&b'S') || order >= 3 {
                        return None;
                    }
                    out.seconds = value;
                    out.nanos = fraction_to_nanos(&fraction[..digits]);
                    rest = &fraction[digits + 1..];
                    order = 3;
                    time_components += 1;
                    continue;
                }
                let (&designator, after) = after.split_first()?;
                let slot = match designator {
                    b'H' if order < 1 => {
                        order = 1;
                        &mut out.hours
                    }
                    b'M' if order < 2 => {
                        order = 2;
                        &mut out.minutes
                    }
                    b'S' if order < 3 => {
                        order = 3;
                        &mut out.seconds
                    }
                    _ => return None,
                };
                *slot = value;
                time_components += 1;
                rest = after;
            }
            if time_components == 0 {
                return None;
            }
            components += time_components;
        }
        (components > 0 && rest.is_empty()).then_some(out)
    }

    /// True when every component is zero (`PT0S`, `P0D`, …), whatever the sign.
    pub fn is_zero(&self) -> bool {
        self.years == 0
            && self.months == 0
            && self.days == 0
            && self.hours == 0
            && self.minutes == 0
            && self.seconds == 0
            && self.nanos == 0
    }

    /// The instant this duration after `start`, or `TooLarge` when it cannot be represented.
    /// Years and months are added on the UTC calendar, the rest as elapsed time.
    pub fn after(&self, start: Timestamp) -> Result<Timestamp, ExpiryError> {
        let sign: i64 = if self.negative { -1 } else { 1 };

        // Without years or months nothing goes through the calendar (a Subscribe grants three
        // expiries: the calendar's round trip was 1.2k of its instructions).
        let start = if self.years == 0 && self.months == 0 {
            start
        } else {
            let years = i64::try_from(self.years).map_err(|_| ExpiryError::TooLarge)?;
            let months = i64::try_from(self.months).map_err(|_| ExpiryError::TooLarge)?;
            let calendar = Span::new()
                .try_years(sign * years)
                .and_then(|span| span.try_months(sign * months))
                .map_err(|_| ExpiryError::TooLarge)?;
            start
                .to_zoned(TimeZone::UTC)
                .checked_add(calendar)
                .map_err(|_| ExpiryError::TooLarge)?
                .timestamp()
        };
        let secs = i128::from(self.days) * 86_400
            + i128::from(self.hours) * 3_600
            + i128::from(self.minutes) * 60
            + i128::from(self.seconds);
        let secs = i64::try_from(secs).map_err(|_| ExpiryError::TooLarge)?;
        let nanos = i32::try_from(self.nanos).map_err(|_| ExpiryError::TooLarge)?;
        let elapsed = SignedDuration::new(secs, nanos);
        let elapsed = if self.negative { -elapsed } else { elapsed };
        start
            .checked_add(elapsed)
            .map_err(|_| ExpiryError::TooLarge)
    }
}

fn take_digits(input: &[u8]) -> Option<(u64, &[u8])> {
    let count = input.iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 {
        return None;
    }
    // Absurdly long numbers saturate; `after` then reports them as too large.
    let value = std::str::from_utf8(&input[..count])
        .ok()?
        .parse::<u64>()
        .unwrap_or(u64::MAX);
    Some((value, &input[count..]))
}

fn fraction_to_nanos(digits: &[u8]) -> u32 {
    let mut nanos = 0u32;
    for position in 0..9 {
        let digit = digits.get(position).map_or(0, |d| u32::from(d - b'0'));
        nanos = nanos * 10 + digit;
    }
    nanos
}

/// Parses an `xs:dateTime`: `-?YYYY-MM-DDThh:mm:ss(.s+)?(Z|(+|-)hh:mm)?`. A value without a time
/// zone is taken as UTC, the time zone herald keeps its clock in. `24:00:00` is the first instant
/// of the next day, as XML Schema defines it.
pub fn parse_xs_datetime(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b'-') {
        // Years before the common era are valid lexically but never a future instant; jiff cannot
        // hold most of them, so they are reported as "not in the future" by the caller.
        return None;
    }
    let year_digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if year_digits < 4 || (year_digits > 4 && bytes[0] == b'0') {
        return None;
    }
    let year: i16 = text[..year_digits].parse().ok()?;
    let rest = &bytes[year_digits..];
    // Fixed part after the year: "-MM-DDThh:mm:ss" is 15 bytes.
    if rest.len() < 15 {
        return None;
    }
    let fixed = &rest[..15];
    let shape_ok = fixed[0] == b'-'
        && fixed[3] == b'-'
        && fixed[6] == b'T'
        && fixed[9] == b':'
        && fixed[12] == b':'
        && [1, 2, 4, 5, 7, 8, 10, 11, 13, 14]
            .iter()
            .all(|&i| fixed[i].is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let two = |i: usize| i8::try_from((fixed[i] - b'0') * 10 + (fixed[i + 1] - b'0')).ok();
    let (month, day, hour, minute, second) = (two(1)?, two(4)?, two(7)?, two(10)?, two(13)?);
    let mut rest = &rest[15..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        nanos = fraction_to_nanos(&fraction[..digits]);
        rest = &fraction[digits..];
    }
    let offset_seconds: i32 = match rest {
        [] => 0,
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]
            if [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit()) =>
        {
            let hours = i32::from((h1 - b'0') * 10 + (h2 - b'0'));
            let minutes = i32::from((m1 - b'0') * 10 + (m2 - b'0'));
            if hours > 14 || minutes > 59 || (hours == 14 && minutes != 0) {
                return None;
            }
            let magnitude = hours * 3600 + minutes * 60;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    let date = Date::new(year, month, day).ok()?;
    let end_of_day = hour == 24 && minute == 0 && second == 0 && nanos == 0;
    let civil = if end_of_day {
        DateTime::from_parts(date.tomorrow().ok()?, Time::midnight())
    } else {
        let time = Time::new(hour, minute, second, i32::try_from(nanos).ok()?).ok()?;
        DateTime::from_parts(date, time)
    };
    let offset = Offset::from_seconds(offset_seconds).ok()?;
    offset.to_timestamp(civil).ok()
}

/// The lexical form of a duration from configuration, for messages.
pub fn format_duration_spec(duration: &XsDuration) -> String {
    let mut out = String::new();
    if duration.negative {
        out.push('-');
    }
    out.push('P');
    for (value, designator) in [
        (duration.years, 'Y'),
        (duration.months, 'M'),
        (duration.days, 'D'),
    ] {
        if value > 0 {
            out.push_str(&format!("{value}{designator}"));
        }
    }
    if duration.hours > 0 || duration.minutes > 0 || duration.seconds > 0 || duration.nanos > 0 {
        out.push('T');
        if duration.hours > 0 {
            out.push_str(&format!("{}H", duration.hours));
        }
        if duration.minutes > 0 {
            out.push_str(&format!("{}M", duration.minutes));
        }
        if duration.seconds > 0 || duration.nanos > 0 {
            if duration.nanos > 0 {
                let frac = format!("{:09}", duration.nanos);
                out.push_str(&format!(
                    "{}.{}S",
                    duration.seconds,
                    frac.trim_end_matches('0')
                ));
            } else {
                out.push_str(&format!("{}S", duration.seconds));
            }
        }
    }
    if out.ends_with('P') {
        out.push_str("T0S");
    }
    out
}
