//! A source's table of the configuration file, resolved into its policy: expiry range and
//! delivery retry schedule.

use std::time::Duration;

use super::ConfigError;
use super::args::SourceFile;
use crate::delivery::retry::RetryPolicy;
use crate::domain::expiry::{ExpiryPolicy, XsDuration};
use crate::domain::subscription::SourceName;
use crate::engine::SourcePolicy;

/// An xs:duration from configuration as a std duration (calendar units counted from now).
pub(super) fn std_duration(key: &str, text: &str) -> Result<Duration, String> {
    let parsed = XsDuration::parse(text.trim())
        .filter(|d| !d.negative)
        .ok_or_else(|| format!("{key} = '{text}' is not a non-negative xs:duration"))?;
    let now = jiff::Timestamp::now();
    let end = parsed.after(now).map_err(|e| format!("{key}: {e}"))?;
    Duration::try_from(end.duration_since(now)).map_err(|_| format!("{key} is out of range"))
}

pub(super) fn source_policy(
    name: &str,
    source: SourceFile,
    base: &SourceFile,
) -> Result<SourcePolicy, ConfigError> {
    let invalid = |what: String| ConfigError::Invalid(format!("source '{name}': {what}"));
    let source_name = SourceName::parse(name)
        .ok_or_else(|| invalid("names are 1-64 characters from A-Z a-z 0-9 . _ -".into()))?;
    let duration = |key: &str, value: Option<String>| -> Result<XsDuration, ConfigError> {
        let text = value.ok_or_else(|| invalid(format!("{key} is required")))?;
        let parsed = XsDuration::parse(text.trim())
            .ok_or_else(|| invalid(format!("{key} = '{text}' is not an xs:duration")))?;
        if parsed.negative || parsed.is_zero() {
            return Err(invalid(format!("{key} must be positive")));
        }
        Ok(parsed)
    };
    let default = duration(
        "default_expires",
        source.default_expires.or(base.default_expires.clone()),
    )?;
    let min = duration(
        "min_expires",
        source.min_expires.or(base.min_expires.clone()),
    )?;
    let max = match source.max_expires.or(base.max_expires.clone()) {
        Some(text) if text.trim() == "unbounded" => None,
        other => Some(duration("max_expires", other)?),
    };
    // Compare on one reference instant; calendar units make this approximate only across DST-free
    // month lengths, which is what an operator means.
    let now = jiff::Timestamp::now();
    let at = |d: &XsDuration| d.after(now).map_err(|err| invalid(err.to_string()));
    let (default_at, min_at) = (at(&default)?, at(&min)?);
    if let Some(max) = &max {
        let max_at = at(max)?;
        if min_at > max_at {
            return Err(invalid("min_expires is longer than max_expires".into()));
        }
        if default_at > max_at {
            return Err(invalid("default_expires is longer than max_expires".into()));
        }
    }
    if default_at < min_at {
        return Err(invalid(
            "default_expires is shorter than min_expires".into(),
        ));
    }
    let retry_duration = |key: &str, value: Option<String>| -> Result<Duration, ConfigError> {
        let text = value.ok_or_else(|| invalid(format!("{key} is required")))?;
        let duration = std_duration(key, &text).map_err(invalid)?;
        if duration.is_zero() {
            return Err(invalid(format!("{key} must be positive")));
        }
        Ok(duration)
    };
    let retry = RetryPolicy {
        initial: retry_duration(
            "retry_initial",
            source.retry_initial.or(base.retry_initial.clone()),
        )?,
        max: retry_duration("retry_max", source.retry_max.or(base.retry_max.clone()))?,
        retry_after_cap: retry_duration(
            "retry_after_cap",
            source.retry_after_cap.or(base.retry_after_cap.clone()),
        )?,
        give_up_after: retry_duration(
            "give_up_after",
            source.give_up_after.or(base.give_up_after.clone()),
        )?,
        ..RetryPolicy::default()
    };
    if retry.initial > retry.max {
        return Err(invalid("retry_initial is longer than retry_max".into()));
    }
    let max_subscriptions = source.max_subscriptions.or(base.max_subscriptions);
    if max_subscriptions == Some(0) {
        return Err(invalid("max_subscriptions must be at least 1".into()));
    }
    let max_event_bytes = source
        .max_event_bytes
        .or(base.max_event_bytes)
        .unwrap_or(256 * 1024);
    if !(64..=64 * 1024 * 1024).contains(&max_event_bytes) {
        return Err(invalid("max_event_bytes must be 64-67108864".into()));
    }
    let resource_uris = source.resource_uris.unwrap_or_default();
    for uri in &resource_uris {
        let absolute = uri.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        });
        if !absolute || uri.trim() != uri || uri.chars().any(char::is_whitespace) {
            return Err(invalid(format!(
                "resource_uris: '{uri}' is not an absolute URI"
            )));
        }
    }
    Ok(SourcePolicy {
        name: source_name,
        expiry: ExpiryPolicy {
            default,
            min,
            max,
            accept_datetime: source
                .accept_datetime
                .or(base.accept_datetime)
                .unwrap_or(true),
        },
        max_subscriptions,
        max_event_bytes,
        retry,
        resource_uris,
    })
}
