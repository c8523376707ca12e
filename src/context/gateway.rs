//! Forwarding to a context service's backend: the request as it came (with the instance's
//! Context header added when it had none) and the backend's answer back, untouched but for the
//! context herald adds when the instance is new.

use std::time::Duration;

use roxmltree::{Document, Node};

use crate::delivery::client::ClientSettings;

/// The HTTP header naming the instance for backends that do not read SOAP headers.
pub const INSTANCE_HEADER: &str = "herald-instance-id";

/// The backend's answer.
#[derive(Debug, Clone)]
pub struct BackendReply {
    /// Its HTTP status.
    pub status: u16,
    /// Its `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
}

/// A request to forward.
pub struct Forward<'a> {
    /// The backend URL.
    pub url: &'a str,
    /// The request's `Content-Type`.
    pub content_type: Option<&'a str>,
    /// The request's `SOAPAction` (SOAP 1.1).
    pub soap_action: Option<&'a str>,
    /// The instance, for the `Herald-Instance-Id` header.
    pub instance: Option<&'a str>,
    /// The body to send.
    pub body: String,
}

/// The client that calls backends. The backend is configured by the operator, not named by a
/// client, so it is not under the endpoint policy; redirects are not followed.
#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
}

impl Gateway {
    /// Builds the client with the delivery client's timeouts.
    pub fn new(settings: ClientSettings) -> Result<Gateway, reqwest::Error> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Gateway { http })
    }

    /// Sends the request to the backend; `Err` says why there was no answer.
    pub async fn forward(&self, request: Forward<'_>) -> Result<BackendReply, String> {
        let mut builder = self.http.post(request.url).body(request.body);
        if let Some(content_type) = request.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if let Some(action) = request.soap_action {
            builder = builder.header("SOAPAction", format!("\"{action}\""));
        }
        if let Some(instance) = request.instance {
            builder = builder.header(INSTANCE_HEADER, instance);
        }
        let response = builder.send().await.map_err(|err| {
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(inner) = source {
                message.push_str(": ");
                message.push_str(&inner.to_string());
                source = inner.source();
            }
            message
        })?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("the answer could not be read: {err}"))?;
        Ok(BackendReply {
            status,
            content_type,
            body: body.to_vec(),
        })
    }
}

/// `text` (the document `document` was parsed from) with `header` added as the last SOAP header
/// block: into the Header element, or in a new one before the Body.
pub fn insert_header(text: &str, document: &Document<'_>, header: &str) -> Option<String> {
    let envelope = document.root_element();
    let soap_ns = envelope.tag_name().namespace()?;
    let element = |local: &str| {
        envelope.children().find(|child| {
            child.is_element()
                && child.tag_name().name() == local
                && child.tag_name().namespace() == Some(soap_ns)
        })
    };
    let body = element("Body")?;
    let body_start = body.range().start;
    match element("Header") {
        Some(existing) => {
            let range = existing.range();
            let element_text = text.get(range.clone())?;
            if element_text.trim_end().ends_with("/>") {
                // <s:Header/>: write it out with its one child.
                let name = qualified_name(text, existing)?;
                let mut out = String::with_capacity(text.len() + header.len() + 32);
                out.push_str(&text[..range.start]);
                out.push_str(&format!("<{name}>{header}</{name}>"));
                out.push_str(&text[range.end..]);
                return Some(out);
            }
            let close = range.start + element_text.rfind("</")?;
            let mut out = String::with_capacity(text.len() + header.len());
            out.push_str(&text[..close]);
            out.push_str(header);
            out.push_str(&text[close..]);
            Some(out)
        }
        None => {
            let body_name = qualified_name(text, body)?;
            let header_name = match body_name.split_once(':') {
                Some((prefix, _)) => format!("{prefix}:Header"),
                None => "Header".to_owned(),
            };
            let mut out = String::with_capacity(text.len() + header.len() + 32);
            out.push_str(&text[..body_start]);
            out.push_str(&format!("<{header_name}>{header}</{header_name}>"));
            out.push_str(&text[body_start..]);
            Some(out)
        }
    }
}

/// The qualified name an element was written with, read from its start tag.
fn qualified_name<'t>(text: &'t str, node: Node<'_, '_>) -> Option<&'t str> {
    let start = text.get(node.range().start + 1..)?;
    let end = start.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
    Some(&start[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(text: &str) -> String {
        let document = Document::parse(text).unwrap();
        let out = insert_header(text, &document, "<h xmlns=\"urn:h\">1</h>").unwrap();
        let parsed = Document::parse(&out).unwrap();
        let header = parsed
            .root_element()
            .children()
            .find(|c| c.tag_name().name() == "Header")
            .unwrap();
        assert_eq!(
            header.last_element_child().unwrap().tag_name().namespace(),
            Some("urn:h")
        );
        out
    }

    #[test]
    fn a_header_block_is_added_wherever_the_header_is() {
        let ns = "http://www.w3.org/2003/05/soap-envelope";
        insert(&format!(
            "<s:Envelope xmlns:s=\"{ns}\"><s:Header><a/></s:Header><s:Body/></s:Envelope>"
        ));
        insert(&format!(
            "<s:Envelope xmlns:s=\"{ns}\"><s:Header/><s:Body/></s:Envelope>"
        ));
        let out = insert(&format!(
            "<s:Envelope xmlns:s=\"{ns}\">\n <s:Body><x/></s:Body></s:Envelope>"
        ));
        assert!(out.contains("<s:Header><h xmlns=\"urn:h\">1</h></s:Header><s:Body>"));
        insert(&format!(
            "<Envelope xmlns=\"{ns}\"><Body><x xmlns=\"\"/></Body></Envelope>"
        ));
    }
}
