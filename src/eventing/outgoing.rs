//! The one writer of WS-Addressed SOAP messages herald sends: notifications, batches,
//! heartbeats, SubscriptionEnd, and the command-line client's requests.

use std::borrow::Cow;

use crate::delivery::client::Outgoing;
use crate::domain::subscription::{EndpointRef, SoapVersion, WireDialect};
use crate::soap::addressing::write_addressed_to;
use crate::soap::envelope::{close_envelope, open_envelope};
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
    // Written straight into one buffer: this runs once per notification and subscriber.
    let extra = extra_headers.iter().map(String::len).sum::<usize>();
    let mut envelope = String::with_capacity(640 + body.len() + extra + to.address.len());
    let wsa = [("wsa", dialect.addressing.ns())];
    if namespaces.is_empty() {
        open_envelope(&mut envelope, dialect.soap, &wsa);
    } else {
        open_envelope(
            &mut envelope,
            dialect.soap,
            &[&wsa[..], namespaces].concat(),
        );
    }
    envelope.push_str("<s:Header><wsa:Action>");
    envelope.push_str(&xml::escape(action));
    envelope.push_str("</wsa:Action><wsa:MessageID>");
    envelope.push_str(&message_id);
    envelope.push_str("</wsa:MessageID>");
    write_addressed_to(&mut envelope, dialect.addressing, to);
    for header in &extra_headers {
        envelope.push_str(header);
    }
    envelope.push_str("</s:Header>");
    close_envelope(&mut envelope, body);
    let (content_type, soap_action) = match dialect.soap {
        SoapVersion::Soap11 => (
            SoapVersion::Soap11.content_type().to_owned(),
            Some(action.to_owned()),
        ),
        SoapVersion::Soap12 => (
            format!(
                "{}; action=\"{}\"",
                SoapVersion::Soap12.content_type(),
                if action.contains('"') {
                    Cow::Owned(action.replace('"', "%22"))
                } else {
                    Cow::Borrowed(action)
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::{EventingVersion, WsaVersion};
    use crate::soap::addressing::addressed_to;
    use crate::soap::envelope::write_envelope;

    /// The envelope written straight into one buffer is byte for byte the one assembled from
    /// separate header blocks, in every SOAP and WS-Addressing version, with reference
    /// properties and parameters, extra headers and namespaces.
    #[test]
    fn one_buffer_writes_what_the_header_blocks_make() {
        let to = EndpointRef {
            address: "http://sink.example/notify?a=1&b=2".into(),
            reference_properties: vec!["<p:Prop xmlns:p=\"urn:p\">x</p:Prop>".into()],
            reference_parameters: vec![
                "<hrd:Key xmlns:hrd=\"urn:k\">7</hrd:Key>".into(),
                "<q:Other xmlns:q=\"urn:q\"/>".into(),
            ],
        };
        for soap in [SoapVersion::Soap11, SoapVersion::Soap12] {
            for addressing in [WsaVersion::W3c2005, WsaVersion::Aug2004] {
                let dialect = WireDialect {
                    eventing: EventingVersion::W3c2011,
                    soap,
                    addressing,
                };
                for namespaces in [&[][..], &[("wse", "urn:wse"), ("x", "urn:a&b")][..]] {
                    let extra = vec!["<x:Extra>1</x:Extra>".to_owned()];
                    let action = "urn:act\"ion<&>";
                    let message = outgoing(
                        dialect,
                        &to,
                        action,
                        "urn:uuid:m".into(),
                        extra.clone(),
                        "<b:e xmlns:b=\"urn:b\"/>",
                        namespaces,
                    );
                    let mut headers = vec![
                        format!("<wsa:Action>{}</wsa:Action>", xml::escape(action)),
                        "<wsa:MessageID>urn:uuid:m</wsa:MessageID>".to_owned(),
                    ];
                    headers.extend(addressed_to(addressing, &to));
                    headers.extend(extra);
                    let mut all = vec![("wsa", addressing.ns())];
                    all.extend_from_slice(namespaces);
                    let expected = write_envelope(soap, &all, &headers, "<b:e xmlns:b=\"urn:b\"/>");
                    assert_eq!(message.body, expected, "{soap:?} {addressing:?}");
                    if soap == SoapVersion::Soap12 {
                        assert!(
                            message
                                .content_type
                                .ends_with("action=\"urn:act%22ion<&>\"")
                        );
                    }
                }
            }
        }
    }
}
