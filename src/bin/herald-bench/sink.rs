//! The sinks herald-bench runs: servers that receive notifications.
//!
//! Sinks are real axum servers on loopback, several listening ports sharing one state. Each
//! notification's event carries the bench's phase, event number and publish time
//! (`<b:tick xmlns:b="urn:bench" p="PHASE" n="N" t="NANOS" k="K"/>`), so a sink counts distinct
//! events per subscriber (a bitset each), duplicates, and publish-to-receive latency.
//!
//! A sink also takes WS-Management messages: every tick in a body counts (a `wsman:Events`
//! batch holds many), and a message with a `wsman:AckRequested` header is answered with the
//! `wsman:Ack` relating to its `wsa:MessageID`, which herald needs before it counts the
//! message delivered. Both are found by scanning the text, not by parsing the envelope: the
//! sink should cost as little as possible, in the baseline as with herald.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
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
    /// Requests taken (not refused): one per notification, one per batch.
    requests: AtomicU64,
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
    /// HTTP requests taken: notifications, or batches in WS-Management's Events mode.
    pub requests: u64,
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
            &counters.requests,
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
            requests: c.requests.load(Ordering::Acquire),
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

/// The bench's events in a body, each `<b:tick …` up to its `/>`: one in a notification, up to
/// `MaxElements` in a WS-Management batch. Found with byte searches (memchr), not substring
/// searchers, which cost more to set up than to run on these short stretches.
fn ticks(body: &str) -> impl Iterator<Item = &[u8]> {
    const OPEN: &[u8] = b"<b:tick ";
    let mut rest = body.as_bytes();
    std::iter::from_fn(move || {
        loop {
            let start = rest.iter().position(|&b| b == b'<')?;
            rest = &rest[start..];
            if rest.starts_with(OPEN) {
                break;
            }
            rest = &rest[1..];
        }
        let mut end = 0;
        loop {
            end += rest[end..].iter().position(|&b| b == b'/')?;
            if rest.get(end + 1) == Some(&b'>') {
                break;
            }
            end += 1;
        }
        let element = &rest[..end];
        rest = &rest[end + 2..];
        Some(element)
    })
}

/// One of the bench's events as a sink reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tick {
    phase: u64,
    n: u64,
    /// When it was published (nanoseconds since the epoch).
    sent: u64,
    key: Option<u64>,
}

/// A decimal number, or nothing.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        value.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Reads a tick element's numeric attributes in one pass (the bench writes them as
/// `name="value"`, space-separated, and herald passes the payload on as it was published).
fn read_tick(element: &[u8]) -> Option<Tick> {
    let (mut phase, mut n, mut sent, mut key) = (None, None, None, None);
    let mut rest = element;
    while let Some(equals) = rest.iter().position(|&b| b == b'=') {
        let name = rest[..equals]
            .rsplit(|&b| b == b' ')
            .next()
            .unwrap_or_default();
        let value = rest.get(equals + 2..)?;
        let length = value.iter().position(|&b| b == b'"')?;
        let parsed = number(&value[..length]);
        match name {
            b"p" => phase = parsed,
            b"n" => n = parsed,
            b"t" => sent = parsed,
            b"k" => key = parsed,
            _ => {}
        }
        rest = &value[length + 1..];
    }
    Some(Tick {
        phase: phase?,
        n: n?,
        sent: sent?,
        key,
    })
}

/// What one request brought.
#[derive(Debug, Default)]
struct Counted {
    fresh: u64,
    duplicates: u64,
    stray: u64,
    latencies: Vec<u64>,
}

/// Counts the ticks of one request to `subscriber`: each is fresh, a duplicate or stray (of
/// another phase, of an unknown subscriber, against the key filter, or without the bench's
/// attributes). A body without any tick is stray.
fn count(state: &SinkState, subscriber: u64, text: &str, received: u64) -> Counted {
    let phase = state.phase.load(Ordering::Acquire);
    let events = state.events.load(Ordering::Acquire);
    let modulus = state.modulus.load(Ordering::Acquire);
    let subscribers = state.subscribers.read().unwrap_or_else(|e| e.into_inner());
    let mut seen = usize::try_from(subscriber)
        .ok()
        .and_then(|i| subscribers.get(i))
        .map(|seen| seen.lock().unwrap_or_else(|e| e.into_inner()));
    let mut counted = Counted::default();
    let mut any = false;
    for element in ticks(text) {
        any = true;
        let Some(tick) = read_tick(element) else {
            counted.stray += 1;
            continue;
        };
        let key_ok = modulus == 0 || tick.key == Some(subscriber % modulus);
        match seen.as_mut() {
            Some(seen) if key_ok && tick.phase == phase && tick.n < events => {
                if seen.insert(tick.n) {
                    counted.fresh += 1;
                    counted.latencies.push(received.saturating_sub(tick.sent));
                } else {
                    counted.duplicates += 1;
                }
            }
            _ => counted.stray += 1,
        }
    }
    if !any {
        counted.stray += 1;
    }
    counted
}

