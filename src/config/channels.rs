//! `[channels]`: push channels' lifetime, presence thresholds and limits; callbacks are
//! retried as the default source's deliveries are.

use super::ConfigError;
use super::args::ChannelsFile;
use super::sources::std_duration;
use crate::engine::ChannelPolicy;

/// The channels' policy: the defaults, with what the file sets.
pub(super) fn channel_policy(
    file: Option<ChannelsFile>,
    retry: crate::delivery::retry::RetryPolicy,
) -> Result<ChannelPolicy, ConfigError> {
    let file = file.unwrap_or_default();
    let invalid = |what: String| ConfigError::Invalid(format!("channels: {what}"));
    let mut policy = ChannelPolicy {
        callback_retry: retry,
        ..ChannelPolicy::default()
    };
    let positive = |key: &str, text: &str| {
        let duration = std_duration(key, text).map_err(invalid)?;
        if duration.is_zero() {
            return Err(invalid(format!("{key} must be positive")));
        }
        Ok(duration)
    };
    if let Some(ttl) = &file.ttl {
        policy.ttl = positive("ttl", ttl)?;
    }
    if let Some(connected_for) = &file.connected_for {
        policy.presence.connected_for = positive("connected_for", connected_for)?;
    }
    if let Some(grace) = &file.grace {
        policy.presence.grace = positive("grace", grace)?;
    }
    if let Some(bytes) = file.max_notification_bytes {
        if !(1..=1024 * 1024).contains(&bytes) {
            return Err(invalid("max_notification_bytes must be 1-1048576".into()));
        }
        policy.max_notification_bytes = bytes;
    }
    if let Some(cap) = file.queue_cap {
        if cap == 0 {
            return Err(invalid("queue_cap must be at least 1".into()));
        }
        policy.queue_cap = cap;
    }
    if let Some(keep) = &file.keep_ended {
        policy.keep_ended = std_duration("keep_ended", keep).map_err(invalid)?;
    }
    if let Some(limit) = file.daily_limit {
        policy.daily_limit = limit;
    }
    Ok(policy)
}
