//! Retry policy as data: exponential back-off with jitter, `Retry-After` within a cap, and a
//! give-up window.

use std::time::Duration;

/// How a source's deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// The longest delay between attempts.
    pub max: Duration,
    /// Each further failure multiplies the delay by this.
    pub multiplier: f64,
    /// Relative jitter: the delay varies uniformly within ±this fraction.
    pub jitter: f64,
    /// A `Retry-After` longer than this is shortened to it.
    pub retry_after_cap: Duration,
    /// Failing continuously for this long ends the subscription (DeliveryFailure).
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    /// In line with the webhook senders users know (Svix: first retry after 5 s, about a day in
    /// all): 5 s doubling to at most 1 h, ±20 % jitter, `Retry-After` up to 1 h, give up after
    /// 24 h of continuous failure.
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(3600),
            multiplier: 2.0,
            jitter: 0.2,
            retry_after_cap: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt after `failures` consecutive failures (from 1), given
    /// the receiver's `Retry-After` if it sent one and a uniform `random` in `[0, 1)`.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>, random: f64) -> Duration {
        if let Some(requested) = retry_after {
            return requested.min(self.retry_after_cap);
        }
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let base = base.min(self.max.as_secs_f64());
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * random.clamp(0.0, 1.0);
        Duration::from_secs_f64((base * factor).max(0.0)).min(self.max)
    }

    /// Whether failing since `failing_for` ago is reason enough to give up.
    pub fn gives_up(&self, failing_for: Duration) -> bool {
        failing_for >= self.give_up_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_with_a_ceiling() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        let delays: Vec<u64> = (1..=12)
            .map(|n| policy.delay(n, None, 0.5).as_secs())
            .collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(policy.delay(u32::MAX, None, 0.5), Duration::from_secs(3600));
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, None, 0.0), Duration::from_secs(4));
        assert_eq!(policy.delay(1, None, 0.5), Duration::from_secs(5));
        let high = policy.delay(1, None, 0.999_999);
        assert!(high > Duration::from_millis(5990) && high <= Duration::from_secs(6));
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(3, Some(Duration::from_secs(2)), 0.5),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(86_400)), 0.5),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn gives_up_after_the_window() {
        let policy = RetryPolicy::default();
        assert!(!policy.gives_up(Duration::from_secs(3600)));
        assert!(policy.gives_up(Duration::from_secs(24 * 3600)));
    }
}
