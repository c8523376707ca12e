//! The client's WS-Eventing messages, in any version, and how it reads herald's answers. The
//! envelopes are written by the same code that writes herald's notifications
//! ([`notify::outgoing`]), and the answers are read under herald's own parser limits.

use roxmltree::Node;

use super::client::{Answer, CliError};
use crate::delivery::client::Outgoing;
use crate::domain::HERALD_NS;
use crate::domain::subscription::{EndpointRef, EventingVersion, WireDialect};
use crate::eventing::notify;
use crate::eventing::version::Operation;
use crate::filter::HERALD_TOPIC;
use crate::soap::addressing::{read_epr, write_epr_content};
use crate::soap::envelope::{Envelope, Limits, parse_document};
use crate::soap::fault::ReceivedFault;
use crate::soap::xml;

/// A Subscribe's filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterOption {
    /// XPath 1.0 in the version's default dialect.
    XPath(String),
    /// herald's topic dialect: whitespace-separated action patterns.
    Topic(String),
}

/// What a Subscribe asks for.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    /// NotifyTo's address.
    pub notify_to: String,
    /// EndTo's address.
    pub end_to: Option<String>,
    /// `wse:Expires` as given (xs:duration or xs:dateTime).
    pub expires: Option<String>,
    /// The filter.
    pub filter: Option<FilterOption>,
    /// Namespace bindings `(prefix, uri)` declared on the Filter, for XPath prefixes.
    pub namespaces: Vec<(String, String)>,
}

/// Where a subscription is managed: its manager's endpoint reference in its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    /// The subscription's identifier, `uuid:…`.
    pub id: String,
    /// The manager's address (the event source itself in 2004/01).
    pub address: String,
}

impl Manager {
    /// The manager of subscription `id` to `source` at herald's `base` URL.
    pub fn of(base: &str, source: &str, version: EventingVersion, id: &str) -> Manager {
        let address = match version {
            EventingVersion::Jan2004 => format!("{base}/eventing/{source}"),
            _ => format!("{base}/eventing/{source}/subscriptions"),
        };
        Manager {
            id: id.to_owned(),
            address,
        }
    }

    /// The endpoint reference requests go to: 2004/08 carries the identifier as the
    /// `wse:Identifier` reference parameter, 2011 as herald's `hrd:SubscriptionId`, 2004/01 in
    /// the body instead.
    fn epr(&self, version: EventingVersion) -> EndpointRef {
        let id = xml::escape(&self.id);
        let parameter = match version {
            EventingVersion::Jan2004 => None,
            EventingVersion::Aug2004 => Some(format!(
                "<wse:Identifier xmlns:wse=\"{}\">{id}</wse:Identifier>",
                version.ns()
            )),
            EventingVersion::W3c2011 => Some(format!(
                "<hrd:SubscriptionId xmlns:hrd=\"{HERALD_NS}\">{id}</hrd:SubscriptionId>"
            )),
        };
        EndpointRef {
            address: self.address.clone(),
            reference_parameters: parameter.into_iter().collect(),
            reference_properties: Vec::new(),
        }
    }
}

/// A request of `dialect` to `to` with this body.
fn request(dialect: WireDialect, to: &EndpointRef, operation: Operation, body: &str) -> Outgoing {
    let version = dialect.eventing;
    let wsa = dialect.addressing;
    let reply_to = format!(
        "<wsa:ReplyTo><wsa:Address>{}</wsa:Address></wsa:ReplyTo>",
        wsa.anonymous()
    );
    notify::outgoing(
        dialect,
        to,
        &version.action(operation.name()),
        format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        vec![reply_to],
        body,
        &[("wse", version.ns())],
    )
}