async fn receive(
    State(state): State<Arc<SinkState>>,
    UrlPath(subscriber): UrlPath<u64>,
    body: Bytes,
) -> Response {
    let received = now_nanos();
    if !state.up.load(Ordering::Acquire) {
        state.counters.refused.fetch_add(1, Ordering::AcqRel);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    state.counters.requests.fetch_add(1, Ordering::AcqRel);
    let text = std::str::from_utf8(&body).unwrap_or("");
    let counted = count(&state, subscriber, text, received);
    let counters = &state.counters;
    if counted.fresh > 0 {
        state
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(&counted.latencies);
        counters.last_received.fetch_max(received, Ordering::AcqRel);
        counters.distinct.fetch_add(counted.fresh, Ordering::AcqRel);
    }
    if counted.duplicates > 0 {
        counters
            .duplicates
            .fetch_add(counted.duplicates, Ordering::AcqRel);
    }
    if counted.stray > 0 {
        counters.stray.fetch_add(counted.stray, Ordering::AcqRel);
    }
    match ack_request(text) {
        Some(request) => ack(&request),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// The action of a WS-Management acknowledgement.
const WSMAN_ACK: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/Ack";
/// WS-Addressing 2004/08, what WS-Management subscribers speak.
const WSA2004: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";

/// A message that asks for an acknowledgement: its `wsa:MessageID`, and the WS-Addressing
/// namespace the `wsa` prefix is bound to (herald's prefix; 2004/08 if not declared).
#[derive(Debug, PartialEq, Eq)]
struct AckRequest<'a> {
    message_id: &'a str,
    addressing: &'a str,
}

/// Finds `wsman:AckRequested` and `wsa:MessageID` in the header, by scanning.
fn ack_request(text: &str) -> Option<AckRequest<'_>> {
    let header = &text[..text.find(":Body").unwrap_or(text.len())];
    if !header.contains(":AckRequested") {
        return None;
    }
    let start = header.find(":MessageID>")? + ":MessageID>".len();
    let end = header[start..].find('<')? + start;
    let addressing = header
        .find("xmlns:wsa=\"")
        .map(|at| &header[at + "xmlns:wsa=\"".len()..])
        .and_then(|rest| rest.find('"').map(|end| &rest[..end]))
        .unwrap_or(WSA2004);
    Some(AckRequest {
        message_id: header[start..end].trim(),
        addressing,
    })
}

/// The `wsman:Ack` relating to `request`.
fn ack_body(request: &AckRequest<'_>) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="{}"><s:Header><wsa:Action>{WSMAN_ACK}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID><wsa:RelatesTo>{}</wsa:RelatesTo></s:Header><s:Body/></s:Envelope>"#,
        request.addressing,
        uuid::Uuid::new_v4(),
        request.message_id
    )
}

fn ack(request: &AckRequest<'_>) -> Response {
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
        ack_body(request),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_read_from_the_events_only() {
        let body = r#"<s:Envelope n="9"><s:Body><b:tick xmlns:b="urn:bench" p="2" n="41" t="123456" k="3"/></s:Body></s:Envelope>"#;
        let found: Vec<Option<Tick>> = ticks(body).map(read_tick).collect();
        let tick = Tick {
            phase: 2,
            n: 41,
            sent: 123456,
            key: Some(3),
        };
        assert_eq!(found, [Some(tick)]);
        assert_eq!(ticks("<b:tick/>").count(), 0);
        assert_eq!(
            ticks(r#"<b:tick p="1"/>"#)
                .map(read_tick)
                .collect::<Vec<_>>(),
            [None]
        );
    }

    #[test]
    fn every_tick_of_a_batch_is_read() {
        let batch = format!(
            "<wsman:Events>{}</wsman:Events>",
            (0..3)
                .map(|n| format!(
                    r#"<wsman:Event Action="urn:bench:tick"><b:tick xmlns:b="urn:bench" p="1" n="{n}" t="5" k="0"/></wsman:Event>"#
                ))
                .collect::<String>()
        );
        let numbers: Vec<u64> = ticks(&batch)
            .filter_map(read_tick)
            .map(|tick| tick.n)
            .collect();
        assert_eq!(numbers, [0, 1, 2]);
    }

    #[test]
    fn an_ack_relates_to_the_message_that_asked_for_it() {
        let batch = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><wsa:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/Events</wsa:Action><wsa:MessageID>urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427</wsa:MessageID><wsa:To>http://127.0.0.1/sink/0</wsa:To><wsman:AckRequested/></s:Header><s:Body><wsman:Events/></s:Body></s:Envelope>"#;
        let request = ack_request(batch).unwrap();
        assert_eq!(
            request,
            AckRequest {
                message_id: "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                addressing: WSA2004,
            }
        );
        assert_eq!(
            ack_request(&batch.replace("<wsman:AckRequested/>", "")),
            None
        );
        assert_eq!(ack(&request).status(), StatusCode::OK);
    }

    #[test]
    fn herald_counts_the_ack_as_the_reply_it_expects() {
        let request = AckRequest {
            message_id: "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            addressing: WSA2004,
        };
        let body = ack_body(&request);
        assert!(herald::soap::envelope::is_reply(
            body.as_bytes(),
            WSMAN_ACK,
            request.message_id
        ));
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
