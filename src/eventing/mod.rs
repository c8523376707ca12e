//! WS-Eventing 2004/01, 2004/08 and W3C 2011: one request in, one reply out.
//!
//! [`handle`] parses the envelope, decodes the request into owned engine types (the XML document
//! is dropped before any await), calls the engine, and writes the response or the fault in the
//! versions the request used.

pub mod decode;
pub mod faults;
pub mod notify;
mod outgoing;
mod request;
mod responses;
pub mod version;
pub mod wsdl;
pub mod wsman;
pub mod wsman_auth;
pub mod wsman_delivery;
pub mod wsman_messages;
pub mod wsman_pull;

use crate::domain::event::NewEvent;
use crate::domain::expiry::{self, ExpiryRules, RequestedExpiry};
use crate::domain::subscription::{
    EventingVersion, SoapVersion, SourceName, SubscriptionId, WireDialect, WsaVersion,
};
use crate::engine::{Engine, SubscribeRequest};
use crate::soap::addressing::{self, NONE_ADDRESS, ReplyAddressing, is_anonymous};
use crate::soap::envelope::{self, Envelope, EnvelopeError, Limits, close_envelope, open_envelope};
use crate::soap::fault::{Fault, FaultCode};
use crate::soap::limits::OFFLOAD_BYTES;
use crate::soap::xml;
use faults::{FaultContext, Problem};
use request::decode_off_workers;
pub use request::inspect;
use responses::{expires_element, subscribe_response};
use version::{HERALD_NS, Operation, classify_action, is_eventing_action};
use wsman::{RequestHeaders, ResourceTable};

/// Which endpoint a request arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /eventing/{source}`: the event source (and, for 2004/01, the manager too).
    Source,
    /// `POST /eventing/{source}/subscriptions`: the subscription manager.
    Manager,
    /// `POST /wsman`: WS-Management's conventional endpoint, event source and subscription
    /// manager of the source that declares the request's `wsman:ResourceURI`.
    Wsman,
}

/// A SOAP request as the HTTP layer hands it over.
#[derive(Debug, Clone, Copy)]
pub struct SoapRequest<'a> {
    /// The `{source}` path segment (empty at [`Endpoint::Wsman`]).
    pub source: &'a str,
    /// Which source answers to which WS-Management resource URI.
    pub resources: &'a ResourceTable,
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The absolute base URL herald is reached at (for the manager address).
    pub base_url: &'a str,
    /// The action from `SOAPAction` or the `action` media-type parameter.
    pub http_action: Option<&'a str>,
    /// The SOAP version the media type names (used only to answer unparseable messages).
    pub media_soap: Option<SoapVersion>,
    /// The body bytes.
    pub body: &'a [u8],
    /// Whether the request may publish (no token configured, or it carried the right one).
    pub publish_allowed: bool,
}

/// How a request ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with a response.
    Ok,
    /// Answered with a Sender fault.
    SenderFault,
    /// Answered with a Receiver fault.
    ReceiverFault,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::SenderFault => "sender_fault",
            Outcome::ReceiverFault => "receiver_fault",
        }
    }
}

/// The reply to send back on the HTTP response.
#[derive(Debug, Clone)]
pub struct SoapReply {
    /// HTTP status.
    pub status: u16,
    /// Media type (empty with an empty body).
    pub content_type: &'static str,
    /// The envelope, or empty when ReplyTo was the "none" address.
    pub body: String,
    /// The operation, once known.
    pub operation: Option<Operation>,
    /// How it ended.
    pub outcome: Outcome,
    /// Extra HTTP headers (the ids of published events).
    pub headers: Vec<(&'static str, String)>,
}

/// How to answer a request: its versions and reply addressing.
#[derive(Debug, Clone)]
struct ReplyContext {
    soap: SoapVersion,
    eventing: Option<EventingVersion>,
    addressing: WsaVersion,
    /// `None` when ReplyTo is the WS-Addressing "none" address: no reply body is sent.
    reply: Option<ReplyAddressing>,
    fault_reply: ReplyAddressing,
    operation: Option<Operation>,
    /// The WS-Management headers (resource URI, envelope size limit).
    wsman: RequestHeaders,
}

impl ReplyContext {
    fn bare(soap: SoapVersion) -> ReplyContext {
        ReplyContext {
            soap,
            eventing: None,
            addressing: WsaVersion::W3c2005,
            reply: None,
            fault_reply: ReplyAddressing {
                version: WsaVersion::W3c2005,
                relates_to: None,
                to: None,
            },
            operation: None,
            wsman: RequestHeaders::default(),
        }
    }