/// A Subscribe to the event source at `source_url`.
pub fn subscribe(dialect: WireDialect, source_url: &str, options: &SubscribeOptions) -> Outgoing {
    let version = dialect.eventing;
    let wsa = dialect.addressing;
    let epr = |address: &str| {
        write_epr_content(
            wsa,
            &EndpointRef {
                address: address.to_owned(),
                reference_parameters: Vec::new(),
                reference_properties: Vec::new(),
            },
        )
    };
    let mut body = String::from("<wse:Subscribe>");
    if let Some(end_to) = &options.end_to {
        body.push_str(&format!("<wse:EndTo>{}</wse:EndTo>", epr(end_to)));
    }
    let notify_to = format!("<wse:NotifyTo>{}</wse:NotifyTo>", epr(&options.notify_to));
    match version {
        EventingVersion::Jan2004 => body.push_str(&notify_to),
        _ => body.push_str(&format!("<wse:Delivery>{notify_to}</wse:Delivery>")),
    }
    if let Some(expires) = &options.expires {
        body.push_str(&format!(
            "<wse:Expires>{}</wse:Expires>",
            xml::escape(expires)
        ));
    }
    if let Some(filter) = &options.filter {
        let declarations: String = options
            .namespaces
            .iter()
            .map(|(prefix, uri)| format!(" xmlns:{prefix}=\"{}\"", xml::escape(uri)))
            .collect();
        let (dialect_attribute, expression) = match filter {
            FilterOption::XPath(expression) => (String::new(), expression),
            FilterOption::Topic(patterns) => (format!(" Dialect=\"{HERALD_TOPIC}\""), patterns),
        };
        body.push_str(&format!(
            "<wse:Filter{dialect_attribute}{declarations}>{}</wse:Filter>",
            xml::escape(expression)
        ));
    }
    body.push_str("</wse:Subscribe>");
    let to = EndpointRef {
        address: source_url.to_owned(),
        reference_parameters: Vec::new(),
        reference_properties: Vec::new(),
    };
    request(dialect, &to, Operation::Subscribe, &body)
}

/// A Renew, GetStatus or Unsubscribe to a subscription's manager.
pub fn manage(
    dialect: WireDialect,
    manager: &Manager,
    operation: Operation,
    expires: Option<&str>,
) -> Outgoing {
    let version = dialect.eventing;
    let name = operation.name();
    let mut inner = String::new();
    if version == EventingVersion::Jan2004 {
        inner.push_str(&format!("<wse:Id>{}</wse:Id>", xml::escape(&manager.id)));
    }
    if let Some(expires) = expires {
        inner.push_str(&format!(
            "<wse:Expires>{}</wse:Expires>",
            xml::escape(expires)
        ));
    }
    let body = format!("<wse:{name}>{inner}</wse:{name}>");
    request(dialect, &manager.epr(version), operation, &body)
}

/// What a SubscribeResponse says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The subscription manager's address.
    pub manager: String,
    /// The identifier.
    pub id: String,
    /// The granted expiry, as herald wrote it.
    pub expires: Option<String>,
}

/// Reads the answer to a Subscribe in `version`.
pub fn subscribed(
    version: EventingVersion,
    source_url: &str,
    answer: &Answer,
) -> Result<Subscribed, CliError> {
    read(version, Operation::Subscribe, answer, |response| {
        let ns = version.ns();
        let expires = expires_of(response, version);
        if version == EventingVersion::Jan2004 {
            let id = xml::children_named(response, ns, "Id").next();
            return Ok(Subscribed {
                manager: source_url.to_owned(),
                id: id.map(xml::trimmed_text).unwrap_or_default(),
                expires,
            });
        }
        let manager = xml::children_named(response, ns, "SubscriptionManager")
            .next()
            .ok_or("no wse:SubscriptionManager")?;
        let epr = read_epr(manager)?;
        let id = manager
            .descendants()
            .find(|node| {
                xml::is(*node, ns, "Identifier") || xml::is(*node, HERALD_NS, "SubscriptionId")
            })
            .map(xml::trimmed_text)
            .ok_or("the SubscriptionManager carries no identifier")?;
        Ok(Subscribed {
            manager: epr.address,
            id,
            expires,
        })
    })
}

/// Reads the answer to a Renew, GetStatus or Unsubscribe: the expiry it grants or reports.
pub fn managed(
    version: EventingVersion,
    operation: Operation,
    answer: &Answer,
) -> Result<Option<String>, CliError> {
    read(version, operation, answer, |response| {
        Ok(expires_of(response, version))
    })
}

/// `Expires` (2004) or `GrantedExpires` (2011) in a response element.
fn expires_of(response: Node<'_, '_>, version: EventingVersion) -> Option<String> {
    let name = match version {
        EventingVersion::W3c2011 => "GrantedExpires",
        _ => "Expires",
    };
    xml::children_named(response, version.ns(), name)
        .next()
        .map(xml::trimmed_text)
}

