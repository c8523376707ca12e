//! WS-Management (DMTF DSP0226) on the eventing endpoints: the addressing headers
//! (`wsman:ResourceURI`, `wsman:SelectorSet`), the request headers herald understands
//! (`wsman:OptionSet`, `wsman:Locale`, `p:DataLocale`, `wsman:MaxEnvelopeSize`,
//! `wsman:OperationTimeout`, which bounds a Pull's wait), and the table that maps a resource
//! URI to the source that declares it.
//!
//! Choices where DSP0226 leaves room (also in the README, "WS-Management"):
//! - a request whose ResourceURI its source does not declare: `wsa:DestinationUnreachable`,
//!   detail `InvalidResourceURI`; a request without one is served as plain WS-Eventing;
//! - sources declare no selectors: a non-empty `wsman:SelectorSet` gets `wsman:InvalidSelectors`
//!   (detail `UnexpectedSelectors`), never a guess at what it meant;
//! - herald implements no option: an option with `MustComply="true"` gets `wsman:InvalidOptions`
//!   (detail `NotSupported`), the others are ignored;
//! - `wsman:MaxEnvelopeSize` is honoured at any value (DSP0226 would let herald refuse values
//!   under 8192; it does not): a larger response is replaced by `wsman:EncodingLimit` (detail
//!   `MaxEnvelopeSize`); a Subscribe so answered is withdrawn;
//! - `wsman:Locale` marked mustUnderstand in a language other than English:
//!   `wsman:UnsupportedFeature` (detail `Locale`); herald's texts are English.

use std::collections::BTreeMap;
use std::time::Duration;

use roxmltree::Node;

pub use super::faults::{FAULT_DETAIL, WSMAN_FAULT_ACTION, WSMAN_NS, fault_detail};
use super::faults::{Problem, WsmanFault};
use crate::domain::expiry::XsDuration;
use crate::domain::subscription::SourceName;
use crate::engine::SourcePolicy;
use crate::soap::xml;

/// Microsoft's WS-Management extension namespace (`p:DataLocale`).
pub const MS_WSMAN_NS: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";

/// Header blocks herald understands, by (namespace, local name), for mustUnderstand.
pub fn understood(ns: &str, local: &str) -> bool {
    match ns {
        WSMAN_NS => matches!(
            local,
            "ResourceURI"
                | "SelectorSet"
                | "OptionSet"
                | "Locale"
                | "MaxEnvelopeSize"
                | "OperationTimeout"
        ),
        MS_WSMAN_NS => local == "DataLocale",
        _ => false,
    }
}

/// Which source answers to which resource URI, from the sources' `resource_uris`.
#[derive(Debug, Clone, Default)]
pub struct ResourceTable {
    by_uri: BTreeMap<String, SourceName>,
}

impl ResourceTable {
    /// The table of the configured sources (configuration refuses a URI declared twice).
    pub fn from_sources<'a>(sources: impl Iterator<Item = &'a SourcePolicy>) -> ResourceTable {
        let mut by_uri = BTreeMap::new();
        for source in sources {
            for uri in &source.resource_uris {
                by_uri
                    .entry(uri.clone())
                    .or_insert_with(|| source.name.clone());
            }
        }
        ResourceTable { by_uri }
    }

    /// The source that declares `uri`.
    pub fn source_of(&self, uri: &str) -> Option<&SourceName> {
        self.by_uri.get(uri)
    }
}

/// The WS-Management headers of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    /// `wsman:ResourceURI`, trimmed.
    pub resource_uri: Option<String>,
    /// `wsman:MaxEnvelopeSize`, in bytes.
    pub max_envelope_size: Option<usize>,
    /// `wsman:OperationTimeout`: how long the client waits for the answer (a Pull waits for
    /// events no longer).
    pub operation_timeout: Option<Duration>,
}

fn must_understand(block: Node<'_, '_>) -> bool {
    block.attributes().any(|attribute| {
        attribute.name() == "mustUnderstand" && matches!(attribute.value().trim(), "1" | "true")
    })
}

pub(super) fn xs_duration(text: &str) -> Option<Duration> {
    let parsed = XsDuration::parse(text.trim()).filter(|d| !d.negative)?;
    let now = jiff::Timestamp::now();
    let end = parsed.after(now).ok()?;
    Duration::try_from(end.duration_since(now)).ok()
}

