//! The ground floor: the types every layer shares and that import nothing of herald's above
//! them. Identifiers, subscriptions and their delivery progress, events, expiry values and
//! rules, and the clock.

pub mod clock;
pub mod event;
pub mod expiry;
pub mod subscription;
