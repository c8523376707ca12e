//! Push channels (seed 004), the channel URI's side (`channel_api` opens, reads, renews and
//! closes channels): services sending a channel
//! notifications (`POST /channels/{token}`, answered with the status headers); the device
//! reading them over a server-sent-events stream or a long poll.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use utoipa::ToSchema;

use super::api::{ApiPath, engine_problem, json_response, problem};
use super::{AppState, BodyError, read_body, views};
use crate::domain::channel::{Channel, ChannelToken, ConnectionStatus};
use crate::domain::event::Event;
use crate::engine::{Engine, EngineError, NotificationStatus, Refusal, Sent};
use crate::metrics::NotificationLabels;

/// The problem of a token that names no open channel (404).
pub(super) fn unknown_channel() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "Unknown channel",
        "no open channel has this token",
    )
}

/// Notifications read per step.
const PAGE: u32 = 100;
/// The longest long-poll wait, in seconds.
const MAX_WAIT: f64 = 30.0;
/// How often a stream looks for notifications other nodes appended (this node's wake it).
const POLL: Duration = Duration::from_secs(1);

/// The three status headers (and `X-MessageID`) every answer of the channel carries.
fn with_status(
    code: u16,
    notification: NotificationStatus,
    device: ConnectionStatus,
    active: bool,
    message_id: &str,
) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(
        "X-NotificationStatus",
        HeaderValue::from_static(notification.as_str()),
    );
    headers.insert(
        "X-DeviceConnectionStatus",
        HeaderValue::from_static(device.as_str()),
    );
    headers.insert(
        "X-SubscriptionStatus",
        HeaderValue::from_static(if active { "Active" } else { "Expired" }),
    );
    if let Ok(value) = HeaderValue::from_str(message_id) {
        headers.insert("X-MessageID", value);
    }
    response
}

/// The notification classes the reference lists: tile 1/11/21, toast 2/12/22, raw 3/13/23
/// (immediate / within 450 s / within 900 s).
fn valid_class(class: &str) -> bool {
    matches!(
        class.trim(),
        "1" | "2" | "3" | "11" | "12" | "13" | "21" | "22" | "23"
    )
}

