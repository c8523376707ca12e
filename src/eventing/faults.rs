//! Every refusal herald gives a WS-Eventing request, mapped to the fault each version defines.
//!
//! Where a version defines no fault for a situation, the choice is documented here and in the
//! README:
//! - unknown, expired or ended subscription in 2004/01 and 2004/08 (which define no such fault):
//!   `wsa:DestinationUnreachable` in the request's WS-Addressing namespace — the subscription
//!   manager endpoint reference no longer leads anywhere;
//! - schema-level problems in 2011 (which dropped `InvalidMessage`): a Sender fault without
//!   subcode; local failures in 2011: a Receiver fault without subcode;
//! - filter expression and endpoint problems in the 2004 versions: `wse:InvalidMessage`;
//! - WS-Management (DSP0226) refusals: `wsman:` subcodes with the WS-Man fault action and a
//!   `wsman:FaultDetail`, and an unknown resource URI as `wsa:DestinationUnreachable` with
//!   detail `InvalidResourceURI` (see `wsman.rs`);
//! - Pull mode (`wsman_pull.rs`): WS-Enumeration's `wsen:InvalidEnumerationContext` (Receiver,
//!   the WS-Enumeration fault action) for every context that cannot be used, whether the
//!   subscription behind it is unknown, ended, pushed, or the position unreadable.

use super::version::{FORMAT_UNWRAP, FORMAT_WRAP, PUSH_MODE};
use crate::delivery::PublishError;
use crate::domain::expiry::ExpiryError;
use crate::domain::subscription::{EventingVersion, WsaVersion};
use crate::domain::wsman::modes;
use crate::engine::EngineError;
use crate::filter::FilterError;
use crate::filter::SUPPORTED_DIALECTS;
use crate::soap::fault::{Fault, FaultCode, Subcode};
use crate::soap::xml;

/// The WS-Management namespace.
pub const WSMAN_NS: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
/// The `wsa:Action` of WS-Management faults.
pub const WSMAN_FAULT_ACTION: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
/// The WS-Enumeration (2004/09) namespace, whose Pull and Release WS-Management's Pull mode
/// uses.
pub const WSEN_NS: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
/// The `wsa:Action` of WS-Enumeration faults.
pub const WSEN_FAULT_ACTION: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/fault";
/// The prefix of DSP0226 fault detail URIs.
pub const FAULT_DETAIL: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/";

/// The `wsman:FaultDetail` element for a DSP0226 detail name.
pub fn fault_detail(name: &str) -> String {
    format!(
        "<wsman:FaultDetail xmlns:wsman=\"{WSMAN_NS}\">{FAULT_DETAIL}{name}</wsman:FaultDetail>"
    )
}

/// Why a request was refused, in WS-Eventing terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Expires cannot be granted.
    Expiration(ExpiryError),
    /// The filter dialect is not supported.
    FilterDialectUnavailable(String),
    /// The filter expression cannot be used.
    CannotProcessFilter(String),
    /// The filter is empty: it would never match.
    EmptyFilter,
    /// 2004/08 delivery mode not supported.
    DeliveryModeUnavailable(String),
    /// 2011 delivery format not supported.
    DeliveryFormatUnavailable(String),
    /// No NotifyTo and no other delivery mechanism.
    NoDeliveryMechanism,
    /// NotifyTo or EndTo cannot be used.
    UnusableEpr(String),
    /// The subscription is unknown, expired or ended.
    UnknownSubscription(String),
    /// The message does not follow the version's schema.
    InvalidMessage(String),
    /// The source cannot take the subscription for a local reason.
    UnableToProcess(String),
    /// The subscription cannot be renewed for a local reason.
    UnableToRenew(String),
    /// The endpoint names no configured source.
    UnknownSource(String),
    /// The action is not one this endpoint handles.
    ActionNotSupported(String),
    /// A required WS-Addressing header is missing.
    HeaderRequired(&'static str),
    /// A WS-Addressing header is invalid.
    InvalidHeader(String),
    /// `wsa:Action` disagrees with the action of the HTTP request.
    ActionMismatch(String),
    /// Publishing needs the bearer token.
    Unauthorized,
    /// No source declares this WS-Management resource URI (or the addressed source does not).
    UnknownResource(String),
    /// A WS-Management fault (DSP0226).
    Wsman(WsmanFault),
    /// A Pull or Release whose `wsen:EnumerationContext` cannot be used (why): unparseable,
    /// another subscription's, past the head, or of a subscription that is unknown, ended or
    /// not pulled.
    InvalidEnumerationContext(String),
}

