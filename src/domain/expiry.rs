//! Subscription expiry: strict parsing of `xs:duration` and `xs:dateTime`, and the rules that turn
//! a requested expiry into a granted one under a source's policy.
//!
//! jiff parses far more than XML Schema allows (`P1W`, lowercase designators, commas), so the
//! lexical forms are checked here by hand and only the arithmetic is left to jiff.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp};

/// Why a requested expiry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpiryError {
    /// Neither a valid `xs:duration` nor a valid `xs:dateTime`.
    #[error("'{0}' is neither an xs:duration nor an xs:dateTime")]
    Malformed(String),
    /// A zero or negative duration, or an instant that is not in the future.
    #[error("the expiration time must lie in the future")]
    NotInFuture,
    /// Larger than any instant herald can represent (beyond the year 9999).
    #[error("the expiration time is too far in the future")]
    TooLarge,
    /// The source accepts only durations.
    #[error("this event source accepts only xs:duration expiration times")]
    DateTimeUnsupported,
    /// Outside the source's minimum/maximum and the requester did not allow adjusting it.
    #[error("the expiration time requested is not within the source's range ({min} to {max})")]
    OutOfRange {
        /// The source's minimum, as configured.
        min: String,
        /// The source's maximum, as configured (`unbounded` when there is none).
        max: String,
    },
}

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

        let years = i64::try_from(self.years).map_err(|_| ExpiryError::TooLarge)?;
        let months = i64::try_from(self.months).map_err(|_| ExpiryError::TooLarge)?;
        let calendar = Span::new()
            .try_years(sign * years)
            .and_then(|span| span.try_months(sign * months))
            .map_err(|_| ExpiryError::TooLarge)?;
        let zoned = start
            .to_zoned(TimeZone::UTC)
            .checked_add(calendar)
            .map_err(|_| ExpiryError::TooLarge)?;
        let secs = i128::from(self.days) * 86_400
            + i128::from(self.hours) * 3_600
            + i128::from(self.minutes) * 60
            + i128::from(self.seconds);
        let secs = i64::try_from(secs).map_err(|_| ExpiryError::TooLarge)?;
        let nanos = i32::try_from(self.nanos).map_err(|_| ExpiryError::TooLarge)?;
        let elapsed = SignedDuration::new(secs, nanos);
        let elapsed = if self.negative { -elapsed } else { elapsed };
        zoned
            .timestamp()
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

/// A requested expiry as it arrived: which type it has and the exact text (for echoing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedExpiry {
    /// An `xs:duration`.
    Duration {
        /// The parsed value.
        value: XsDuration,
        /// The trimmed lexical form, echoed back when granted unchanged.
        text: String,
    },
    /// An `xs:dateTime`.
    DateTime {
        /// The instant it names.
        at: Timestamp,
        /// The trimmed lexical form, echoed back when granted unchanged.
        text: String,
    },
}

/// The longest `Expires` text accepted.
pub const MAX_EXPIRES_CHARS: usize = 64;

