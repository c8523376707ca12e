//! Small XML helpers: matching by (namespace URI, local name), reading text, escaping, and
//! copying an element out of a document as a self-contained fragment.

use std::borrow::Cow;

use roxmltree::Node;

/// True when `node` is an element with this namespace URI and local name (prefixes ignored).
pub fn is(node: Node<'_, '_>, ns: &str, local: &str) -> bool {
    node.is_element() && node.tag_name().name() == local && node.tag_name().namespace() == Some(ns)
}

/// The element children of `node`.
pub fn elements<'a, 'input>(node: Node<'a, 'input>) -> impl Iterator<Item = Node<'a, 'input>> {
    node.children().filter(|child| child.is_element())
}

/// The element children of `node` with this name.
pub fn children_named<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'input>> + 'a {
    elements(node).filter(move |child| is(*child, ns, local))
}

/// The one child with this name: `Ok(None)` when absent, `Err` when repeated.
pub fn single_child<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    ns: &'a str,
    local: &'a str,
) -> Result<Option<Node<'a, 'input>>, Repeated> {
    let mut found = children_named(node, ns, local);
    let first = found.next();
    if found.next().is_some() {
        return Err(Repeated(local.to_owned()));
    }
    Ok(first)
}

/// An element that may appear once appeared more than once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("element {0} appears more than once")]
pub struct Repeated(pub String);

/// The text content of `node` (all descendant text), with surrounding whitespace trimmed:
/// xs:anyURI and identifiers collapse whitespace, and spec examples wrap them over lines.
/// Most such elements hold one text node: that one is copied once, already trimmed.
pub fn trimmed_text(node: Node<'_, '_>) -> String {
    let mut texts = node
        .descendants()
        .filter(|descendant| descendant.is_text())
        .filter_map(|text| text.text());
    let Some(first) = texts.next() else {
        return String::new();
    };
    let Some(second) = texts.next() else {
        return first.trim().to_owned();
    };
    let mut out = [first, second].concat();
    texts.for_each(|text| out.push_str(text));
    out.trim().to_owned()
}

/// Escapes text for element content or a double-quoted attribute value (and a carriage return,
/// which a parser would otherwise read as a line end or, in an attribute, a space). Most text
/// herald writes (namespaces, addresses, identifiers) has nothing to escape: that is found by
/// `memchr` rather than a byte at a time (2.5k instructions of a Subscribe's 150k in
/// `callgrind`).
pub fn escape(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if memchr::memchr3(b'<', b'>', b'&', bytes).is_none()
        && memchr::memchr3(b'"', b'\'', b'\r', bytes).is_none()
    {
        return Cow::Borrowed(text);
    }
    quick_xml::escape::escape(text)
}

/// Copies `node` out of its document as a fragment that stands on its own: the original text of
/// the element (so nothing is lost or re-encoded), with the namespace declarations it inherits
/// from its ancestors added to its start tag.
pub fn fragment(node: Node<'_, '_>) -> String {
    let input = node.document().input_text();
    let original = &input[node.range()];
    let (name_end, declared) = start_tag_attributes(original);
    let mut declarations = String::new();
    for namespace in node.namespaces() {
        let attribute = match namespace.name() {
            Some("xml") => continue,
            Some(prefix) => format!("xmlns:{prefix}"),
            None => "xmlns".to_owned(),
        };
        if declared.iter().any(|name| *name == attribute) {
            continue;
        }
        declarations.push_str(&format!(" {attribute}=\"{}\"", escape(namespace.uri())));
    }
    let mut out = String::with_capacity(original.len() + declarations.len());
    out.push_str(&original[..name_end]);
    out.push_str(&declarations);
    out.push_str(&original[name_end..]);
    out
}

/// Adds attributes (already escaped, each starting with a space) to the start tag of a fragment
/// produced by [`fragment`].
pub fn add_attributes(fragment: &str, attributes: &str) -> String {
    let (name_end, _) = start_tag_attributes(fragment);
    let mut out = String::with_capacity(fragment.len() + attributes.len());
    out.push_str(&fragment[..name_end]);
    out.push_str(attributes);
    out.push_str(&fragment[name_end..]);
    out
}

