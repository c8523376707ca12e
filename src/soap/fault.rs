//! SOAP faults in both SOAP versions, with their HTTP status.

use super::addressing::ReplyAddressing;
use super::envelope::write_envelope;
use super::xml;
use crate::domain::subscription::SoapVersion;

/// The SOAP fault code (1.2 names; 1.1 maps Sender to Client and Receiver to Server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// The message was wrong.
    Sender,
    /// The receiver failed.
    Receiver,
    /// The envelope namespace is not one herald speaks.
    VersionMismatch,
    /// A header marked mustUnderstand was not understood.
    MustUnderstand,
}

/// A qualified subcode, such as `wse:InvalidExpirationTime`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subcode {
    /// Namespace URI.
    pub ns: &'static str,
    /// Prefix used when writing it.
    pub prefix: &'static str,
    /// Local name.
    pub local: &'static str,
}

/// A fault ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Code.
    pub code: FaultCode,
    /// Subcode, if any.
    pub subcode: Option<Subcode>,
    /// Human-readable reason (English).
    pub reason: String,
    /// Detail content: complete XML fragments.
    pub detail: Vec<String>,
    /// The `wsa:Action` of the fault message.
    pub action: String,
}

impl Fault {
    /// The HTTP status: SOAP 1.2 maps Sender to 400 and everything else to 500; SOAP 1.1 always
    /// uses 500.
    pub fn http_status(&self, soap: SoapVersion) -> u16 {
        match (soap, self.code) {
            (SoapVersion::Soap12, FaultCode::Sender) => 400,
            _ => 500,
        }
    }

    /// The fault as a complete envelope.
    pub fn to_envelope(&self, soap: SoapVersion, reply: Option<&ReplyAddressing>) -> String {
        let mut namespaces: Vec<(&str, &str)> = Vec::new();
        let headers = match reply {
            Some(reply) => {
                namespaces.push(("wsa", reply.version.ns()));
                reply.headers(&self.action)
            }
            None => Vec::new(),
        };
        if let Some(subcode) = &self.subcode
            && !namespaces
                .iter()
                .any(|(prefix, _)| *prefix == subcode.prefix)
        {
            namespaces.push((subcode.prefix, subcode.ns));
        }
        let reason = xml::escape(&self.reason);
        let detail: String = self.detail.concat();
        let body = match soap {
            SoapVersion::Soap12 => {
                let code = match self.code {
                    FaultCode::Sender => "s:Sender",
                    FaultCode::Receiver => "s:Receiver",
                    FaultCode::VersionMismatch => "s:VersionMismatch",
                    FaultCode::MustUnderstand => "s:MustUnderstand",
                };
                let subcode = self.subcode.as_ref().map_or(String::new(), |sub| {
                    format!(
                        "<s:Subcode><s:Value>{}:{}</s:Value></s:Subcode>",
                        sub.prefix, sub.local
                    )
                });
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!("<s:Detail>{detail}</s:Detail>")
                };
                format!(
                    "<s:Fault><s:Code><s:Value>{code}</s:Value>{subcode}</s:Code>\
                     <s:Reason><s:Text xml:lang=\"en\">{reason}</s:Text></s:Reason>{detail}</s:Fault>"
                )
            }
            SoapVersion::Soap11 => {
                let code = match (&self.subcode, self.code) {
                    (Some(sub), _) => format!("{}:{}", sub.prefix, sub.local),
                    (None, FaultCode::Sender) => "s:Client".to_owned(),
                    (None, FaultCode::Receiver) => "s:Server".to_owned(),
                    (None, FaultCode::VersionMismatch) => "s:VersionMismatch".to_owned(),
                    (None, FaultCode::MustUnderstand) => "s:MustUnderstand".to_owned(),
                };
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!("<detail>{detail}</detail>")
                };
                format!(
                    "<s:Fault><faultcode>{code}</faultcode><faultstring xml:lang=\"en\">{reason}</faultstring>{detail}</s:Fault>"
                )
            }
        };
        write_envelope(soap, &namespaces, &headers, &body)
    }
}

/// A fault as received: what a client shows of a fault another party sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFault {
    /// The code as written (`s:Sender`; SOAP 1.1: the faultcode, which may be the subcode).
    pub code: String,
    /// The first subcode as written (`wse:UnknownSubscription`), SOAP 1.2 only.
    pub subcode: Option<String>,
    /// The reason text.
    pub reason: String,
}

impl ReceivedFault {
    /// Reads the fault in an envelope's Body, if it holds one.
    pub fn read(envelope: &super::envelope::Envelope<'_, '_>) -> Option<ReceivedFault> {
        let ns = envelope.version.ns();
        let fault = envelope
            .body_element()
            .filter(|element| xml::is(*element, ns, "Fault"))?;
        let text_of = |node: Option<roxmltree::Node<'_, '_>>| node.map(xml::trimmed_text);
        match envelope.version {
            SoapVersion::Soap12 => {
                let code = xml::children_named(fault, ns, "Code").next();
                let value = code.and_then(|code| xml::children_named(code, ns, "Value").next());
                let subcode = code
                    .and_then(|code| xml::children_named(code, ns, "Subcode").next())
                    .and_then(|sub| xml::children_named(sub, ns, "Value").next());
                let reason = xml::children_named(fault, ns, "Reason")
                    .next()
                    .and_then(|reason| xml::children_named(reason, ns, "Text").next());
                Some(ReceivedFault {
                    code: text_of(value).unwrap_or_default(),
                    subcode: text_of(subcode),
                    reason: text_of(reason).unwrap_or_default(),
                })
            }
            SoapVersion::Soap11 => {
                let child = |name: &str| xml::elements(fault).find(|n| n.has_tag_name(name));
                Some(ReceivedFault {
                    code: text_of(child("faultcode")).unwrap_or_default(),
                    subcode: None,
                    reason: text_of(child("faultstring")).unwrap_or_default(),
                })
            }
        }
    }
}

impl std::fmt::Display for ReceivedFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subcode {
            Some(subcode) => write!(f, "{} ({}): {}", subcode, self.code, self.reason),
            None => write!(f, "{}: {}", self.code, self.reason),
        }
    }
}