/// Reads an answer: a fault is [`CliError::Fault`]; otherwise the Body must hold
/// `{version}{Operation}Response` (an empty Body answers an Unsubscribe in the 2004 versions),
/// which `read` turns into the result.
fn read<T>(
    version: EventingVersion,
    operation: Operation,
    answer: &Answer,
    take: impl FnOnce(Node<'_, '_>) -> Result<T, String>,
) -> Result<T, CliError> {
    let name = format!("{}Response", operation.name());
    let unexpected = |what: String| CliError::unexpected(answer.status, &what, &answer.body);
    let document = parse_document(&answer.body, Limits::default()).map_err(|err| {
        unexpected(format!(
            "expected a SOAP {name} ({}), got no usable XML: {err}",
            answer.content_type
        ))
    })?;
    let envelope = Envelope::from_document(&document)
        .map_err(|err| unexpected(format!("expected a SOAP {name}: {err}")))?;
    if let Some(fault) = ReceivedFault::read(&envelope) {
        return Err(CliError::Fault(fault));
    }
    if !(200..300).contains(&answer.status) {
        return Err(unexpected(format!("expected a SOAP {name}")));
    }
    match envelope.body_element() {
        Some(response) if xml::is(response, version.ns(), &name) => {
            take(response).map_err(|why| unexpected(format!("{name}: {why}")))
        }
        None if operation == Operation::Unsubscribe && version != EventingVersion::W3c2011 => {
            take(envelope.body).map_err(|why| unexpected(format!("{name}: {why}")))
        }
        _ => Err(unexpected(format!(
            "the Body holds no wse:{name} of {}",
            version.ns()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::{SoapVersion, WsaVersion};

    fn dialect(eventing: EventingVersion, soap: SoapVersion) -> WireDialect {
        WireDialect {
            eventing,
            soap,
            addressing: eventing.default_addressing(),
        }
    }

    #[test]
    fn a_2004_08_renew_carries_the_identifier_as_a_reference_parameter() {
        let manager = Manager::of("http://h", "orders", EventingVersion::Aug2004, "uuid:1");
        let message = manage(
            dialect(EventingVersion::Aug2004, SoapVersion::Soap11),
            &manager,
            Operation::Renew,
            Some("PT1H"),
        );
        assert_eq!(message.url, "http://h/eventing/orders/subscriptions");
        assert_eq!(
            message.soap_action.as_deref(),
            Some("http://schemas.xmlsoap.org/ws/2004/08/eventing/Renew")
        );
        assert!(message.body.contains("<wse:Identifier xmlns:wse=\"http://schemas.xmlsoap.org/ws/2004/08/eventing\">uuid:1</wse:Identifier>"), "{}", message.body);
        assert!(
            message
                .body
                .contains("<wse:Renew><wse:Expires>PT1H</wse:Expires></wse:Renew>")
        );
        assert!(message.body.contains(WsaVersion::Aug2004.ns()));
    }

    #[test]
    fn a_2004_01_unsubscribe_goes_to_the_source_with_the_id_in_the_body() {
        let manager = Manager::of("http://h", "orders", EventingVersion::Jan2004, "uuid:2");
        let message = manage(
            dialect(EventingVersion::Jan2004, SoapVersion::Soap12),
            &manager,
            Operation::Unsubscribe,
            None,
        );
        assert_eq!(message.url, "http://h/eventing/orders");
        assert!(
            message
                .body
                .contains("<wse:Unsubscribe><wse:Id>uuid:2</wse:Id></wse:Unsubscribe>")
        );
        assert!(
            message
                .content_type
                .contains("action=\"http://schemas.xmlsoap.org/ws/2004/01/eventing/Unsubscribe\"")
        );
    }

    #[test]
    fn a_fault_is_read_with_its_subcode_and_reason() {
        let body = "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:wse=\"http://www.w3.org/2011/03/ws-evt\"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value>wse:UnknownSubscription</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang=\"en\">gone</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>";
        let answer = Answer {
            status: 400,
            content_type: "application/soap+xml".into(),
            body: body.as_bytes().to_vec(),
        };
        let err = managed(EventingVersion::W3c2011, Operation::GetStatus, &answer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SOAP fault wse:UnknownSubscription (s:Sender): gone"
        );
        assert_eq!(err.exit_code(), 1);
    }
}
