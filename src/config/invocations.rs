//! Invokers, agents and their defaults (`[invokers.NAME]`, `[agents.NAME]`, `[invocations]`),
//! resolved into the engine's [`InvocationPolicy`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;
use super::args::{AgentFile, InvocationsFile, InvokerFile, SourceFile};
use super::sources::std_duration;
use crate::delivery::retry::RetryPolicy;
use crate::domain::invocation::canonical;
use crate::domain::subscription::{SoapVersion, SourceName};
use crate::engine::{AgentPolicy, AmqpBridge, InvocationPolicy, InvokeProtocol, InvokerPolicy};

fn positive(
    invalid: &dyn Fn(String) -> ConfigError,
    key: &str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    let duration = std_duration(key, &text).map_err(invalid)?;
    if duration.is_zero() {
        return Err(invalid(format!("{key} must be positive")));
    }
    Ok(duration)
}

fn name(invalid: &dyn Fn(String) -> ConfigError, text: &str) -> Result<SourceName, ConfigError> {
    SourceName::parse(text)
        .ok_or_else(|| invalid("names are 1-64 characters from A-Z a-z 0-9 . _ -".into()))
}

/// Resolves the invokers and agents; `base` gives the retry defaults (the sources').
pub(super) fn invocation_policy(
    defaults: Option<InvocationsFile>,
    invokers: BTreeMap<String, InvokerFile>,
    agents: BTreeMap<String, AgentFile>,
    base: &SourceFile,
) -> Result<InvocationPolicy, ConfigError> {
    let defaults = defaults.unwrap_or_default();
    let invalid = |what: String| ConfigError::Invalid(format!("invocations: {what}"));
    let mut policy = InvocationPolicy::default();
    if let Some(agent) = &defaults.default_agent {
        policy.default_agent = name(&invalid, agent)?;
    }
    if let Some(agent) = &defaults.error_agent {
        policy.error_agent = name(&invalid, agent)?;
    }
    policy.visibility_timeout = positive(
        &invalid,
        "visibility_timeout",
        defaults.visibility_timeout,
        "PT30S",
    )?;
    for (agent_name, file) in agents {
        let invalid = |what: String| ConfigError::Invalid(format!("agent '{agent_name}': {what}"));
        let bridge = match (file.amqp_url, file.amqp_queue) {
            (None, None) => None,
            (Some(url), Some(queue)) => {
                let parsed = url::Url::parse(&url)
                    .map_err(|err| invalid(format!("amqp_url is not a URL: {err}")))?;
                if parsed.scheme() != "amqp" {
                    return Err(invalid("amqp_url must be amqp://…".into()));
                }
                if queue.is_empty() || queue.len() > 255 {
                    return Err(invalid("amqp_queue must be 1-255 bytes".into()));
                }
                Some(AmqpBridge { url, queue })
            }
            _ => return Err(invalid("amqp_url and amqp_queue go together".into())),
        };
        policy.agents.push(AgentPolicy {
            name: name(&invalid, &agent_name)?,
            pull: file.pull.unwrap_or(bridge.is_none()),
            bridge,
        });
    }
    for (invoker_name, file) in invokers {
        policy
            .invokers
            .push(invoker_policy(&invoker_name, file, base)?);
    }
    // With invokers, the default and error agents exist from the start (pull listeners and
    // SOAP subscribers can find them before the first callback).
    if !policy.invokers.is_empty() {
        for implicit in [policy.default_agent.clone(), policy.error_agent.clone()] {
            if !policy.agents.iter().any(|agent| agent.name == implicit) {
                policy.agents.push(AgentPolicy {
                    name: implicit,
                    pull: true,
                    bridge: None,
                });
            }
        }
    }
    Ok(policy)
}

fn invoker_policy(
    invoker_name: &str,
    file: InvokerFile,
    base: &SourceFile,
) -> Result<InvokerPolicy, ConfigError> {
    let invalid = |what: String| ConfigError::Invalid(format!("invoker '{invoker_name}': {what}"));
    let url = file.url.ok_or_else(|| invalid("url is required".into()))?;
    let parsed = url::Url::parse(&url)
        .map_err(|err| invalid(format!("url = '{url}' is not a URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!("url = '{url}' is not http or https")));
    }
    let protocol = match (file.soap.as_deref(), file.content_type) {
        (Some(version), None) => InvokeProtocol::Soap {
            version: match version {
                "1.1" => SoapVersion::Soap11,
                "1.2" => SoapVersion::Soap12,
                other => return Err(invalid(format!("soap = '{other}': use \"1.1\" or \"1.2\""))),
            },
            action: file.action.unwrap_or_default(),
        },
        (None, content_type) => {
            if file.action.is_some() {
                return Err(invalid("action is for SOAP invokers (set soap)".into()));
            }
            InvokeProtocol::Http {
                content_type: content_type.unwrap_or_else(|| "application/xml".into()),
            }
        }
        (Some(_), Some(_)) => {
            return Err(invalid("soap and content_type exclude each other".into()));
        }
    };
    let duration = |key: &str, value: Option<String>, default: Option<String>| {
        let text = value
            .or(default)
            .ok_or_else(|| invalid(format!("{key} is required")))?;
        positive(&invalid, key, Some(text), "")
    };
    let retry = RetryPolicy {
        initial: duration(
            "retry_initial",
            file.retry_initial,
            base.retry_initial.clone(),
        )?,
        max: duration("retry_max", file.retry_max, base.retry_max.clone())?,
        retry_after_cap: duration(
            "retry_after_cap",
            file.retry_after_cap,
            base.retry_after_cap.clone(),
        )?,
        give_up_after: duration(
            "give_up_after",
            file.give_up_after,
            base.give_up_after.clone(),
        )?,
        ..RetryPolicy::default()
    };
    if retry.initial > retry.max {
        return Err(invalid("retry_initial is longer than retry_max".into()));
    }
    let concurrency = file.concurrency.unwrap_or(16);
    if !(1..=4096).contains(&concurrency) {
        return Err(invalid("concurrency must be 1-4096".into()));
    }
    let max_payload_bytes = file.max_payload_bytes.unwrap_or(256 * 1024);
    if !(64..=64 * 1024 * 1024).contains(&max_payload_bytes) {
        return Err(invalid("max_payload_bytes must be 64-67108864".into()));
    }
    let parameters = canonical(&file.parameters.unwrap_or_default()).map_err(invalid)?;
    if let Some(agent) = parameters.get(crate::domain::invocation::CALLBACK_AGENT)
        && !agent.trim().is_empty()
        && SourceName::parse(agent.trim()).is_none()
    {
        return Err(invalid(format!(
            "callback_agent '{agent}' is not an agent name"
        )));
    }
    Ok(InvokerPolicy {
        name: name(&invalid, invoker_name)?,
        url,
        protocol,
        timeout: duration("timeout", file.timeout, Some("PT30S".into()))?,
        concurrency,
        retry,
        parameters,
        idempotency_window: match file.idempotency_window {
            Some(text) => std_duration("idempotency_window", &text).map_err(invalid)?,
            None => Duration::from_secs(24 * 3600),
        },
        max_payload_bytes,
    })
}
