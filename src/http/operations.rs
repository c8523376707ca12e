//! `GET /healthz` (liveness), `GET /readyz` (readiness) and `GET /metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use super::AppState;
use crate::metrics::SourceLabels;

/// Liveness: herald is up and serving.
async fn healthz() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n")
}

/// Readiness: 200 while the store can be written and this node's lease holds, else 503 with
/// the reason (a load balancer stops sending requests; `/healthz` still says the process lives).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let text = [(CONTENT_TYPE, "text/plain; charset=utf-8")];
    match state.engine.readiness().await {
        Ok(()) => (StatusCode::OK, text, "ready\n".to_owned()),
        Err(why) => {
            tracing::warn!(reason = %why, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                text,
                format!("not ready: {why}\n"),
            )
        }
    }
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
    state.metrics.loading.set(i64::from(state.engine.loading()));
    state.engine.refresh_metrics();
    match state.engine.queue_depths().await {
        Ok(depths) => {
            let names = state.engine.agents().map(|agent| agent.name.clone());
            let names: std::collections::BTreeSet<_> =
                names.chain(depths.keys().cloned()).collect();
            for agent in names {
                let depth = depths.get(&agent).copied().unwrap_or_default();
                let labels = crate::metrics::AgentLabels {
                    agent: agent.to_string(),
                };
                let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
                state
                    .metrics
                    .agent_depth
                    .get_or_create(&labels)
                    .set(gauge(depth.depth));
                state
                    .metrics
                    .agent_leased
                    .get_or_create(&labels)
                    .set(gauge(depth.leased));
            }
        }
        Err(err) => tracing::warn!(error = %err, "reading agents' queue depths failed"),
    }
    match state.engine.channel_counts().await {
        Ok(counts) => {
            for (status, count) in counts {
                let labels = crate::metrics::ChannelStatusLabels {
                    status: status.as_str(),
                };
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                state.metrics.channels.get_or_create(&labels).set(count);
            }
        }
        Err(err) => tracing::warn!(error = %err, "counting channels failed"),
    }
    for (agent, lag) in state.engine.bridge_lags() {
        let labels = crate::metrics::AgentLabels {
            agent: agent.to_string(),
        };
        let lag = i64::try_from(lag).unwrap_or(i64::MAX);
        state.metrics.bridge_lag.get_or_create(&labels).set(lag);
    }
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
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
