//! WS-Addressing 2003/03, 2004/08 and 1.0 (2005/08): message headers, endpoint references, and
//! the headers of replies.

use roxmltree::Node;

use super::xml;
use crate::domain::subscription::{EndpointRef, WsaVersion};

/// WS-Addressing 2003/03 namespace.
pub const WSA_2003_NS: &str = "http://schemas.xmlsoap.org/ws/2003/03/addressing";
/// WS-Addressing 2004/08 namespace.
pub const WSA_2004_NS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// WS-Addressing 1.0 namespace.
pub const WSA_2005_NS: &str = "http://www.w3.org/2005/08/addressing";

impl WsaVersion {
    /// The namespace URI.
    pub fn ns(self) -> &'static str {
        match self {
            WsaVersion::Mar2003 => WSA_2003_NS,
            WsaVersion::Aug2004 => WSA_2004_NS,
            WsaVersion::W3c2005 => WSA_2005_NS,
        }
    }

    /// The version a namespace URI names.
    pub fn from_ns(ns: &str) -> Option<WsaVersion> {
        match ns {
            WSA_2003_NS => Some(WsaVersion::Mar2003),
            WSA_2004_NS => Some(WsaVersion::Aug2004),
            WSA_2005_NS => Some(WsaVersion::W3c2005),
            _ => None,
        }
    }

    /// The anonymous address: "reply on the HTTP response".
    pub fn anonymous(self) -> &'static str {
        match self {
            WsaVersion::Mar2003 => {
                "http://schemas.xmlsoap.org/ws/2003/03/addressing/role/anonymous"
            }
            WsaVersion::Aug2004 => {
                "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
            }
            WsaVersion::W3c2005 => "http://www.w3.org/2005/08/addressing/anonymous",
        }
    }

    /// The action of a fault that has no more specific one.
    pub fn fault_action(self) -> &'static str {
        match self {
            WsaVersion::Mar2003 => "http://schemas.xmlsoap.org/ws/2003/03/addressing/fault",
            WsaVersion::Aug2004 => "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault",
            WsaVersion::W3c2005 => "http://www.w3.org/2005/08/addressing/fault",
        }
    }

    /// The action of a generic SOAP fault (one without an addressing or eventing subcode).
    pub fn soap_fault_action(self) -> &'static str {
        match self {
            WsaVersion::W3c2005 => "http://www.w3.org/2005/08/addressing/soap/fault",
            other => other.fault_action(),
        }
    }

    /// Whether EPRs of this version carry reference parameters (2003/03 has only properties).
    pub fn has_reference_parameters(self) -> bool {
        self != WsaVersion::Mar2003
    }

    /// Whether EPRs of this version carry reference properties (dropped in 1.0).
    pub fn has_reference_properties(self) -> bool {
        self != WsaVersion::W3c2005
    }

    /// Subcode for a missing required header.
    pub fn header_required_subcode(self) -> &'static str {
        match self {
            WsaVersion::W3c2005 => "MessageAddressingHeaderRequired",
            _ => "MessageInformationHeaderRequired",
        }
    }

    /// Subcode for an invalid header.
    pub fn invalid_header_subcode(self) -> &'static str {
        match self {
            WsaVersion::W3c2005 => "InvalidAddressingHeader",
            _ => "InvalidMessageInformationHeader",
        }
    }
}

/// True when `address` means "no separate endpoint": the anonymous URI of any version.
pub fn is_anonymous(address: &str) -> bool {
    [
        WsaVersion::Mar2003,
        WsaVersion::Aug2004,
        WsaVersion::W3c2005,
    ]
    .iter()
    .any(|version| version.anonymous() == address)
}

/// The WS-Addressing 1.0 "none" address: no reply is to be sent.
pub const NONE_ADDRESS: &str = "http://www.w3.org/2005/08/addressing/none";

