//! Subscription expiry: strict parsing of `xs:duration` and `xs:dateTime`, and the rules that turn
//! a requested expiry into a granted one under a source's policy.
//!
//! jiff parses far more than XML Schema allows (`P1W`, lowercase designators, commas), so the
//! lexical forms are checked here by hand and only the arithmetic is left to jiff.

mod xs;

use jiff::Timestamp;

pub use xs::{XsDuration, format_duration_spec, parse_xs_datetime};

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

#[cfg(test)]
mod tests;