impl RequestHeaders {
    /// Reads and checks the WS-Management headers among `blocks`.
    pub fn read<'a, 'input: 'a>(
        blocks: impl Iterator<Item = Node<'a, 'input>>,
    ) -> Result<RequestHeaders, Problem> {
        let mut headers = RequestHeaders::default();
        for block in blocks {
            let tag = block.tag_name();
            match (tag.namespace().unwrap_or(""), tag.name()) {
                (WSMAN_NS, "ResourceURI") => {
                    if headers.resource_uri.is_some() {
                        return Err(Problem::InvalidHeader(
                            "wsman:ResourceURI appears more than once".into(),
                        ));
                    }
                    headers.resource_uri = Some(xml::trimmed_text(block));
                }
                (WSMAN_NS, "SelectorSet")
                    if xml::children_named(block, WSMAN_NS, "Selector")
                        .next()
                        .is_some() =>
                {
                    return Err(Problem::Wsman(WsmanFault::sender(
                        "InvalidSelectors",
                        "The selectors for the resource are not valid: herald's event sources \
                         take no selectors"
                            .into(),
                        Some("UnexpectedSelectors"),
                    )));
                }
                (WSMAN_NS, "OptionSet") => {
                    for option in xml::children_named(block, WSMAN_NS, "Option") {
                        let must_comply = option
                            .attribute("MustComply")
                            .is_some_and(|v| matches!(v.trim(), "1" | "true"));
                        if must_comply {
                            let name: String = option
                                .attribute("Name")
                                .unwrap_or("")
                                .chars()
                                .take(80)
                                .collect();
                            return Err(Problem::Wsman(WsmanFault::sender(
                                "InvalidOptions",
                                format!(
                                    "One or more options are not valid: herald does not \
                                     implement option '{name}', which must be complied with"
                                ),
                                Some("NotSupported"),
                            )));
                        }
                    }
                }
                (WSMAN_NS, "Locale") => {
                    let lang = block
                        .attribute(("http://www.w3.org/XML/1998/namespace", "lang"))
                        .unwrap_or("")
                        .trim();
                    let english = lang.is_empty()
                        || lang.eq_ignore_ascii_case("en")
                        || lang.to_ascii_lowercase().starts_with("en-");
                    if must_understand(block) && !english {
                        return Err(Problem::Wsman(WsmanFault::sender(
                            "UnsupportedFeature",
                            format!(
                                "The locale '{}' is not supported: herald answers in English",
                                lang.chars().take(40).collect::<String>()
                            ),
                            Some("Locale"),
                        )));
                    }
                }
                (WSMAN_NS, "MaxEnvelopeSize") => {
                    let text = xml::trimmed_text(block);
                    let size = text.parse::<usize>().ok().filter(|size| *size > 0);
                    headers.max_envelope_size = Some(size.ok_or_else(|| {
                        Problem::InvalidHeader(format!(
                            "wsman:MaxEnvelopeSize '{}' is not a positive integer",
                            text.chars().take(40).collect::<String>()
                        ))
                    })?);
                }
                (WSMAN_NS, "OperationTimeout") => {
                    let text = xml::trimmed_text(block);
                    headers.operation_timeout = Some(xs_duration(&text).ok_or_else(|| {
                        Problem::InvalidHeader(format!(
                            "wsman:OperationTimeout '{}' is not an xs:duration",
                            text.chars().take(40).collect::<String>()
                        ))
                    })?);
                }
                _ => {}
            }
        }
        Ok(headers)
    }
}

/// The source a request is for: the path's, whose declared resource URIs must include the
/// request's `wsman:ResourceURI` when it carries one; at `/wsman`, the source that declares it.
pub(super) fn resolve_source<'a>(
    request: &super::SoapRequest<'a>,
    headers: &RequestHeaders,
) -> Result<&'a str, Problem> {
    let declared = |uri: &str| request.resources.source_of(uri).map(SourceName::as_str);
    match (request.endpoint, headers.resource_uri.as_deref()) {
        (super::Endpoint::Wsman, None) => Err(Problem::UnknownResource(
            "(none: a request to /wsman must carry wsman:ResourceURI)".into(),
        )),
        (super::Endpoint::Wsman, Some(uri)) => match request.resources.source_of(uri) {
            // The table outlives the request; the name is borrowed from it.
            Some(source) => Ok(source.as_str()),
            None => Err(Problem::UnknownResource(uri.to_owned())),
        },
        (_, Some(uri)) if declared(uri) != Some(request.source) => {
            Err(Problem::UnknownResource(uri.to_owned()))
        }
        _ => Ok(request.source),
    }
}

/// The reference parameter that makes a WS-Man client echo the resource URI to the manager.
pub fn resource_uri_parameter(uri: &str) -> String {
    format!(
        "<wsman:ResourceURI xmlns:wsman=\"{WSMAN_NS}\">{}</wsman:ResourceURI>",
        xml::escape(uri)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn understood_headers() {
        assert!(understood(WSMAN_NS, "ResourceURI"));
        assert!(understood(MS_WSMAN_NS, "DataLocale"));
        assert!(!understood(WSMAN_NS, "FragmentTransfer"));
        assert!(!understood(MS_WSMAN_NS, "SessionId"));
    }

    #[test]
    fn durations() {
        assert_eq!(xs_duration("PT60.0S"), Some(Duration::from_secs(60)));
        assert_eq!(xs_duration("-PT1S"), None);
        assert_eq!(xs_duration("soon"), None);
    }
}
