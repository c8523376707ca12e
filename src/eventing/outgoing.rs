//! The one writer of WS-Addressed SOAP messages herald sends: notifications, batches,
//! heartbeats, SubscriptionEnd, and the command-line client's requests.

use crate::delivery::client::Outgoing;
use crate::domain::subscription::{EndpointRef, SoapVersion, WireDialect};
use crate::soap::addressing::addressed_to;
use crate::soap::envelope::write_envelope;
use crate::soap::xml;

/// A WS-Addressed SOAP message to `to` in `dialect`: `wsa:Action`, `wsa:MessageID`, `wsa:To` and
/// `to`'s reference parameters, then `extra_headers`; the action also in `SOAPAction` (SOAP 1.1)
/// or the media type (SOAP 1.2). Notifications, SubscriptionEnd, and the command-line client's
/// requests are all written by it.
pub fn outgoing(
    dialect: WireDialect,
    to: &EndpointRef,
    action: &str,
    message_id: String,
    extra_headers: Vec<String>,
    body: &str,
    namespaces: &[(&str, &str)],
) -> Outgoing {
    let mut headers = vec![
        format!("<wsa:Action>{}</wsa:Action>", xml::escape(action)),
        format!("<wsa:MessageID>{message_id}</wsa:MessageID>"),
    ];
    headers.extend(addressed_to(dialect.addressing, to));
    headers.extend(extra_headers);
    let mut all_namespaces = vec![("wsa", dialect.addressing.ns())];
    all_namespaces.extend_from_slice(namespaces);
    let envelope = write_envelope(dialect.soap, &all_namespaces, &headers, body);
    let (content_type, soap_action) = match dialect.soap {
        SoapVersion::Soap11 => (
            SoapVersion::Soap11.content_type().to_owned(),
            Some(action.to_owned()),
        ),
        SoapVersion::Soap12 => (
            format!(
                "{}; action=\"{}\"",
                SoapVersion::Soap12.content_type(),
                action.replace('"', "%22")
            ),
            None,
        ),
    };
    Outgoing {
        url: to.address.clone(),
        content_type,
        soap_action,
        body: envelope,
        headers: Vec::new(),
        expect_reply: None,
    }
}
