//! What the XML parser is given, bounded before the tree is built. roxmltree's work grows with
//! the square of an element's attributes (its duplicate check) and with namespaces in scope
//! times elements, so one linear pass over the text counts them first, along with depth and
//! markup herald refuses (a DTD, an XML 1.1 declaration, a second byte order mark).

/// Bodies larger than this are parsed off the async workers (on a blocking thread): within
/// [`Limits`], parsing 32 KiB takes well under a millisecond; larger bodies may take more.
pub const OFFLOAD_BYTES: usize = 32 * 1024;

/// Limits on what a parser accepts, beyond the body-size limit applied before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most nested an element may be.
    pub max_depth: usize,
    /// The most nodes (elements, text) a document may have.
    pub max_nodes: u32,
    /// The most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// The most attributes in the whole document.
    pub max_total_attributes: usize,
    /// The most namespace declarations on one element.
    pub max_namespace_declarations: usize,
    /// The most namespace declarations in scope at any element (its own and its ancestors').
    pub max_namespaces_in_scope: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 64,
            max_nodes: 100_000,
            max_attributes: 256,
            max_total_attributes: 100_000,
            max_namespace_declarations: 32,
            max_namespaces_in_scope: 128,
        }
    }
}

/// Why a document was refused before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A document type declaration (or another `<!` declaration).
    Doctype,
    /// Markup herald does not read: XML 1.1, a second byte order mark.
    Unsupported(&'static str),
    /// Over one of the [`Limits`].
    TooComplex(String),
}

/// Counts, in one pass and without building anything, what [`Limits`] bounds. Comments,
/// CDATA sections and processing instructions are skipped as the parser skips them; quotes are
/// honoured inside tags, so a `>` or `=` in an attribute value counts for nothing. Malformed
/// text is not judged here: the parser refuses it afterwards, having done no more work than
/// what was counted.
pub fn prescan(text: &str, limits: &Limits) -> Result<(), Refusal> {
    if text.starts_with('\u{feff}') {
        return Err(Refusal::Unsupported("a second byte order mark"));
    }
    let declaration =
        text.starts_with("<?xml") && text.as_bytes().get(5).is_some_and(u8::is_ascii_whitespace);
    if declaration && !declares_xml_1_0(text) {
        return Err(Refusal::Unsupported("only XML 1.0 is read"));
    }
    let bytes = text.as_bytes();
    let too = |what: String| Err(Refusal::TooComplex(what));
    // Namespace declarations of each open element.
    let mut open: Vec<usize> = Vec::with_capacity(16);
    let mut in_scope = 0usize;
    let mut total_attributes = 0usize;
    let mut at = 0usize;
    while let Some(offset) = memchr::memchr(b'<', &bytes[at..]) {
        at += offset;
        let rest = &bytes[at..];
        if rest.starts_with(b"<!--") {
            at = skip_past(bytes, at + 4, b"-->");
        } else if rest.starts_with(b"<![CDATA[") {
            at = skip_past(bytes, at + 9, b"]]>");
        } else if rest.starts_with(b"<?") {
            at = skip_past(bytes, at + 2, b"?>");
        } else if rest.starts_with(b"<!") {
            return Err(Refusal::Doctype);
        } else if rest.starts_with(b"</") {
            at = skip_past(bytes, at + 2, b">");
            in_scope -= open.pop().unwrap_or(0);
        } else {
            let tag = scan_start_tag(bytes, at + 1);
            at = tag.end;
            total_attributes += tag.attributes;
            if tag.namespaces > limits.max_namespace_declarations {
                return too(format!(
                    "an element with more than {} namespace declarations",
                    limits.max_namespace_declarations
                ));
            }
            if tag.attributes > limits.max_attributes {
                return too(format!(
                    "an element with more than {} attributes",
                    limits.max_attributes
                ));
            }
            if total_attributes > limits.max_total_attributes {
                return too(format!(
                    "more than {} attributes",
                    limits.max_total_attributes
                ));
            }
            if in_scope + tag.namespaces > limits.max_namespaces_in_scope {
                return too(format!(
                    "more than {} namespace declarations in scope",
                    limits.max_namespaces_in_scope
                ));
            }
            if open.len() + 1 > limits.max_depth {
                return too(format!("elements nested deeper than {}", limits.max_depth));
            }
            if !tag.empty {
                open.push(tag.namespaces);
                in_scope += tag.namespaces;
            }
        }
    }
    Ok(())
}