/// The message addressing properties of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageHeaders {
    /// The WS-Addressing version of the headers, if any were present.
    pub version: Option<WsaVersion>,
    /// `wsa:Action`, trimmed.
    pub action: Option<String>,
    /// `wsa:MessageID`, trimmed.
    pub message_id: Option<String>,
    /// `wsa:To`, trimmed.
    pub to: Option<String>,
    /// `wsa:ReplyTo`.
    pub reply_to: Option<EndpointRef>,
    /// `wsa:FaultTo`.
    pub fault_to: Option<EndpointRef>,
}

/// A WS-Addressing header that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WS-Addressing header {header}: {problem}")]
pub struct AddressingError {
    /// The header's local name.
    pub header: &'static str,
    /// What is wrong with it.
    pub problem: String,
    /// The version the header was in.
    pub version: WsaVersion,
}

/// Reads the WS-Addressing headers from the header blocks. The version is that of the first
/// addressing header; headers of other addressing versions are ignored.
pub fn read_headers<'a, 'input: 'a>(
    blocks: impl Iterator<Item = Node<'a, 'input>>,
) -> Result<MessageHeaders, AddressingError> {
    let mut headers = MessageHeaders::default();
    for block in blocks {
        let Some(version) = block.tag_name().namespace().and_then(WsaVersion::from_ns) else {
            continue;
        };
        if *headers.version.get_or_insert(version) != version {
            continue;
        }
        let name = block.tag_name().name();
        let duplicate = || AddressingError {
            header: static_name(name),
            problem: "appears more than once".into(),
            version,
        };
        match name {
            "Action" | "MessageID" | "To" => {
                let slot = match name {
                    "Action" => &mut headers.action,
                    "MessageID" => &mut headers.message_id,
                    _ => &mut headers.to,
                };
                if slot.is_some() {
                    return Err(duplicate());
                }
                *slot = Some(xml::trimmed_text(block));
            }
            "ReplyTo" | "FaultTo" => {
                let epr = read_epr(block).map_err(|problem| AddressingError {
                    header: static_name(name),
                    problem,
                    version,
                })?;
                let slot = if name == "ReplyTo" {
                    &mut headers.reply_to
                } else {
                    &mut headers.fault_to
                };
                if slot.is_some() {
                    return Err(duplicate());
                }
                *slot = Some(epr);
            }
            _ => {}
        }
    }
    Ok(headers)
}

fn static_name(name: &str) -> &'static str {
    match name {
        "Action" => "Action",
        "MessageID" => "MessageID",
        "To" => "To",
        "ReplyTo" => "ReplyTo",
        "FaultTo" => "FaultTo",
        _ => "header",
    }
}

/// Reads an endpoint reference: `wsa:Address` (any addressing version) and the children of
/// `wsa:ReferenceParameters` / `wsa:ReferenceProperties` as fragments. An element holding only
/// text (as some hand-written messages do) is read as a bare address.
/// The most reference parameters and properties one endpoint reference may carry: each is
/// copied into every message sent to it, so they are bounded in count and in bytes.
pub const MAX_REFERENCE_PARAMETERS: usize = 32;
/// The most bytes of reference parameters and properties, together, in one endpoint reference.
pub const MAX_REFERENCE_BYTES: usize = 16 * 1024;

pub fn read_epr(node: Node<'_, '_>) -> Result<EndpointRef, String> {
    let address_element = xml::elements(node).find(|child| {
        child.tag_name().name() == "Address"
            && child
                .tag_name()
                .namespace()
                .and_then(WsaVersion::from_ns)
                .is_some()
    });
    let address = match address_element {
        Some(element) => xml::trimmed_text(element),
        None if xml::elements(node).next().is_none() => xml::trimmed_text(node),
        None => return Err("endpoint reference has no wsa:Address".into()),
    };
    if address.is_empty() {
        return Err("endpoint reference has an empty wsa:Address".into());
    }
    let mut epr = EndpointRef {
        address,
        reference_parameters: Vec::new(),
        reference_properties: Vec::new(),
    };
    for child in xml::elements(node) {
        if child
            .tag_name()
            .namespace()
            .and_then(WsaVersion::from_ns)
            .is_none()
        {
            continue;
        }
        if !matches!(
            child.tag_name().name(),
            "ReferenceParameters" | "ReferenceProperties"
        ) {
            continue;
        }
        for element in xml::elements(child) {
            let count = epr.reference_parameters.len() + epr.reference_properties.len();
            if count == MAX_REFERENCE_PARAMETERS {
                return Err(format!(
                    "endpoint reference has more than {MAX_REFERENCE_PARAMETERS} reference parameters"
                ));
            }
            let bytes: usize = epr
                .reference_parameters
                .iter()
                .chain(&epr.reference_properties)
                .map(String::len)
                .sum();
            let fragment = xml::fragment(element);
            if bytes + fragment.len() > MAX_REFERENCE_BYTES {
                return Err(format!(
                    "endpoint reference has more than {MAX_REFERENCE_BYTES} bytes of reference parameters"
                ));
            }
            let target = if child.tag_name().name() == "ReferenceParameters" {
                &mut epr.reference_parameters
            } else {
                &mut epr.reference_properties
            };
            target.push(fragment);
        }
    }
    Ok(epr)
}

