//! A context service's table of the configuration file (`[contexts.NAME]`), resolved into its
//! policy.

use std::time::Duration;

use super::ConfigError;
use super::args::{ContextFile, SourceFile};
use super::sources::std_duration;
use crate::delivery::retry::RetryPolicy;
use crate::domain::context::MAX_SERVICE_NAME;
use crate::domain::subscription::SourceName;
use crate::engine::{ContextCarrier, ContextPolicy, UnknownInstance};

/// The policy of context service `name`; retry settings it leaves out come from `base` (the
/// sources' defaults).
pub(super) fn context_policy(
    name: &str,
    file: ContextFile,
    base: &SourceFile,
) -> Result<ContextPolicy, ConfigError> {
    let invalid = |what: String| ConfigError::Invalid(format!("context '{name}': {what}"));
    let service = SourceName::parse(name)
        .filter(|_| name.len() <= MAX_SERVICE_NAME)
        .ok_or_else(|| {
            invalid(format!(
                "names are 1-{MAX_SERVICE_NAME} characters from A-Z a-z 0-9 . _ -"
            ))
        })?;
    let backend = file
        .backend
        .ok_or_else(|| invalid("backend is required".into()))?;
    let parsed = url::Url::parse(&backend)
        .map_err(|err| invalid(format!("backend = '{backend}' is not a URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "backend = '{backend}' is not http or https"
        )));
    }
    let duration = |key: &str, value: Option<String>, default: Option<&str>| {
        let text = value
            .or(default.map(str::to_owned))
            .ok_or_else(|| invalid(format!("{key} is required")))?;
        let duration = std_duration(key, &text).map_err(invalid)?;
        if duration.is_zero() {
            return Err(invalid(format!("{key} must be positive")));
        }
        Ok::<Duration, ConfigError>(duration)
    };
    let idle_ttl = duration("idle_ttl", file.idle_ttl, Some("PT1H"))?;
    let unknown_instance = match file.unknown_instance.as_deref().unwrap_or("refuse") {
        "refuse" => UnknownInstance::Refuse,
        "pass" => UnknownInstance::PassOn,
        other => {
            return Err(invalid(format!(
                "unknown_instance = '{other}': use \"refuse\" or \"pass\""
            )));
        }
    };
    let carrier = match file.carrier.as_deref().unwrap_or("header") {
        "header" => ContextCarrier::Header,
        "cookie" => ContextCarrier::Cookie,
        other => {
            return Err(invalid(format!(
                "carrier = '{other}': use \"header\" or \"cookie\""
            )));
        }
    };
    let retry = RetryPolicy {
        initial: duration(
            "retry_initial",
            file.retry_initial.or(base.retry_initial.clone()),
            None,
        )?,
        max: duration("retry_max", file.retry_max.or(base.retry_max.clone()), None)?,
        retry_after_cap: duration(
            "retry_after_cap",
            file.retry_after_cap.or(base.retry_after_cap.clone()),
            None,
        )?,
        give_up_after: duration(
            "give_up_after",
            file.give_up_after.or(base.give_up_after.clone()),
            None,
        )?,
        ..RetryPolicy::default()
    };
    if retry.initial > retry.max {
        return Err(invalid("retry_initial is longer than retry_max".into()));
    }
    let max_callback_bytes = file.max_callback_bytes.unwrap_or(256 * 1024);
    if !(64..=64 * 1024 * 1024).contains(&max_callback_bytes) {
        return Err(invalid("max_callback_bytes must be 64-67108864".into()));
    }
    let max_instances = file.max_instances.unwrap_or(100_000);
    if max_instances == 0 {
        return Err(invalid("max_instances must be at least 1".into()));
    }
    Ok(ContextPolicy {
        max_instances: Some(max_instances),
        name: service,
        backend,
        idle_ttl,
        unknown_instance,
        carrier,
        retry,
        max_callback_bytes,
    })
}
