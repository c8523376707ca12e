//! Invocation callbacks: raising invoker events (`POST /api/v1/invokers/{name}/events`, JSON;
//! `POST /invokers/{name}`, one-way SOAP), reading an invocation and retrying a failed one.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{ApiPath, body_problem, engine_problem, json_response, problem, unauthorized};
use super::{AppState, read_body, views};
use crate::domain::invocation::{InvocationId, InvocationRecord, Parameters};
use crate::domain::subscription::SoapVersion;
use crate::engine::{EngineError, InvokeProtocol};
use crate::invoke::message::{INVOKE_NS, xml_elements};
use crate::soap::envelope::{Envelope, parse_document};
use crate::soap::fault::{Fault, FaultCode, Subcode};
use crate::soap::xml;

/// A raise in JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RaiseRequest {
    key: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    parameters: Parameters,
}

/// The answer to a raise.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Raised {
    invocation_id: String,
    /// False when the key was raised within the idempotency window: this names that raise.
    created: bool,
    href: String,
}

fn raised(id: InvocationId, created: bool) -> Response {
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    json_response(
        status,
        &Raised {
            invocation_id: id.to_string(),
            created,
            href: format!("/api/v1/invocations/{id}"),
        },
    )
}

fn invocation_problem(err: EngineError) -> Response {
    match err {
        EngineError::UnknownInvoker(name) => problem(
            StatusCode::NOT_FOUND,
            "Unknown invoker",
            format!("no invoker named '{name}'"),
        ),
        EngineError::InvalidRaise(why) => problem(StatusCode::BAD_REQUEST, "Invalid raise", why),
        EngineError::UnknownInvocation => problem(
            StatusCode::NOT_FOUND,
            "Unknown invocation",
            "no invocation has this id",
        ),
        EngineError::NotFailed(_) => problem(StatusCode::CONFLICT, "Not failed", err.to_string()),
        other => engine_problem(other),
    }
}

/// A SOAP invoker's payload must be XML elements (it becomes the SOAP Body).
fn check_payload(state: &AppState, invoker: &str, payload: &str) -> Result<(), EngineError> {
    let policy = state.engine.invoker(invoker)?;
    if matches!(policy.protocol, InvokeProtocol::Soap { .. })
        && !payload.trim().is_empty()
        && xml_elements(payload).is_none()
    {
        return Err(EngineError::InvalidRaise(
            "a SOAP invoker's payload must be XML elements (it becomes the SOAP Body)".into(),
        ));
    }
    Ok(())
}

/// `POST /api/v1/invokers/{name}/events`.
#[utoipa::path(
    post,
    path = "/api/v1/invokers/{name}/events",
    tag = "invocations",
    params(("name" = String, Path, description = "The invoker")),
    request_body = RaiseRequest,
    responses(
        (status = 202, description = "Durable: a new invocation", body = Raised),
        (status = 200, description = "The key was raised within the idempotency window: that invocation", body = Raised),
        (status = 400, description = "Not a raise, or an invalid one (parameters, payload)", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown invoker", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn raise(
    State(state): State<AppState>,
    ApiPath(invoker): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(err) => return body_problem(err, state.max_body_bytes),
    };
    let request: RaiseRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Invalid raise",
                format!(
                    "the body is not a raise ({{\"key\", \"payload\", \"parameters\"}}): {err}"
                ),
            );
        }
    };
    if let Err(err) = check_payload(&state, &invoker, &request.payload) {
        return invocation_problem(err);
    }
    match state
        .engine
        .raise(&invoker, &request.key, request.payload, &request.parameters)
        .await
    {
        Ok((id, created)) => raised(id, created),
        Err(err) => invocation_problem(err),
    }
}

fn soap_fault(soap: SoapVersion, reason: String) -> Response {
    let fault = Fault {
        code: FaultCode::Sender,
        subcode: Some(Subcode {
            ns: INVOKE_NS,
            prefix: "hi",
            local: "InvalidRaise",
        }),
        reason,
        detail: Vec::new(),
        action: "http://www.w3.org/2005/08/addressing/soap/fault".into(),
    };
    let status = StatusCode::from_u16(fault.http_status(soap)).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, fault.to_envelope(soap, None)).into_response();
    if let Ok(value) = soap.content_type().parse() {
        response
            .headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, value);
    }
    response
}

