//! Agents' pull listeners: receive (leased for a visibility timeout, long-polled), ack, nack;
//! and the list of agents with their queue depths.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{ApiPath, body_problem, engine_problem, json_response, problem};
use super::{AppState, read_body, views};
use crate::domain::invocation::Leased;
use crate::domain::subscription::SourceName;
use crate::engine::EngineError;
use crate::invoke::message::{MessageView, read_message};

/// The most messages one receive returns.
const MAX_BATCH: u32 = 100;
/// The longest long-poll wait, in seconds.
const MAX_WAIT: f64 = 20.0;
/// The longest lease, in seconds (12 h).
const MAX_VISIBILITY: f64 = 43_200.0;

/// A receive: every field optional (an empty body is `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReceiveRequest {
    /// 1-100, default 10.
    #[schema(minimum = 1, maximum = 100)]
    max: Option<u32>,
    /// Seconds to wait for a message when none is there, 0-20, default 0.
    #[schema(minimum = 0, maximum = 20)]
    wait: Option<f64>,
    /// Seconds the messages are leased for, default the configured visibility timeout.
    #[schema(minimum = 0, maximum = 43200)]
    visibility_timeout: Option<f64>,
    /// Only messages with this correlation id (the callback event's name).
    correlation_id: Option<String>,
}

/// Leased messages, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Received {
    messages: Vec<ReceivedMessage>,
}

/// One leased message.
#[derive(Debug, Serialize, ToSchema)]
struct ReceivedMessage {
    /// Names the message and this lease: ack and nack take it.
    receipt: String,
    /// The message's id (stable across redeliveries).
    message_id: String,
    seq: u64,
    /// Times it has been handed out, this one included.
    deliveries: u32,
    /// When the lease runs out.
    visible_at: String,
    #[serde(flatten)]
    message: MessageView,
}

impl ReceivedMessage {
    fn of(leased: Leased) -> ReceivedMessage {
        ReceivedMessage {
            receipt: leased.receipt,
            message_id: leased.event.id.to_string(),
            seq: leased.event.seq,
            deliveries: leased.deliveries,
            visible_at: leased.visible_at.to_string(),
            message: read_message(&leased.event.payload).unwrap_or_else(|| MessageView {
                kind: "event",
                payload: Some(leased.event.payload.clone()),
                encoding: Some("xml".into()),
                ..MessageView::default()
            }),
        }
    }
}

/// An ack or a nack.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SettleRequest {
    #[schema(min_items = 1, max_items = 100)]
    receipts: Vec<String>,
    /// For nack: seconds before the messages are visible again, default 0.
    #[schema(minimum = 0, maximum = 43200)]
    delay: Option<f64>,
}

/// What an ack or a nack did.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Settled {
    /// Receipts that held their message.
    settled: Vec<String>,
    /// Receipts that no longer did (settled already, or the lease ran out and the message
    /// went to another listener).
    stale: Vec<String>,
}

fn seconds(value: Option<f64>, max: f64, what: &str) -> Result<Option<Duration>, Box<Response>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && (0.0..=max).contains(&v) => {
            Ok(Some(Duration::from_secs_f64(v)))
        }
        Some(_) => Err(Box::new(problem(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            format!("{what} must be 0-{max} seconds"),
        ))),
    }
}

async fn json_body<T: serde::de::DeserializeOwned + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    empty_ok: bool,
) -> Result<T, Response> {
    let bytes = read_body(state, headers, body)
        .await
        .map_err(|err| body_problem(err, state.max_body_bytes))?;
    if empty_ok && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        problem(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            format!("the body is not valid: {err}"),
        )
    })
}

fn agent_problem(err: EngineError) -> Response {
    match err {
        EngineError::UnknownAgent(name) => problem(
            StatusCode::NOT_FOUND,
            "Unknown agent",
            format!("'{name}' is not an agent name"),
        ),
        other => engine_problem(other),
    }
}

/// `POST /api/v1/agents/{name}/receive`.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{name}/receive",
    tag = "agents",
    params(("name" = String, Path, description = "The agent")),
    request_body(content = ReceiveRequest, description = "May be empty"),
    responses(
        (status = 200, description = "The messages leased (none when none came in time)", body = Received),
        (status = 400, description = "A malformed body, or a value out of range", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not an agent name", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn receive(
    State(state): State<AppState>,
    ApiPath(agent): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request: ReceiveRequest = match json_body(&state, &headers, body, true).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let max = request.max.unwrap_or(10);
    if !(1..=MAX_BATCH).contains(&max) {
        return problem(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            format!("max must be 1-{MAX_BATCH}"),
        );
    }
    let (wait, visibility) = match (
        seconds(request.wait, MAX_WAIT, "wait"),
        seconds(
            request.visibility_timeout,
            MAX_VISIBILITY,
            "visibility_timeout",
        ),
    ) {
        (Ok(wait), Ok(visibility)) => (wait.unwrap_or_default(), visibility),
        (Err(response), _) | (_, Err(response)) => return *response,
    };
    let Some(name) = SourceName::parse(&agent) else {
        return agent_problem(EngineError::UnknownAgent(agent.chars().take(64).collect()));
    };
    let wake = state.engine.agent_wake(&name);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = wake.notified();
        let correlation = request.correlation_id.as_deref();
        match state
            .engine
            .receive(&agent, max, correlation, visibility)
            .await
        {
            Ok(leased) if !leased.is_empty() || tokio::time::Instant::now() >= deadline => {
                let messages = leased.into_iter().map(ReceivedMessage::of).collect();
                return json_response(StatusCode::OK, &Received { messages });
            }
            Ok(_) => {}
            Err(err) => return agent_problem(err),
        }
        // Woken by an append on this node; polled for other nodes' appends and for leases
        // running out.
        let poll = (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(poll) => {}
        }
    }
}

