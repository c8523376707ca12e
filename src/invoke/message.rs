//! The wire side of invocations: the request sent to the service, what its answer means, and
//! the XML of the messages agents hold (a callback event, or an invocation's error), which SOAP
//! subscribers of an agent receive as they are and pull listeners receive as JSON.

use base64::Engine as _;
use serde::Serialize;

use crate::delivery::client::{Call, Outgoing};
use crate::domain::event::NewEvent;
use crate::domain::invocation::{Invocation, Parameters};
use crate::domain::subscription::SoapVersion;
use crate::engine::{AgentMessages, Answer, InvokeProtocol, InvokerPolicy, Reply};
use crate::soap::envelope::{Envelope, Limits, parse_document, write_envelope};
use crate::soap::xml;

/// The namespace of agents' messages.
pub const INVOKE_NS: &str = "urn:herald:invoke";
/// The action of a callback event on an agent.
pub const CALLBACK_ACTION: &str = "urn:herald:invoke:CallbackEvent";
/// The action of an invocation's error on the error agent.
pub const ERROR_ACTION: &str = "urn:herald:invoke:InvocationError";

/// Parameters of this prefix that hold XML are sent as SOAP header blocks (the seed's
/// `WFBES_INPUT_header` and friends).
const INPUT_PREFIX: &str = "wfbes_input_";

/// The elements of `text` when it is one or more complete XML elements (whitespace between
/// them allowed, nothing else), each standing on its own; `None` otherwise.
pub fn xml_elements(text: &str) -> Option<Vec<String>> {
    let wrapped = format!("<w>{text}</w>");
    let document = parse_document(wrapped.as_bytes(), Limits::default()).ok()?;
    let root = document.root_element();
    let mut elements = Vec::new();
    for child in root.children() {
        if child.is_element() {
            elements.push(xml::fragment(child));
        } else if (child.is_text() && child.text().is_some_and(|t| !t.trim().is_empty()))
            || (!child.is_text() && !child.is_comment())
        {
            return None;
        }
    }
    (!elements.is_empty()).then_some(elements)
}

/// The request for one call of `invocation`.
pub fn request(invoker: &InvokerPolicy, invocation: &Invocation) -> Outgoing {
    match &invoker.protocol {
        InvokeProtocol::Soap { version, action } => {
            let headers: Vec<String> = invocation
                .parameters
                .iter()
                .filter(|(name, _)| name.to_ascii_lowercase().starts_with(INPUT_PREFIX))
                .filter_map(|(_, value)| xml_elements(value))
                .flatten()
                .collect();
            let body = write_envelope(*version, &[], &headers, &invocation.payload);
            let (content_type, soap_action) = match version {
                SoapVersion::Soap11 => (version.content_type().to_owned(), Some(action.clone())),
                SoapVersion::Soap12 => (
                    format!("{}; action=\"{action}\"", version.content_type()),
                    None,
                ),
            };
            Outgoing {
                url: invoker.url.clone(),
                content_type,
                soap_action,
                body,
                headers: Vec::new(),
                expect_reply: None,
            }
        }
        InvokeProtocol::Http { content_type } => Outgoing {
            url: invoker.url.clone(),
            content_type: content_type.clone(),
            soap_action: None,
            body: invocation.payload.clone(),
            headers: Vec::new(),
            expect_reply: None,
        },
    }
}

/// What an answer means: a SOAP fault (whatever the status) is the service's answer; a 2xx is
/// a response; a 5xx or 429 and any failure to get an answer are retried; the rest refused.
pub fn classify(call: Call) -> Answer {
    let (status, content_type, retry_after, body) = match call {
        Call::Failed {
            error,
            refused: true,
        } => return Answer::Refused { error, body: None },
        Call::Failed { error, .. } => {
            return Answer::Retryable {
                error,
                retry_after: None,
            };
        }
        Call::Answered {
            status,
            content_type,
            retry_after,
            body,
        } => (status, content_type, retry_after, body),
    };
    let envelope_reply = soap_reply(&body);
    if let Some(SoapReply::Fault(reason)) = &envelope_reply {
        return Answer::Fault {
            body: String::from_utf8_lossy(&body).into_owned(),
            reason: reason.clone(),
        };
    }
    if (200..300).contains(&status) {
        let reply = match envelope_reply {
            Some(SoapReply::Body(content)) => Reply {
                body: content,
                content_type: Some("application/xml".into()),
                base64: false,
            },
            _ => match String::from_utf8(body) {
                Ok(text) => Reply {
                    body: text,
                    content_type,
                    base64: false,
                },
                Err(err) => Reply {
                    body: base64::engine::general_purpose::STANDARD.encode(err.as_bytes()),
                    content_type,
                    base64: true,
                },
            },
        };
        return Answer::Response(reply);
    }
    let error = format!("HTTP {status}");
    if status >= 500 || status == 429 {
        return Answer::Retryable { error, retry_after };
    }
    Answer::Refused {
        error,
        body: String::from_utf8(body).ok().filter(|b| !b.is_empty()),
    }
}

