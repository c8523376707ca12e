//! Reading a request: which header blocks herald understands, the envelope parsed and the
//! request decoded into owned engine types (off the async workers when the body is large).

use super::*;

/// Header blocks herald understands, for mustUnderstand processing.
pub(super) fn understood(ns: &str, local: &str) -> bool {
    WsaVersion::from_ns(ns).is_some()
        || EventingVersion::from_ns(ns).is_some()
        || ns == HERALD_NS
        || wsman::understood(ns, local)
        || super::wsman_auth::understood(ns, local)
}

/// The SOAP 1.1 actor / 1.2 role URIs that address herald as the ultimate receiver.
pub(super) fn targets_us(role: Option<&str>) -> bool {
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
pub(super) async fn decode_off_workers(
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
pub(super) fn decode_request(
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
    if let Some(operation) = wsman_pull::classify(&action) {
        // WS-Management's Pull mode: WS-Enumeration requests about 2004/08 subscriptions.
        let version = EventingVersion::Aug2004;
        context.eventing = Some(version);
        context.operation = Some(operation);
        let call = decode_enumeration(&envelope, operation, context.wsman.operation_timeout)
            .map_err(|problem| context.fault(&problem))?;
        return Ok((context, version, call));
    }
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
            let credentials = super::wsman_auth::IssuedTokens::read(envelope.header_blocks())
                .map_err(|p| context.fault(&p))?;
            Call::Subscribe(Box::new(
                decode::subscribe(
                    body_element,
                    dialect,
                    source,
                    manager_address.to_owned(),
                    &credentials,
                )
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
        Operation::Publish | Operation::Pull | Operation::Release => {
            return Err(context.fault(&Problem::ActionNotSupported(action)));
        }
    };
    Ok((context, version, call))
}

/// Decodes a WS-Enumeration Pull or Release. The subscription is named by the context; an
/// identifier header, when present, must name the same.
fn decode_enumeration(
    envelope: &Envelope<'_, '_>,
    operation: Operation,
    operation_timeout: Option<std::time::Duration>,
) -> Result<Call, Problem> {
    let body = envelope
        .body_element()
        .filter(|element| xml::is(*element, faults::WSEN_NS, operation.name()))
        .ok_or_else(|| {
            Problem::Wsman(faults::WsmanFault::sender(
                "SchemaValidationError",
                format!(
                    "The supplied SOAP violates the corresponding XML Schema definition: the \
                     SOAP Body must contain wsen:{} in {}",
                    operation.name(),
                    faults::WSEN_NS
                ),
                None,
            ))
        })?;
    let identifier = decode::identifier_header(EventingVersion::Aug2004, envelope.header_blocks())
        .map_err(wsman_pull::context_problem)?;
    Ok(match operation {
        Operation::Release => {
            Call::Release(wsman_pull::decode_release(body, identifier)?.subscription)
        }
        _ => Call::Pull(wsman_pull::decode_pull(
            body,
            identifier,
            operation_timeout,
        )?),
    })
}

/// The fault for a message that is not a usable envelope: no addressing is known, so the fault
/// carries no WS-Addressing headers.
pub(super) fn envelope_fault(media_soap: SoapVersion, err: &EnvelopeError) -> SoapReply {
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
