//! The .NET context exchange protocol ([MC-NETCEX], seed 000), server role, as a gateway in
//! front of a SOAP service: `POST /contexts/{name}`.
//!
//! A request without a context starts an instance (herald mints its `instanceId`); one with a
//! context (a `Context` header, or the `WscContext` cookie) participates in it. A
//! `CallbackContext` header stores the client's callback endpoint with the instance, durably,
//! before anything is forwarded. The request then goes to the service's backend with the
//! instance's context as a header (and `Herald-Instance-Id`), and the backend's answer comes
//! back with the new context added: a `Context` header, or `Set-Cookie` in cookie mode.
//! Callbacks to the instance are queued through the JSON API and delivered by the engine.

pub mod gateway;
pub mod wire;

use roxmltree::Node;

use crate::domain::subscription::{SoapVersion, SourceName, SubscriptionId, WsaVersion};
use crate::engine::{ContextCarrier, Engine, EngineError, Participation, UnknownInstance};
use crate::soap::addressing::read_headers;
use crate::soap::envelope::{Envelope, Limits, parse_document};
use crate::soap::fault::{Fault, FaultCode, Subcode};
use crate::soap::xml;
use gateway::{Forward, Gateway, INSTANCE_HEADER, insert_header};
use wire::{CALLBACK_CONTEXT_NS, CONTEXT_NS, Context, read_callback_context, read_context};

/// herald's namespace for the context gateway's fault subcodes.
pub const CONTEXT_FAULT_NS: &str = "urn:herald:context";

/// A request to a context service, as the HTTP layer read it.
pub struct ContextRequest<'a> {
    /// The service's name from the path.
    pub service: &'a str,
    /// The request path (the cookie's `Path`).
    pub path: &'a str,
    /// herald's address for this endpoint.
    pub address: String,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `SOAPAction`.
    pub soap_action: Option<&'a str>,
    /// The SOAP version the media type names.
    pub media_soap: Option<SoapVersion>,
    /// The `Cookie` header values.
    pub cookies: Vec<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

/// The answer to send.
#[derive(Debug, Clone)]
pub struct ContextReply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// For the request metric: what happened.
    pub outcome: &'static str,
}

fn fault(soap: SoapVersion, code: FaultCode, local: &'static str, reason: String) -> ContextReply {
    let fault = Fault {
        code,
        subcode: Some(Subcode {
            ns: CONTEXT_FAULT_NS,
            prefix: "hc",
            local,
        }),
        reason,
        detail: Vec::new(),
        action: WsaVersion::W3c2005.soap_fault_action().to_owned(),
    };
    ContextReply {
        status: fault.http_status(soap),
        content_type: Some(soap.content_type().to_owned()),
        headers: Vec::new(),
        body: fault.to_envelope(soap, None).into_bytes(),
        outcome: local,
    }
}

fn sender(soap: SoapVersion, local: &'static str, reason: String) -> ContextReply {
    fault(soap, FaultCode::Sender, local, reason)
}

fn engine_fault(soap: SoapVersion, err: EngineError) -> ContextReply {
    match err {
        EngineError::EndpointRefused(reason) => sender(
            soap,
            "CallbackEndpointRefused",
            format!("the CallbackEndpointReference address is refused: {reason}"),
        ),
        EngineError::UnknownSubscription => sender(
            soap,
            "UnknownInstance",
            "the context names no active instance of this service".into(),
        ),
        EngineError::SourceFull { limit, .. } => fault(
            soap,
            FaultCode::Receiver,
            "TooManyInstances",
            format!(
                "the service has as many instances as it accepts ({limit}); end some or try later"
            ),
        ),
        EngineError::UnknownContext(name) => sender(
            soap,
            "UnknownContextService",
            format!("no context service named '{name}'"),
        ),
        other => fault(
            soap,
            FaultCode::Receiver,
            "Unavailable",
            format!("the request could not be recorded: {other}"),
        ),
    }
}

/// The header blocks of one kind; more than one is an error.
fn single_block<'a, 'input>(
    envelope: &Envelope<'a, 'input>,
    ns: &str,
    local: &str,
) -> Result<Option<Node<'a, 'input>>, String> {
    let mut blocks = envelope
        .header_blocks()
        .filter(|block| xml::is(*block, ns, local));
    let first = blocks.next();
    if blocks.next().is_some() {
        return Err(format!("the message carries more than one {local} header"));
    }
    Ok(first)
}

