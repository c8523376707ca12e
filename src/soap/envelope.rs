//! SOAP 1.1 and 1.2 envelopes: parsing under limits, and writing.

use roxmltree::{Document, Node, ParsingOptions};

use super::limits::{Refusal, prescan};
use super::xml;
use crate::domain::subscription::{SoapVersion, WsaVersion};

/// SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

impl SoapVersion {
    /// The envelope namespace.
    pub fn ns(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => SOAP11_NS,
            SoapVersion::Soap12 => SOAP12_NS,
        }
    }

    /// The version an envelope namespace names.
    pub fn from_ns(ns: &str) -> Option<SoapVersion> {
        match ns {
            SOAP11_NS => Some(SoapVersion::Soap11),
            SOAP12_NS => Some(SoapVersion::Soap12),
            _ => None,
        }
    }

    /// The media type of messages in this version (the action travels separately).
    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::Soap11 => "text/xml; charset=utf-8",
            SoapVersion::Soap12 => "application/soap+xml; charset=utf-8",
        }
    }
}

pub use super::limits::Limits;

/// Why a message is not a usable SOAP envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The bytes are not UTF-8 (herald reads only UTF-8 messages).
    #[error("the message is not UTF-8 text")]
    NotUtf8,
    /// A document type declaration: refused, nothing in it is expanded.
    #[error("document type declarations (DTDs) are not allowed")]
    Doctype,
    /// Not well-formed XML.
    #[error("the message is not well-formed XML: {0}")]
    Malformed(String),
    /// Too deep, too many nodes, attributes or namespace declarations.
    #[error("the message exceeds the parser's limits: {0}")]
    TooComplex(String),
    /// XML herald does not read (XML 1.1, a second byte order mark).
    #[error("the message is XML herald does not read: {0}")]
    Unsupported(&'static str),
    /// The root element is an Envelope in a namespace that is not SOAP 1.1 or 1.2.
    #[error("unsupported SOAP envelope namespace '{0}'")]
    VersionMismatch(String),
    /// The root element is not an Envelope at all.
    #[error("the root element is not a SOAP Envelope")]
    NotAnEnvelope,
    /// The Envelope has no Body.
    #[error("the SOAP Envelope has no Body")]
    MissingBody,
    /// Header or Body out of place, repeated, or other content directly in the Envelope.
    #[error("the SOAP Envelope is malformed: {0}")]
    BadStructure(&'static str),
}

/// Parses bytes into an XML document under `limits`: UTF-8 only, no DTD, bounded size, depth,
/// attributes and namespace declarations, all counted by a linear pre-scan before the tree is
/// built.
pub fn parse_document(bytes: &[u8], limits: Limits) -> Result<Document<'_>, EnvelopeError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8)?;
    prescan(text, &limits).map_err(|refusal| match refusal {
        Refusal::Doctype => EnvelopeError::Doctype,
        Refusal::Unsupported(what) => EnvelopeError::Unsupported(what),
        Refusal::TooComplex(what) => EnvelopeError::TooComplex(what),
    })?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..ParsingOptions::default()
    };
    let document = Document::parse_with_options(text, options).map_err(|err| match err {
        roxmltree::Error::DtdDetected => EnvelopeError::Doctype,
        roxmltree::Error::NodesLimitReached => {
            EnvelopeError::TooComplex(format!("more than {} nodes", limits.max_nodes))
        }
        other => EnvelopeError::Malformed(other.to_string()),
    })?;
    // The depth needs no second walk of the tree: the pre-scan counted each element opened
    // and not yet closed, which in text the parser accepts is each element's depth.
    Ok(document)
}

/// Whether `message` holds the word `Fault`, which a fault's element name spells out (a name
/// cannot be written with character references): what is not worth parsing to look for one.
/// Most answers to a delivery are empty or short acknowledgements.
fn names_fault(message: &[u8]) -> bool {
    message
        .windows(b"Fault".len())
        .any(|window| window == b"Fault")
}

/// Whether a message is a SOAP envelope (1.1 or 1.2) whose Body holds a Fault: how a one-way
/// receiver that answers 2xx with a fault is told apart. Read under [`Limits`]: an answer is
/// untrusted input like any request.
pub fn is_fault(message: &[u8]) -> bool {
    if !names_fault(message) {
        return false;
    }
    let Ok(document) = parse_document(message, Limits::default()) else {
        return false;
    };
    let Ok(envelope) = Envelope::from_document(&document) else {
        return false;
    };
    envelope
        .body_element()
        .is_some_and(|element| xml::is(element, envelope.version.ns(), "Fault"))
}

