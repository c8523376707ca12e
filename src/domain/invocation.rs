//! Invocation callbacks (Oracle BES, seed 002): an invoker event raised with a key, a payload and
//! parameters; the invocation that calls the service; the callback event its answer becomes, put
//! on an agent (a named durable queue: a log whose listeners are readers).

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use uuid::Uuid;

use super::subscription::SourceName;

/// Parameters by name: the invoker's stored ones, a raise's, or the two merged.
pub type Parameters = BTreeMap<String, String>;

/// The parameter naming the callback event.
pub const CALLBACK_EVENT: &str = "callback_event";
/// The parameter naming the agent the callback event goes to.
pub const CALLBACK_AGENT: &str = "callback_agent";

/// The name a parameter is kept under: the seed's `WFBES_CALLBACK_EVENT` and
/// `WFBES_CALLBACK_AGENT` are the same parameters as `callback_event` and `callback_agent`,
/// wherever they appear (any letter case of either spelling).
pub fn canonical_parameter(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "wfbes_callback_event" | CALLBACK_EVENT => CALLBACK_EVENT.to_owned(),
        "wfbes_callback_agent" | CALLBACK_AGENT => CALLBACK_AGENT.to_owned(),
        _ => name.trim().to_owned(),
    }
}

/// Parameters under their canonical names. Two spellings of one parameter in the same list is
/// ambiguous: `Err` names it.
pub fn canonical(parameters: &Parameters) -> Result<Parameters, String> {
    let mut out = Parameters::new();
    for (name, value) in parameters {
        let key = canonical_parameter(name);
        if out.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("parameter '{key}' is given twice (under an alias)"));
        }
    }
    Ok(out)
}

/// The stored parameters with a raise's over them: a raise's parameter wins over a stored one of
/// the same name (an alias counts as the same name). Both are canonical already.
pub fn merge(stored: &Parameters, raised: &Parameters) -> Parameters {
    let mut merged = stored.clone();
    merged.extend(raised.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

/// An invocation's identifier: a UUIDv7, so identifiers sort by raise time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvocationId(Uuid);

impl InvocationId {
    /// A fresh, time-ordered identifier.
    pub fn new() -> InvocationId {
        InvocationId(Uuid::now_v7())
    }

    /// Reads a bare UUID (or `uuid:…`).
    pub fn parse(text: &str) -> Option<InvocationId> {
        let text = text.trim();
        Uuid::try_parse(text.strip_prefix("uuid:").unwrap_or(text))
            .ok()
            .map(InvocationId)
    }
}

impl Default for InvocationId {
    fn default() -> InvocationId {
        InvocationId::new()
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// Where an invocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationState {
    /// Waiting for its (next) call.
    Pending,
    /// A node is calling the service.
    Running,
    /// Answered; the callback event is on its agent.
    Done,
    /// Answered, with no callback event named: the answer is kept on the invocation.
    Kept,
    /// A SOAP fault, a refusal, or failing past the give-up window: on the error agent.
    Failed,
}

impl InvocationState {
    /// The name used in storage and in the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationState::Pending => "pending",
            InvocationState::Running => "running",
            InvocationState::Done => "done",
            InvocationState::Kept => "kept",
            InvocationState::Failed => "failed",
        }
    }

    /// Inverse of `as_str`.
    pub fn from_name(name: &str) -> Option<InvocationState> {
        [
            InvocationState::Pending,
            InvocationState::Running,
            InvocationState::Done,
            InvocationState::Kept,
            InvocationState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// A raised invoker event, as stored: what every call of the invocation sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Its identifier.
    pub id: InvocationId,
    /// The invoker (the invoker event's name).
    pub invoker: SourceName,
    /// The event key: the callback event's key.
    pub key: String,
    /// The request body for the service.
    pub payload: String,
    /// The invoker's stored parameters with the raise's over them.
    pub parameters: Parameters,
    /// When it was raised.
    pub raised_at: Timestamp,
}

impl Invocation {
    /// The callback event named by the merged parameters, if any (empty counts as none).
    pub fn callback_event(&self) -> Option<&str> {
        self.parameters
            .get(CALLBACK_EVENT)
            .map(|name| name.trim())
            .filter(|name| !name.is_empty())
    }

    /// The agent named by the merged parameters, if any.
    pub fn callback_agent(&self) -> Option<&str> {
        self.parameters
            .get(CALLBACK_AGENT)
            .map(|name| name.trim())
            .filter(|name| !name.is_empty())
    }
}

/// Everything stored about an invocation, for operators and for its retries.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    /// What was raised.
    pub invocation: Invocation,
    /// Where it stands.
    pub state: InvocationState,
    /// Calls that failed and were retried.
    pub attempts: u32,
    /// Times another node (or a restart) took it over while it was running: each may have
    /// called the service a second time.
    pub resumed: u32,
    /// When the next call is due, while pending.
    pub next_at: Option<Timestamp>,
    /// When the current run of failures began.
    pub failing_since: Option<Timestamp>,
    /// The last error.
    pub last_error: Option<String>,
    /// The service's answer, once it answered.
    pub response: Option<String>,
    /// The agent its callback event (or its error) went to, and the position there.
    pub delivered_to: Option<(SourceName, u64)>,
    /// When it finished (done, kept or failed).
    pub finished_at: Option<Timestamp>,
    /// The node running it, or that ran it last.
    pub owner: Option<String>,
}

/// How an invocation finishes: what goes to an agent, if anything, and the state it ends in.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// `Done`, `Kept` or `Failed`.
    pub state: InvocationState,
    /// The service's answer (or what it sent with its fault), if any.
    pub response: Option<String>,
    /// The error, for a failure.
    pub error: Option<String>,
    /// The message for an agent: the agent, whether it has pull listeners (a queue entry is
    /// made), the correlation id, and the event.
    pub message: Option<AgentMessage>,
}

/// A message put on an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMessage {
    /// The agent.
    pub agent: SourceName,
    /// Whether pull listeners read it: a queue entry is made with the message.
    pub pull: bool,
    /// The correlation id (the callback event's name).
    pub correlation_id: String,
    /// The event, as the agent's log holds it.
    pub event: super::event::NewEvent,
}

