//! Channel management in the JSON API: a client app opens a channel (behind the bearer token),
//! then reads, renews and closes it with its token as the capability.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use utoipa::ToSchema;

use super::api::{ApiPath, engine_problem, json_response};
use super::base_url;
use super::channels::unknown_channel;
use super::{AppState, views};
use crate::engine::EngineError;

/// An opened channel.
#[derive(Debug, Serialize, ToSchema)]
struct Opened {
    channel_uri: String,
    token: String,
    expires_at: String,
}

/// `POST /api/v1/channels`: a client app opens a channel.
#[utoipa::path(
    post,
    path = "/api/v1/channels",
    tag = "channels",
    responses(
        (status = 201, description = "Opened", body = Opened, headers(("Location" = String, description = "The channel URI"))),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn open(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.engine.open_channel().await {
        Ok(channel) => {
            let uri = format!("{}/channels/{}", base_url(&state, &headers), channel.token);
            let mut response = json_response(
                StatusCode::CREATED,
                &Opened {
                    channel_uri: uri.clone(),
                    token: channel.token.to_string(),
                    expires_at: channel.expires_at.to_string(),
                },
            );
            if let Ok(location) = HeaderValue::from_str(&uri) {
                response
                    .headers_mut()
                    .insert(axum::http::header::LOCATION, location);
            }
            state.metrics.channels_opened.inc();
            response
        }
        Err(err) => engine_problem(err),
    }
}

/// `DELETE /api/v1/channels/{token}`: the channel's client closes it (the token is the
/// capability).
#[utoipa::path(
    delete,
    path = "/api/v1/channels/{token}",
    tag = "channels",
    params(("token" = String, Path, description = "The channel's token (its capability)")),
    responses(
        (status = 204, description = "Closed"),
        (status = 404, description = "No open channel has this token", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn close(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Response {
    match state.engine.close_channel(&token).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) | Err(EngineError::UnknownChannel) => unknown_channel(),
        Err(err) => engine_problem(err),
    }
}

/// A renewed channel.
#[derive(Debug, Serialize, ToSchema)]
struct Renewed {
    expires_at: String,
}

/// `POST /api/v1/channels/{token}/renew`: another time-to-live.
#[utoipa::path(
    post,
    path = "/api/v1/channels/{token}/renew",
    tag = "channels",
    params(("token" = String, Path, description = "The channel's token (its capability)")),
    responses(
        (status = 200, description = "Renewed", body = Renewed),
        (status = 404, description = "No open channel has this token", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn renew(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Response {
    match state.engine.renew_channel(&token).await {
        Ok(expires_at) => json_response(
            StatusCode::OK,
            &Renewed {
                expires_at: expires_at.to_string(),
            },
        ),
        Err(EngineError::UnknownChannel) => unknown_channel(),
        Err(err) => engine_problem(err),
    }
}

/// A channel's state.
#[derive(Debug, Serialize, ToSchema)]
struct ChannelView {
    token: String,
    status: &'static str,
    created_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    closed_at: Option<String>,
    last_seen: String,
    /// The last notification the device has said it read.
    cursor: u64,
    /// The last notification a stream has sent it (reported at its check-ins).
    sent: u64,
    /// The last notification sent.
    head: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback: Option<CallbackView>,
}

/// A channel's callback registration.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChannelCallback)]
struct CallbackView {
    uri: String,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    registered_at: String,
    /// `armed`, `firing`, `fired` or `failed`.
    state: &'static str,
}

/// `GET /api/v1/channels/{token}`: the channel's state (the token is the capability).
#[utoipa::path(
    get,
    path = "/api/v1/channels/{token}",
    tag = "channels",
    params(("token" = String, Path, description = "The channel's token (its capability)")),
    responses(
        (status = 200, description = "The channel", body = ChannelView),
        (status = 404, description = "No channel has this token", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
        (status = 400, description = "A path parameter that is not UTF-8", body = views::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn show(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Response {
    let channel = match state.engine.channel(&token).await {
        Ok(channel) => channel,
        Err(EngineError::UnknownChannel) => return unknown_channel(),
        Err(err) => return engine_problem(err),
    };
    let view = ChannelView {
        token: channel.token.to_string(),
        status: state.engine.channel_status(&channel).as_str(),
        created_at: channel.created_at.to_string(),
        expires_at: channel.expires_at.to_string(),
        closed_at: channel.closed_at.map(|at| at.to_string()),
        last_seen: channel.last_seen.to_string(),
        cursor: channel.cursor,
        sent: channel.sent,
        head: channel.head,
        callback: channel
            .callback
            .map(|(registration, callback)| CallbackView {
                uri: registration.uri,
                bytes: registration.payload.len(),
                content_type: registration.content_type,
                registered_at: registration.registered_at.to_string(),
                state: callback.as_str(),
            }),
    };
    json_response(StatusCode::OK, &view)
}

/// The route behind the bearer token: opening a channel.
pub fn api_router() -> Router<AppState> {
    Router::new().route("/api/v1/channels", post(open))
}

/// The routes whose capability is the channel's token (no bearer token).
pub fn capability_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/channels/{token}", get(show).delete(close))
        .route("/api/v1/channels/{token}/renew", post(renew))
}