/// Writes an endpoint reference's children (Address and reference parameters/properties) in
/// `version`, using the `wsa` prefix. Where the version lacks one kind, the other carries them.
pub fn write_epr_content(version: WsaVersion, epr: &EndpointRef) -> String {
    let parameters: Vec<&str> = epr
        .reference_parameters
        .iter()
        .map(String::as_str)
        .collect();
    let properties: Vec<&str> = epr
        .reference_properties
        .iter()
        .map(String::as_str)
        .collect();
    let mut out = String::with_capacity(64 + epr.address.len());
    write_epr_parts(&mut out, version, &epr.address, &parameters, &properties);
    out
}

/// [`write_epr_content`] of an endpoint reference given as its parts, appended to `out`.
pub fn write_epr_parts(
    out: &mut String,
    version: WsaVersion,
    address: &str,
    parameters: &[&str],
    properties: &[&str],
) {
    out.push_str("<wsa:Address>");
    out.push_str(&xml::escape(address));
    out.push_str("</wsa:Address>");
    let (properties, parameters): ([&[&str]; 2], [&[&str]; 2]) = match (
        version.has_reference_properties(),
        version.has_reference_parameters(),
    ) {
        (true, true) => ([properties, &[]], [parameters, &[]]),
        (true, false) => ([properties, parameters], [&[], &[]]),
        (false, _) => ([&[], &[]], [parameters, properties]),
    };
    write_blocks(out, "ReferenceProperties", properties);
    write_blocks(out, "ReferenceParameters", parameters);
}

/// `blocks` inside `<wsa:{element}>`, if there are any.
fn write_blocks(out: &mut String, element: &str, blocks: [&[&str]; 2]) {
    if blocks.iter().all(|part| part.is_empty()) {
        return;
    }
    out.push_str("<wsa:");
    out.push_str(element);
    out.push('>');
    blocks
        .iter()
        .flat_map(|part| part.iter())
        .for_each(|block| out.push_str(block));
    out.push_str("</wsa:");
    out.push_str(element);
    out.push('>');
}

/// The header blocks that address a message to `epr` in `version`: `wsa:To` and every reference
/// property and parameter, the latter marked `wsa:IsReferenceParameter="true"` in 1.0.
pub fn addressed_to(version: WsaVersion, epr: &EndpointRef) -> Vec<String> {
    let mut headers =
        Vec::with_capacity(1 + epr.reference_properties.len() + epr.reference_parameters.len());
    each_addressing_block(version, epr, |pieces| headers.push(pieces.concat()));
    headers
}

/// [`addressed_to`]'s header blocks appended to `out`, without a string of their own each.
pub fn write_addressed_to(out: &mut String, version: WsaVersion, epr: &EndpointRef) {
    each_addressing_block(version, epr, |pieces| {
        pieces.iter().for_each(|p| out.push_str(p))
    });
}