enum SoapReply {
    Body(String),
    Fault(String),
}

/// The content of a SOAP answer's Body, or its fault's reason; `None` when it is no envelope.
fn soap_reply(body: &[u8]) -> Option<SoapReply> {
    let document = parse_document(body, Limits::default()).ok()?;
    let envelope = Envelope::from_document(&document).ok()?;
    let first = envelope.body_element();
    if let Some(fault) = first.filter(|e| xml::is(*e, envelope.version.ns(), "Fault")) {
        let reason = fault
            .descendants()
            .find(|n| n.has_tag_name("faultstring") || n.has_tag_name("Text"))
            .map(xml::trimmed_text)
            .unwrap_or_default();
        return Some(SoapReply::Fault(reason.chars().take(500).collect()));
    }
    Some(SoapReply::Body(
        xml::elements(envelope.body).map(xml::fragment).collect(),
    ))
}

/// Builds agents' messages as XML in [`INVOKE_NS`].
#[derive(Debug, Default)]
pub struct InvokeMessages;

impl AgentMessages for InvokeMessages {
    fn callback(&self, invocation: &Invocation, event_name: &str, reply: &Reply) -> NewEvent {
        let mut out = open_tag("CallbackEvent", invocation, event_name);
        out.push_str(&format!(" name=\"{}\">", xml::escape(event_name)));
        parameters(&mut out, &invocation.parameters);
        payload(
            &mut out,
            "Payload",
            &reply.body,
            reply.content_type.as_deref(),
            reply.base64,
        );
        out.push_str("</hi:CallbackEvent>");
        NewEvent {
            action: CALLBACK_ACTION.into(),
            payload: out,
        }
    }

    fn error(&self, invocation: &Invocation, error: &str, response: Option<&str>) -> NewEvent {
        let correlation = invocation
            .callback_event()
            .unwrap_or(invocation.invoker.as_str());
        let mut out = open_tag("InvocationError", invocation, correlation);
        out.push('>');
        out.push_str(&format!("<hi:Error>{}</hi:Error>", xml::escape(error)));
        parameters(&mut out, &invocation.parameters);
        payload(&mut out, "Request", &invocation.payload, None, false);
        if let Some(response) = response {
            payload(&mut out, "Response", response, None, false);
        }
        out.push_str("</hi:InvocationError>");
        NewEvent {
            action: ERROR_ACTION.into(),
            payload: out,
        }
    }
}

fn open_tag(local: &str, invocation: &Invocation, correlation: &str) -> String {
    format!(
        "<hi:{local} xmlns:hi=\"{INVOKE_NS}\" invoker=\"{}\" key=\"{}\" correlationId=\"{}\" invocationId=\"{}\"",
        xml::escape(invocation.invoker.as_str()),
        xml::escape(&invocation.key),
        xml::escape(correlation),
        invocation.id,
    )
}

fn parameters(out: &mut String, parameters: &Parameters) {
    for (name, value) in parameters {
        out.push_str(&format!(
            "<hi:Parameter name=\"{}\">{}</hi:Parameter>",
            xml::escape(name),
            xml::escape(value)
        ));
    }
}

/// A payload: XML elements as they are, other text escaped, bytes in base64.
fn payload(out: &mut String, local: &str, body: &str, content_type: Option<&str>, base64: bool) {
    let (encoding, content) = if base64 {
        ("base64", xml::escape(body).into_owned())
    } else if let Some(elements) = xml_elements(body) {
        ("xml", elements.concat())
    } else {
        ("text", xml::escape(body).into_owned())
    };
    out.push_str(&format!("<hi:{local} encoding=\"{encoding}\""));
    if let Some(content_type) = content_type {
        out.push_str(&format!(" contentType=\"{}\"", xml::escape(content_type)));
    }
    out.push_str(&format!(">{content}</hi:{local}>"));
}

/// An agent's message as pull listeners and the AMQP bridge see it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MessageView {
    /// `callback` or `error`.
    pub kind: &'static str,
    /// The callback event's name (`None` for an error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The invoker event's key: the callback's key.
    pub key: String,
    /// The correlation id: the callback event's name.
    pub correlation_id: String,
    /// The invoker.
    pub invoker: String,
    /// The invocation.
    pub invocation_id: String,
    /// The merged parameters.
    pub parameters: Parameters,
    /// The service's response (callback) or what it answered (error), as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// `xml`, `text` or `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The response's content type, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Why the invocation failed (error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request that was sent (error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// Reads an agent's message back; `None` when it is not one herald wrote.