/// Handles one request to a context service: context exchange, callback context, forwarding.
pub async fn handle(
    engine: &Engine,
    gateway: &Gateway,
    limits: Limits,
    request: ContextRequest<'_>,
) -> ContextReply {
    let soap = request.media_soap.unwrap_or(SoapVersion::Soap11);
    let policy = match engine.context(request.service) {
        Ok(policy) => policy.clone(),
        Err(err) => {
            let mut reply = engine_fault(soap, err);
            reply.status = 404;
            return reply;
        }
    };
    let document = match parse_document(request.body, limits) {
        Ok(document) => document,
        Err(err) => return sender(soap, "InvalidMessage", err.to_string()),
    };
    let envelope = match Envelope::from_document(&document) {
        Ok(envelope) => envelope,
        Err(err) => return sender(soap, "InvalidMessage", err.to_string()),
    };
    let soap = envelope.version;
    let addressing = match read_headers(envelope.header_blocks()) {
        Ok(headers) => headers.version.unwrap_or(WsaVersion::W3c2005),
        Err(err) => return sender(soap, "InvalidMessage", err.to_string()),
    };
    // The context: a header, or (whatever the carrier) the cookie.
    let header_context = match single_block(&envelope, CONTEXT_NS, "Context")
        .and_then(|block| block.map(read_context).transpose().map_err(|e| e.0))
    {
        Ok(context) => context,
        Err(reason) => return sender(soap, "InvalidContext", reason),
    };
    let context = match header_context.clone() {
        Some(context) => Some(context),
        None => match wire::read_cookie(request.cookies.iter().copied(), limits) {
            Ok(context) => context,
            Err(err) => return sender(soap, "InvalidContext", err.0),
        },
    };
    let callback =
        match single_block(&envelope, CALLBACK_CONTEXT_NS, "CallbackContext").and_then(|block| {
            block
                .map(read_callback_context)
                .transpose()
                .map_err(|e| e.0)
        }) {
            Ok(callback) => callback,
            Err(reason) => return sender(soap, "InvalidCallbackContext", reason),
        };
    // The instance: the one the context names, or a new one.
    let service: SourceName = policy.name.clone();
    let (instance, new) = match &context {
        Some(context) => {
            let Some(text) = context.instance_id() else {
                return sender(
                    soap,
                    "InvalidContext",
                    "the Context has no instanceId property".into(),
                );
            };
            let participation = match SubscriptionId::parse(text) {
                Some(id) => match engine.participate(&service, id).await {
                    Ok(participation) => participation,
                    Err(err) => return engine_fault(soap, err),
                },
                None => Participation::Unknown,
            };
            match participation {
                Participation::Active(_) => (SubscriptionId::parse(text), false),
                Participation::Unknown if policy.unknown_instance == UnknownInstance::Refuse => {
                    return sender(
                        soap,
                        "UnknownInstance",
                        format!(
                            "instance '{}' of '{service}' is not known (never issued, ended, or idle too long)",
                            text.chars().take(64).collect::<String>()
                        ),
                    );
                }
                Participation::Unknown => (None, false),
            }
        }
        None => {
            // A callback endpoint the policy refuses must not leave a new instance behind.
            if let Some(epr) = &callback
                && let Err(err) = engine.check_endpoint(&epr.address).await
            {
                return engine_fault(soap, err);
            }
            match engine
                .open_instance(&service, request.address.clone())
                .await
            {
                Ok(id) => (Some(id), true),
                Err(err) => return engine_fault(soap, err),
            }
        }
    };
    if let Some(epr) = callback {
        match instance {
            Some(id) => {
                if let Err(err) = engine
                    .set_callback(&service, id, epr, (soap, addressing))
                    .await
                {
                    return engine_fault(soap, err);
                }
            }
            None => {
                tracing::info!(%service, "CallbackContext for an unknown instance passed on, not stored")
            }
        }
    }
    // Forward: the instance's context goes with the request as a header.
    let instance_text = instance.map(|id| id.key());
    let text = std::str::from_utf8(request.body)
        .unwrap_or_default()
        .trim_start_matches('\u{feff}');
    let body = match (&instance_text, header_context.is_some()) {
        (Some(id), false) => insert_header(text, &document, &Context::instance(id).to_xml())
            .unwrap_or_else(|| text.to_owned()),
        _ => text.to_owned(),
    };
    let forwarded = gateway
        .forward(Forward {
            url: &policy.backend,
            content_type: request.content_type,
            soap_action: request.soap_action,
            instance: instance_text.as_deref(),
            body,
        })
        .await;
    let answer = match forwarded {
        Ok(answer) => answer,
        Err(reason) => {
            tracing::warn!(%service, backend = %policy.backend, error = %reason, "backend did not answer");
            return fault(
                soap,
                FaultCode::Receiver,
                "BackendUnavailable",
                format!("the service behind '{service}' did not answer: {reason}"),
            );
        }
    };
    let mut reply = ContextReply {
        status: answer.status,
        content_type: answer.content_type,
        headers: Vec::new(),
        body: answer.body,
        outcome: "forwarded",
    };
    if let Some(id) = &instance_text {
        reply.headers.push((INSTANCE_HEADER, id.clone()));
        if new {
            let context = Context::instance(id);
            match policy.carrier {
                ContextCarrier::Cookie => reply
                    .headers
                    .push(("set-cookie", context.to_set_cookie(request.path))),
                ContextCarrier::Header => {
                    if let Some(body) = with_context(&reply.body, &context, limits) {
                        reply.body = body.into_bytes();
                    }
                }
            }
        }
    }
    reply
}

/// The backend's answer with the new context as a header, when it is a SOAP envelope.
fn with_context(body: &[u8], context: &Context, limits: Limits) -> Option<String> {
    let document = parse_document(body, limits).ok()?;
    Envelope::from_document(&document).ok()?;
    let text = std::str::from_utf8(body)
        .ok()?
        .trim_start_matches('\u{feff}');
    insert_header(text, &document, &context.to_xml())
}
