//! The console: `GET /console`, a small page herald serves itself (HTML, CSS and vanilla
//! JavaScript embedded in the binary, no build step) that polls the JSON API and shows sources,
//! subscriptions, deliveries per second, contexts, agents and channels, and cancels
//! subscriptions. The page itself is open; every API call it makes carries the bearer token,
//! so without the token it shows nothing. `GET /api/v1/overview` gives it what no other
//! endpoint does, in one read.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::api::{engine_problem, json_response};
use super::{AppState, views};
use crate::metrics::{DeliveryLabels, SourceLabels};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// Only herald's own script and style run; the page talks to nothing but herald and cannot be
/// framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One of the console's files, never cached (it changes with herald), under the policy.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (CONTENT_TYPE, content_type),
        (CACHE_CONTROL, "no-store"),
        (
            HeaderName::from_static("content-security-policy"),
            CONTENT_SECURITY_POLICY,
        ),
        (HeaderName::from_static("x-content-type-options"), "nosniff"),
        (HeaderName::from_static("referrer-policy"), "no-referrer"),
    ];
    (headers, body).into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /api/v1/overview`: sources with their active subscriptions, backlog and events
/// published; delivery counters; context services, agents and channels by status.
#[utoipa::path(
    get,
    path = "/api/v1/overview",
    tag = "console",
    responses(
        (status = 200, description = "What this node hosts and how its deliveries go", body = views::Overview),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn overview(State(state): State<AppState>) -> Response {
    state.engine.refresh_metrics();
    let metrics = &state.metrics;
    let sources = state
        .engine
        .active_counts()
        .into_iter()
        .map(|(source, active)| {
            let labels = SourceLabels {
                source: source.to_string(),
            };
            let backlog = metrics.backlog.get_or_create(&labels).get();
            views::SourceOverview {
                name: labels.source.clone(),
                active,
                backlog: u64::try_from(backlog).unwrap_or(0),
                published: metrics.events_published.get_or_create(&labels).get(),
            }
        })
        .collect();
    let delivery = |outcome| {
        metrics
            .deliveries
            .get_or_create(&DeliveryLabels { outcome })
            .get()
    };
    let deliveries = views::DeliveryCounts {
        delivered: delivery("delivered"),
        failed: delivery("failed"),
        gave_up: delivery("gave_up"),
    };
    let depths = match state.engine.queue_depths().await {
        Ok(depths) => depths,
        Err(err) => return engine_problem(err),
    };
    let names = state.engine.agents().map(|agent| agent.name.clone());
    let names: std::collections::BTreeSet<_> = names.chain(depths.keys().cloned()).collect();
    let agents = names
        .into_iter()
        .map(|name| {
            let depth = depths.get(&name).copied().unwrap_or_default();
            views::AgentOverview {
                name: name.to_string(),
                depth: depth.depth,
                leased: depth.leased,
            }
        })
        .collect();
    let channels: BTreeMap<&'static str, u64> = match state.engine.channel_counts().await {
        Ok(counts) => counts
            .into_iter()
            .map(|(status, count)| (status.as_str(), count))
            .collect(),
        Err(err) => return engine_problem(err),
    };
    let contexts = state
        .engine
        .contexts()
        .map(|context| context.name.to_string())
        .collect();
    let view = views::Overview {
        sources,
        deliveries,
        contexts,
        agents,
        channels,
    };
    json_response(StatusCode::OK, &view)
}

/// The page and its files (open: they hold no data).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
}

/// The console's own JSON endpoint (behind the token).
pub fn api_router() -> Router<AppState> {
    Router::new().route("/api/v1/overview", get(overview))
}