/// A message received from an agent by a pull listener, leased to it until `visible_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Leased {
    /// The message as the agent's log holds it.
    pub event: super::event::Event,
    /// Proves the lease: ack and nack name it.
    pub receipt: String,
    /// Times it has been handed out, this one included.
    pub deliveries: u32,
    /// When the lease runs out and the message is handed out again.
    pub visible_at: Timestamp,
}

/// An agent's queue of pull listeners, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages not yet acknowledged.
    pub depth: u64,
    /// Of those, leased to a listener now.
    pub leased: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Parameters {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn aliases_are_the_same_parameter_and_a_raise_wins() {
        let stored = canonical(&params(&[
            ("WFBES_CALLBACK_EVENT", "stored.event"),
            ("callback_agent", "IN"),
            ("other", "kept"),
        ]))
        .unwrap();
        let raised = canonical(&params(&[("wfbes_callback_event", "raised.event")])).unwrap();
        let merged = merge(&stored, &raised);
        assert_eq!(merged[CALLBACK_EVENT], "raised.event");
        assert_eq!(merged[CALLBACK_AGENT], "IN");
        assert_eq!(merged["other"], "kept");
        assert_eq!(merged.len(), 3);
    }

    #[test]
    fn two_spellings_in_one_list_are_refused() {
        let both = params(&[("WFBES_CALLBACK_AGENT", "a"), ("callback_agent", "b")]);
        assert!(canonical(&both).unwrap_err().contains("callback_agent"));
    }

    #[test]
    fn states_round_trip() {
        for name in ["pending", "running", "done", "kept", "failed"] {
            assert_eq!(InvocationState::from_name(name).unwrap().as_str(), name);
        }
        assert_eq!(InvocationState::from_name("lost"), None);
    }
}
