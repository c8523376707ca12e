//! The wire forms of [MC-NETCEX]: the `Context` header (2006/05), the `CallbackContext` header
//! (2008/02) and the `WscContext` cookie, read strictly and written as WCF writes them.

use base64::Engine as _;
use roxmltree::Node;

use crate::domain::subscription::EndpointRef;
use crate::soap::addressing::read_epr;
use crate::soap::envelope::{Limits, parse_document};
use crate::soap::xml;

/// The namespace of `Context` and `Property`.
pub const CONTEXT_NS: &str = "http://schemas.microsoft.com/ws/2006/05/context";
/// The namespace of `CallbackContext` and `CallbackEndpointReference`.
pub const CALLBACK_CONTEXT_NS: &str = "http://schemas.microsoft.com/ws/2008/02/context";
/// The property naming a service instance.
pub const INSTANCE_ID: &str = "instanceId";
/// The cookie carrying a context.
pub const COOKIE_NAME: &str = "WscContext";

/// A context: its properties in order, names unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context(pub Vec<(String, String)>);

impl Context {
    /// A context naming one instance.
    pub fn instance(id: &str) -> Context {
        Context(vec![(INSTANCE_ID.to_owned(), id.to_owned())])
    }

    /// The `instanceId` property.
    pub fn instance_id(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == INSTANCE_ID)
            .map(|(_, value)| value.as_str())
    }

    /// The `Context` element, self-contained (it declares its namespace).
    pub fn to_xml(&self) -> String {
        let mut out = format!("<Context xmlns=\"{CONTEXT_NS}\">");
        for (name, value) in &self.0 {
            out.push_str(&format!(
                "<Property name=\"{}\">{}</Property>",
                xml::escape(name),
                xml::escape(value)
            ));
        }
        out.push_str("</Context>");
        out
    }

    /// The `Set-Cookie` value carrying it: quoted base64 of the UTF-8 `Context` element, with
    /// the request's path.
    pub fn to_set_cookie(&self, path: &str) -> String {
        let value = base64::engine::general_purpose::STANDARD.encode(self.to_xml());
        format!("{COOKIE_NAME}=\"{value}\";Path={path}")
    }
}

/// Why a context or callback context cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContextError(pub String);

fn bad(what: impl Into<String>) -> ContextError {
    ContextError(what.into())
}

/// A property name as the schema allows it: `[A-Za-z.\-_]+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || matches!(b, b'.' | b'-' | b'_'))
}

/// Reads a `Context` element: only `Property` children, each with a valid, unique name.
pub fn read_context(node: Node<'_, '_>) -> Result<Context, ContextError> {
    if !xml::is(node, CONTEXT_NS, "Context") {
        return Err(bad("the element is not a 2006/05 Context"));
    }
    let mut properties: Vec<(String, String)> = Vec::new();
    for child in node.children() {
        if child.is_text() {
            if child.text().is_some_and(|text| !text.trim().is_empty()) {
                return Err(bad("the Context holds text outside its Property elements"));
            }
            continue;
        }
        if !child.is_element() {
            continue;
        }
        if !xml::is(child, CONTEXT_NS, "Property") {
            return Err(bad(format!(
                "the Context holds a {} element; only Property is allowed",
                child.tag_name().name()
            )));
        }
        let name = child
            .attribute("name")
            .ok_or_else(|| bad("a Context Property has no name"))?;
        if !valid_name(name) {
            return Err(bad(format!(
                "the Context Property name '{}' is not [A-Za-z.-_]+",
                name.chars().take(64).collect::<String>()
            )));
        }
        if xml::elements(child).next().is_some() {
            return Err(bad(format!("the Context Property '{name}' holds elements")));
        }
        if properties.iter().any(|(existing, _)| existing == name) {
            return Err(bad(format!(
                "the Context names the property '{name}' more than once"
            )));
        }
        let value: String = child.children().filter_map(|t| t.text()).collect();
        properties.push((name.to_owned(), value));
    }
    Ok(Context(properties))
}

/// Reads the `WscContext` pair from the `Cookie` header values: `None` when there is none.
/// Whitespace around `=`, a missing pair of quotes, a byte order mark and whitespace around the
/// decoded element are tolerated.
pub fn read_cookie<'a>(
    cookies: impl Iterator<Item = &'a str>,
    limits: Limits,
) -> Result<Option<Context>, ContextError> {
    let mut found = None;
    for header in cookies {
        for pair in header.split(';') {
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if name.trim() != COOKIE_NAME {
                continue;
            }
            if found.is_some() {
                return Err(bad(
                    "the request carries the WscContext cookie more than once",
                ));
            }
            found = Some(value.trim().to_owned());
        }
    }
    let Some(value) = found else {
        return Ok(None);
    };
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(&value);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(unquoted.trim())
        .map_err(|err| bad(format!("the WscContext cookie is not base64: {err}")))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad("the WscContext cookie does not hold UTF-8 text"))?;
    let document = parse_document(text.trim().as_bytes(), limits).map_err(|err| {
        bad(format!(
            "the WscContext cookie does not hold a Context: {err}"
        ))
    })?;
    read_context(document.root_element()).map(Some)
}