/// `POST /channels/{token}`: a service sends a notification.
#[utoipa::path(
    post,
    path = "/channels/{token}",
    tag = "channels",
    params(
        ("token" = String, Path, description = "The channel's token (its capability)"),
        ("X-MessageID" = Option<String>, Header, pattern = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$", description = "A UUID naming the notification"),
        ("X-NotificationClass" = Option<String>, Header, description = "1-3, 11-13 or 21-23"),
    ),
    request_body(content = String, description = "The notification: any UTF-8 text up to the limit", content_type = "text/plain"),
    responses(
        (status = 200, description = "Received, or dropped because the device's queue is full (see X-NotificationStatus)", headers(
            ("X-NotificationStatus" = String, description = "`Received`, `Dropped`, `QueueFull` or `Suppressed`"),
            ("X-DeviceConnectionStatus" = String, description = "`Connected`, `TempDisconnected`, `Disconnected` or `InActive`"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
            ("X-MessageID" = String, description = "The request's X-MessageID"),
        )),
        (status = 400, description = "A bad X-MessageID, X-NotificationClass or body", headers(
            ("X-NotificationStatus" = String, description = "`Received`, `Dropped`, `QueueFull` or `Suppressed`"),
            ("X-DeviceConnectionStatus" = String, description = "`Connected`, `TempDisconnected`, `Disconnected` or `InActive`"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
            ("X-MessageID" = String, description = "The request's X-MessageID"),
        )),
        (status = 404, description = "No open channel has this token", headers(
            ("X-NotificationStatus" = String, description = "`Received`, `Dropped`, `QueueFull` or `Suppressed`"),
            ("X-DeviceConnectionStatus" = String, description = "`Connected`, `TempDisconnected`, `Disconnected` or `InActive`"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
            ("X-MessageID" = String, description = "The request's X-MessageID"),
        )),
        (status = 406, description = "Over the channel's daily limit", headers(
            ("X-NotificationStatus" = String, description = "`Received`, `Dropped`, `QueueFull` or `Suppressed`"),
            ("X-DeviceConnectionStatus" = String, description = "`Connected`, `TempDisconnected`, `Disconnected` or `InActive`"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
            ("X-MessageID" = String, description = "The request's X-MessageID"),
        )),
        (status = 412, description = "The device is inactive", headers(
            ("X-NotificationStatus" = String, description = "`Received`, `Dropped`, `QueueFull` or `Suppressed`"),
            ("X-DeviceConnectionStatus" = String, description = "`Connected`, `TempDisconnected`, `Disconnected` or `InActive`"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
            ("X-MessageID" = String, description = "The request's X-MessageID"),
        )),
        (status = 413, description = "The body is too large", headers(
            ("X-NotificationStatus" = String, description = "`Received`, `Dropped`, `QueueFull` or `Suppressed`"),
            ("X-DeviceConnectionStatus" = String, description = "`Connected`, `TempDisconnected`, `Disconnected` or `InActive`"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
            ("X-MessageID" = String, description = "The request's X-MessageID"),
        )),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn send(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let count = |outcome: &'static str| {
        state
            .metrics
            .notifications
            .get_or_create(&NotificationLabels { outcome })
            .inc();
    };
    // The channel's state first: a bad request still gets the status headers.
    let channel = match state.engine.channel(&token).await {
        Ok(channel) => Some(channel),
        Err(EngineError::UnknownChannel) => None,
        Err(err) => return engine_problem(err),
    };
    let (device, active) = match &channel {
        Some(channel) if channel.is_open() => (state.engine.channel_status(channel), true),
        _ => (ConnectionStatus::Disconnected, false),
    };
    let message_id = header("X-MessageID").unwrap_or("00000000-0000-0000-0000-000000000000");
    let bad = |why: &str| {
        tracing::debug!(why, "bad notification");
        with_status(400, NotificationStatus::Dropped, device, active, message_id)
    };
    if uuid::Uuid::try_parse(message_id.trim()).is_err() {
        count("bad_request");
        return bad("X-MessageID is not a UUID");
    }
    if header("X-NotificationClass").is_some_and(|class| !valid_class(class)) {
        count("bad_request");
        return bad("X-NotificationClass is not one of 1-3, 11-13, 21-23");
    }
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            count("too_large");
            return with_status(413, NotificationStatus::Dropped, device, active, message_id);
        }
        Err(_) => {
            count("bad_request");
            return bad("the body could not be read");
        }
    };
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        count("bad_request");
        return bad("the body is not UTF-8 text");
    };
    let content_type = header("Content-Type").unwrap_or("application/octet-stream");
    let authenticated = state.api_token.is_some() && state.authorized(&headers);
    let sent: Sent = match state
        .engine
        .notify_channel(&token, content_type, text, authenticated)
        .await
    {
        Ok(sent) => sent,
        Err(err) => return engine_problem(err),
    };
    count(match (sent.code, sent.notification) {
        (200, NotificationStatus::Received) => "received",
        (200, _) => "queue_full",
        (404, _) => "expired",
        (412, _) => "inactive",
        (406, _) => "over_daily_limit",
        (413, _) => "too_large",
        _ => "dropped",
    });
    with_status(
        sent.code,
        sent.notification,
        sent.device,
        sent.active,
        message_id,
    )
}

/// Any other method on the channel URI.
async fn not_allowed() -> Response {
    let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
    response
        .headers_mut()
        .insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// A notification as the device reads it.
#[derive(Debug, Serialize, ToSchema)]
struct Notification {
    id: u64,
    content_type: String,
    body: String,
    sent_at: String,
}

impl Notification {
    fn of(event: &Event) -> Notification {
        Notification {
            id: event.seq,
            content_type: event.action.clone(),
            body: event.payload.clone(),
            sent_at: event.published_at.to_string(),
        }
    }
}

/// `?after=&wait=`.
#[derive(Debug, Default)]
struct PollQuery {
    after: Option<u64>,
    wait: Option<f64>,
}

impl PollQuery {
    /// Reads the query string; `Err` names the parameter that is not a number.
    fn parse(query: Option<&str>) -> Result<PollQuery, &'static str> {
        let mut out = PollQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "after" => out.after = Some(value.parse().map_err(|_| "after")?),
                "wait" => out.wait = Some(value.parse().map_err(|_| "wait")?),
                _ => {}
            }
        }
        Ok(out)
    }
}

/// What a long poll returns.
#[derive(Debug, Serialize, ToSchema)]
struct Polled {
    notifications: Vec<Notification>,
    /// The device's connection status.
    status: &'static str,
}

/// `GET /channels/{token}/notifications?after=&wait=`: the long poll.
#[utoipa::path(
    get,
    path = "/channels/{token}/notifications",
    tag = "channels",
    params(
        ("token" = String, Path, description = "The channel's token (its capability)"),
        ("after" = Option<u64>, Query, description = "The last notification read (default: the channel's cursor)"),
        ("wait" = Option<f64>, Query, minimum = 0, maximum = 30, description = "Seconds to wait for one when none is there, 0-30"),
    ),
    responses(
        (status = 200, description = "The notifications after `after` (none when none came in time)", body = Polled),
        (status = 400, description = "after or wait is not a number in range", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No open channel has this token", body = views::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    )
)]
pub(super) async fn poll(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    uri: axum::http::Uri,
) -> Response {
    let Some(token) = ChannelToken::parse(&token) else {
        return unknown_channel();
    };
    let query = match PollQuery::parse(uri.query()) {
        Ok(query) => query,
        Err(name) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                format!("{name} must be a number"),
            );
        }
    };
    let wait = match query.wait {
        None => Duration::ZERO,
        Some(w) if w.is_finite() && (0.0..=MAX_WAIT).contains(&w) => Duration::from_secs_f64(w),
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                format!("wait must be 0-{MAX_WAIT} seconds"),
            );
        }
    };
    let engine = &state.engine;
    let wake = engine.channel_wake(&token);
    let deadline = tokio::time::Instant::now() + wait;
    let mut notified = std::pin::pin!(wake.notified());
    notified.as_mut().enable();
    let (channel, mut events) = match engine.read_channel(&token, query.after, PAGE).await {
        Ok(read) => read,
        Err(EngineError::UnknownChannel) => return unknown_channel(),
        Err(err) => return engine_problem(err),
    };
    let from = query.after.unwrap_or(channel.cursor);
    while events.is_empty() && tokio::time::Instant::now() < deadline {
        let next = (tokio::time::Instant::now() + POLL).min(deadline);
        tokio::select! {
            _ = notified.as_mut() => {
                notified.set(wake.notified());
                notified.as_mut().enable();
            }
            _ = tokio::time::sleep_until(next) => {}
        }
        events = match engine.channel_events(&token, from, PAGE).await {
            Ok(events) => events,
            Err(err) => return engine_problem(err),
        };
    }
    let notifications: Vec<Notification> = events.iter().map(Notification::of).collect();
    json_response(
        StatusCode::OK,
        &Polled {
            notifications,
            status: engine.channel_status(&channel).as_str(),
        },
    )
}

