//! Expiry parsing and granting, by example and by property.

use super::*;
use jiff::SignedDuration;
use jiff::tz::Offset;
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
        "", "P", "PT", "P1DT", "P1W", "p1d", "P1d", "PT1.S", "PT.5S", "P1.5D", "PT1H1H", "PT1S1M",
        "P1D1Y", "1D", "P-1D", "P1Y ", " P1Y", "P1,5D", "PT1.5M", "+P1D", "PT1H.5S",
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