impl RequestedExpiry {
    /// Parses the text of an `Expires` element (surrounding whitespace allowed). Longer than
    /// [`MAX_EXPIRES_CHARS`] is refused as malformed: no real value needs more, and a granted
    /// value is echoed back as sent.
    pub fn parse(text: &str) -> Result<RequestedExpiry, ExpiryError> {
        let text = text.trim();
        if text.len() > MAX_EXPIRES_CHARS {
            return Err(ExpiryError::Malformed(format!("{}…", truncate(text, 64))));
        }
        if let Some(value) = XsDuration::parse(text) {
            return Ok(RequestedExpiry::Duration {
                value,
                text: text.to_owned(),
            });
        }
        if text.starts_with('-') && text.len() > 1 && text.as_bytes()[1].is_ascii_digit() {
            // A lexically valid dateTime in a negative year is in the past.
            let positive = &text[1..];
            if parse_xs_datetime(positive).is_some() {
                return Err(ExpiryError::NotInFuture);
            }
        }
        match parse_xs_datetime(text) {
            Some(at) => Ok(RequestedExpiry::DateTime {
                at,
                text: text.to_owned(),
            }),
            None => Err(ExpiryError::Malformed(truncate(text, 64))),
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().take(max_chars).collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Which type a granted expiry is reported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryKind {
    /// Reported as an `xs:duration` (time remaining).
    Duration,
    /// Reported as an `xs:dateTime` (the instant).
    DateTime,
}

impl ExpiryKind {
    /// The name used in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryKind::Duration => "duration",
            ExpiryKind::DateTime => "datetime",
        }
    }

    /// Inverse of [`ExpiryKind::as_str`].
    pub fn from_name(name: &str) -> Option<ExpiryKind> {
        match name {
            "duration" => Some(ExpiryKind::Duration),
            "datetime" => Some(ExpiryKind::DateTime),
            _ => None,
        }
    }
}

/// A source's expiry policy, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Granted when a 2004 subscriber asks for nothing.
    pub default: XsDuration,
    /// The shortest subscription the source grants.
    pub min: XsDuration,
    /// The longest subscription the source grants; `None` allows subscriptions that never expire.
    pub max: Option<XsDuration>,
    /// Whether `xs:dateTime` expiries are accepted (otherwise UnsupportedExpirationType).
    pub accept_datetime: bool,
}

/// How a wire version reads an expiry request; the eventing layer picks these per version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryRules {
    /// W3C 2011: an absent Expires asks for a subscription that never expires; otherwise the
    /// source's default applies.
    pub absent_means_unbounded: bool,
    /// W3C 2011: `PT0S` asks for a subscription that never expires; otherwise zero is invalid.
    pub zero_means_unbounded: bool,
    /// W3C 2011 without `BestEffort="true"`: a value outside the policy is a fault rather than
    /// being adjusted. The 2004 versions always let the source decide.
    pub exact: bool,
}

/// The expiry herald grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedExpiry {
    /// When the subscription expires; `None` for never.
    pub expires_at: Option<Timestamp>,
    /// The type it is reported in.
    pub kind: ExpiryKind,
    /// The lexical form for the response: the request's own text when granted unchanged.
    pub text: String,
}

/// Decides the granted expiry for a request (Subscribe or Renew) at `now`.
pub fn grant(
    requested: Option<&RequestedExpiry>,
    policy: &ExpiryPolicy,
    rules: ExpiryRules,
    now: Timestamp,
) -> Result<GrantedExpiry, ExpiryError> {
    let min_at = policy.min.after(now)?;
    let max_at = policy.max.as_ref().map(|max| max.after(now)).transpose()?;
    let out_of_range = || ExpiryError::OutOfRange {
        min: format_duration_spec(&policy.min),
        max: policy
            .max
            .as_ref()
            .map_or_else(|| "unbounded".to_owned(), format_duration_spec),
    };
    let (wanted, kind, text): (Option<Timestamp>, ExpiryKind, Option<&str>) = match requested {
        None if rules.absent_means_unbounded => {
            // Nothing to echo and no BestEffort attribute to consult: grant the longest allowed.
            (None, ExpiryKind::Duration, None)
        }
        None => (Some(policy.default.after(now)?), ExpiryKind::Duration, None),
        Some(RequestedExpiry::Duration { value, text }) => {
            if value.negative && !value.is_zero() {
                return Err(ExpiryError::NotInFuture);
            }
            if value.is_zero() {
                if !rules.zero_means_unbounded {
                    return Err(ExpiryError::NotInFuture);
                }
                (None, ExpiryKind::Duration, Some(text.as_str()))
            } else {
                (Some(value.after(now)?), ExpiryKind::Duration, Some(text))
            }
        }
        Some(RequestedExpiry::DateTime { at, text }) => {
            if !policy.accept_datetime {
                return Err(ExpiryError::DateTimeUnsupported);
            }
            if *at <= now {
                return Err(ExpiryError::NotInFuture);
            }
            (Some(*at), ExpiryKind::DateTime, Some(text))
        }
    };
    let adjusted = match (wanted, max_at) {
        (None, None) => None,
        (None, Some(max_at)) => {
            if rules.exact && requested.is_some() {
                return Err(out_of_range());
            }
            Some(max_at)
        }
        (Some(at), _) if at < min_at => {
            if rules.exact {
                return Err(out_of_range());
            }
            Some(min_at)
        }
        (Some(at), Some(max_at)) if at > max_at => {
            if rules.exact {
                return Err(out_of_range());
            }
            Some(max_at)
        }
        (Some(at), _) => Some(at),
    };
    let unchanged = adjusted == wanted;
    let text = match (text, unchanged) {
        (Some(text), true) => text.to_owned(),
        _ => format_expiry(adjusted, kind, now),
    };
    Ok(GrantedExpiry {
        expires_at: adjusted,
        kind,
        text,
    })
}

