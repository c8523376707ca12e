//! The front doors: axum routers. Each file owns one resource and ends in `router()`.

mod agents;
mod api;
mod channel_api;
mod channels;
mod console;
mod contexts;
mod invocations;
mod views;

pub use api::{BadBatch, batch_events};
mod openapi;
mod operations;
pub mod server;
mod soap;
mod subscriptions;
mod wsdl;

use std::sync::Arc;

use axum::Router;

use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::soap::envelope::Limits;

/// What every handler shares: one reference, cloned for each request (axum's `State`), where
/// each of its fields' own references, shared by both cores, was counted up and down in turn.
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl AppState {
    /// The state the handlers share.
    pub fn new(shared: AppShared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppShared {
    /// The domain engine.
    pub engine: Arc<Engine>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Public base URL, if configured (otherwise derived from the Host header).
    pub public_url: Option<Arc<str>>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request body.
    pub body_timeout: std::time::Duration,
    /// Parser limits.
    pub limits: Limits,
    /// Bearer token for publishing and the JSON API, if one is configured.
    pub api_token: Option<Arc<str>>,
    /// The client that forwards context services' requests to their backends.
    pub gateway: crate::context::gateway::Gateway,
    /// Which source answers to which WS-Management resource URI.
    pub resources: Arc<crate::eventing::wsman::ResourceTable>,
}

impl AppShared {
    /// Whether the request carries the configured bearer token (or none is configured). The
    /// comparison takes the same time wherever the tokens differ.
    pub fn authorized(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(expected) = &self.api_token else {
            return true;
        };
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                // The scheme is case-insensitive (RFC 9110 §11.1).
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .unwrap_or("");
        let (a, b) = (expected.as_bytes(), presented.trim().as_bytes());
        let mut difference = a.len() ^ b.len();
        for (i, byte) in a.iter().enumerate() {
            difference |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
        }
        difference == 0
    }
}

/// Why a request body could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the configured limit (413).
    TooLarge,
    /// The connection failed while reading.
    Unreadable,
    /// The client did not send the whole body in time (408).
    TimedOut,
}

/// Reads a request body of at most `limit` bytes, refusing early when Content-Length already
/// says it is too large.
pub async fn read_body(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<axum::body::Bytes, BodyError> {
    let limit = state.max_body_bytes;
    use http_body_util::{BodyExt, LengthLimitError, Limited};
    let declared_too_large = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > limit as u64);
    if declared_too_large {
        return Err(BodyError::TooLarge);
    }
    let collecting = Limited::new(body, limit).collect();
    let Ok(collected) = tokio::time::timeout(state.body_timeout, collecting).await else {
        return Err(BodyError::TimedOut);
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(err) => {
            tracing::debug!(error = %err, "request body could not be read");
            Err(BodyError::Unreadable)
        }
    }
}

/// Refuses a request that lacks the configured bearer token (401). Layered over the whole JSON
/// API, so that no handler can forget it.
async fn require_token(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if state.authorized(request.headers()) {
        next.run(request).await
    } else {
        api::unauthorized()
    }
}

/// The complete router.
pub fn router(state: AppState) -> Router {
    let api = (api::router().merge(contexts::api_router()))
        .merge(invocations::api_router())
        .merge(agents::api_router())
        .merge(channel_api::api_router())
        .merge(subscriptions::api_router())
        .merge(console::api_router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .merge(soap::router(
            state.engine.sources().map(|source| &source.name),
        ))
        .merge(contexts::router())
        .merge(invocations::router())
        .merge(channels::router())
        .merge(channel_api::capability_router())
        .merge(openapi::router())
        .merge(api)
        .merge(operations::router())
        .merge(console::router())
        .with_state(state)
}

/// herald's base URL as clients reach it: `public_url`, else from the Host header.
pub(crate) fn base_url(state: &AppState, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.to_string();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    ["http://", host].concat()
}