/// Where a stream stands.
struct Streaming {
    engine: Arc<Engine>,
    token: ChannelToken,
    cursor: u64,
    pending: VecDeque<Event>,
    touched: tokio::time::Instant,
    /// The position last reported as sent.
    reported: u64,
}

/// `GET /channels/{token}/stream`: server-sent events, each notification with its position as
/// its id; `Last-Event-ID` resumes after it.
async fn stream(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = ChannelToken::parse(&token) else {
        return unknown_channel();
    };
    let last_event_id: Option<u64> = match headers.get("Last-Event-ID").map(|v| v.to_str()) {
        None => None,
        Some(Ok(text)) if text.trim().parse::<u64>().is_ok() => text.trim().parse().ok(),
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "Last-Event-ID must be a notification id",
            );
        }
    };
    let engine = state.engine.clone();
    let (channel, events): (Channel, Vec<Event>) =
        match engine.read_channel(&token, last_event_id, PAGE).await {
            Ok(read) => read,
            Err(EngineError::UnknownChannel) => return unknown_channel(),
            Err(err) => return engine_problem(err),
        };
    let start = Streaming {
        cursor: last_event_id.map_or(channel.cursor, |id| id.min(channel.head)),
        pending: events.into(),
        touched: tokio::time::Instant::now(),
        reported: 0,
        engine,
        token,
    };
    let stream = futures_util::stream::unfold(start, next_event);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The stream's next event: a queued one, or the next to arrive. The device counts as there