/// A WS-Management fault: its `wsman:` subcode, reason and `wsman:FaultDetail` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsmanFault {
    /// Sender or Receiver.
    pub code: FaultCode,
    /// The local name of the `wsman:` subcode.
    pub subcode: &'static str,
    /// The reason text.
    pub reason: String,
    /// The last segment of the DSP0226 fault detail URI, if one applies.
    pub detail: Option<&'static str>,
}

impl WsmanFault {
    /// A Sender fault.
    pub fn sender(subcode: &'static str, reason: String, detail: Option<&'static str>) -> Self {
        WsmanFault {
            code: FaultCode::Sender,
            subcode,
            reason,
            detail,
        }
    }

    /// A Receiver fault.
    pub fn receiver(subcode: &'static str, reason: String, detail: Option<&'static str>) -> Self {
        WsmanFault {
            code: FaultCode::Receiver,
            ..WsmanFault::sender(subcode, reason, detail)
        }
    }
}

/// Everything needed to pick the right fault: the request's versions.
#[derive(Debug, Clone, Copy)]
pub struct FaultContext {
    /// WS-Eventing version, when known.
    pub eventing: Option<EventingVersion>,
    /// WS-Addressing version to answer in.
    pub addressing: WsaVersion,
}

fn detail_list(prefix: &str, local: &str, values: &[&str]) -> Vec<String> {
    values
        .iter()
        .map(|value| {
            format!(
                "<{prefix}:{local}>{}</{prefix}:{local}>",
                xml::escape(value)
            )
        })
        .collect()
}

