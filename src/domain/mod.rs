//! The ground floor: the types every layer shares and that import nothing of herald's above
//! them. Identifiers, subscriptions and their delivery progress, events, expiry values and
//! rules, and the clock.

/// herald's own XML namespace: its `SubscriptionId` reference parameter, its wrapper around an
/// event of several elements.
pub const HERALD_NS: &str = "urn:herald:eventing";

pub mod channel;
pub mod clock;
pub mod context;
pub mod event;
pub mod expiry;
pub mod invocation;
pub mod maps;
pub mod random;
pub mod secret;
pub mod subscription;
pub mod webhook;
pub mod wsman;
