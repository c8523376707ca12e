//! The JSON API: publishing events and inspecting or cancelling subscriptions. Errors are
//! RFC 9457 problem documents.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{AppState, BodyError, read_body, views};
use crate::domain::event::{Event, NewEvent};
use crate::engine::EngineError;
use crate::soap::envelope::{EnvelopeError, Limits, parse_document};
use crate::soap::limits::OFFLOAD_BYTES;
use crate::soap::xml;

/// Namespace of the batch publishing document.
pub const PUBLISH_NS: &str = "urn:herald:publish";

/// A path's parameters, or a 400 problem naming what is wrong with them (axum's own rejection
/// is plain text, outside the API's documented answers).
pub(super) struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(problem(
                StatusCode::BAD_REQUEST,
                "Bad request",
                format!("the path: {}", rejection.body_text()),
            )),
        }
    }
}

/// An RFC 9457 problem response.
pub(super) fn problem(
    status: StatusCode,
    title: &'static str,
    detail: impl Into<String>,
) -> Response {
    let body = views::Problem {
        kind: "about:blank",
        title,
        status: status.as_u16(),
        detail: detail.into(),
    };
    let mut response = json_response(status, &body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    response
}

pub(super) fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(value).unwrap_or_else(|err| {
        tracing::error!(error = %err, "a JSON answer could not be written");
        String::from("{}")
    });
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// 401 with `WWW-Authenticate: Bearer`.
pub(super) fn unauthorized() -> Response {
    let mut response = problem(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "this endpoint requires the configured bearer token",
    );
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

pub(super) fn engine_problem(err: EngineError) -> Response {
    match err {
        EngineError::UnknownContext(name) => problem(
            StatusCode::NOT_FOUND,
            "Unknown context service",
            format!("no context service named '{name}'"),
        ),
        EngineError::UnknownSource(name) => problem(
            StatusCode::NOT_FOUND,
            "Unknown source",
            format!("no event source named '{name}'"),
        ),
        EngineError::UnknownSubscription => problem(
            StatusCode::NOT_FOUND,
            "Unknown subscription",
            "no subscription with this identifier",
        ),
        EngineError::AgentNotPublishable(_) => problem(
            StatusCode::BAD_REQUEST,
            "Not an event source",
            err.to_string(),
        ),
        EngineError::EventTooLarge { .. } => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Event too large",
            err.to_string(),
        ),
        other => {
            tracing::warn!(error = %other, "API request failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                other.to_string(),
            )
        }
    }
}

pub(super) fn body_problem(err: BodyError, limit: usize) -> Response {
    match err {
        BodyError::TooLarge => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Payload too large",
            format!("the request body is larger than {limit} bytes"),
        ),
        BodyError::Unreadable => problem(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "the request body could not be read",
        ),
        BodyError::TimedOut => problem(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            "the request body did not arrive in time",
        ),
    }
}

fn xml_problem(err: &EnvelopeError) -> Response {
    problem(StatusCode::BAD_REQUEST, "Malformed XML", err.to_string())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The action of a single published event: the `Herald-Action` header or the `action` query
/// parameter.
fn action_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let from_header = headers
        .get("herald-action")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let from_query = || {
        uri.query()?.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name == "action").then(|| percent_decode(value)).flatten()
        })
    };
    from_header
        .or_else(from_query)
        .map(|action| action.trim().to_owned())
        .filter(|action| !action.is_empty())
}

fn published(source: &str, events: &[std::sync::Arc<Event>]) -> Response {
    for event in events {
        tracing::debug!(source, event = %event.id, seq = event.seq, action = %event.action, "event published");
    }
    json_response(StatusCode::ACCEPTED, &views::Published::of(events))
}

/// `POST /api/v1/sources/{source}/events`: one event, the body its XML element, or a JSON
/// document with `Content-Type: application/json`.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{source}/events",
    tag = "publishing",
    params(
        ("source" = String, Path, description = "The event source"),
        ("action" = Option<String>, Query, description = "The event's action URI (or the Herald-Action header)"),
        ("Herald-Action" = Option<String>, Header, description = "The event's action URI"),
    ),
    request_body(
        description = "The event: one XML element, or a JSON document (`application/json` or any `+json` type)",
        content(
            (String = "application/xml"),
            (serde_json::Value = "application/json"),
        )
    ),
    responses(
        (status = 202, description = "Durable", body = views::Published),
        (status = 400, description = "No action, an empty body, malformed XML or JSON, or not an event source", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body or the event is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn publish_one(
    State(state): State<AppState>,
    ApiPath(source): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(err) = state.engine.source(&source) {
        return engine_problem(err);
    }
    let Some(action) = action_of(&headers, &uri) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Missing action",
            "give the event's action URI in the Herald-Action header or the action query parameter",
        );
    };
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(err) => return body_problem(err, state.max_body_bytes),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return problem(
            StatusCode::BAD_REQUEST,
            "Empty event",
            "the request body holds no XML element",
        );
    }
    if is_json(&headers) {
        return match json_event(&bytes) {
            Ok(payload) => publish(&state, &source, action, payload).await,
            Err(detail) => problem(StatusCode::BAD_REQUEST, "Malformed JSON", detail),
        };
    }
    let limits = state.limits;
    let payload = off_workers(bytes, move |bytes| {
        parse_document(bytes, limits).map(|document| xml::fragment(document.root_element()))
    })
    .await;
    let payload = match payload {
        Ok(Ok(payload)) => payload,
        Ok(Err(err)) => return xml_problem(&err),
        Err(response) => return response,
    };
    if let Some(response) = reserved(&payload) {
        return response;
    }
    publish(&state, &source, action, payload).await
}

