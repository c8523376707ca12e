//! The sinks herald-bench runs: servers that receive notifications.
//!
//! Sinks are real axum servers on loopback, several listening ports sharing one state. Each
//! notification's event carries the bench's phase, event number and publish time
//! (`<b:tick xmlns:b="urn:bench" p="PHASE" n="N" t="NANOS" k="K"/>`), so a sink counts distinct
//! events per subscriber (a bitset each), duplicates, and publish-to-receive latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use tokio::task::JoinHandle;

/// Nanoseconds since the Unix epoch: the `t` a publisher writes into an event. The system
/// clock, so that the raw baseline's client, a separate process, writes times the sinks can
/// compare with theirs.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The instant at which [`now_nanos`] read `nanos`.
fn instant_of(nanos: u64) -> Instant {
    let ago = Duration::from_nanos(now_nanos().saturating_sub(nanos));
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// Events one subscriber has received in the current phase.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
}

impl Seen {
    /// Marks event `n`; true the first time.
    fn insert(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let fresh = self.bits[word] & (1 << bit) == 0;
        self.bits[word] |= 1 << bit;
        fresh
    }
}

#[derive(Default)]
struct Counters {
    /// Distinct (subscriber, event) pairs of the current phase.
    distinct: AtomicU64,
    /// The same event again for the same subscriber.
    duplicates: AtomicU64,
    /// Events of another phase, of an unknown subscriber, or without the bench's attributes.
    stray: AtomicU64,
    /// Requests answered 503 while the sinks were down.
    refused: AtomicU64,
    /// When the last accepted event arrived (nanoseconds since the epoch).
    last_received: AtomicU64,
}

struct SinkState {
    phase: AtomicU64,
    /// When not 0: subscriber `i` must only receive events whose `k` is `i % modulus` (the
    /// filtered fan-out); any other is counted as stray.
    modulus: AtomicU64,
    events: AtomicU64,
    up: AtomicBool,
    subscribers: RwLock<Vec<Mutex<Seen>>>,
    latencies: Mutex<Vec<u64>>,
    counters: Counters,
}

/// What the sinks received in a phase.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub distinct: u64,
    pub duplicates: u64,
    pub stray: u64,
    pub refused: u64,
}

/// A set of sink servers sharing one state; stopped when dropped.
pub struct Sinks {
    bases: Vec<String>,
    state: Arc<SinkState>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Sinks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Sinks {
    /// Starts `count` sink servers on loopback ports.
    pub async fn start(count: usize) -> anyhow::Result<Sinks> {
        let state = Arc::new(SinkState {
            phase: AtomicU64::new(0),
            modulus: AtomicU64::new(0),
            events: AtomicU64::new(0),
            up: AtomicBool::new(true),
            subscribers: RwLock::new(Vec::new()),
            latencies: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let mut bases = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..count.max(1) {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let address: SocketAddr = listener.local_addr()?;
            let app = Router::new()
                .route("/sink/{subscriber}", post(receive))
                .with_state(state.clone());
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
            bases.push(format!("http://{address}"));
        }
        Ok(Sinks {
            bases,
            state,
            tasks,
        })
    }

    /// Subscriber `i`'s address: spread over the listeners round-robin.
    pub fn url(&self, subscriber: u64) -> String {
        sink_url(&self.bases, subscriber)
    }

    /// The listeners' base URLs.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Starts counting a new phase: `subscribers` subscribers, events numbered `0..events`.
    /// Call while nothing is being delivered.
    pub fn begin_phase(&self, phase: u64, subscribers: u64, events: u64) {
        let seen = (0..subscribers)
            .map(|_| Mutex::new(Seen::default()))
            .collect();
        *self
            .state
            .subscribers
            .write()
            .unwrap_or_else(|e| e.into_inner()) = seen;
        self.state.events.store(events, Ordering::Release);
        self.state.phase.store(phase, Ordering::Release);
        self.take_latencies();
        let counters = &self.state.counters;
        for counter in [
            &counters.distinct,
            &counters.duplicates,
            &counters.stray,
            &counters.refused,
            &counters.last_received,
        ] {
            counter.store(0, Ordering::Release);
        }
    }

    /// From now on subscriber `i` may only receive events whose `k` is `i % modulus` (0: any).
    pub fn expect_key_modulus(&self, modulus: u64) {
        self.state.modulus.store(modulus, Ordering::Release);
    }

    /// Up: 202 to every notification. Down: 503 to every notification.
    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::Release);
    }

    /// Distinct events received so far in this phase.
    pub fn distinct(&self) -> u64 {
        self.state.counters.distinct.load(Ordering::Acquire)
    }

    /// Requests refused (while down) so far in this phase.
    pub fn refused(&self) -> u64 {
        self.state.counters.refused.load(Ordering::Acquire)
    }

    /// When the last event of this phase arrived.
    pub fn last_received(&self) -> Option<Instant> {
        match self.state.counters.last_received.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(instant_of(nanos)),
        }
    }