pub fn read_message(text: &str) -> Option<MessageView> {
    let document = roxmltree::Document::parse(text).ok()?;
    let root = document.root_element();
    let kind = match root.tag_name().name() {
        _ if root.tag_name().namespace() != Some(INVOKE_NS) => return None,
        "CallbackEvent" => "callback",
        "InvocationError" => "error",
        _ => return None,
    };
    let attribute = |name: &str| root.attribute(name).unwrap_or_default().to_owned();
    let mut view = MessageView {
        kind,
        name: root.attribute("name").map(str::to_owned),
        key: attribute("key"),
        correlation_id: attribute("correlationId"),
        invoker: attribute("invoker"),
        invocation_id: attribute("invocationId"),
        ..MessageView::default()
    };
    for child in xml::elements(root) {
        match child.tag_name().name() {
            "Parameter" => {
                let name = child.attribute("name").unwrap_or_default().to_owned();
                view.parameters
                    .insert(name, child.text().unwrap_or_default().to_owned());
            }
            "Error" => view.error = Some(child.text().unwrap_or_default().to_owned()),
            "Payload" | "Response" => {
                view.encoding = child.attribute("encoding").map(str::to_owned);
                view.content_type = child.attribute("contentType").map(str::to_owned);
                view.payload = Some(inner(child));
            }
            "Request" => view.request = Some(inner(child)),
            _ => {}
        }
    }
    Some(view)
}

/// A payload element's content: its elements' text as written, or its text.
fn inner(node: roxmltree::Node<'_, '_>) -> String {
    if node.attribute("encoding") == Some("xml") {
        let input = node.document().input_text();
        let mut elements = xml::elements(node);
        let Some(first) = elements.next() else {
            return String::new();
        };
        let last = elements.last().unwrap_or(first);
        return input[first.range().start..last.range().end].to_owned();
    }
    node.text().unwrap_or_default().to_owned()
}

/// The bytes of a message's payload: base64 decoded, text as it is.
pub fn payload_bytes(view: &MessageView) -> Vec<u8> {
    let text = view.payload.as_deref().unwrap_or_default();
    if view.encoding.as_deref() == Some("base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default();
    }
    text.as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::invocation::InvocationId;
    use crate::domain::subscription::SourceName;

    fn invocation() -> Invocation {
        Invocation {
            id: InvocationId::new(),
            invoker: SourceName::parse("orders").unwrap(),
            key: "order-1 & <2>".into(),
            payload: "<o:Order xmlns:o=\"urn:o\"><o:Id>1</o:Id></o:Order>".into(),
            parameters: [("callback_event".to_owned(), "orders.done".to_owned())].into(),
            raised_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_callback_event_reads_back_with_its_xml_payload_intact() {
        let reply = Reply {
            body: "<r:Ok xmlns:r=\"urn:r\">yes</r:Ok>".into(),
            content_type: Some("application/xml".into()),
            base64: false,
        };
        let event = InvokeMessages.callback(&invocation(), "orders.done", &reply);
        let view = read_message(&event.payload).unwrap();
        assert_eq!(view.kind, "callback");
        assert_eq!(view.key, "order-1 & <2>");
        assert_eq!(view.correlation_id, "orders.done");
        assert_eq!(view.payload.as_deref(), Some(reply.body.as_str()));
        assert_eq!(view.encoding.as_deref(), Some("xml"));
        assert_eq!(view.parameters["callback_event"], "orders.done");
    }

    #[test]
    fn text_and_bytes_survive_too() {
        for (body, base64) in [("{\"a\": \"<b>\"}", false), ("AAEC/w==", true)] {
            let reply = Reply {
                body: body.into(),
                content_type: Some("application/json".into()),
                base64,
            };
            let event = InvokeMessages.callback(&invocation(), "e", &reply);
            let view = read_message(&event.payload).unwrap();
            assert_eq!(view.payload.as_deref(), Some(body));
        }
    }

    #[test]
    fn faults_are_answers_and_5xx_are_retried() {
        let fault = b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>no stock</faultstring></s:Fault></s:Body></s:Envelope>";
        let answered = |status: u16, body: &[u8]| {
            classify(Call::Answered {
                status,
                content_type: None,
                retry_after: None,
                body: body.to_vec(),
            })
        };
        for status in [200, 500] {
            assert!(
                matches!(answered(status, fault), Answer::Fault { reason, .. } if reason == "no stock")
            );
        }
        assert!(matches!(answered(503, b""), Answer::Retryable { .. }));
        assert!(matches!(answered(429, b""), Answer::Retryable { .. }));
        assert!(matches!(answered(404, b""), Answer::Refused { .. }));
        let ok = b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:r=\"urn:r\"><s:Body><r:Ok>1</r:Ok></s:Body></s:Envelope>";
        match answered(200, ok) {
            Answer::Response(reply) => {
                // The Body's content standing on its own: it carries the namespaces it uses.
                let doc = roxmltree::Document::parse(&reply.body).unwrap();
                assert!(
                    doc.root_element().has_tag_name(("urn:r", "Ok")),
                    "{}",
                    reply.body
                );
                assert_eq!(doc.root_element().text(), Some("1"));
            }
            other => panic!("{other:?}"),
        }
    }
}
