//! WS-Eventing 2004/01, 2004/08 and W3C 2011: one request in, one reply out.
//!
//! [`handle`] parses the envelope, decodes the request into owned engine types (the XML document
//! is dropped before any await), calls the engine, and writes the response or the fault in the
//! versions the request used.

pub mod decode;
pub mod faults;
pub mod notify;
mod responses;
pub mod version;
pub mod wsdl;
pub mod wsman;

use crate::domain::event::NewEvent;
use crate::domain::expiry::{self, ExpiryRules, RequestedExpiry};
use crate::domain::subscription::{
    EventingVersion, SoapVersion, SourceName, SubscriptionId, WireDialect, WsaVersion,
};
use crate::engine::{Engine, SubscribeRequest};
use crate::soap::addressing::{self, NONE_ADDRESS, ReplyAddressing, is_anonymous};
use crate::soap::envelope::{self, Envelope, EnvelopeError, Limits, write_envelope};
use crate::soap::fault::{Fault, FaultCode};
use crate::soap::limits::OFFLOAD_BYTES;
use crate::soap::xml;
use faults::{FaultContext, Problem};
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
        let mut namespaces = vec![("wsa", reply.version.ns()), ("wse", version.ns())];
        if version == EventingVersion::W3c2011 {
            namespaces.push(("hrd", HERALD_NS));
        }
        SoapReply {
            status: 200,
            content_type: self.soap.content_type(),
            body: write_envelope(self.soap, &namespaces, &reply.headers(action), body),
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
}

