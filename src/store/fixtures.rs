//! What the store's unit tests write: a plain subscription.

use jiff::Timestamp;

use crate::domain::expiry::ExpiryKind;
use crate::domain::subscription::{
    EndpointRef, EventingVersion, LogKind, NotificationFormat, ReaderDelivery, SoapVersion,
    SourceName, Subscription, SubscriptionId, WireDialect, WsaVersion,
};

/// A SOAP-push subscription of the default source, with a new id, no expiry and no EndTo.
pub(crate) fn subscription() -> Subscription {
    Subscription {
        id: SubscriptionId::new_random(),
        source: SourceName::parse("default").unwrap(),
        log: LogKind::Source,
        delivery: ReaderDelivery::SoapPush,
        dialect: WireDialect {
            eventing: EventingVersion::W3c2011,
            soap: SoapVersion::Soap12,
            addressing: WsaVersion::W3c2005,
        },
        notify_to: EndpointRef {
            address: "http://127.0.0.1:1/n".into(),
            reference_parameters: Vec::new(),
            reference_properties: Vec::new(),
        },
        end_to: None,
        delivery_mode: "push".into(),
        format: NotificationFormat::Unwrap,
        filter: None,
        expires_at: None,
        expiry_kind: ExpiryKind::Duration,
        // Stored to the millisecond.
        created_at: Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap(),
        manager_address: String::new(),
        webhook: None,
        connection_retry: None,
        wsman: None,
    }
}