/// while it streams: its presence is refreshed every third of the connected interval. The
/// stream ends when the channel closes or expires.
async fn next_event(mut streaming: Streaming) -> Option<(Result<SseEvent, Infallible>, Streaming)> {
    let refresh = streaming.engine.channel_policy().presence.connected_for / 3;
    // What was sent counts against the queue's cap once reported: at each check-in, and
    // sooner during a burst.
    let report_every = (streaming.engine.channel_policy().queue_cap / 2).max(1);
    loop {
        if let Some(event) = streaming.pending.pop_front() {
            streaming.cursor = event.seq;
            // The notification as JSON: its body travels exactly (SSE data lines would turn a
            // CR LF into two line ends, and drop an empty body).
            let data = serde_json::to_string(&Notification::of(&event)).unwrap_or_default();
            let sse = SseEvent::default()
                .id(event.seq.to_string())
                .event("notification")
                .data(data);
            return Some((Ok(sse), streaming));
        }
        let wake = streaming.engine.channel_wake(&streaming.token);
        let mut notified = std::pin::pin!(wake.notified());
        notified.as_mut().enable();
        let behind = streaming.cursor.saturating_sub(streaming.reported) >= report_every;
        if streaming.touched.elapsed() >= refresh || behind {
            // Still there; what was sent is not known to be read, so it stays kept.
            match streaming
                .engine
                .stream_seen(&streaming.token, streaming.cursor)
                .await
            {
                Ok(true) => streaming.reported = streaming.cursor,
                Ok(false) => return None,
                Err(err) => tracing::warn!(error = %err, "a channel stream could not check in"),
            }
            streaming.touched = tokio::time::Instant::now();
        }
        let check_in = refresh.saturating_sub(streaming.touched.elapsed());
        tokio::select! {
            _ = notified.as_mut() => {}
            _ = tokio::time::sleep(POLL.min(check_in)) => {}
        }
        match streaming
            .engine
            .channel_events(&streaming.token, streaming.cursor, PAGE)
            .await
        {
            Ok(events) => streaming.pending.extend(events),
            Err(EngineError::UnknownChannel) => return None,
            Err(err) => tracing::warn!(error = %err, "a channel stream could not read"),
        }
    }
}

/// The channel routes: the capability routes need no bearer token.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/channels/{token}", post(send).fallback(not_allowed))
        .route("/channels/{token}/stream", get(stream))
        .route("/channels/{token}/callback", post(register))
        .route("/channels/{token}/notifications", get(poll))
}

/// `POST /channels/{token}/callback`: an authenticated service registers the channel's
/// callback (`X-CallbackURI`, a body of at most 1,024 bytes); the last registration wins.
#[utoipa::path(
    post,
    path = "/channels/{token}/callback",
    tag = "channels",
    params(
        ("token" = String, Path, description = "The channel's token (its capability)"),
        ("X-CallbackURI" = String, Header, description = "Where herald POSTs the body when the device goes inactive"),
    ),
    request_body(content = String, description = "The callback's body, at most 1,024 bytes, kept with its Content-Type", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "Registered", headers(
            ("X-DeviceConnectionStatus" = String, description = "The device's connection status"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
        )),
        (status = 400, description = "A missing or refused X-CallbackURI, or a body too large", body = views::Problem, content_type = "application/problem+json"),
        (status = 401, description = "The bearer token is missing or wrong (or none is configured)", body = views::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No open channel has this token", headers(
            ("X-DeviceConnectionStatus" = String, description = "The device's connection status"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
        )),
        (status = 412, description = "The device is inactive", headers(
            ("X-DeviceConnectionStatus" = String, description = "The device's connection status"),
            ("X-SubscriptionStatus" = String, description = "`Active` or `Expired`"),
        )),
        (status = 503, description = "The store is unavailable", body = views::Problem, content_type = "application/problem+json"),
    ),
    security(("bearerAuth" = []))
)]
pub(super) async fn register(
    State(state): State<AppState>,
    ApiPath(token): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let statuses = |code: StatusCode, device: ConnectionStatus, active: bool| {
        let mut response = code.into_response();
        let headers = response.headers_mut();
        headers.insert(
            "X-DeviceConnectionStatus",
            HeaderValue::from_static(device.as_str()),
        );
        headers.insert(
            "X-SubscriptionStatus",
            HeaderValue::from_static(if active { "Active" } else { "Expired" }),
        );
        response
    };
    if state.api_token.is_none() || !state.authorized(&headers) {
        return super::api::unauthorized();
    }
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Invalid registration",
                "the body could not be read",
            );
        }
    };
    let uri = headers.get("X-CallbackURI").and_then(|v| v.to_str().ok());
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match state
        .engine
        .register_callback(&token, uri, bytes.to_vec(), content_type)
        .await
    {
        Ok(Ok(device)) => statuses(StatusCode::OK, device, true),
        Ok(Err(Refusal::UnknownChannel)) => {
            statuses(StatusCode::NOT_FOUND, ConnectionStatus::Disconnected, false)
        }
        Ok(Err(Refusal::Inactive)) => statuses(
            StatusCode::PRECONDITION_FAILED,
            ConnectionStatus::InActive,
            true,
        ),
        Ok(Err(Refusal::Bad(why))) => {
            let mut response = problem(StatusCode::BAD_REQUEST, "Invalid registration", why);
            response
                .headers_mut()
                .insert("X-SubscriptionStatus", HeaderValue::from_static("Active"));
            response
        }
        Err(err) => engine_problem(err),
    }
}