    fn fault(&self, problem: &Problem) -> SoapReply {
        let fault = problem.to_fault(FaultContext {
            eventing: self.eventing,
            addressing: self.addressing,
        });
        self.write_fault(&fault, true)
    }

    fn write_fault(&self, fault: &Fault, with_addressing: bool) -> SoapReply {
        let outcome = match fault.code {
            FaultCode::Receiver => Outcome::ReceiverFault,
            _ => Outcome::SenderFault,
        };
        let reply = with_addressing.then_some(&self.fault_reply);
        SoapReply {
            status: fault.http_status(self.soap),
            content_type: self.soap.content_type(),
            body: fault.to_envelope(self.soap, reply),
            operation: self.operation,
            outcome,
            headers: Vec::new(),
        }
    }

    fn response(&self, version: EventingVersion, action: &str, body: &str) -> SoapReply {
        let namespaces = [("wse", version.ns()), ("hrd", HERALD_NS)];
        let declared = if version == EventingVersion::W3c2011 {
            2
        } else {
            1
        };
        self.response_with(action, body, &namespaces[..declared], Vec::new())
    }

    /// A response with `namespaces` declared beside `wsa`, and `extra_headers` after the
    /// addressing headers.
    fn response_with(
        &self,
        action: &str,
        body: &str,
        namespaces: &[(&str, &str)],
        extra_headers: Vec<String>,
    ) -> SoapReply {
        let Some(reply) = &self.reply else {
            return SoapReply {
                status: 202,
                content_type: "",
                body: String::new(),
                operation: self.operation,
                outcome: Outcome::Ok,
                headers: Vec::new(),
            };
        };
        let mut all_namespaces = Vec::with_capacity(1 + namespaces.len());
        all_namespaces.push(("wsa", reply.version.ns()));
        all_namespaces.extend_from_slice(namespaces);
        // Written into one string: the headers as they are made, then the body.
        let extra: usize = extra_headers.iter().map(String::len).sum();
        let mut envelope = String::with_capacity(768 + body.len() + extra);
        open_envelope(&mut envelope, self.soap, &all_namespaces);
        envelope.push_str("<s:Header>");
        reply.write_headers(&mut envelope, action);
        extra_headers
            .iter()
            .for_each(|header| envelope.push_str(header));
        envelope.push_str("</s:Header>");
        close_envelope(&mut envelope, body);
        SoapReply {
            status: 200,
            content_type: self.soap.content_type(),
            body: envelope,
            operation: self.operation,
            outcome: Outcome::Ok,
            headers: Vec::new(),
        }
    }
}

/// A decoded request, owning everything it needs.
enum Call {
    Subscribe(Box<SubscribeRequest>),
    Renew {
        id: SubscriptionId,
        expires: Option<RequestedExpiry>,
        rules: ExpiryRules,
    },
    GetStatus(SubscriptionId),
    Unsubscribe(SubscriptionId),
    Publish(NewEvent),
    Pull(wsman_pull::PullCall),
    Release(SubscriptionId),
}

/// Handles one SOAP request to an eventing endpoint.
pub async fn handle(engine: &Engine, limits: Limits, request: SoapRequest<'_>) -> SoapReply {
    let base = request.base_url.trim_end_matches('/');
    let manager_address = match request.endpoint {
        // Joined rather than formatted: on every request.
        Endpoint::Wsman => [base, "/wsman"].concat(),
        Endpoint::Source | Endpoint::Manager => {
            [base, "/eventing/", request.source, "/subscriptions"].concat()
        }
    };
    let (context, version, call) =
        match decode_off_workers(&request, limits, &manager_address).await {
            Ok(decoded) => decoded,
            Err(reply) => {
                tracing::debug!(
                    source = request.source,
                    operation = reply.operation.map_or("unknown", Operation::metric_label),
                    outcome = reply.outcome.label(),
                    status = reply.status,
                    "WS-Eventing request refused"
                );
                return reply;
            }
        };
    // The subscription the request is about, for the log line that ends the request.
    let mut subject = match &call {
        Call::Renew { id, .. }
        | Call::GetStatus(id)
        | Call::Unsubscribe(id)
        | Call::Release(id) => Some(*id),
        Call::Pull(pull) => Some(pull.context.subscription),
        Call::Subscribe(_) | Call::Publish(_) => None,
    };
    let mut published = None;
    let result: Result<SoapReply, Problem> = match call {
        Call::Subscribe(subscribe) => engine
            .subscribe(*subscribe)
            .await
            .map(|(subscription, granted, cursor)| {
                subject = Some(subscription.id);
                let wsa = context.reply.as_ref().map_or(context.addressing, |r| r.version);
                let parameters = context.wsman.resource_uri.as_deref().map(wsman::resource_uri_parameter);
                // A pulled subscription's first Pull reads after where it starts.
                let enumeration = subscription.pulled().then(|| {
                    wsman_pull::PullContext { subscription: subscription.id, after: cursor }.element()
                });
                let body = subscribe_response(
                    version,
                    wsa,
                    &manager_address,
                    (subscription.id, &granted.text),
                    parameters,
                    enumeration,
                );
                context.response(version, &version.action("SubscribeResponse"), &body)
            })
            .map_err(Problem::from),
        Call::Renew { id, expires, rules } => engine
            .renew((id, request.source), expires.as_ref(), rules)
            .await
            .map(|granted| {
                let element = expires_element(version);
                let body = format!(
                    "<wse:RenewResponse><wse:{element}>{}</wse:{element}></wse:RenewResponse>",
                    xml::escape(&granted.text)
                );
                context.response(version, &version.action("RenewResponse"), &body)
            })
            .map_err(|err| match Problem::from(err) {
                // A local failure during Renew is the version's "unable to renew".
                Problem::UnableToProcess(why) => Problem::UnableToRenew(why),
                other => other,
            }),
        Call::GetStatus(id) => engine
            .status(id)
            .await
            .map(|subscription| {
                let now = engine.now();
                let body = match (version, subscription.expires_at) {
                    // 2004/08 Expires is optional here: a subscription that never expires has none.
                    (EventingVersion::Aug2004, None) => "<wse:GetStatusResponse/>".to_owned(),
                    _ => {
                        let element = expires_element(version);
                        let text = expiry::format_expiry(
                            subscription.expires_at,
                            subscription.expiry_kind,
                            now,
                        );
                        format!(
                            "<wse:GetStatusResponse><wse:{element}>{text}</wse:{element}></wse:GetStatusResponse>"
                        )
                    }
                };
                context.response(version, &version.action("GetStatusResponse"), &body)
            })
            .map_err(Problem::from),
        Call::Unsubscribe(id) => engine
            .unsubscribe(id)
            .await
            .map(|_| {
                // 2004/01 and 2004/08 answer with an empty Body; 2011 with an element.
                let body = match version {
                    EventingVersion::W3c2011 => "<wse:UnsubscribeResponse/>",
                    _ => "",
                };
                context.response(version, &version.action("UnsubscribeResponse"), body)
            })
            .map_err(Problem::from),
        Call::Pull(pull) => engine
            .pull(pull.request())
            .await
            .map_err(|err| wsman_pull::context_problem(Problem::from(err)))
            .and_then(|pulled| {
                if pulled.events.is_empty() && pulled.read_to == pull.context.after {
                    Err(Problem::Wsman(faults::WsmanFault::receiver(
                        "TimedOut",
                        format!(
                            "The operation has timed out: no event arrived within {} ms",
                            pull.wait.as_millis()
                        ),
                        None,
                    )))
                } else {
                    let envelope = |parts: &wsman_pull::PullResponse| {
                        context.response_with(
                            wsman_pull::PULL_RESPONSE_ACTION,
                            &parts.body,
                            &wsman_pull::RESPONSE_NAMESPACES,
                            parts.headers.clone(),
                        )
                    };
                    let limit = context.wsman.max_envelope_size;
                    let parts = wsman_pull::pull_response(&pull, &pulled, limit, |parts| {
                        envelope(parts).body.len()
                    });
                    Ok(envelope(&parts))
                }
            }),
        Call::Release(id) => engine
            .release(id)
            .await
            .map(|_| {
                let action = wsman_pull::RELEASE_RESPONSE_ACTION;
                context.response_with(action, "", &[], Vec::new())
            })
            .map_err(|err| wsman_pull::context_problem(Problem::from(err))),
        Call::Publish(event) => engine
            .publish(request.source, vec![event])
            .await
            .map(|events| {
                let mut headers = Vec::new();
                if let Some(event) = events.first() {
                    published = Some((event.id.to_string(), event.seq));
                    headers.push(("herald-event-id", event.id.to_string()));
                    headers.push(("herald-event-seq", event.seq.to_string()));
                }
                SoapReply {
                    status: 202,
                    content_type: "",
                    body: String::new(),
                    operation: Some(Operation::Publish),
                    outcome: Outcome::Ok,
                    headers,
                }
            })
            .map_err(Problem::from),
    };
    let mut reply = result.unwrap_or_else(|problem| context.fault(&problem));
    if let Some(max) = context.wsman.max_envelope_size
        && reply.body.len() > max
    {
        if context.operation == Some(Operation::Subscribe)
            && reply.outcome == Outcome::Ok
            && let Some(id) = subject
        {
            // The subscriber cannot learn of the subscription: it is withdrawn.
            if let Err(err) = engine.unsubscribe(id).await {
                tracing::warn!(%id, error = %err, "could not withdraw an unanswerable subscription");
            }
        }
        let size = reply.body.len();
        reply = context.fault(&Problem::Wsman(faults::WsmanFault::sender(
            "EncodingLimit",
            format!(
                "An internal encoding limit was exceeded: the response ({size} bytes) is larger \
                 than wsman:MaxEnvelopeSize ({max} bytes)"
            ),
            Some("MaxEnvelopeSize"),
        )));
    }
    let operation = reply.operation.map_or("unknown", Operation::metric_label);
    let (outcome, status) = (reply.outcome.label(), reply.status);
    match (subject, published) {
        (Some(id), _) => tracing::debug!(
            source = request.source, operation, version = version.as_str(), subscription = %id,
            outcome, status, "WS-Eventing request"
        ),
        (None, Some((event, seq))) => tracing::debug!(
            source = request.source,
            operation,
            event,
            seq,
            outcome,
            status,
            "WS-Eventing request"
        ),
        (None, None) => tracing::debug!(
            source = request.source,
            operation,
            outcome,
            status,
            "WS-Eventing request"
        ),
    }
    reply
}

/// A fault for a request that never reached the SOAP layer (such as an oversized body).
pub fn transport_fault(media_soap: Option<SoapVersion>, reason: String) -> SoapReply {
    let soap = media_soap.unwrap_or(SoapVersion::Soap11);
    let fault = Fault {
        code: FaultCode::Sender,
        subcode: None,
        reason,
        detail: Vec::new(),
        action: WsaVersion::W3c2005.soap_fault_action().to_owned(),
    };
    ReplyContext::bare(soap).write_fault(&fault, false)
}