/// Formats an expiry for a response at `now`: the time remaining for a duration (never zero,
/// which would read as "never expires" in 2011), the UTC instant for a dateTime, and `PT0S` for a
/// subscription that never expires.
pub fn format_expiry(expires_at: Option<Timestamp>, kind: ExpiryKind, now: Timestamp) -> String {
    let Some(at) = expires_at else {
        return "PT0S".to_owned();
    };
    match kind {
        ExpiryKind::DateTime => format_datetime(at),
        ExpiryKind::Duration => {
            let remaining = at.duration_since(now);
            let millis = remaining.as_millis().max(1);
            let (secs, frac) = (millis / 1000, millis % 1000);
            if frac == 0 {
                format!("PT{secs}S")
            } else {
                format!("PT{secs}.{frac:03}S")
            }
        }
    }
}

/// `YYYY-MM-DDThh:mm:ss.sssZ` in UTC.
pub fn format_datetime(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> Timestamp {
        "2026-01-31T12:00:00Z".parse().unwrap()
    }

    fn policy() -> ExpiryPolicy {
        ExpiryPolicy {
            default: XsDuration::parse("PT1H").unwrap(),
            min: XsDuration::parse("PT1S").unwrap(),
            max: Some(XsDuration::parse("P1D").unwrap()),
            accept_datetime: true,
        }
    }

    const W2004: ExpiryRules = ExpiryRules {
        absent_means_unbounded: false,
        zero_means_unbounded: false,
        exact: false,
    };
    const W2011_EXACT: ExpiryRules = ExpiryRules {
        absent_means_unbounded: true,
        zero_means_unbounded: true,
        exact: true,
    };
    const W2011_BEST_EFFORT: ExpiryRules = ExpiryRules {
        exact: false,
        ..W2011_EXACT
    };

    #[test]
    fn overlong_values_are_malformed() {
        let nines = format!("PT1.{}S", "9".repeat(10_000));
        assert!(XsDuration::parse(&nines).is_some(), "lexically valid");
        assert!(matches!(
            RequestedExpiry::parse(&nines),
            Err(ExpiryError::Malformed(_))
        ));
        let longest = format!("PT1.{}S", "9".repeat(MAX_EXPIRES_CHARS - 5));
        assert!(RequestedExpiry::parse(&longest).is_ok());
    }

    #[test]
    fn durations_that_xml_schema_accepts() {
        for text in [
            "P1Y",
            "P1M",
            "P1D",
            "PT1H",
            "PT1M",
            "PT1S",
            "PT0.5S",
            "P1Y2M3DT4H5M6.7S",
            "-P1D",
            "P0D",
            "PT0S",
            "PT3600.000S",
            "P10000D",
        ] {
            assert!(XsDuration::parse(text).is_some(), "{text} should parse");
        }
    }

    #[test]
    fn durations_that_xml_schema_rejects() {
        for text in [
            "", "P", "PT", "P1DT", "P1W", "p1d", "P1d", "PT1.S", "PT.5S", "P1.5D", "PT1H1H",
            "PT1S1M", "P1D1Y", "1D", "P-1D", "P1Y ", " P1Y", "P1,5D", "PT1.5M", "+P1D", "PT1H.5S",
        ] {
            assert!(
                XsDuration::parse(text).is_none(),
                "{text:?} should not parse"
            );
        }
    }

    #[test]
    fn calendar_months_are_calendar_months() {
        let end = XsDuration::parse("P1M").unwrap().after(now()).unwrap();
        assert_eq!(format_datetime(end), "2026-02-28T12:00:00.000Z");
    }

    #[test]
    fn datetimes_with_and_without_zone() {
        let zulu = parse_xs_datetime("2030-06-26T21:07:00Z").unwrap();
        let local = parse_xs_datetime("2030-06-26T21:07:00").unwrap();
        let offset = parse_xs_datetime("2030-06-26T13:07:00.000-08:00").unwrap();
        assert_eq!(zulu, local);
        assert_eq!(zulu, offset);
        let midnight = parse_xs_datetime("2030-06-26T24:00:00Z").unwrap();
        assert_eq!(format_datetime(midnight), "2030-06-27T00:00:00.000Z");
    }

    #[test]
    fn datetimes_that_xml_schema_rejects() {
        for text in [
            "2030-6-26T21:07:00Z",
            "2030-06-26 21:07:00Z",
            "2030-02-30T00:00:00Z",
            "2030-06-26T25:00:00Z",
            "2030-06-26T21:60:00Z",
            "2030-06-26T21:07:60Z",
            "2030-06-26T21:07:00+15:00",
            "2030-06-26T21:07:00+14:30",
            "2030-06-26T21:07:00.Z",
            "2030-06-26T21:07:00z",
            "02030-06-26T21:07:00Z",
            "030-06-26T21:07:00Z",
            "2030-06-26T24:00:01Z",
            "2030-06-26",
        ] {
            assert!(
                parse_xs_datetime(text).is_none(),
                "{text:?} should not parse"
            );
        }
    }

    #[test]
    fn requested_duration_is_echoed_exactly_when_granted_unchanged() {
        let requested = RequestedExpiry::parse("  PT60M \n").unwrap();
        let granted = grant(Some(&requested), &policy(), W2004, now()).unwrap();
        assert_eq!(granted.text, "PT60M");
        assert_eq!(granted.kind, ExpiryKind::Duration);
        assert_eq!(
            granted.expires_at,
            Some(now().checked_add(SignedDuration::from_hours(1)).unwrap())
        );
    }

    #[test]
    fn the_2004_versions_adjust_out_of_range_values() {
        let requested = RequestedExpiry::parse("P30D").unwrap();
        let granted = grant(Some(&requested), &policy(), W2004, now()).unwrap();
        assert_eq!(granted.text, "PT86400S");
        let requested = RequestedExpiry::parse("PT0.1S").unwrap();
        let granted = grant(Some(&requested), &policy(), W2004, now()).unwrap();
        assert_eq!(granted.text, "PT1S");
    }

    #[test]
    fn w3c_2011_faults_unless_best_effort() {
        let requested = RequestedExpiry::parse("P30D").unwrap();
        let err = grant(Some(&requested), &policy(), W2011_EXACT, now()).unwrap_err();
        assert!(matches!(err, ExpiryError::OutOfRange { .. }), "{err:?}");
        let granted = grant(Some(&requested), &policy(), W2011_BEST_EFFORT, now()).unwrap();
        assert_eq!(granted.text, "PT86400S");
    }

    #[test]
    fn absent_expiry_per_version() {
        let granted = grant(None, &policy(), W2004, now()).unwrap();
        assert_eq!(granted.text, "PT3600S");
        let granted = grant(None, &policy(), W2011_EXACT, now()).unwrap();
        assert_eq!(
            granted.text, "PT86400S",
            "unbounded is capped at the maximum"
        );
        let unbounded = ExpiryPolicy {
            max: None,
            ..policy()
        };
        let granted = grant(None, &unbounded, W2011_EXACT, now()).unwrap();
        assert_eq!((granted.expires_at, granted.text.as_str()), (None, "PT0S"));
    }

    #[test]
    fn zero_per_version() {
        let zero = RequestedExpiry::parse("PT0S").unwrap();
        assert_eq!(
            grant(Some(&zero), &policy(), W2004, now()),
            Err(ExpiryError::NotInFuture)
        );
        assert!(matches!(
            grant(Some(&zero), &policy(), W2011_EXACT, now()),
            Err(ExpiryError::OutOfRange { .. })
        ));
        let unbounded = ExpiryPolicy {
            max: None,
            ..policy()
        };
        let granted = grant(Some(&zero), &unbounded, W2011_EXACT, now()).unwrap();
        assert_eq!(granted.expires_at, None);
    }

    #[test]
    fn past_negative_and_absurd_values() {
        for text in ["2020-01-01T00:00:00Z", "-P1D", "-2030-01-01T00:00:00Z"] {
            let result = RequestedExpiry::parse(text)
                .and_then(|requested| grant(Some(&requested), &policy(), W2004, now()));
            assert_eq!(result, Err(ExpiryError::NotInFuture), "{text}");
        }
        for text in ["P99999999999999999999Y", "P20000Y", "PT99999999999999999S"] {
            let result = RequestedExpiry::parse(text)
                .and_then(|requested| grant(Some(&requested), &policy(), W2004, now()));
            assert_eq!(result, Err(ExpiryError::TooLarge), "{text}");
        }
    }

    #[test]
    fn datetime_refused_when_the_source_does_not_accept_it() {
        let requested = RequestedExpiry::parse("2030-01-01T00:00:00Z").unwrap();
        let strict = ExpiryPolicy {
            accept_datetime: false,
            ..policy()
        };
        assert_eq!(
            grant(Some(&requested), &strict, W2004, now()),
            Err(ExpiryError::DateTimeUnsupported)
        );
    }

    #[test]
    fn datetime_granted_unchanged_is_echoed() {
        let requested = RequestedExpiry::parse("2026-01-31T13:00:00.000-00:00").unwrap();
        let granted = grant(Some(&requested), &policy(), W2004, now()).unwrap();
        assert_eq!(granted.kind, ExpiryKind::DateTime);
        assert_eq!(granted.text, "2026-01-31T13:00:00.000-00:00");
    }

    proptest! {
        #[test]
        fn any_string_parses_or_fails_without_panicking(text in "\\PC{0,40}") {
            let _ = RequestedExpiry::parse(&text);
        }

        #[test]
        fn duration_like_strings_never_panic(text in "-?P[0-9YMDTHS.]{0,20}") {
            if let Some(duration) = XsDuration::parse(&text) {
                let _ = duration.after(now());
            }
        }

        #[test]
        fn durations_round_trip(
            years in 0u64..50, months in 0u64..50, days in 0u64..1000,
            hours in 0u64..100, minutes in 0u64..100, seconds in 0u64..100_000,
            millis in 0u32..1000,
        ) {
            let duration = XsDuration {
                negative: false, years, months, days, hours, minutes, seconds,
                nanos: millis * 1_000_000,
            };
            let text = format_duration_spec(&duration);
            prop_assert_eq!(XsDuration::parse(&text), Some(duration));
        }

        #[test]
        fn time_only_durations_add_exact_seconds(seconds in 1u64..10_000_000) {
            let text = format!("PT{seconds}S");
            let end = XsDuration::parse(&text).unwrap().after(now()).unwrap();
            prop_assert_eq!(end.duration_since(now()).as_secs(), i64::try_from(seconds).unwrap());
        }

        #[test]
        fn datetimes_round_trip(
            secs in 1_700_000_000i64..253_000_000_000i64, millis in 0i64..1000,
            offset_minutes in -840i32..=840,
        ) {
            let at = Timestamp::from_millisecond(secs * 1000 + millis).unwrap();
            let text = format_datetime(at);
            prop_assert_eq!(parse_xs_datetime(&text), Some(at));
            // The same instant written in another offset names the same instant.
            let offset = Offset::from_seconds((offset_minutes / 15) * 15 * 60).unwrap();
            let civil = offset.to_datetime(at);
            let sign = if offset.seconds() < 0 { '-' } else { '+' };
            let abs = offset.seconds().abs();
            let text = format!(
                "{}{}{:02}:{:02}",
                civil.strftime("%Y-%m-%dT%H:%M:%S%.3f"), sign, abs / 3600, (abs % 3600) / 60
            );
            prop_assert_eq!(parse_xs_datetime(&text), Some(at));
        }
    }
}