    pub fn tally(&self) -> Tally {
        let c = &self.state.counters;
        Tally {
            distinct: c.distinct.load(Ordering::Acquire),
            duplicates: c.duplicates.load(Ordering::Acquire),
            stray: c.stray.load(Ordering::Acquire),
            refused: c.refused.load(Ordering::Acquire),
        }
    }

    /// The publish-to-receive latencies recorded so far (nanoseconds), emptied.
    pub fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(
            &mut *self
                .state
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Subscribers that have not received every event of this phase, with how many they got.
    pub fn incomplete(&self, limit: usize) -> Vec<(u64, u64)> {
        let events = self.state.events.load(Ordering::Acquire);
        let subscribers = self
            .state
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        subscribers
            .iter()
            .enumerate()
            .filter_map(|(i, seen)| {
                let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                let got: u64 = seen.bits.iter().map(|w| u64::from(w.count_ones())).sum();
                (got < events).then_some((i as u64, got))
            })
            .take(limit)
            .collect()
    }
}

/// Subscriber `i`'s address among sink listeners `bases`.
pub fn sink_url(bases: &[String], subscriber: u64) -> String {
    let base = &bases[(subscriber % bases.len().max(1) as u64) as usize];
    format!("{base}/sink/{subscriber}")
}

/// The value of attribute `name` (a number) in the bench's event, found without parsing the
/// whole envelope (the sink should cost as little as possible, in the baseline as with herald).
pub fn attribute(body: &str, name: &str) -> Option<u64> {
    let tick = body.find("<b:tick ")?;
    let rest = &body[tick..];
    let end = rest.find("/>")?;
    let element = &rest[..end];
    let needle = format!(" {name}=\"");
    let start = element.find(&needle)? + needle.len();
    let stop = element[start..].find('"')? + start;
    element[start..stop].parse().ok()
}

async fn receive(
    State(state): State<Arc<SinkState>>,
    UrlPath(subscriber): UrlPath<u64>,
    body: Bytes,
) -> StatusCode {
    let received = now_nanos();
    if !state.up.load(Ordering::Acquire) {
        state.counters.refused.fetch_add(1, Ordering::AcqRel);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let text = std::str::from_utf8(&body).unwrap_or("");
    let (Some(phase), Some(n), Some(sent)) = (
        attribute(text, "p"),
        attribute(text, "n"),
        attribute(text, "t"),
    ) else {
        state.counters.stray.fetch_add(1, Ordering::AcqRel);
        return StatusCode::ACCEPTED;
    };
    let modulus = state.modulus.load(Ordering::Acquire);
    let key_ok = modulus == 0 || attribute(text, "k") == Some(subscriber % modulus);
    if !key_ok
        || phase != state.phase.load(Ordering::Acquire)
        || n >= state.events.load(Ordering::Acquire)
    {
        state.counters.stray.fetch_add(1, Ordering::AcqRel);
        return StatusCode::ACCEPTED;
    }
    let fresh = {
        let subscribers = state.subscribers.read().unwrap_or_else(|e| e.into_inner());
        let Some(seen) = usize::try_from(subscriber)
            .ok()
            .and_then(|i| subscribers.get(i))
        else {
            state.counters.stray.fetch_add(1, Ordering::AcqRel);
            return StatusCode::ACCEPTED;
        };
        seen.lock().unwrap_or_else(|e| e.into_inner()).insert(n)
    };
    if fresh {
        state
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(received.saturating_sub(sent));
        state
            .counters
            .last_received
            .fetch_max(received, Ordering::AcqRel);
        state.counters.distinct.fetch_add(1, Ordering::AcqRel);
    } else {
        state.counters.duplicates.fetch_add(1, Ordering::AcqRel);
    }
    StatusCode::ACCEPTED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_read_from_the_event_only() {
        let body = r#"<s:Envelope n="9"><s:Body><b:tick xmlns:b="urn:bench" p="2" n="41" t="123456" k="3"/></s:Body></s:Envelope>"#;
        assert_eq!(attribute(body, "p"), Some(2));
        assert_eq!(attribute(body, "n"), Some(41));
        assert_eq!(attribute(body, "t"), Some(123456));
        assert_eq!(attribute(body, "x"), None);
        assert_eq!(attribute("<b:tick/>", "n"), None);
    }

    #[test]
    fn seen_counts_each_event_once() {
        let mut seen = Seen::default();
        assert!(seen.insert(0));
        assert!(seen.insert(130));
        assert!(!seen.insert(130));
        assert_eq!(seen.bits.len(), 3);
    }
}
