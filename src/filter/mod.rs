//! Filters: which events a subscription receives.
//!
//! A subscription's filter is compiled once, at Subscribe (or when herald starts), by the
//! [`FilterEngine`]; each event is wrapped in an [`EventView`] that parses it at most once per
//! shape, however many subscriptions evaluate it. The engine is a trait so the XPath
//! implementation can be swapped; `tests/filter_conformance.rs` is the contract any
//! implementation must pass.

mod xpath;

use std::sync::{Arc, OnceLock};

use crate::domain::event::Event;
use crate::domain::subscription::{EventingVersion, Filter, SoapVersion, WsaVersion};

/// XPath 1.0 as WS-Eventing 2004/08 names it (context node: the notification's SOAP Envelope).
pub const XPATH_1999: &str = "http://www.w3.org/TR/1999/REC-xpath-19991116";
/// XPath 1.0 as W3C WS-Eventing 2011 names it (context node: the event).
pub const XPATH_2011: &str = "http://www.w3.org/2011/03/ws-evt/Dialects/XPath10";
/// DPWS 1.0 action list: whitespace-separated action URIs.
pub const DPWS_2006_ACTION: &str = "http://schemas.xmlsoap.org/ws/2006/02/devprof/Action";
/// DPWS 1.1 action list.
pub const DPWS_2009_ACTION: &str = "http://docs.oasis-open.org/ws-dd/ns/dpws/2009/01/Action";
/// herald's own topic dialect: whitespace-separated action patterns, `*` at the end matching
/// any suffix.
pub const HERALD_TOPIC: &str = "urn:herald:dialect:topic";

/// Every supported dialect, in the order they are advertised in faults.
pub const SUPPORTED_DIALECTS: [&str; 5] = [
    XPATH_1999,
    XPATH_2011,
    DPWS_2006_ACTION,
    DPWS_2009_ACTION,
    HERALD_TOPIC,
];

/// The longest filter expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;

/// True when herald can evaluate filters of this dialect.
pub fn is_supported(dialect: &str) -> bool {
    SUPPORTED_DIALECTS.contains(&dialect)
}

/// Why a filter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The dialect is not supported.
    #[error("the filter dialect '{0}' is not supported")]
    UnsupportedDialect(String),
    /// The expression is empty: it would never match.
    #[error("the filter is empty")]
    Empty,
    /// The expression does not compile, or exceeds a limit.
    #[error("{0}")]
    Invalid(String),
}

/// An event as filters see it: its action and payload, and parsed forms built on first use and
/// shared by every subscription that evaluates it.
pub struct EventView {
    event: Arc<Event>,
    /// The event alone (W3C 2011 XPath context).
    event_document: OnceLock<Option<oxml::Document>>,
    /// The notification envelope per (SOAP, WS-Addressing) version (2004/08 XPath context).
    envelope_documents: [OnceLock<Option<oxml::Document>>; 6],
}

impl EventView {
    /// Wraps an event; nothing is parsed yet.
    pub fn new(event: Arc<Event>) -> EventView {
        EventView {
            event,
            event_document: OnceLock::new(),
            envelope_documents: Default::default(),
        }
    }

    /// The event.
    pub fn event(&self) -> &Arc<Event> {
        &self.event
    }

    /// The event's action.
    pub fn action(&self) -> &str {
        &self.event.action
    }
}

/// A compiled filter.
pub trait Matcher: Send + Sync {
    /// Whether the event passes. A filter that cannot be evaluated within its budget does not
    /// match (and the event is skipped for that subscription only).
    fn matches(&self, event: &EventView) -> bool;
}

/// Compiles filters.
pub trait FilterEngine: Send + Sync {
    /// Compiles a filter as a subscription of `version`, delivered over `soap` / `addressing`,
    /// will have it evaluated.
    fn compile(
        &self,
        filter: &Filter,
        version: EventingVersion,
        soap: SoapVersion,
        addressing: WsaVersion,
    ) -> Result<Arc<dyn Matcher>, FilterError>;
}

/// The document a WS-Eventing 2004 XPath filter is evaluated against: the notification's SOAP
/// envelope, as the protocol layer writes it. A port: `eventing/` implements it, so that the
/// filter sees the envelope the subscriber receives.
pub trait NotificationContext: Send + Sync {
    /// The envelope carrying an event of `action` with `payload` in these versions.
    fn envelope(
        &self,
        soap: SoapVersion,
        addressing: WsaVersion,
        action: &str,
        payload: &str,
    ) -> String;
}

/// herald's filter engine: XPath 1.0 (oxml), DPWS action lists and the topic dialect.
#[derive(Clone)]
pub struct StandardFilters {
    context: Arc<dyn NotificationContext>,
}

impl StandardFilters {
    /// The engine, with 2004 XPath filters evaluated against `context`'s envelopes.
    pub fn new(context: Arc<dyn NotificationContext>) -> StandardFilters {
        StandardFilters { context }
    }
}

impl FilterEngine for StandardFilters {
    fn compile(
        &self,
        filter: &Filter,
        version: EventingVersion,
        soap: SoapVersion,
        addressing: WsaVersion,
    ) -> Result<Arc<dyn Matcher>, FilterError> {
        let expression = filter.expression.trim();
        if expression.is_empty() {
            return Err(FilterError::Empty);
        }
        if expression.len() > MAX_EXPRESSION_BYTES {
            return Err(FilterError::Invalid(format!(
                "the expression is longer than {MAX_EXPRESSION_BYTES} bytes"
            )));
        }
        match filter.dialect.as_str() {
            XPATH_1999 | XPATH_2011 => {
                // The context node follows the subscriber's version (W3C issue 6980): the
                // notification's Envelope in 2004, the event in 2011.
                let context = if version == EventingVersion::W3c2011 {
                    xpath::Context::Event
                } else {
                    xpath::Context::Envelope {
                        soap,
                        addressing,
                        notification: self.context.clone(),
                    }
                };
                Ok(Arc::new(xpath::XPathFilter::compile(
                    expression,
                    &filter.namespaces,
                    context,
                )?))
            }
            DPWS_2006_ACTION | DPWS_2009_ACTION => Ok(Arc::new(ActionList::new(expression))),
            HERALD_TOPIC => Ok(Arc::new(TopicFilter::new(expression))),
            other => Err(FilterError::UnsupportedDialect(other.to_owned())),
        }
    }
}

/// DPWS action filter: the event passes when its action matches a listed URI, by RFC 3986
/// segment-prefix matching (an exact match, or the listed URI followed by `/` in the action).
struct ActionList {
    actions: Vec<String>,
}

impl ActionList {
    fn new(expression: &str) -> ActionList {
        ActionList {
            actions: expression.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

impl Matcher for ActionList {
    fn matches(&self, event: &EventView) -> bool {
        let action = event.action();
        self.actions.iter().any(|listed| {
            action == listed
                || action
                    .strip_prefix(listed.as_str())
                    .is_some_and(|rest| listed.ends_with('/') || rest.starts_with('/'))
        })
    }
}

/// herald's topic filter: the action equals a pattern, or starts with a pattern's text before a
/// trailing `*`.
struct TopicFilter {
    patterns: Vec<String>,
}

impl TopicFilter {
    fn new(expression: &str) -> TopicFilter {
        TopicFilter {
            patterns: expression.split_whitespace().map(str::to_owned).collect(),
        }
    }
}

impl Matcher for TopicFilter {
    fn matches(&self, event: &EventView) -> bool {
        let action = event.action();
        self.patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => action.starts_with(prefix),
                None => action == pattern,
            })
    }
}