/// `POST /invokers/{name}`: the one-way SOAP form of a raise. The key is the `hi:EventKey`
/// header, parameters are `hi:Parameter name="…"` headers, the payload is the Body's content.
/// `202` with no body once durable; a SOAP fault otherwise.
async fn raise_soap(
    State(state): State<AppState>,
    Path(invoker): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state.authorized(&headers) {
        return unauthorized();
    }
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(err) => return body_problem(err, state.max_body_bytes),
    };
    let document = match parse_document(&bytes, state.limits) {
        Ok(document) => document,
        Err(err) => return soap_fault(SoapVersion::Soap11, err.to_string()),
    };
    let envelope = match Envelope::from_document(&document) {
        Ok(envelope) => envelope,
        Err(err) => return soap_fault(SoapVersion::Soap11, err.to_string()),
    };
    let soap = envelope.version;
    let mut key = None;
    let mut parameters = BTreeMap::new();
    for block in envelope.header_blocks() {
        if xml::is(block, INVOKE_NS, "EventKey") {
            key = Some(xml::trimmed_text(block));
        } else if xml::is(block, INVOKE_NS, "Parameter") {
            let Some(name) = block.attribute("name") else {
                return soap_fault(soap, "hi:Parameter needs a name attribute".into());
            };
            parameters.insert(name.to_owned(), block.text().unwrap_or_default().to_owned());
        }
    }
    let Some(key) = key else {
        return soap_fault(
            soap,
            format!("the {{{INVOKE_NS}}}EventKey header is required"),
        );
    };
    let payload: String = xml::elements(envelope.body).map(xml::fragment).collect();
    match state
        .engine
        .raise(&invoker, &key, payload, &parameters)
        .await
    {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(EngineError::Store(err)) => {
            tracing::error!(error = %err, "store failure");
            let fault = Fault {
                code: FaultCode::Receiver,
                subcode: None,
                reason: "the store is unavailable".into(),
                detail: Vec::new(),
                action: "http://www.w3.org/2005/08/addressing/soap/fault".into(),
            };
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                fault.to_envelope(soap, None),
            )
                .into_response()
        }
        Err(err) => soap_fault(soap, err.to_string()),
    }
}

/// An invocation as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct InvocationView {
    id: String,
    invoker: String,
    key: String,
    state: &'static str,
    parameters: Parameters,
    raised_at: String,
    attempts: u32,
    /// Times it was taken over while running (its call may have been made twice).
    resumed: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<String>,
    /// Where its callback event (or its error) went.
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_to: Option<DeliveredTo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    payload: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct DeliveredTo {
    agent: String,
    seq: u64,
}

impl InvocationView {
    fn of(record: InvocationRecord) -> InvocationView {
        let invocation = record.invocation;
        InvocationView {
            id: invocation.id.to_string(),
            invoker: invocation.invoker.to_string(),
            key: invocation.key,
            state: record.state.as_str(),
            parameters: invocation.parameters,
            raised_at: invocation.raised_at.to_string(),
            attempts: record.attempts,
            resumed: record.resumed,
            next_attempt_at: record.next_at.map(|at| at.to_string()),
            last_error: record.last_error,
            response: record.response,
            delivered_to: record.delivered_to.map(|(agent, seq)| DeliveredTo {
                agent: agent.to_string(),
                seq,
            }),
            finished_at: record.finished_at.map(|at| at.to_string()),
            payload: invocation.payload,
        }
    }
}

fn invocation_id(text: &str) -> Result<InvocationId, Box<Response>> {
    InvocationId::parse(text).ok_or_else(|| {
        Box::new(problem(
            StatusCode::NOT_FOUND,
            "Unknown invocation",
            "an invocation id is a UUID",
        ))
    })
}

/// `GET /api/v1/invocations/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/invocations/{id}",
    tag = "invocations",
    params(("id" = String, Path, description = "The invocation's id (a UUID)")),
    responses(
        (status = 200, description = "The invocation", body = InvocationView),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown invocation", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn show(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Response {
    let id = match invocation_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match state.engine.invocation(id).await {
        Ok(record) => json_response(StatusCode::OK, &InvocationView::of(record)),
        Err(err) => invocation_problem(err),
    }
}

/// `POST /api/v1/invocations/{id}/retry`.
#[utoipa::path(
    post,
    path = "/api/v1/invocations/{id}/retry",
    tag = "invocations",
    params(("id" = String, Path, description = "The invocation's id (a UUID)")),
    responses(
        (status = 202, description = "It will be called again", body = Raised),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown invocation", body = views::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The invocation has not failed", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn retry(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Response {
    let id = match invocation_id(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match state.engine.retry_invocation(id).await {
        Ok(()) => raised(id, true),
        Err(err) => invocation_problem(err),
    }
}

/// The JSON API routes (behind the token).
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/invokers/{name}/events", post(raise))
        .route("/api/v1/invocations/{id}", get(show))
        .route("/api/v1/invocations/{id}/retry", post(retry))
}

/// The SOAP route (checks the token itself, answering as SOAP callers expect).
pub fn router() -> Router<AppState> {
    Router::new().route("/invokers/{name}", post(raise_soap))
}
