//! `GET /healthz` and `GET /metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::metrics::SourceLabels;

/// Liveness: herald is up and serving.
async fn healthz() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n")
}

/// Prometheus text exposition; gauges are refreshed from the engine at each scrape.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    for (source, count) in state.engine.active_counts() {
        let labels = SourceLabels {
            source: source.to_string(),
        };
        state
            .metrics
            .active_subscriptions
            .get_or_create(&labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    state.engine.dispatcher().update_backlog_metrics();
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Health and metrics routes.
pub fn router() -> axum::Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}