/// Reads a `CallbackContext` header: its `CallbackEndpointReference`, the client's Context among
/// its reference parameters.
pub fn read_callback_context(node: Node<'_, '_>) -> Result<EndpointRef, ContextError> {
    let references: Vec<Node<'_, '_>> = xml::elements(node)
        .filter(|child| xml::is(*child, CALLBACK_CONTEXT_NS, "CallbackEndpointReference"))
        .collect();
    let [reference] = references.as_slice() else {
        return Err(bad(
            "the CallbackContext must hold exactly one CallbackEndpointReference",
        ));
    };
    let epr =
        read_epr(*reference).map_err(|err| bad(format!("CallbackEndpointReference: {err}")))?;
    let contexts = epr
        .reference_parameters
        .iter()
        .chain(&epr.reference_properties)
        .filter(|fragment| fragment.contains(CONTEXT_NS))
        .count();
    if contexts > 1 {
        return Err(bad(
            "the CallbackEndpointReference holds more than one Context",
        ));
    }
    Ok(epr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_of(xml_text: &str) -> Result<Context, ContextError> {
        let document = roxmltree::Document::parse(xml_text).unwrap();
        read_context(document.root_element())
    }

    #[test]
    fn a_cookie_as_wcf_writes_it_decodes_with_its_byte_order_mark() {
        // The shape of [MC-NETCEX] 4.2.1's Set-Cookie: base64 of a UTF-8 byte order mark and
        // the Context element (XmlWriter's defaults), so the value starts "77u/". The
        // specification's exact value is not in the reference notes (only its decoded form
        // and the 77u/ prefix), so the same text is encoded here.
        let element = format!(
            "\u{feff}<Context xmlns=\"{CONTEXT_NS}\"><Property name=\"instanceId\">8219d662-a032-477c-93e2-ddd9a311dd8c</Property></Context>"
        );
        let value = base64::engine::general_purpose::STANDARD.encode(element.as_bytes());
        assert!(value.starts_with("77u/"), "{value}");
        let cookie = format!("WscContext=\"{value}\"");
        let context = read_cookie(std::iter::once(cookie.as_str()), Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            context.instance_id(),
            Some("8219d662-a032-477c-93e2-ddd9a311dd8c")
        );
    }

    #[test]
    fn a_cookie_round_trips_without_quotes_and_among_others() {
        let context = Context::instance("abc");
        let set = context.to_set_cookie("/contexts/cart");
        assert!(set.starts_with("WscContext=\"") && set.ends_with("\";Path=/contexts/cart"));
        let value = set
            .trim_start_matches("WscContext=\"")
            .split('"')
            .next()
            .unwrap();
        let header = format!("a=1; WscContext = {value} ; b=2");
        let read = read_cookie(std::iter::once(header.as_str()), Limits::default()).unwrap();
        assert_eq!(read, Some(context));
        assert_eq!(
            read_cookie(std::iter::once("a=1"), Limits::default()),
            Ok(None)
        );
    }

    #[test]
    fn bad_cookies_are_refused() {
        for header in [
            "WscContext=\"!!!\"",
            "WscContext=\"PGE+PC9hPg==\"",
            "WscContext=\"bm90IHhtbA==\"",
            "WscContext=a; WscContext=b",
        ] {
            assert!(
                read_cookie(std::iter::once(header), Limits::default()).is_err(),
                "{header}"
            );
        }
    }

    #[test]
    fn context_properties_follow_the_schema() {
        let ns = CONTEXT_NS;
        let ok = context_of(&format!(
            "<Context xmlns=\"{ns}\"><Property name=\"instanceId\">x</Property><Property name=\"a.b-c_d\"/></Context>"
        ))
        .unwrap();
        assert_eq!(ok.instance_id(), Some("x"));
        assert_eq!(ok.0.len(), 2);
        for bad in [
            format!(
                "<Context xmlns=\"{ns}\"><Property name=\"a\">1</Property><Property name=\"a\">2</Property></Context>"
            ),
            format!("<Context xmlns=\"{ns}\"><Property>1</Property></Context>"),
            format!("<Context xmlns=\"{ns}\"><Property name=\"a1\">1</Property></Context>"),
            format!("<Context xmlns=\"{ns}\"><Other name=\"a\">1</Other></Context>"),
            format!("<Context xmlns=\"{ns}\">text</Context>"),
            "<Context><Property name=\"a\">1</Property></Context>".to_owned(),
        ] {
            assert!(context_of(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_written_context_reads_back() {
        let context = Context::instance("c4b4e186-<&>");
        let read = context_of(&context.to_xml()).unwrap();
        assert_eq!(read, context);
    }
}