impl Problem {
    /// The fault for this problem in the request's versions.
    pub fn to_fault(&self, context: FaultContext) -> Fault {
        let wsa = context.addressing;
        let version = context.eventing.unwrap_or(EventingVersion::W3c2011);
        let w2011 = version == EventingVersion::W3c2011;
        let eventing =
            |code: FaultCode, local: &'static str, reason: String, detail: Vec<String>| Fault {
                code,
                subcode: Some(Subcode {
                    ns: version.ns(),
                    prefix: "wse",
                    local,
                }),
                reason,
                detail,
                action: version.fault_action(),
            };
        let addressing = |local: &'static str, reason: String, detail: Vec<String>| Fault {
            code: FaultCode::Sender,
            subcode: Some(Subcode {
                ns: wsa.ns(),
                prefix: "wsa",
                local,
            }),
            reason,
            detail,
            action: wsa.fault_action().to_owned(),
        };
        let plain = |code: FaultCode, reason: String| Fault {
            code,
            subcode: None,
            reason,
            detail: Vec::new(),
            action: wsa.soap_fault_action().to_owned(),
        };
        let sender = FaultCode::Sender;
        match self {
            Problem::Expiration(ExpiryError::DateTimeUnsupported) => eventing(
                sender,
                "UnsupportedExpirationType",
                "Only expiration durations are supported.".into(),
                Vec::new(),
            ),
            Problem::Expiration(err) if w2011 => eventing(
                sender,
                "UnsupportedExpirationValue",
                format!("The expiration time requested is not supported: {err}."),
                Vec::new(),
            ),
            Problem::Expiration(err) => eventing(
                sender,
                "InvalidExpirationTime",
                format!("The expiration time requested is invalid: {err}."),
                Vec::new(),
            ),
            Problem::FilterDialectUnavailable(dialect) => eventing(
                sender,
                "FilteringRequestedUnavailable",
                format!(
                    "The requested filter dialect '{}' is not supported.",
                    dialect.chars().take(200).collect::<String>()
                ),
                detail_list("wse", "SupportedDialect", &SUPPORTED_DIALECTS),
            ),
            Problem::CannotProcessFilter(why) if w2011 => eventing(
                sender,
                "CannotProcessFilter",
                format!("Cannot filter as requested: {why}."),
                Vec::new(),
            ),
            Problem::EmptyFilter if w2011 => eventing(
                sender,
                "EmptyFilter",
                "The wse:Filter would result in zero notifications.".into(),
                Vec::new(),
            ),
            Problem::DeliveryModeUnavailable(mode) => eventing(
                sender,
                "DeliveryModeRequestedUnavailable",
                format!(
                    "The requested delivery mode '{}' is not supported.",
                    mode.chars().take(200).collect::<String>()
                ),
                detail_list(
                    "wse",
                    "SupportedDeliveryMode",
                    &[PUSH_MODE, modes::PUSH_WITH_ACK, modes::EVENTS, modes::PULL],
                ),
            ),
            Problem::DeliveryFormatUnavailable(format) => eventing(
                sender,
                "DeliveryFormatRequestedUnavailable",
                format!(
                    "The requested delivery format '{}' is not supported.",
                    format.chars().take(200).collect::<String>()
                ),
                detail_list(
                    "wse",
                    "SupportedDeliveryFormat",
                    &[FORMAT_UNWRAP, FORMAT_WRAP],
                ),
            ),
            Problem::NoDeliveryMechanism if w2011 => eventing(
                sender,
                "NoDeliveryMechanismEstablished",
                "No delivery mechanism specified.".into(),
                Vec::new(),
            ),
            Problem::UnusableEpr(why) if w2011 => eventing(
                sender,
                "UnusableEPR",
                format!("An EPR in the Subscribe request message is unusable: {why}."),
                Vec::new(),
            ),
            Problem::UnknownSubscription(why) if w2011 => eventing(
                sender,
                "UnknownSubscription",
                format!("The subscription is not known: {why}."),
                Vec::new(),
            ),
            Problem::UnknownSubscription(why) => addressing(
                "DestinationUnreachable",
                format!("The subscription is not known: {why}."),
                Vec::new(),
            ),
            Problem::UnableToProcess(why) if !w2011 => eventing(
                FaultCode::Receiver,
                "EventSourceUnableToProcess",
                format!("The event source cannot process the subscription: {why}."),
                Vec::new(),
            ),
            Problem::UnableToRenew(why) if !w2011 => eventing(
                FaultCode::Receiver,
                "UnableToRenew",
                format!("The subscription could not be renewed: {why}."),
                Vec::new(),
            ),
            Problem::UnableToProcess(why) | Problem::UnableToRenew(why) => {
                plain(FaultCode::Receiver, format!("The request could not be processed: {why}."))
            }
            Problem::UnknownSource(name) => addressing(
                "DestinationUnreachable",
                format!("No event source named '{name}' is hosted here."),
                Vec::new(),
            ),
            Problem::ActionNotSupported(action) => addressing(
                "ActionNotSupported",
                format!(
                    "The action '{}' cannot be processed at this endpoint.",
                    action.chars().take(200).collect::<String>()
                ),
                if wsa == WsaVersion::W3c2005 {
                    vec![format!(
                        "<wsa:ProblemAction><wsa:Action>{}</wsa:Action></wsa:ProblemAction>",
                        xml::escape(action)
                    )]
                } else {
                    Vec::new()
                },
            ),
            Problem::HeaderRequired(header) => addressing(
                wsa.header_required_subcode(),
                format!("A required header representing a Message Addressing Property is not present: wsa:{header}."),
                if wsa == WsaVersion::W3c2005 {
                    vec![format!("<wsa:ProblemHeaderQName>wsa:{header}</wsa:ProblemHeaderQName>")]
                } else {
                    Vec::new()
                },
            ),
            Problem::InvalidHeader(why) => addressing(
                wsa.invalid_header_subcode(),
                format!("A header representing a Message Addressing Property is not valid: {why}."),
                Vec::new(),
            ),
            Problem::ActionMismatch(why) => {
                if wsa == WsaVersion::W3c2005 {
                    addressing(
                        "ActionMismatch",
                        format!("The [action] cannot be processed at the receiver: {why}."),
                        Vec::new(),
                    )
                } else {
                    addressing(
                        wsa.invalid_header_subcode(),
                        format!("wsa:Action disagrees with the HTTP action: {why}."),
                        Vec::new(),
                    )
                }
            }
            Problem::UnknownResource(uri) => addressing(
                "DestinationUnreachable",
                format!(
                    "No route can be determined to reach the destination: no event source here \
                     answers to resource URI '{}'.",
                    uri.chars().take(200).collect::<String>()
                ),
                vec![fault_detail("InvalidResourceURI")],
            ),
            Problem::Wsman(fault) => Fault {
                code: fault.code,
                subcode: Some(Subcode {
                    ns: WSMAN_NS,
                    prefix: "wsman",
                    local: fault.subcode,
                }),
                reason: format!("{}.", fault.reason),
                detail: fault.detail.map(fault_detail).into_iter().collect(),
                action: WSMAN_FAULT_ACTION.to_owned(),
            },
            // WS-Enumeration 2004/09 defines it as a Receiver fault.
            Problem::InvalidEnumerationContext(why) => Fault {
                code: FaultCode::Receiver,
                subcode: Some(Subcode {
                    ns: WSEN_NS,
                    prefix: "wsen",
                    local: "InvalidEnumerationContext",
                }),
                reason: format!("The supplied enumeration context is invalid: {why}."),
                detail: Vec::new(),
                action: WSEN_FAULT_ACTION.to_owned(),
            },
            Problem::Unauthorized => plain(
                sender,
                "Publishing requires a valid bearer token (Authorization: Bearer ...).".into(),
            ),
            // The 2004 versions have no dedicated fault for these: InvalidMessage says the
            // request cannot be used as sent.
            Problem::CannotProcessFilter(why) => eventing(
                sender,
                "InvalidMessage",
                format!("The message is not valid and cannot be processed: the filter cannot be used: {why}."),
                Vec::new(),
            ),
            Problem::EmptyFilter => eventing(
                sender,
                "InvalidMessage",
                "The message is not valid and cannot be processed: the filter is empty.".into(),
                Vec::new(),
            ),
            Problem::NoDeliveryMechanism => eventing(
                sender,
                "InvalidMessage",
                "The message is not valid and cannot be processed: push delivery needs wse:NotifyTo.".into(),
                Vec::new(),
            ),
            Problem::UnusableEpr(why) => eventing(
                sender,
                "InvalidMessage",
                format!("The message is not valid and cannot be processed: an endpoint reference is unusable: {why}."),
                Vec::new(),
            ),
            Problem::InvalidMessage(why) if !w2011 => eventing(
                sender,
                "InvalidMessage",
                format!("The message is not valid and cannot be processed: {why}."),
                Vec::new(),
            ),
            Problem::InvalidMessage(why) => {
                plain(sender, format!("The message is not valid and cannot be processed: {why}."))
            }
        }
    }
}

