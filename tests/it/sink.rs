//! A real HTTP sink on loopback that records every request it receives (failed attempts too)
//! and answers as each path is told to: succeed, succeed slowly, fail N times, answer 429 with
//! Retry-After, 410 Gone, or fail forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// How a path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// 202 to everything.
    Accept,
    /// 500 to the first `n` requests, then 202.
    FailTimes(u32),
    /// 429 with `Retry-After: secs` to the first `n` requests, then 202.
    TooManyRequests { times: u32, retry_after_secs: u32 },
    /// 410 Gone, always.
    Gone,
    /// 503, always.
    AlwaysFail,
    /// 202 to everything, each answer this many milliseconds after the request arrived.
    Slow(u64),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: String,
    /// The status the sink answered.
    pub status: u16,
    /// The `n` of a test event (`<e:tick n="…"/>`), read once on arrival.
    pub tick: Option<u64>,
}

impl Received {
    pub fn doc(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Trimmed text of the first element with this name.
    pub fn text_of(&self, ns: &str, local: &str) -> Option<String> {
        self.doc()
            .descendants()
            .find(|n| n.has_tag_name((ns, local)))
            .map(|n| n.text().unwrap_or("").trim().to_owned())
    }

    /// The `wsa:MessageID`, in any addressing version.
    pub fn message_id(&self) -> String {
        self.doc()
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == "MessageID")
            .and_then(|n| n.text())
            .unwrap_or("")
            .trim()
            .to_owned()
    }

    /// The `n` attribute of the first element named `tick` (the tests' events).
    pub fn tick(&self) -> Option<u64> {
        self.tick
    }
}

/// Reads `n` from the tests' `<e:tick xmlns:e="urn:test" n="N"/>` without parsing the envelope.
fn tick_of(body: &str) -> Option<u64> {
    let at = body.find(":tick ")?;
    let rest = &body[at..];
    let start = rest.find(" n=\"")? + 4;
    let end = rest[start..].find('"')? + start;
    rest[start..end].parse().ok()
}

#[derive(Default)]
struct PathState {
    behavior: Option<Behavior>,
    received: Vec<Received>,
    answered: u32,
}

/// The sink server.
#[derive(Clone)]
pub struct Sink {
    pub base: String,
    paths: Arc<Mutex<HashMap<String, PathState>>>,
}

async fn receive(
    State(paths): State<Arc<Mutex<HashMap<String, PathState>>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut delay = None;
    let response = {
        let mut paths = paths.lock().unwrap();
        answer(paths.entry(path).or_default(), headers, body, &mut delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
}

/// Records a request and decides the answer; `delay` is set when it must wait.
fn answer(
    state: &mut PathState,
    headers: HeaderMap,
    body: Bytes,
    delay: &mut Option<Duration>,
) -> Response {
    let behavior = state.behavior.unwrap_or(Behavior::Accept);
    state.answered += 1;
    let n = state.answered;
    let (status, retry_after) = match behavior {
        Behavior::Accept => (StatusCode::ACCEPTED, None),
        Behavior::FailTimes(times) if n <= times => (StatusCode::INTERNAL_SERVER_ERROR, None),
        Behavior::FailTimes(_) => (StatusCode::ACCEPTED, None),
        Behavior::TooManyRequests {
            times,
            retry_after_secs,
        } if n <= times => (StatusCode::TOO_MANY_REQUESTS, Some(retry_after_secs)),
        Behavior::TooManyRequests { .. } => (StatusCode::ACCEPTED, None),
        Behavior::Gone => (StatusCode::GONE, None),
        Behavior::AlwaysFail => (StatusCode::SERVICE_UNAVAILABLE, None),
        Behavior::Slow(millis) => {
            *delay = Some(Duration::from_millis(millis));
            (StatusCode::ACCEPTED, None)
        }
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    state.received.push(Received {
        at: Instant::now(),
        headers,
        tick: tick_of(&body),
        body,
        status: status.as_u16(),
    });
    match retry_after {
        Some(secs) => (status, [("retry-after", secs.to_string())]).into_response(),
        None => status.into_response(),
    }
}

impl Sink {
    pub async fn start() -> Sink {
        let paths: Arc<Mutex<HashMap<String, PathState>>> = Arc::default();
        let app = Router::new()
            .route("/sink/{path}", post(receive))
            .with_state(paths.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Sink {
            base: format!("http://{address}"),
            paths,
        }
    }

    /// The URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}/sink/{path}", self.base)
    }

    pub fn behave(&self, path: &str, behavior: Behavior) {
        self.paths
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .behavior = Some(behavior);
    }

    /// Every request to a path so far.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.paths
            .lock()
            .unwrap()
            .get(path)
            .map(|s| s.received.clone())
            .unwrap_or_default()
    }

    /// Requests to a path that were answered 2xx.
    pub fn accepted(&self, path: &str) -> Vec<Received> {
        self.received(path)
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// The ticks a path accepted, in arrival order (cheap: no bodies copied).
    pub fn accepted_ticks(&self, path: &str) -> Vec<u64> {
        self.paths
            .lock()
            .unwrap()
            .get(path)
            .map(|s| {
                s.received
                    .iter()
                    .filter(|r| (200..300).contains(&r.status))
                    .filter_map(|r| r.tick)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many requests a path accepted.
    pub fn accepted_count(&self, path: &str) -> usize {
        self.paths.lock().unwrap().get(path).map_or(0, |s| {
            s.received
                .iter()
                .filter(|r| (200..300).contains(&r.status))
                .count()
        })
    }

    /// Waits until a path has accepted `count` requests, or panics after `timeout`.
    pub async fn wait_accepted(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted_count(path);
            if accepted >= count {
                return self.accepted(path);
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {accepted} of {count} accepted after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