/// Hands each header block addressing `epr` to `block`, in order, as the pieces that make it.
fn each_addressing_block(version: WsaVersion, epr: &EndpointRef, mut block: impl FnMut(&[&str])) {
    block(&["<wsa:To>", &xml::escape(&epr.address), "</wsa:To>"]);
    for property in &epr.reference_properties {
        block(&[property]);
    }
    for parameter in &epr.reference_parameters {
        if version == WsaVersion::W3c2005 {
            let marker =
                format!(" xmlns:wsarp=\"{WSA_2005_NS}\" wsarp:IsReferenceParameter=\"true\"");
            block(&[&xml::add_attributes(parameter, &marker)]);
        } else {
            block(&[parameter]);
        }
    }
}

/// How a reply (response or fault) is addressed, from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAddressing {
    /// The addressing version to answer in.
    pub version: WsaVersion,
    /// The request's MessageID, echoed as RelatesTo.
    pub relates_to: Option<String>,
    /// The non-anonymous endpoint the reply is for (ReplyTo, or FaultTo for faults).
    pub to: Option<EndpointRef>,
}

impl ReplyAddressing {
    /// The header blocks of a reply with this action.
    pub fn headers(&self, action: &str) -> Vec<String> {
        let mut headers = Vec::with_capacity(4);
        self.each_header(action, |pieces| headers.push(pieces.concat()));
        headers
    }

    /// [`ReplyAddressing::headers`] appended to `out`, without a string of their own each.
    pub fn write_headers(&self, out: &mut String, action: &str) {
        self.each_header(action, |pieces| pieces.iter().for_each(|p| out.push_str(p)));
    }

    /// Hands each header block of a reply with `action` to `block`, as the pieces that make it.
    fn each_header(&self, action: &str, mut block: impl FnMut(&[&str])) {
        block(&["<wsa:Action>", &xml::escape(action), "</wsa:Action>"]);
        let mut id = uuid::Uuid::encode_buffer();
        let id = crate::domain::random::uuid_v4()
            .hyphenated()
            .encode_lower(&mut id);
        block(&["<wsa:MessageID>uuid:", id, "</wsa:MessageID>"]);
        if let Some(relates_to) = &self.relates_to {
            block(&[
                "<wsa:RelatesTo>",
                &xml::escape(relates_to),
                "</wsa:RelatesTo>",
            ]);
        }
        match &self.to {
            Some(epr) => each_addressing_block(self.version, epr, block),
            // WS-Addressing 1.0 lets an anonymous To be omitted; the older versions require it.
            None if self.version != WsaVersion::W3c2005 => {
                block(&["<wsa:To>", self.version.anonymous(), "</wsa:To>"])
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_whatever_the_prefix() {
        let text = r#"<h xmlns:A="http://www.w3.org/2005/08/addressing">
            <A:Action>
              urn:act
            </A:Action><A:MessageID>urn:m</A:MessageID>
            <A:ReplyTo><A:Address>http://example.com/r</A:Address>
              <A:ReferenceParameters><p:k xmlns:p="urn:p">1</p:k></A:ReferenceParameters></A:ReplyTo></h>"#;
        let doc = roxmltree::Document::parse(text).unwrap();
        let headers = read_headers(xml::elements(doc.root_element())).unwrap();
        assert_eq!(headers.version, Some(WsaVersion::W3c2005));
        assert_eq!(headers.action.as_deref(), Some("urn:act"));
        let reply_to = headers.reply_to.unwrap();
        assert_eq!(reply_to.address, "http://example.com/r");
        assert_eq!(reply_to.reference_parameters.len(), 1);
        let marked = addressed_to(WsaVersion::W3c2005, &reply_to);
        assert!(
            marked[1].contains("IsReferenceParameter=\"true\""),
            "{marked:?}"
        );
        roxmltree::Document::parse(&marked[1]).unwrap();
    }

    #[test]
    fn repeated_header_is_an_error() {
        let text = r#"<h xmlns:wsa="http://www.w3.org/2005/08/addressing"><wsa:To>a</wsa:To><wsa:To>b</wsa:To></h>"#;
        let doc = roxmltree::Document::parse(text).unwrap();
        let err = read_headers(xml::elements(doc.root_element())).unwrap_err();
        assert_eq!(err.header, "To");
    }
}