async fn settle(
    state: AppState,
    agent: String,
    headers: HeaderMap,
    body: Body,
    ack: bool,
) -> Response {
    let request: SettleRequest = match json_body(&state, &headers, body, false).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    if request.receipts.is_empty() || request.receipts.len() > MAX_BATCH as usize {
        return problem(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            format!("receipts must list 1-{MAX_BATCH} receipts"),
        );
    }
    let delay = match seconds(request.delay, MAX_VISIBILITY, "delay") {
        Ok(delay) => delay,
        Err(response) => return *response,
    };
    if ack && delay.is_some() {
        return problem(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "ack takes no delay",
        );
    }
    let back = (!ack).then(|| delay.unwrap_or_default());
    let mut answer = Settled {
        settled: Vec::new(),
        stale: Vec::new(),
    };
    // Settled at once, so that they share one commit.
    let mut settling = tokio::task::JoinSet::new();
    for (index, receipt) in request.receipts.into_iter().enumerate() {
        let (engine, agent) = (state.engine.clone(), agent.clone());
        settling.spawn(async move {
            let settled = engine.settle(&agent, &receipt, back).await;
            (index, receipt, settled)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = settling.join_next().await {
        match outcome {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => {
                tracing::error!(error = %err, "settling a message failed");
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "settling failed",
                );
            }
        }
    }
    outcomes.sort_by_key(|(index, _, _)| *index);
    for (_, receipt, settled) in outcomes {
        match settled {
            Ok(true) => answer.settled.push(receipt),
            Ok(false) => answer.stale.push(receipt),
            Err(err) => return agent_problem(err),
        }
    }
    json_response(StatusCode::OK, &answer)
}

/// `POST /api/v1/agents/{name}/ack`.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{name}/ack",
    tag = "agents",
    description = "Acknowledges messages: they are done",
    params(("name" = String, Path, description = "The agent")),
    request_body = SettleRequest,
    responses(
        (status = 200, description = "Which receipts still held their message", body = Settled),
        (status = 400, description = "A malformed body, no receipts or too many, a bad delay", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not an agent name", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn ack(
    State(state): State<AppState>,
    ApiPath(agent): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    settle(state, agent, headers, body, true).await
}

/// `POST /api/v1/agents/{name}/nack`.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{name}/nack",
    tag = "agents",
    description = "Gives messages back, visible again after `delay` seconds",
    params(("name" = String, Path, description = "The agent")),
    request_body = SettleRequest,
    responses(
        (status = 200, description = "Which receipts still held their message", body = Settled),
        (status = 400, description = "A malformed body, no receipts or too many, a bad delay", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not an agent name", body = views::Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive in time", body = views::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn nack(
    State(state): State<AppState>,
    ApiPath(agent): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    settle(state, agent, headers, body, false).await
}

/// An agent and its queue.
#[derive(Debug, Serialize, ToSchema)]
struct AgentView {
    name: String,
    declared: bool,
    pull: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    amqp_queue: Option<String>,
    depth: u64,
    leased: u64,
}

/// The agents.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Agents {
    agents: Vec<AgentView>,
}

/// `GET /api/v1/agents`: declared agents and those with messages waiting.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    tag = "agents",
    responses(
        (status = 200, description = "Declared agents, then undeclared ones holding messages", body = Agents),
        (status = 401, description = "The bearer token is missing or wrong", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn list(State(state): State<AppState>) -> Response {
    let depths = match state.engine.queue_depths().await {
        Ok(depths) => depths,
        Err(err) => return agent_problem(err),
    };
    let mut agents: Vec<AgentView> = state
        .engine
        .agents()
        .map(|agent| {
            let depth = depths.get(&agent.name).copied().unwrap_or_default();
            AgentView {
                name: agent.name.to_string(),
                declared: true,
                pull: agent.pull,
                amqp_queue: agent.bridge.as_ref().map(|b| b.queue.clone()),
                depth: depth.depth,
                leased: depth.leased,
            }
        })
        .collect();
    for (name, depth) in &depths {
        if !agents.iter().any(|a| a.name == name.as_str()) {
            agents.push(AgentView {
                name: name.to_string(),
                declared: false,
                pull: true,
                amqp_queue: None,
                depth: depth.depth,
                leased: depth.leased,
            });
        }
    }
    json_response(StatusCode::OK, &Agents { agents })
}

/// The routes (behind the token).
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agents/{name}/receive", post(receive))
        .route("/api/v1/agents/{name}/ack", post(ack))
        .route("/api/v1/agents/{name}/nack", post(nack))
}