/// Whether an XML declaration says `version="1.0"` (read as bytes: the declaration's first
/// 200 bytes may end inside a character).
fn declares_xml_1_0(text: &str) -> bool {
    let bytes = text.as_bytes();
    let end = skip_past(bytes, 0, b"?>").min(200);
    let declaration = &bytes[..end];
    let Some(at) = declaration
        .windows(7)
        .position(|window| window == b"version")
    else {
        return false;
    };
    let after = declaration[at + 7..].trim_ascii_start();
    let Some(after) = after.strip_prefix(b"=") else {
        return false;
    };
    let after = after.trim_ascii_start();
    after.starts_with(b"\"1.0\"") || after.starts_with(b"'1.0'")
}

/// The index just past the next `end` at or after `from` (the end of the text if none).
fn skip_past(bytes: &[u8], from: usize, end: &[u8]) -> usize {
    let (Some(rest), Some((&first, tail))) = (bytes.get(from..), end.split_first()) else {
        return bytes.len();
    };
    // To the next candidate first byte (memchr: many bytes at a time), then the rest compared
    // once there.
    let mut at = 0;
    while let Some(offset) = memchr::memchr(first, &rest[at..]) {
        let found = at + offset;
        if rest[found + 1..].starts_with(tail) {
            return from + found + end.len();
        }
        at = found + 1;
    }
    bytes.len()
}

/// Whether an attribute name `xmlns` or `xmlns:…` starts at `at`, after the byte `previous`.
fn declares_namespace(bytes: &[u8], at: usize, previous: u8) -> bool {
    previous.is_ascii_whitespace()
        && bytes[at..].starts_with(b"xmlns")
        && matches!(
            bytes.get(at + 5),
            Some(b':' | b'=' | b' ' | b'\t' | b'\r' | b'\n')
        )
}

/// What one start tag holds.
#[derive(Debug, PartialEq, Eq)]
struct StartTag {
    /// Just past its `>`.
    end: usize,
    /// `name=value` pairs, namespace declarations included.
    attributes: usize,
    /// `xmlns` and `xmlns:prefix` declarations.
    namespaces: usize,
    /// `<a/>`: closes itself.
    empty: bool,
}

