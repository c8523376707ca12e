//! Wall-clock time for the domain, replaceable in tests by tokio's pausable clock.

use jiff::{SignedDuration, Timestamp};

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Wall time that advances with tokio's clock from an anchor, so a test that pauses and
    /// advances tokio time (`tokio::time::pause`/`advance`) moves herald's "now" with it.
    Tokio {
        /// Wall time at the anchor.
        wall: Timestamp,
        /// tokio time at the anchor.
        instant: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that follows tokio time from the current wall time. Call it inside a runtime.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            wall: Timestamp::now(),
            instant: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Tokio { wall, instant } => {
                let elapsed =
                    SignedDuration::try_from(instant.elapsed()).unwrap_or(SignedDuration::MAX);
                wall.saturating_add(elapsed).unwrap_or(*wall)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::expiry::{
        ExpiryKind, ExpiryPolicy, ExpiryRules, RequestedExpiry, XsDuration, format_expiry, grant,
    };

    #[tokio::test(start_paused = true)]
    async fn expiry_follows_the_paused_clock() {
        let clock = Clock::tokio();
        let policy = ExpiryPolicy {
            default: XsDuration::parse("PT1H").unwrap(),
            min: XsDuration::parse("PT1S").unwrap(),
            max: None,
            accept_datetime: true,
        };
        let rules = ExpiryRules {
            absent_means_unbounded: false,
            zero_means_unbounded: false,
            exact: false,
        };
        let requested = RequestedExpiry::parse("PT10M").unwrap();
        let granted = grant(Some(&requested), &policy, rules, clock.now()).unwrap();
        let expires_at = granted.expires_at.unwrap();
        tokio::time::advance(Duration::from_secs(9 * 60)).await;
        assert!(clock.now() < expires_at);
        assert_eq!(
            format_expiry(Some(expires_at), ExpiryKind::Duration, clock.now()),
            "PT60S"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(clock.now() > expires_at, "expired once the clock passes it");
        assert_eq!(clock.now().duration_since(expires_at).as_secs(), 1);
    }
}
