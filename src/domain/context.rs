//! Callback contexts ([MC-NETCEX]): a context service's instances. Each instance is a log of
//! the callbacks addressed to it, read by one reader: the client's callback endpoint. The
//! instance's identifier is its reader's, and its log is named after the service and the
//! identifier, so a log names the service it belongs to.

use super::subscription::{SourceName, SubscriptionId};

/// The longest name a context service may have: its instances' logs must fit a log name.
pub const MAX_SERVICE_NAME: usize = 64 - 33;

/// The log of `service`'s instance `id`: `{service}.{32 hex digits}`.
pub fn instance_log(service: &SourceName, id: SubscriptionId) -> Option<SourceName> {
    SourceName::parse(&format!("{service}.{}", id.key().replace('-', "")))
}

/// The service whose instance log this is.
pub fn service_of(log: &SourceName) -> Option<SourceName> {
    let (service, id) = log.as_str().rsplit_once('.')?;
    let hex = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| SourceName::parse(service)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_log_names_its_service() {
        let service = SourceName::parse("shopping.cart").unwrap();
        let id = SubscriptionId::new_random();
        let log = instance_log(&service, id).unwrap();
        assert_eq!(log.as_str().len(), "shopping.cart".len() + 33);
        assert_eq!(service_of(&log), Some(service));
        assert_eq!(service_of(&SourceName::parse("orders").unwrap()), None);
        let long = SourceName::parse(&"a".repeat(MAX_SERVICE_NAME + 1)).unwrap();
        assert_eq!(instance_log(&long, id), None, "too long for a log name");
    }
}
