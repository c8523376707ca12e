//! XPath 1.0 filters on oxml, with compile-time and evaluation budgets so a hostile expression
//! cannot stall delivery.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oxml::xpath::{EvalContext, EvalLimits};
use oxml::{Document, Limits, NodeId, XPath};

use super::{EventView, FilterError, Matcher, NotificationContext};
use crate::domain::HERALD_NS;
use crate::domain::subscription::{SoapVersion, WsaVersion};

/// Work units one evaluation may spend (oxml counts steps, node visits and bytes); a filter
/// that needs more does not match. Measured: 2,000,000 units take about 1 ms in a release
/// build, and `count(//x) = n` over a 2,100-element event needs under 2,000,000.
const MAX_WORK: usize = 2_000_000;
/// The largest intermediate node-set.
const MAX_NODES: usize = 100_000;
/// Bytes of strings one evaluation may materialise.
const MAX_STRING_BYTES: usize = 1024 * 1024;

/// Syntax units (operands and operators) one expression may have. The compiled form costs
/// memory in proportion: measured (herald-bench scenario 5), a subscription with the largest
/// accepted filter costs about 27 KB. 256 units is a comparison chain of some 40 terms.
pub const MAX_SYNTAX_UNITS: usize = 256;
/// Operators and steps one expression may have.
const MAX_OPERATORS: usize = 128;
/// Nesting of parentheses, predicates and arguments.
const MAX_NESTING: usize = 16;

/// What the expression is evaluated against.
pub enum Context {
    /// W3C 2011: the event document (its root node; the event element is its child).
    Event,
    /// WS-Eventing 2004/08: the SOAP Envelope element of the notification, as `notification`
    /// writes it.
    Envelope {
        soap: SoapVersion,
        addressing: WsaVersion,
        notification: Arc<dyn NotificationContext>,
    },
}

pub struct XPathFilter {
    xpath: XPath,
    context: Context,
    evaluation: EvalContext,
}

impl XPathFilter {
    pub fn compile(
        expression: &str,
        namespaces: &[(String, String)],
        context: Context,
    ) -> Result<XPathFilter, FilterError> {
        // The default namespace does not apply to XPath 1.0 name tests; only prefixes bind.
        let bindings: Vec<(&str, &str)> = namespaces
            .iter()
            .filter(|(prefix, _)| !prefix.is_empty())
            .map(|(prefix, uri)| (prefix.as_str(), uri.as_str()))
            .collect();
        let mut compile = Limits::strict();
        compile.max_xpath_nodes = MAX_SYNTAX_UNITS;
        compile.max_xpath_operators = MAX_OPERATORS;
        compile.max_xpath_depth = MAX_NESTING;
        compile.max_xpath_bytes = Some(super::MAX_EXPRESSION_BYTES);
        let xpath = XPath::compile_with_namespaces_and_limits(expression, &bindings, &compile)
            .map_err(|err| FilterError::Invalid(format!("XPath: {err}")))?;
        if !xpath.variables().is_empty() {
            return Err(FilterError::Invalid(
                "XPath: the expression references variables, which nothing binds".into(),
            ));
        }
        let mut limits = EvalLimits::default();
        limits.max_work = MAX_WORK;
        limits.max_nodes = MAX_NODES;
        limits.max_string_bytes = MAX_STRING_BYTES;
        Ok(XPathFilter {
            xpath,
            context,
            evaluation: EvalContext::new().with_limits(limits),
        })
    }
}

impl Matcher for XPathFilter {
    fn matches(&self, event: &EventView) -> bool {
        let (document, context) = match self.context {
            Context::Event => match event.event_document() {
                Some(document) => (document, document.root()),
                None => return false,
            },
            Context::Envelope {
                soap,
                addressing,
                ref notification,
            } => match event.envelope_document(soap, addressing, notification.as_ref()) {
                Some(document) => match document.root_element() {
                    Some(envelope) => (document, envelope),
                    None => return false,
                },
                None => return false,
            },
        };
        evaluate(&self.xpath, document, context, &self.evaluation)
    }
}

/// When an evaluation over its budget was last logged at `warn`, in seconds since the epoch.
static LAST_BUDGET_WARNING: AtomicU64 = AtomicU64::new(0);

/// How often, at most, an evaluation over budget is logged at `warn` (others at `debug`).
const BUDGET_WARNING_INTERVAL_SECS: u64 = 60;

fn evaluate(xpath: &XPath, document: &Document, context: NodeId, evaluation: &EvalContext) -> bool {
    match xpath.evaluate_from_with(document, context, evaluation) {
        Ok(value) => value.to_boolean(),
        Err(err) => {
            // No match, as documented; said in the log, so a filter that stops matching an
            // event because of its size is not silent.
            let now = jiff::Timestamp::now().as_second().unsigned_abs();
            let last = LAST_BUDGET_WARNING.load(Ordering::Relaxed);
            let due = now >= last + BUDGET_WARNING_INTERVAL_SECS
                && LAST_BUDGET_WARNING
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            if due {
                tracing::warn!(filter = %xpath, error = %err, "a filter's evaluation stopped at its limits; the event counts as not matching (logged at most once a minute)");
            } else {
                tracing::debug!(filter = %xpath, error = %err, "filter evaluation stopped; treated as no match");
            }
            false
        }
    }
}

impl EventView {
    /// The event parsed as a document: its one element as the document element, or several
    /// elements inside a `hrd:Event` wrapper. `None` if the payload is not XML.
    pub(super) fn event_document(&self) -> Option<&Document> {
        self.event_document
            .get_or_init(|| {
                let payload = &self.event().payload;
                let parsed = oxml::parse(payload)
                    .ok()
                    .filter(|doc| doc.root_element().is_some());
                parsed.or_else(|| {
                    oxml::parse(&format!(
                        "<hrd:Event xmlns:hrd=\"{HERALD_NS}\">{payload}</hrd:Event>"
                    ))
                    .ok()
                })
            })
            .as_ref()
    }

    /// The notification envelope as a subscriber of these versions receives it (Action header,
    /// event in the Body), parsed once per version pair.
    pub(super) fn envelope_document(
        &self,
        soap: SoapVersion,
        addressing: WsaVersion,
        notification: &dyn NotificationContext,
    ) -> Option<&Document> {
        let index = match soap {
            SoapVersion::Soap11 => 0,
            SoapVersion::Soap12 => 3,
        } + match addressing {
            WsaVersion::Mar2003 => 0,
            WsaVersion::Aug2004 => 1,
            WsaVersion::W3c2005 => 2,
        };
        self.envelope_documents[index]
            .get_or_init(|| {
                let text =
                    notification.envelope(soap, addressing, self.action(), &self.event().payload);
                oxml::parse(&text).ok()
            })
            .as_ref()
    }
}