async fn publish(state: &AppState, source: &str, action: String, payload: String) -> Response {
    match state
        .engine
        .publish(source, vec![NewEvent { action, payload }])
        .await
    {
        Ok(events) => published(source, &events),
        Err(err) => engine_problem(err),
    }
}

/// Whether a published event is JSON: `application/json` or any `+json` type.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

/// A JSON event as herald keeps it (see [`crate::domain::webhook::wrap_json`]), or why it is
/// not JSON.
fn json_event(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the body is not UTF-8".to_owned())?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|err| err.to_string())?;
    // Kept as XML too (for SOAP subscribers and XPath filters): no character XML cannot hold.
    if text.contains(['\u{FFFE}', '\u{FFFF}']) {
        return Err("the JSON holds U+FFFE or U+FFFF, which herald cannot keep".into());
    }
    Ok(crate::domain::webhook::wrap_json(text))
}

/// The refusal of an XML event in herald's own JSON element (it would pass for a JSON event).
fn reserved(payload: &str) -> Option<Response> {
    if crate::domain::webhook::unwrap_json(payload).is_some() {
        return Some(problem(
            StatusCode::BAD_REQUEST,
            "Reserved namespace",
            format!(
                "{} is herald's own namespace for JSON events: publish JSON with Content-Type: \
                 application/json",
                crate::domain::webhook::JSON_EVENT_NS
            ),
        ));
    }
    None
}

/// `POST /api/v1/sources/{source}/events/batch`: many events in one durable append, as
/// `<Events xmlns="urn:herald:publish"><Event action="…">element</Event>…</Events>`.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{source}/events/batch",
    tag = "publishing",
    params(("source" = String, Path, description = "The event source")),
    request_body(
        description = "`<Events xmlns=\"urn:herald:publish\"><Event action=\"URI\">element</Event>…</Events>`",
        content = String,
        content_type = "application/xml"
    ),
    responses(
        (status = 202, description = "Durable, every event in order", body = views::Published),
        (status = 400, description = "Malformed XML, not a batch, a missing action, an empty event or batch", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown source", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body or an event is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn publish_batch(
    State(state): State<AppState>,
    ApiPath(source): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(err) = state.engine.source(&source) {
        return engine_problem(err);
    }
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(err) => return body_problem(err, state.max_body_bytes),
    };
    let limits = state.limits;
    let events = match off_workers(bytes, move |bytes| batch_events(bytes, limits)).await {
        Ok(Ok(events)) => events,
        Ok(Err((title, detail))) => return problem(StatusCode::BAD_REQUEST, title, detail),
        Err(response) => return response,
    };
    for event in &events {
        if let Some(response) = reserved(&event.payload) {
            return response;
        }
    }
    match state.engine.publish(&source, events).await {
        Ok(events) => published(&source, &events),
        Err(err) => engine_problem(err),
    }
}

/// Why a batch is refused (400): a title and a detail.
pub type BadBatch = (&'static str, String);

/// The events of a batch document, or why it is refused. Also the batch fuzz target's entry.
pub fn batch_events(bytes: &[u8], limits: Limits) -> Result<Vec<NewEvent>, BadBatch> {
    let document = match parse_document(bytes, limits) {
        Ok(document) => document,
        Err(err) => return Err(("Malformed XML", err.to_string())),
    };
    let root = document.root_element();
    if !xml::is(root, PUBLISH_NS, "Events") {
        return Err((
            "Not a batch",
            format!("the document element must be {{{PUBLISH_NS}}}Events"),
        ));
    }
    let mut events = Vec::new();
    for (index, element) in xml::elements(root).enumerate() {
        if !xml::is(element, PUBLISH_NS, "Event") {
            return Err((
                "Not a batch",
                format!("child {} is not an {{{PUBLISH_NS}}}Event", index + 1),
            ));
        }
        let Some(action) = element
            .attribute("action")
            .map(str::trim)
            .filter(|a| !a.is_empty())
        else {
            return Err((
                "Missing action",
                format!("event {} has no action attribute", index + 1),
            ));
        };
        let payload: String = xml::elements(element).map(xml::fragment).collect();
        if payload.is_empty() {
            return Err((
                "Empty event",
                format!("event {} holds no XML element", index + 1),
            ));
        }
        events.push(NewEvent {
            action: action.to_owned(),
            payload,
        });
    }
    if events.is_empty() {
        return Err(("Empty batch", "the batch holds no events".into()));
    }
    Ok(events)
}

/// Runs `parse` on a request body: on a blocking thread when the body is large enough for
/// parsing to take more than a millisecond, so the async workers keep serving. `Err` is the
/// 500 problem of a parse that panicked.
async fn off_workers<T: Send + 'static>(
    bytes: Bytes,
    parse: impl FnOnce(&[u8]) -> T + Send + 'static,
) -> Result<T, Response> {
    if bytes.len() <= OFFLOAD_BYTES {
        return Ok(parse(&bytes));
    }
    tokio::task::spawn_blocking(move || parse(&bytes))
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "parsing a request body failed");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "the request body could not be parsed",
            )
        })
}

/// The JSON API routes; [`super::router`] puts the bearer-token check in front of all of them.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sources/{source}/events", post(publish_one))
        .route("/api/v1/sources/{source}/events/batch", post(publish_batch))
}
