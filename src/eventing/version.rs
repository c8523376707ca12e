//! The three WS-Eventing versions: namespaces, actions, defaults.

use crate::domain::subscription::{EventingVersion, WsaVersion};
use crate::filter;

/// WS-Eventing January 2004 namespace.
pub const WSE_2004_01_NS: &str = "http://schemas.xmlsoap.org/ws/2004/01/eventing";
/// WS-Eventing August 2004 namespace.
pub const WSE_2004_08_NS: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing";
/// W3C WS-Eventing 2011 namespace.
pub const WSE_2011_NS: &str = "http://www.w3.org/2011/03/ws-evt";
/// herald's own namespace, for the 2011 subscription identifier reference parameter (2011
/// defines no identifier element).
pub use crate::domain::HERALD_NS;

/// The 2004/08 push delivery mode (also the default when `Mode` is absent).
pub const PUSH_MODE: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing/DeliveryModes/Push";
/// 2011 unwrapped format (the default).
pub const FORMAT_UNWRAP: &str = "http://www.w3.org/2011/03/ws-evt/DeliveryFormats/Unwrap";
/// 2011 wrapped format.
pub const FORMAT_WRAP: &str = "http://www.w3.org/2011/03/ws-evt/DeliveryFormats/Wrap";

/// A subscription-management operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Subscribe, sent to the event source.
    Subscribe,
    /// Renew, sent to the subscription manager.
    Renew,
    /// GetStatus (2004/08 and 2011).
    GetStatus,
    /// Unsubscribe.
    Unsubscribe,
    /// A one-way message to the event source whose action is not a WS-Eventing one: an event.
    Publish,
    /// WS-Enumeration Pull, sent to the manager of a pulled (WS-Management Pull mode)
    /// subscription.
    Pull,
    /// WS-Enumeration Release: ends a pulled subscription.
    Release,
}

impl Operation {
    /// The local name of the request element and the last segment of its action.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Subscribe => "Subscribe",
            Operation::Renew => "Renew",
            Operation::GetStatus => "GetStatus",
            Operation::Unsubscribe => "Unsubscribe",
            Operation::Publish => "Publish",
            Operation::Pull => "Pull",
            Operation::Release => "Release",
        }
    }

    /// The label used in metrics.
    pub fn metric_label(self) -> &'static str {
        match self {
            Operation::Subscribe => "subscribe",
            Operation::Renew => "renew",
            Operation::GetStatus => "get_status",
            Operation::Unsubscribe => "unsubscribe",
            Operation::Publish => "publish",
            Operation::Pull => "pull",
            Operation::Release => "release",
        }
    }
}

impl EventingVersion {
    /// The namespace URI.
    pub fn ns(self) -> &'static str {
        match self {
            EventingVersion::Jan2004 => WSE_2004_01_NS,
            EventingVersion::Aug2004 => WSE_2004_08_NS,
            EventingVersion::W3c2011 => WSE_2011_NS,
        }
    }

    /// The version a namespace URI names.
    pub fn from_ns(ns: &str) -> Option<EventingVersion> {
        match ns {
            WSE_2004_01_NS => Some(EventingVersion::Jan2004),
            WSE_2004_08_NS => Some(EventingVersion::Aug2004),
            WSE_2011_NS => Some(EventingVersion::W3c2011),
            _ => None,
        }
    }

    /// The WS-Addressing version its schema imports, used when a request carries none.
    pub fn default_addressing(self) -> WsaVersion {
        match self {
            EventingVersion::Jan2004 => WsaVersion::Mar2003,
            EventingVersion::Aug2004 => WsaVersion::Aug2004,
            EventingVersion::W3c2011 => WsaVersion::W3c2005,
        }
    }

    /// The action of this version's faults.
    pub fn fault_action(self) -> String {
        format!("{}/fault", self.ns())
    }

    /// The action of a message in this version: `{ns}/{name}`.
    pub fn action(self, name: &str) -> String {
        [self.ns(), "/", name].concat()
    }

    /// The filter dialect implied when a Filter names none.
    pub fn default_filter_dialect(self) -> &'static str {
        match self {
            EventingVersion::W3c2011 => filter::XPATH_2011,
            _ => filter::XPATH_1999,
        }
    }

    /// The operations this version defines (2004/01 has no GetStatus).
    pub fn supports(self, operation: Operation) -> bool {
        !(self == EventingVersion::Jan2004 && operation == Operation::GetStatus)
    }
}

/// Whether an action URI lies in a WS-Eventing namespace (so it cannot name an event).
pub fn is_eventing_action(action: &str) -> bool {
    action
        .rsplit_once('/')
        .is_some_and(|(ns, _)| EventingVersion::from_ns(ns).is_some())
}

/// The version and operation an action URI requests, if it is a subscription operation.
pub fn classify_action(action: &str) -> Option<(EventingVersion, Operation)> {
    let (ns, name) = action.rsplit_once('/')?;
    let version = EventingVersion::from_ns(ns)?;
    let operation = [
        Operation::Subscribe,
        Operation::Renew,
        Operation::GetStatus,
        Operation::Unsubscribe,
    ]
    .into_iter()
    .find(|op| op.name() == name)?;
    version.supports(operation).then_some((version, operation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_classify_per_version() {
        assert_eq!(
            classify_action("http://schemas.xmlsoap.org/ws/2004/08/eventing/Renew"),
            Some((EventingVersion::Aug2004, Operation::Renew))
        );
        assert_eq!(
            classify_action("http://www.w3.org/2011/03/ws-evt/GetStatus"),
            Some((EventingVersion::W3c2011, Operation::GetStatus))
        );
        assert_eq!(
            classify_action("http://schemas.xmlsoap.org/ws/2004/01/eventing/GetStatus"),
            None
        );
        assert_eq!(classify_action("urn:orders/created"), None);
    }
}