/// Reads a start tag from just after its `<`: every `=` outside quotes is an attribute, every
/// attribute name `xmlns` or `xmlns:…` a namespace declaration.
fn scan_start_tag(bytes: &[u8], from: usize) -> StartTag {
    let mut tag = StartTag {
        end: bytes.len(),
        attributes: 0,
        namespaces: 0,
        empty: false,
    };
    let mut previous = b'<';
    let mut at = from;
    while at < bytes.len() {
        match bytes[at] {
            // Nothing inside a quoted value counts: on to its closing quote (an unclosed one
            // runs to the end of the text).
            quote @ (b'"' | b'\'') => match memchr::memchr(quote, &bytes[at + 1..]) {
                Some(offset) => at += 1 + offset,
                None => return tag,
            },
            b'=' => tag.attributes += 1,
            b'>' => {
                tag.empty = previous == b'/';
                tag.end = at + 1;
                return tag;
            }
            b'x' if declares_namespace(bytes, at, previous) => tag.namespaces += 1,
            _ => {}
        }
        previous = bytes[at];
        at += 1;
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Result<(), Refusal> {
        prescan(text, &Limits::default())
    }

    fn too_complex(result: Result<(), Refusal>) -> String {
        match result {
            Err(Refusal::TooComplex(why)) => why,
            other => panic!("not refused as too complex: {other:?}"),
        }
    }

    #[test]
    fn counts_what_the_parser_would_see() {
        let attributes = |n: usize| {
            let list: String = (0..n).map(|i| format!(" a{i}=\"{i}\"")).collect();
            format!("<e{list}/>")
        };
        assert_eq!(scan(&attributes(256)), Ok(()));
        assert_eq!(
            too_complex(scan(&attributes(257))),
            "an element with more than 256 attributes"
        );
        // Quoted `=` and `>`, comments, CDATA and PIs count for nothing.
        let quoted = format!(
            "<e a='{}' b=\"x>y\"><!-- {} --><![CDATA[{}]]><?pi {} ?></e>",
            "=".repeat(1000),
            "a=1 ".repeat(1000),
            "<e a=1>".repeat(1000),
            "a=1 ".repeat(1000)
        );
        assert_eq!(scan(&quoted), Ok(()));
        let declarations: String = (0..33)
            .map(|i| format!(" xmlns:p{i}=\"urn:{i}\""))
            .collect();
        assert_eq!(
            too_complex(scan(&format!("<e{declarations}/>"))),
            "an element with more than 32 namespace declarations"
        );
        // In scope: declarations of ancestors add up; those of closed siblings do not.
        let nested = |depth: usize| {
            let open: String = (0..depth)
                .map(|i| format!("<e xmlns:a{i}='u' xmlns:b{i}='u' xmlns='u{i}'>"))
                .collect();
            format!("{open}{}", "</e>".repeat(depth))
        };
        assert_eq!(scan(&nested(42)), Ok(()));
        assert_eq!(
            too_complex(scan(&nested(43))),
            "more than 128 namespace declarations in scope"
        );
        let siblings = format!(
            "<r>{}</r>",
            "<e xmlns:a='u' xmlns:b='u'/><f xmlns:c='u'></f>".repeat(1000)
        );
        assert_eq!(scan(&siblings), Ok(()));
        let deep = format!("{}{}", "<a>".repeat(65), "</a>".repeat(65));
        assert_eq!(too_complex(scan(&deep)), "elements nested deeper than 64");
        let many = format!("<r>{}</r>", "<e a='1' b='2'/>".repeat(50_001));
        assert_eq!(too_complex(scan(&many)), "more than 100000 attributes");
    }

    #[test]
    fn refuses_what_herald_does_not_read() {
        assert_eq!(
            scan("<!DOCTYPE x [<!ENTITY a 'b'>]><x/>"),
            Err(Refusal::Doctype)
        );
        assert_eq!(
            scan("<?xml version=\"1.1\"?><x/>"),
            Err(Refusal::Unsupported("only XML 1.0 is read"))
        );
        assert_eq!(scan("<?xml version='1.0' encoding='utf-8'?><x/>"), Ok(()));
        assert_eq!(scan("<?xml-stylesheet href='a'?><x/>"), Ok(()));
        // Found by the batch fuzz target: the 200th byte inside a character.
        let long = format!("<?xml {}\u{117}?><x/>", "a".repeat(193));
        assert_eq!(
            scan(&long),
            Err(Refusal::Unsupported("only XML 1.0 is read"))
        );
        assert_eq!(
            scan("\u{feff}<x/>"),
            Err(Refusal::Unsupported("a second byte order mark"))
        );
        // Malformed text is left to the parser.
        assert_eq!(scan("<x a='1"), Ok(()));
        assert_eq!(scan("</x></y>"), Ok(()));
    }

    /// The readings [`skip_past`] and [`scan_start_tag`] replaced, one byte at a time: the
    /// faster ones must agree with them on any text.
    mod byte_at_a_time {
        use super::super::StartTag;

        pub fn skip_past(bytes: &[u8], from: usize, end: &[u8]) -> usize {
            bytes
                .get(from..)
                .and_then(|rest| rest.windows(end.len()).position(|window| window == end))
                .map_or(bytes.len(), |at| from + at + end.len())
        }

        pub fn scan_start_tag(bytes: &[u8], from: usize) -> StartTag {
            let mut tag = StartTag {
                end: bytes.len(),
                attributes: 0,
                namespaces: 0,
                empty: false,
            };
            let mut quote: Option<u8> = None;
            let mut previous = b'<';
            for (at, &byte) in bytes.iter().enumerate().skip(from) {
                match quote {
                    Some(q) if byte == q => quote = None,
                    Some(_) => {}
                    None => match byte {
                        b'"' | b'\'' => quote = Some(byte),
                        b'=' => tag.attributes += 1,
                        b'>' => {
                            tag.empty = previous == b'/';
                            tag.end = at + 1;
                            return tag;
                        }
                        b'x' if super::super::declares_namespace(bytes, at, previous) => {
                            tag.namespaces += 1;
                        }
                        _ => {}
                    },
                }
                previous = byte;
            }
            tag
        }
    }

    /// Texts made mostly of the bytes the prescan acts on.
    fn markup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        const PIECES: [&str; 14] = [
            "<", ">", "/", "\"", "'", "=", " ", "\n", "xmlns", "xmlns:p", "a", "-->", "?>", "]]>",
        ];
        proptest::collection::vec(proptest::sample::select(&PIECES[..]), 0..40)
            .prop_map(|pieces| pieces.concat().into_bytes())
    }

    use proptest::prelude::*;

    const ENDS: &[&[u8]] = &[b">", b"-->", b"?>", b"]]>"];

    proptest! {
        #[test]
        fn the_scans_read_as_the_byte_at_a_time_ones_did(
            text in markup(),
            from in 0usize..64,
            end in proptest::sample::select(ENDS),
        ) {
            prop_assert_eq!(
                skip_past(&text, from, end),
                byte_at_a_time::skip_past(&text, from, end)
            );
            if from <= text.len() {
                prop_assert_eq!(
                    scan_start_tag(&text, from),
                    byte_at_a_time::scan_start_tag(&text, from)
                );
            }
        }
    }
}