/// For the start tag at the beginning of `element` (well-formed, as roxmltree accepted it):
/// where its name ends, and the names of the attributes it carries.
fn start_tag_attributes(element: &str) -> (usize, Vec<&str>) {
    let bytes = element.as_bytes();
    let is_name_end = |b: u8| b.is_ascii_whitespace() || b == b'/' || b == b'>';
    let name_end = bytes
        .iter()
        .skip(1)
        .position(|&b| is_name_end(b))
        .map_or(bytes.len(), |p| p + 1);
    let mut names = Vec::new();
    let mut i = name_end;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b'/' || bytes[i] == b'>' {
            break;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        names.push(&element[start..i]);
        while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\'' {
            i += 1;
        }
        let Some(&quote) = bytes.get(i) else { break };
        i += 1;
        while i < bytes.len() && bytes[i] != quote {
            i += 1;
        }
        i += 1;
    }
    (name_end, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_escapes_each_markup_character_and_leaves_plain_text_as_it_is() {
        for (text, escaped) in [
            ("a<b", "a&lt;b"),
            ("a>b", "a&gt;b"),
            ("a&b", "a&amp;b"),
            ("a\"b", "a&quot;b"),
            ("a'b", "a&apos;b"),
            ("a\r\nb", "a&#13;\nb"),
            ("<&>", "&lt;&amp;&gt;"),
        ] {
            assert_eq!(escape(text), escaped, "{text:?}");
        }
        let plain = "http://127.0.0.1:9/sink?id=uuid:0190-7f";
        assert!(matches!(escape(plain), Cow::Borrowed(same) if same == plain));
    }

    #[test]
    fn fragment_carries_inherited_namespaces() {
        let text = r#"<a:root xmlns:a="urn:a" xmlns="urn:default" xmlns:b='urn:b'>
            <b:child x="1" xmlns:c="urn:c"><c:leaf>v &amp; w</c:leaf><plain/></b:child></a:root>"#;
        let doc = roxmltree::Document::parse(text).unwrap();
        let child = doc.descendants().find(|n| n.has_tag_name("child")).unwrap();
        let copy = fragment(child);
        let reparsed = roxmltree::Document::parse(&copy).unwrap();
        let root = reparsed.root_element();
        assert_eq!(root.tag_name().namespace(), Some("urn:b"));
        let leaf = root.descendants().find(|n| n.has_tag_name("leaf")).unwrap();
        assert_eq!(leaf.tag_name().namespace(), Some("urn:c"));
        assert_eq!(leaf.text(), Some("v & w"));
        let plain = root
            .descendants()
            .find(|n| n.has_tag_name("plain"))
            .unwrap();
        assert_eq!(plain.tag_name().namespace(), Some("urn:default"));
        assert_eq!(
            copy.matches("xmlns:c=").count(),
            1,
            "not declared twice: {copy}"
        );
    }

    #[test]
    fn text_is_every_descendant_text_trimmed() {
        let text = "<r><one>\n  urn:a  \n</one><two> urn:<i>b</i>:c <!-- x --> d </two><none><e/></none></r>";
        let doc = roxmltree::Document::parse(text).unwrap();
        let of = |name: &str| {
            let node = doc.descendants().find(|n| n.has_tag_name(name)).unwrap();
            trimmed_text(node)
        };
        assert_eq!(of("one"), "urn:a");
        assert_eq!(of("two"), "urn:b:c  d");
        assert_eq!(of("none"), "");
    }

    #[test]
    fn attributes_are_added_to_the_start_tag() {
        let with = add_attributes(r#"<p:x xmlns:p="urn:p">1</p:x>"#, r#" a="b""#);
        assert_eq!(with, r#"<p:x a="b" xmlns:p="urn:p">1</p:x>"#);
        assert_eq!(add_attributes("<x/>", " a=\"b\""), "<x a=\"b\"/>");
    }
}
