//! The WSDL and schema documents herald serves for each event source, so that a code generator
//! can build a client for it with no hand edits: `GET /eventing/{source}?wsdl` (2011),
//! `?wsdl=2004-08`, `?wsdl=2004-01`, and the schemas they import at `?xsd=NAME`.
//!
//! The documents are herald's own, kept beside this file as text. Each WSDL is concrete: the
//! version's port types, SOAP 1.1 and 1.2 document/literal bindings with the version's action
//! URIs, and a service whose ports are the source's and its subscription manager's addresses.
//! Every schema has `elementFormDefault="qualified"` and is imported with an absolute
//! `schemaLocation` pointing back at herald, never included through a wrapper schema (which
//! would lose the qualification). [`render`] fills in the addresses.

use crate::domain::subscription::EventingVersion;
use crate::soap::xml;

/// What the templates hold where the source's absolute URL goes.
const SOURCE_URL: &str = "@SOURCE_URL@";

const WSDL_2011: &str = include_str!("eventing-2011.wsdl");
const WSDL_2004_08: &str = include_str!("eventing-2004-08.wsdl");
const WSDL_2004_01: &str = include_str!("eventing-2004-01.wsdl");

/// Every schema herald serves, by its `?xsd=` name.
const SCHEMAS: [(&str, &str); 7] = [
    ("eventing-2011", include_str!("eventing-2011.xsd")),
    ("eventing-2004-08", include_str!("eventing-2004-08.xsd")),
    ("eventing-2004-01", include_str!("eventing-2004-01.xsd")),
    ("addressing-2005-08", include_str!("addressing-2005-08.xsd")),
    ("addressing-2004-08", include_str!("addressing-2004-08.xsd")),
    ("addressing-2003-03", include_str!("addressing-2003-03.xsd")),
    ("xml", include_str!("xml.xsd")),
];

/// The `?wsdl=` values, with the version each names. An empty value is the default, 2011.
pub const WSDL_VERSIONS: [(&str, EventingVersion); 3] = [
    ("2011", EventingVersion::W3c2011),
    ("2004-08", EventingVersion::Aug2004),
    ("2004-01", EventingVersion::Jan2004),
];

/// The version a `?wsdl=` value asks for: empty (plain `?wsdl`) or `2011`, `2004-08`, `2004-01`.
pub fn wsdl_version(value: &str) -> Option<EventingVersion> {
    let value = value.trim();
    if value.is_empty() {
        return Some(EventingVersion::W3c2011);
    }
    WSDL_VERSIONS
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, version)| *version)
}

/// The names `?xsd=` accepts.
pub fn schema_names() -> impl Iterator<Item = &'static str> {
    SCHEMAS.iter().map(|(name, _)| *name)
}

/// The source's absolute URL: `{base}/eventing/{source}`. The event source is there, the
/// subscription manager at `…/subscriptions`, and the schemas at `…?xsd=NAME`.
pub fn source_url(base_url: &str, source: &str) -> String {
    format!("{}/eventing/{source}", base_url.trim_end_matches('/'))
}

/// The WSDL of `version` for the source at `source_url`.
pub fn wsdl(version: EventingVersion, source_url: &str) -> String {
    let template = match version {
        EventingVersion::W3c2011 => WSDL_2011,
        EventingVersion::Aug2004 => WSDL_2004_08,
        EventingVersion::Jan2004 => WSDL_2004_01,
    };
    render(template, source_url)
}

/// The schema named `name`, for the source at `source_url`; `None` for an unknown name.
pub fn schema(name: &str, source_url: &str) -> Option<String> {
    SCHEMAS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, template)| render(template, source_url))
}

/// A template with the source's URL filled in, escaped for an XML attribute (the base URL may
/// come from the request's Host header).
fn render(template: &str, source_url: &str) -> String {
    template.replace(SOURCE_URL, &xml::escape(source_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUALIFIED: &str = "elementFormDefault=\"qualified\"";

    fn documents(url: &str) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = WSDL_VERSIONS
            .iter()
            .map(|(name, version)| (format!("wsdl={name}"), wsdl(*version, url)))
            .collect();
        for name in schema_names() {
            let text = schema(name, url).unwrap_or_default();
            all.push((format!("xsd={name}"), text));
        }
        all
    }

    #[test]
    fn every_document_is_xml_with_the_address_filled_in() {
        let url = source_url("http://h.example:8080/", "orders");
        assert_eq!(url, "http://h.example:8080/eventing/orders");
        for (name, text) in documents(&url) {
            let document = roxmltree::Document::parse(&text)
                .unwrap_or_else(|err| panic!("{name} is not XML: {err}"));
            assert!(!text.contains(SOURCE_URL), "{name}: a placeholder is left");
            let locations = document
                .descendants()
                .filter_map(|node| node.attribute("schemaLocation"));
            for location in locations {
                let schema_name = location
                    .strip_prefix("http://h.example:8080/eventing/orders?xsd=")
                    .unwrap_or_else(|| panic!("{name}: {location} is not herald's"));
                assert!(
                    schema_names().any(|known| known == schema_name),
                    "{name}: {location}"
                );
            }
        }
    }

    #[test]
    fn herald_schemas_are_qualified() {
        for name in schema_names().filter(|name| *name != "xml") {
            let text = schema(name, "http://h").unwrap_or_default();
            assert!(text.contains(QUALIFIED), "{name}");
        }
    }

    #[test]
    fn addresses_are_escaped_for_attributes() {
        let text = wsdl(EventingVersion::W3c2011, "http://a\"b<c&d/eventing/x");
        assert!(text.contains("location=\"http://a&quot;b&lt;c&amp;d/eventing/x\""));
        assert!(roxmltree::Document::parse(&text).is_ok());
    }

    #[test]
    fn wsdl_values() {
        assert_eq!(wsdl_version(""), Some(EventingVersion::W3c2011));
        assert_eq!(wsdl_version("2011"), Some(EventingVersion::W3c2011));
        assert_eq!(wsdl_version("2004-08"), Some(EventingVersion::Aug2004));
        assert_eq!(wsdl_version("2004-01"), Some(EventingVersion::Jan2004));
        assert_eq!(wsdl_version("2004/08"), None);
        assert_eq!(schema("nope", "http://h"), None);
    }
}