impl From<EngineError> for Problem {
    fn from(err: EngineError) -> Problem {
        match err {
            EngineError::UnknownSource(name) => Problem::UnknownSource(name),
            EngineError::UnknownSubscription => {
                Problem::UnknownSubscription("it does not exist, has expired or has ended".into())
            }
            EngineError::Expiry(err) => Problem::Expiration(err),
            EngineError::SourceFull { .. } => Problem::UnableToProcess(err.to_string()),
            EngineError::SourceGone(_) => Problem::UnableToRenew(err.to_string()),
            EngineError::Filter(FilterError::UnsupportedDialect(dialect)) => {
                Problem::FilterDialectUnavailable(dialect)
            }
            EngineError::Filter(FilterError::Empty) => Problem::EmptyFilter,
            EngineError::Filter(FilterError::Invalid(why)) => Problem::CannotProcessFilter(why),
            EngineError::EndpointRefused(why) => Problem::UnusableEpr(why),
            EngineError::InvalidBookmark(why) => Problem::Wsman(WsmanFault::sender(
                "InvalidBookmark",
                format!("The bookmark supplied with the subscription is not valid: {why}"),
                None,
            )),
            EngineError::InvalidPullPosition(why) => Problem::InvalidEnumerationContext(why),
            EngineError::SinkAuthUnavailable(why) => Problem::Wsman(WsmanFault::sender(
                "UnsupportedFeature",
                format!("The requested feature is not supported: {why}"),
                Some("AuthorizationMode"),
            )),
            EngineError::EventTooLarge { .. } => Problem::InvalidMessage(err.to_string()),
            EngineError::Publish(PublishError::UnknownSource(name)) => Problem::UnknownSource(name),
            EngineError::Publish(err) => Problem::UnableToProcess(err.to_string()),
            // Context services' errors never come from an eventing operation.
            EngineError::AgentNotPublishable(_) => Problem::InvalidMessage(err.to_string()),
            // Context services' and invokers' errors never come from an eventing operation.
            EngineError::UnknownContext(_)
            | EngineError::NoCallbackEndpoint
            | EngineError::InstanceEnded(_)
            | EngineError::UnknownInvoker(_)
            | EngineError::UnknownAgent(_)
            | EngineError::InvalidRaise(_)
            | EngineError::UnknownInvocation
            | EngineError::NotFailed(_)
            | EngineError::UnknownChannel
            | EngineError::InvalidWebhook(_) => Problem::UnableToProcess(err.to_string()),
            EngineError::Store(ref source) => {
                tracing::error!(error = %source, cause = ?std::error::Error::source(source), "store failure");
                Problem::UnableToProcess("the subscription store is unavailable".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(problem: Problem, eventing: EventingVersion, addressing: WsaVersion) -> Fault {
        problem.to_fault(FaultContext {
            eventing: Some(eventing),
            addressing,
        })
    }

    #[test]
    fn local_failures_are_receiver_faults() {
        let renew = fault(
            Problem::UnableToRenew("the store is unavailable".into()),
            EventingVersion::Aug2004,
            WsaVersion::Aug2004,
        );
        assert_eq!(renew.code, FaultCode::Receiver);
        assert_eq!(
            renew.subcode.as_ref().map(|s| s.local),
            Some("UnableToRenew")
        );
        assert_eq!(
            renew.action,
            "http://schemas.xmlsoap.org/ws/2004/08/eventing/fault"
        );
        let w2011 = fault(
            Problem::UnableToRenew("x".into()),
            EventingVersion::W3c2011,
            WsaVersion::W3c2005,
        );
        assert_eq!((w2011.code, w2011.subcode), (FaultCode::Receiver, None));
    }

    // A store failing during Renew, end to end (UnableToRenew in each version):
    // tests/it/store_failures.rs.
}