/// Handles one SOAP request to an eventing endpoint.
pub async fn handle(engine: &Engine, limits: Limits, request: SoapRequest<'_>) -> SoapReply {
    let base = request.base_url.trim_end_matches('/');
    let manager_address = match request.endpoint {
        Endpoint::Wsman => format!("{base}/wsman"),
        Endpoint::Source | Endpoint::Manager => {
            format!("{base}/eventing/{}/subscriptions", request.source)
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
        Call::Renew { id, .. } | Call::GetStatus(id) | Call::Unsubscribe(id) => Some(*id),
        Call::Subscribe(_) | Call::Publish(_) => None,
    };
    let mut published = None;
    let result: Result<SoapReply, Problem> = match call {
        Call::Subscribe(subscribe) => engine
            .subscribe(*subscribe)
            .await
            .map(|(subscription, granted)| {
                subject = Some(subscription.id);
                let wsa = context.reply.as_ref().map_or(context.addressing, |r| r.version);
                let parameters = context.wsman.resource_uri.as_deref().map(wsman::resource_uri_parameter);
                let body = subscribe_response(
                    version,
                    wsa,
                    &manager_address,
                    subscription.id,
                    &granted.text,
                    parameters,
                );
                context.response(version, &version.action("SubscribeResponse"), &body)
            })
            .map_err(Problem::from),
        Call::Renew { id, expires, rules } => engine
            .renew(id, expires.as_ref(), rules)
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

/// Header blocks herald understands, for mustUnderstand processing.
fn understood(ns: &str, local: &str) -> bool {
    WsaVersion::from_ns(ns).is_some()
        || EventingVersion::from_ns(ns).is_some()
        || ns == HERALD_NS
        || wsman::understood(ns, local)
}

/// The SOAP 1.1 actor / 1.2 role URIs that address herald as the ultimate receiver.
fn targets_us(role: Option<&str>) -> bool {
    match role.map(str::trim) {
        None | Some("") => true,
        Some(role) => matches!(
            role,
            "http://schemas.xmlsoap.org/soap/actor/next"
                | "http://www.w3.org/2003/05/soap-envelope/role/next"
                | "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver"
        ),
    }
}

/// Parses and decodes a request without executing it: `Ok` when herald would call the engine,
/// otherwise the fault it would answer. Used by the fuzz target; never panics on any input.
pub fn inspect(request: &SoapRequest<'_>, limits: Limits) -> Result<(), SoapReply> {
    decode_request(request, limits, "http://127.0.0.1/eventing/x/subscriptions").map(|_| ())
}

/// [`decode_request`], on a blocking thread when the body is larger than [`OFFLOAD_BYTES`].
async fn decode_off_workers(
    request: &SoapRequest<'_>,
    limits: Limits,
    manager_address: &str,
) -> Result<(ReplyContext, EventingVersion, Call), SoapReply> {
    if request.body.len() <= OFFLOAD_BYTES {
        return decode_request(request, limits, manager_address);
    }
    let (endpoint, media_soap, publish_allowed) = (
        request.endpoint,
        request.media_soap,
        request.publish_allowed,
    );
    let source = request.source.to_owned();
    let resources = request.resources.clone();
    let base_url = request.base_url.to_owned();
    let http_action = request.http_action.map(str::to_owned);
    let body = request.body.to_vec();
    let manager_address = manager_address.to_owned();
    tokio::task::spawn_blocking(move || {
        let request = SoapRequest {
            source: &source,
            resources: &resources,
            endpoint,
            base_url: &base_url,
            http_action: http_action.as_deref(),
            media_soap,
            body: &body,
            publish_allowed,
        };
        decode_request(&request, limits, &manager_address)
    })
    .await
    .unwrap_or_else(|err| {
        tracing::error!(error = %err, "decoding a SOAP request failed");
        Err(transport_fault(
            media_soap,
            "the request could not be decoded".into(),
        ))
    })
}

/// Parses and decodes a request, or produces the fault reply.
fn decode_request(
    request: &SoapRequest<'_>,
    limits: Limits,
    manager_address: &str,
) -> Result<(ReplyContext, EventingVersion, Call), SoapReply> {
    let media_soap = request.media_soap.unwrap_or(SoapVersion::Soap11);
    let document = envelope::parse_document(request.body, limits)
        .map_err(|err| envelope_fault(media_soap, &err))?;
    let envelope =
        Envelope::from_document(&document).map_err(|err| envelope_fault(media_soap, &err))?;
    let soap = envelope.version;
    let body_element = envelope.body_element();
    let guessed = body_element
        .and_then(|element| element.tag_name().namespace())
        .and_then(EventingVersion::from_ns);
    let mut context = ReplyContext::bare(soap);
    context.eventing = guessed;
    context.addressing = guessed.map_or(WsaVersion::W3c2005, EventingVersion::default_addressing);
    context.fault_reply.version = context.addressing;

    let headers = match addressing::read_headers(envelope.header_blocks()) {
        Ok(headers) => headers,
        Err(err) => {
            context.addressing = err.version;
            context.fault_reply.version = err.version;
            return Err(context.fault(&Problem::InvalidHeader(err.to_string())));
        }
    };
    let wsa = headers.version.unwrap_or(context.addressing);
    context.addressing = wsa;
    let non_anonymous = |epr: &Option<crate::domain::subscription::EndpointRef>| {
        epr.clone().filter(|epr| !is_anonymous(&epr.address))
    };
    context.fault_reply = ReplyAddressing {
        version: wsa,
        relates_to: headers.message_id.clone(),
        to: non_anonymous(&headers.fault_to).or_else(|| non_anonymous(&headers.reply_to)),
    };
    let reply_is_none = headers
        .reply_to
        .as_ref()
        .is_some_and(|epr| epr.address == NONE_ADDRESS);
    context.reply = (!reply_is_none).then(|| ReplyAddressing {
        version: wsa,
        relates_to: headers.message_id.clone(),
        to: non_anonymous(&headers.reply_to),
    });

    for block in envelope.header_blocks() {
        let must = block
            .attribute((soap.ns(), "mustUnderstand"))
            .is_some_and(|v| matches!(v.trim(), "1" | "true"));
        let role = match soap {
            SoapVersion::Soap11 => block.attribute((soap.ns(), "actor")),
            SoapVersion::Soap12 => block.attribute((soap.ns(), "role")),
        };
        let ns = block.tag_name().namespace().unwrap_or("");
        if must && targets_us(role) && !understood(ns, block.tag_name().name()) {
            let fault = Fault {
                code: FaultCode::MustUnderstand,
                subcode: None,
                reason: format!(
                    "Header block {{{ns}}}{} was marked mustUnderstand and is not understood.",
                    block.tag_name().name()
                ),
                detail: Vec::new(),
                action: wsa.soap_fault_action().to_owned(),
            };
            return Err(context.write_fault(&fault, true));
        }
    }

    context.wsman =
        RequestHeaders::read(envelope.header_blocks()).map_err(|p| context.fault(&p))?;
    let source = wsman::resolve_source(request, &context.wsman).map_err(|p| context.fault(&p))?;

    let http_action = request.http_action.map(str::trim).filter(|a| !a.is_empty());
    let action = match (headers.action.as_deref(), http_action) {
        (Some(header), Some(http)) if header != http => {
            return Err(context.fault(&Problem::ActionMismatch(format!(
                "wsa:Action is '{}' but the HTTP action is '{}'",
                header.chars().take(200).collect::<String>(),
                http.chars().take(200).collect::<String>()
            ))));
        }
        (Some(action), _) | (None, Some(action)) => action.to_owned(),
        (None, None) => return Err(context.fault(&Problem::HeaderRequired("Action"))),
    };
    let Some((version, operation)) = classify_action(&action) else {
        if request.endpoint == Endpoint::Source && !is_eventing_action(&action) {
            // Publishing is only at the source's own endpoint, not at /wsman.
            context.operation = Some(Operation::Publish);
            context.eventing = None;
            if !request.publish_allowed {
                let mut reply = context.fault(&Problem::Unauthorized);
                reply.status = 401;
                return Err(reply);
            }
            let payload: String = xml::elements(envelope.body).map(xml::fragment).collect();
            if payload.is_empty() {
                return Err(context.fault(&Problem::InvalidMessage(
                    "an event message needs at least one element in its Body".into(),
                )));
            }
            // The version is irrelevant to a publish; the caller ignores it.
            return Ok((
                context,
                EventingVersion::W3c2011,
                Call::Publish(NewEvent { action, payload }),
            ));
        }
        return Err(context.fault(&Problem::ActionNotSupported(action)));
    };
    context.eventing = Some(version);
    context.operation = Some(operation);
    if operation == Operation::Subscribe && request.endpoint == Endpoint::Manager {
        return Err(context.fault(&Problem::ActionNotSupported(action)));
    }
    let body_element = body_element
        .filter(|element| xml::is(*element, version.ns(), operation.name()))
        .ok_or_else(|| {
            context.fault(&Problem::InvalidMessage(format!(
                "the SOAP Body must contain wse:{} in {}",
                operation.name(),
                version.ns()
            )))
        })?;

    let call = match operation {
        Operation::Subscribe => {
            let source = SourceName::parse(source).ok_or_else(|| {
                context.fault(&Problem::UnknownSource(source.chars().take(64).collect()))
            })?;
            let dialect = WireDialect {
                eventing: version,
                soap,
                addressing: wsa,
            };
            Call::Subscribe(Box::new(
                decode::subscribe(body_element, dialect, source, manager_address.to_owned())
                    .map_err(|p| context.fault(&p))?,
            ))
        }
        Operation::Renew => {
            let id = decode::subscription_id(version, body_element, envelope.header_blocks())
                .map_err(|p| context.fault(&p))?;
            let (expires, rules) =
                decode::expires(body_element, version).map_err(|p| context.fault(&p))?;
            Call::Renew { id, expires, rules }
        }
        Operation::GetStatus => Call::GetStatus(
            decode::subscription_id(version, body_element, envelope.header_blocks())
                .map_err(|p| context.fault(&p))?,
        ),
        Operation::Unsubscribe => Call::Unsubscribe(
            decode::subscription_id(version, body_element, envelope.header_blocks())
                .map_err(|p| context.fault(&p))?,
        ),
        Operation::Publish => return Err(context.fault(&Problem::ActionNotSupported(action))),
    };
    Ok((context, version, call))
}

/// The fault for a message that is not a usable envelope: no addressing is known, so the fault
/// carries no WS-Addressing headers.
fn envelope_fault(media_soap: SoapVersion, err: &EnvelopeError) -> SoapReply {
    let (soap, code) = match err {
        EnvelopeError::VersionMismatch(_) => (media_soap, FaultCode::VersionMismatch),
        _ => (media_soap, FaultCode::Sender),
    };
    let fault = Fault {
        code,
        subcode: None,
        reason: err.to_string(),
        detail: Vec::new(),
        action: WsaVersion::W3c2005.soap_fault_action().to_owned(),
    };
    ReplyContext::bare(soap).write_fault(&fault, false)
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