/// The local names of a SOAP fault's code and subcodes (1.2: each `Value` under `Code`; 1.1:
/// `faultcode`), or `None` when the message is not a SOAP fault.
pub fn fault_codes(message: &[u8]) -> Option<Vec<String>> {
    if !names_fault(message) {
        return None;
    }
    let document = parse_document(message, Limits::default()).ok()?;
    let envelope = Envelope::from_document(&document).ok()?;
    let fault = envelope
        .body_element()
        .filter(|element| xml::is(*element, envelope.version.ns(), "Fault"))?;
    let local = |qname: String| match qname.rsplit_once(':') {
        Some((_, local)) => local.to_owned(),
        None => qname,
    };
    let ns = envelope.version.ns();
    let codes = match envelope.version {
        // 1.1: the unqualified `faultcode` child of Fault.
        SoapVersion::Soap11 => xml::elements(fault)
            .filter(|node| node.has_tag_name("faultcode"))
            .map(|node| local(xml::trimmed_text(node)))
            .collect(),
        // 1.2: Code/Value, then each nested Subcode/Value; nothing under Detail.
        SoapVersion::Soap12 => {
            let mut codes = Vec::new();
            let mut level = xml::elements(fault).find(|node| xml::is(*node, ns, "Code"));
            while let Some(code) = level {
                if let Some(value) = xml::elements(code).find(|node| xml::is(*node, ns, "Value")) {
                    codes.push(local(xml::trimmed_text(value)));
                }
                level = xml::elements(code).find(|node| xml::is(*node, ns, "Subcode"));
            }
            codes
        }
    };
    Some(codes)
}

/// Whether a message is a SOAP envelope whose WS-Addressing headers (any version) say it is the
/// reply `action` to the message `relates_to`: how an acknowledgement is recognised.
pub fn is_reply(message: &[u8], action: &str, relates_to: &str) -> bool {
    let Ok(document) = parse_document(message, Limits::default()) else {
        return false;
    };
    let Ok(envelope) = Envelope::from_document(&document) else {
        return false;
    };
    let Some(header) = envelope.header else {
        return false;
    };
    let addressing = |node: Node<'_, '_>, local: &str| {
        node.tag_name().name() == local
            && node.tag_name().namespace().is_some_and(|ns| {
                [
                    WsaVersion::Mar2003,
                    WsaVersion::Aug2004,
                    WsaVersion::W3c2005,
                ]
                .iter()
                .any(|version| version.ns() == ns)
            })
    };
    let text_of = |local: &str| {
        xml::elements(header)
            .find(|node| addressing(*node, local))
            .map(xml::trimmed_text)
    };
    text_of("Action").as_deref() == Some(action)
        && text_of("RelatesTo").as_deref() == Some(relates_to)
}

/// A parsed SOAP envelope.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a, 'input> {
    /// The SOAP version, from the envelope namespace.
    pub version: SoapVersion,
    /// The Header element, if present.
    pub header: Option<Node<'a, 'input>>,
    /// The Body element.
    pub body: Node<'a, 'input>,
}

impl<'a, 'input> Envelope<'a, 'input> {
    /// Reads the envelope structure of a parsed document.
    pub fn from_document(document: &'a Document<'input>) -> Result<Self, EnvelopeError> {
        let root = document.root_element();
        if root.tag_name().name() != "Envelope" {
            return Err(EnvelopeError::NotAnEnvelope);
        }
        let namespace = root.tag_name().namespace().unwrap_or("");
        let version = SoapVersion::from_ns(namespace)
            .ok_or_else(|| EnvelopeError::VersionMismatch(namespace.chars().take(200).collect()))?;
        let ns = version.ns();
        let mut header = None;
        let mut body = None;
        for child in root.children() {
            if child.is_text() {
                if child.text().is_some_and(|t| !t.trim().is_empty()) {
                    return Err(EnvelopeError::BadStructure("text directly inside Envelope"));
                }
                continue;
            }
            if !child.is_element() {
                continue;
            }
            if xml::is(child, ns, "Header") {
                if header.is_some() || body.is_some() {
                    return Err(EnvelopeError::BadStructure(
                        "Header must come once, before Body",
                    ));
                }
                header = Some(child);
            } else if xml::is(child, ns, "Body") {
                if body.is_some() {
                    return Err(EnvelopeError::BadStructure("more than one Body"));
                }
                body = Some(child);
            } else if body.is_none() || version == SoapVersion::Soap12 {
                // SOAP 1.1 tolerates extra elements after Body; SOAP 1.2 allows none.
                return Err(EnvelopeError::BadStructure(
                    "unexpected element directly inside Envelope",
                ));
            }
        }
        let body = body.ok_or(EnvelopeError::MissingBody)?;
        Ok(Envelope {
            version,
            header,
            body,
        })
    }

