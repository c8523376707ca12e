//! Callback contexts: the gateway endpoint `POST /contexts/{name}` (SOAP, see `context/`) and
//! the JSON API for instances: queue a callback, read an instance, end it.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::ToSchema;

use super::api::{ApiPath, body_problem, engine_problem, json_response, problem};
use super::base_url;
use super::soap::{media_type, soap_action};
use super::{AppState, read_body, views};
use crate::context::{self, ContextReply, ContextRequest};
use crate::domain::subscription::{SourceName, SubscriptionId};
use crate::engine::EngineError;
use crate::eventing::notify::notification_message_id;
use crate::metrics::{CallbackLabels, RequestLabels};
use crate::soap::envelope::parse_document;
use crate::soap::xml;

/// `POST /contexts/{name}`: context exchange and forwarding to the service's backend.
async fn gateway(
    State(state): State<AppState>,
    Path(service): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (media_soap, media_action) = media_type(&headers);
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(err) => return body_problem(err, state.max_body_bytes),
    };
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let action = soap_action(&headers);
    let cookies: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let path = uri.path();
    let request = ContextRequest {
        service: &service,
        path,
        address: format!("{}{path}", base_url(&state, &headers)),
        content_type,
        soap_action: action.as_deref().or(media_action.as_deref()),
        media_soap,
        cookies,
        body: &bytes,
    };
    let reply = context::handle(&state.engine, &state.gateway, state.limits, request).await;
    respond(&state, reply)
}

fn respond(state: &AppState, reply: ContextReply) -> Response {
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            operation: "context",
            outcome: reply.outcome,
        })
        .inc();
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, reply.body).into_response();
    if let Some(content_type) = reply
        .content_type
        .and_then(|value| HeaderValue::from_str(&value).ok())
    {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// A callback to queue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CallbackRequest {
    /// The callback's `wsa:Action`.
    action: String,
    /// The SOAP Body content: one element (or several), as XML text.
    body: String,
}

fn instance_path(
    state: &AppState,
    service: &str,
    id: &str,
) -> Result<(SourceName, SubscriptionId), Box<Response>> {
    let policy = state
        .engine
        .context(service)
        .map_err(|err| Box::new(engine_problem(err)))?;
    let id = SubscriptionId::parse(id).ok_or_else(|| Box::new(unknown_instance()))?;
    Ok((policy.name.clone(), id))
}

fn unknown_instance() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Unknown instance",
        "no instance of this context service with this identifier",
    )
}

fn instance_problem(state: &AppState, service: &SourceName, err: EngineError) -> Response {
    let reason = match &err {
        EngineError::NoCallbackEndpoint => "no_callback_endpoint",
        EngineError::InstanceEnded(_) => "instance_ended",
        EngineError::UnknownSubscription => "unknown_instance",
        EngineError::EventTooLarge { .. } => "too_large",
        _ => "unavailable",
    };
    state
        .metrics
        .callbacks_refused
        .get_or_create(&CallbackLabels {
            context: service.to_string(),
            reason,
        })
        .inc();
    match err {
        EngineError::UnknownSubscription => unknown_instance(),
        EngineError::NoCallbackEndpoint | EngineError::InstanceEnded(_) => {
            problem(StatusCode::CONFLICT, "Callback refused", err.to_string())
        }
        other => engine_problem(other),
    }
}

/// `POST /api/v1/contexts/{name}/instances/{id}/callbacks`: queues a callback; `202` once it is
/// durable.
#[utoipa::path(
    post,
    path = "/api/v1/contexts/{service}/instances/{id}/callbacks",
    tag = "contexts",
    params(
        ("service" = String, Path, description = "The context service"),
        ("id" = String, Path, description = "The instance's `instanceId`"),
    ),
    request_body = CallbackRequest,
    responses(
        (status = 202, description = "Durable", body = views::QueuedCallback),
        (status = 400, description = "Not a callback, an empty action, a body that is not one XML element", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown context service or instance", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The instance has no callback endpoint, or has ended", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn queue_callback(
    State(state): State<AppState>,
    ApiPath((service, id)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (service, id) = match instance_path(&state, &service, &id) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(err) => return body_problem(err, state.max_body_bytes),
    };
    let request: CallbackRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad callback",
                format!("the body must be {{\"action\": \"…\", \"body\": \"<…/>\"}}: {err}"),
            );
        }
    };
    if request.action.trim().is_empty() {
        return problem(StatusCode::BAD_REQUEST, "Bad callback", "action is empty");
    }
    // One element, made self-contained (the namespaces it uses declared on it).
    let body = match parse_document(request.body.as_bytes(), state.limits) {
        Ok(document) => xml::fragment(document.root_element()),
        Err(err) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Bad callback",
                format!("body must be one XML element: {err}"),
            );
        }
    };
    match state
        .engine
        .callback(&service, id, request.action, body)
        .await
    {
        Ok(event) => {
            state
                .metrics
                .callbacks_queued
                .get_or_create(&crate::metrics::ContextLabels {
                    context: service.to_string(),
                })
                .inc();
            json_response(
                StatusCode::ACCEPTED,
                &views::QueuedCallback {
                    instance: id.key(),
                    seq: event.seq,
                    message_id: notification_message_id(id, event.seq),
                },
            )
        }
        Err(err) => instance_problem(&state, &service, err),
    }
}

/// `GET /api/v1/contexts/{name}/instances/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/contexts/{service}/instances/{id}",
    tag = "contexts",
    params(
        ("service" = String, Path, description = "The context service"),
        ("id" = String, Path, description = "The instance's `instanceId`"),
    ),
    responses(
        (status = 200, description = "The instance", body = views::InstanceView),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown context service or instance", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn instance(
    State(state): State<AppState>,
    ApiPath((service, id)): ApiPath<(String, String)>,
) -> Response {
    let (service, id) = match instance_path(&state, &service, &id) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.engine.instance(&service, id).await {
        Ok((record, head)) => json_response(
            StatusCode::OK,
            &views::InstanceView::of(&service, record, head),
        ),
        Err(EngineError::UnknownSubscription) => unknown_instance(),
        Err(err) => engine_problem(err),
    }
}

/// `DELETE /api/v1/contexts/{name}/instances/{id}`.
#[utoipa::path(
    delete,
    path = "/api/v1/contexts/{service}/instances/{id}",
    tag = "contexts",
    params(
        ("service" = String, Path, description = "The context service"),
        ("id" = String, Path, description = "The instance's `instanceId`"),
    ),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown context service or instance", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn end_instance(
    State(state): State<AppState>,
    ApiPath((service, id)): ApiPath<(String, String)>,
) -> Response {
    let (service, id) = match instance_path(&state, &service, &id) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match state.engine.end_instance(&service, id).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(EngineError::UnknownSubscription) => unknown_instance(),
        Err(err) => engine_problem(err),
    }
}

/// The gateway endpoint (SOAP clients; no bearer token).
pub fn router() -> Router<AppState> {
    Router::new().route("/contexts/{service}", post(gateway))
}

/// The JSON API routes for instances (behind the bearer token).
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/contexts/{service}/instances/{id}",
            get(instance).delete(end_instance),
        )
        .route(
            "/api/v1/contexts/{service}/instances/{id}/callbacks",
            post(queue_callback),
        )
}
