//! The WS-Eventing endpoints: `POST /eventing/{source}` (event source) and
//! `POST /eventing/{source}/subscriptions` (subscription manager); `GET /eventing/{source}`
//! serves their WSDL and schemas (`super::wsdl`); `POST /wsman` is WS-Management's endpoint for
//! the source that declares the request's `wsman:ResourceURI`.

use super::{AppState, BodyError, base_url, read_body};
use crate::domain::subscription::{SoapVersion, SourceName};
use crate::eventing::{self, Endpoint, SoapReply, SoapRequest};
use crate::metrics::RequestLabels;
use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// The SOAP version a media type names, and its `action` parameter (SOAP 1.2).
pub(super) fn media_type(headers: &HeaderMap) -> (Option<SoapVersion>, Option<String>) {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return (None, None);
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let version = if essence.eq_ignore_ascii_case("application/soap+xml") {
        Some(SoapVersion::Soap12)
    } else if essence.eq_ignore_ascii_case("text/xml") {
        Some(SoapVersion::Soap11)
    } else {
        None
    };
    let action = parts.find_map(|part| {
        let (name, value) = part.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("action")
            .then(|| value.trim().trim_matches('"').to_owned())
    });
    (version, action)
}

/// The action of a SOAP 1.1 request: the `SOAPAction` header, quotes removed.
pub(super) fn soap_action(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("soapaction")?.to_str().ok()?;
    Some(value.trim().trim_matches('"').to_owned())
}

// Each takes the request whole, its headers moved out of it rather than copied by an
// extractor.
async fn source_endpoint(
    State(state): State<AppState>,
    Path(source): Path<String>,
    request: Request,
) -> Response {
    serve(state, source, Endpoint::Source, request).await
}

async fn manager_endpoint(
    State(state): State<AppState>,
    Path(source): Path<String>,
    request: Request,
) -> Response {
    serve(state, source, Endpoint::Manager, request).await
}

async fn wsman_endpoint(State(state): State<AppState>, request: Request) -> Response {
    serve(state, String::new(), Endpoint::Wsman, request).await
}

async fn serve(state: AppState, source: String, endpoint: Endpoint, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let (media_soap, media_action) = media_type(&headers);
    let http_action = media_action.or_else(|| soap_action(&headers));
    let limit = state.max_body_bytes;
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(BodyError::Unreadable) => {
            let reply =
                eventing::transport_fault(media_soap, "the request body could not be read".into());
            return respond(&state, reply);
        }
        Err(BodyError::TimedOut) => {
            let reply = eventing::transport_fault(
                media_soap,
                "the request body did not arrive in time".into(),
            );
            let mut response = respond(&state, reply);
            *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
            return response;
        }
        Err(BodyError::TooLarge) => {
            let reply = eventing::transport_fault(
                media_soap,
                format!("the request body is larger than {limit} bytes"),
            );
            let mut response = respond(&state, reply);
            *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return response;
        }
    };
    let base_url = base_url(&state, &headers);
    let request = SoapRequest {
        source: &source,
        resources: &state.resources,
        endpoint,
        base_url: &base_url,
        http_action: http_action.as_deref(),
        media_soap,
        body: &bytes,
        publish_allowed: state.authorized(&headers),
    };
    let reply = eventing::handle(&state.engine, state.limits, request).await;
    respond(&state, reply)
}

fn respond(state: &AppState, reply: SoapReply) -> Response {
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            operation: reply.operation.map_or("unknown", |op| op.metric_label()),
            outcome: reply.outcome.label(),
        })
        .inc();
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if reply.content_type.is_empty() {
        status.into_response()
    } else {
        (status, reply.body).into_response()
    };
    for (name, value) in &reply.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    if reply.content_type.is_empty() {
        return response;
    }
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    response
}

/// The eventing routes. Each configured source also has routes under its own name: axum
/// decodes a path parameter into a copy it keeps in the request's extensions, 0.8k of herald's
/// 87k instructions per Subscribe (`callgrind`, BENCHMARKS.md thirty-third pass). The routes
/// with a parameter serve every other name, as before (a percent-encoded name, or a fault for a
/// source herald does not have).
pub fn router<'a>(sources: impl Iterator<Item = &'a SourceName>) -> Router<AppState> {
    let mut router = Router::new()
        .route(
            "/eventing/{source}",
            post(source_endpoint).get(super::wsdl::describe),
        )
        .route("/eventing/{source}/subscriptions", post(manager_endpoint))
        .route("/wsman", post(wsman_endpoint));
    for source in sources {
        let name = source.as_str().to_owned();
        let (source, manager, described) = (name.clone(), name.clone(), name.clone());
        let serve_as = move |name: String, endpoint| {
            move |State(state): State<AppState>, request: Request| {
                serve(state, name.clone(), endpoint, request)
            }
        };
        router = router
            .route(
                &format!("/eventing/{name}"),
                post(serve_as(source, Endpoint::Source)).get(
                    move |state: State<AppState>, query: RawQuery, headers: HeaderMap| {
                        super::wsdl::describe_source(state, described.clone(), query, headers)
                    },
                ),
            )
            .route(
                &format!("/eventing/{name}/subscriptions"),
                post(serve_as(manager, Endpoint::Manager)),
            );
    }
    router
}