    /// The header blocks (element children of Header).
    pub fn header_blocks(&self) -> impl Iterator<Item = Node<'a, 'input>> + use<'a, 'input> {
        self.header.into_iter().flat_map(xml::elements)
    }

    /// The first element child of Body, if any.
    pub fn body_element(&self) -> Option<Node<'a, 'input>> {
        xml::elements(self.body).next()
    }
}

/// Writes an envelope with these namespace declarations (`(prefix, uri)`), header blocks and body
/// content. Header blocks and body content are complete XML fragments.
pub fn write_envelope(
    version: SoapVersion,
    namespaces: &[(&str, &str)],
    headers: &[String],
    body: &str,
) -> String {
    let mut out =
        String::with_capacity(512 + body.len() + headers.iter().map(String::len).sum::<usize>());
    open_envelope(&mut out, version, namespaces);
    if !headers.is_empty() {
        out.push_str("<s:Header>");
        for header in headers {
            out.push_str(header);
        }
        out.push_str("</s:Header>");
    }
    close_envelope(&mut out, body);
    out
}

/// The start of [`write_envelope`]'s envelope, up to where its Header (if any) begins.
pub fn open_envelope(out: &mut String, version: SoapVersion, namespaces: &[(&str, &str)]) {
    out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<s:Envelope xmlns:s=\"");
    out.push_str(version.ns());
    out.push('"');
    for (prefix, uri) in namespaces {
        out.push_str(" xmlns:");
        out.push_str(prefix);
        out.push_str("=\"");
        out.push_str(&xml::escape(uri));
        out.push('"');
    }
    out.push('>');
}

/// The end of [`write_envelope`]'s envelope: the Body with `body`.
pub fn close_envelope(out: &mut String, body: &str) {
    out.push_str("<s:Body>");
    out.push_str(body);
    out.push_str("</s:Body></s:Envelope>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope_error(text: &str) -> EnvelopeError {
        let document = match parse_document(text.as_bytes(), Limits::default()) {
            Ok(document) => document,
            Err(err) => return err,
        };
        Envelope::from_document(&document).unwrap_err()
    }

    #[test]
    fn doctype_is_refused_and_nothing_expanded() {
        let text = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>
            <s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol;</s:Body></s:Envelope>"#;
        assert_eq!(envelope_error(text), EnvelopeError::Doctype);
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            envelope_error(r#"<e:Envelope xmlns:e="urn:nope"><e:Body/></e:Envelope>"#),
            EnvelopeError::VersionMismatch("urn:nope".into())
        );
        assert_eq!(
            envelope_error("<Envelope/>"),
            EnvelopeError::VersionMismatch(String::new())
        );
        assert_eq!(envelope_error("<x/>"), EnvelopeError::NotAnEnvelope);
        assert_eq!(
            envelope_error(
                r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/></s:Envelope>"#
            ),
            EnvelopeError::MissingBody
        );
        assert!(matches!(
            envelope_error(
                r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body/><s:Header/></s:Envelope>"#
            ),
            EnvelopeError::BadStructure(_)
        ));
        assert!(matches!(
            envelope_error("<s:Envelope"),
            EnvelopeError::Malformed(_)
        ));
        assert_eq!(
            parse_document(b"\xff\xfe<\x00", Limits::default()).unwrap_err(),
            EnvelopeError::NotUtf8
        );
    }

    #[test]
    fn depth_and_size_limits() {
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(matches!(
            parse_document(deep.as_bytes(), Limits::default()),
            Err(EnvelopeError::TooComplex(_))
        ));
        let wide = format!("<a>{}</a>", "<b/>".repeat(200));
        let limits = Limits {
            max_nodes: 100,
            ..Limits::default()
        };
        assert!(matches!(
            parse_document(wide.as_bytes(), limits),
            Err(EnvelopeError::TooComplex(_))
        ));
    }

    #[test]
    fn prefixes_do_not_matter() {
        let text = r#"<Q:Envelope xmlns:Q="http://schemas.xmlsoap.org/soap/envelope/"><Q:Body><x:y xmlns:x="urn:x"/></Q:Body></Q:Envelope>"#;
        let document = parse_document(text.as_bytes(), Limits::default()).unwrap();
        let envelope = Envelope::from_document(&document).unwrap();
        assert_eq!(envelope.version, SoapVersion::Soap11);
        assert!(xml::is(envelope.body_element().unwrap(), "urn:x", "y"));
    }
}
