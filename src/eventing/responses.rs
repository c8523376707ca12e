//! The bodies of WS-Eventing responses that differ by version.

use crate::domain::subscription::{EventingVersion, SubscriptionId, WsaVersion};
use crate::soap::addressing;
use crate::soap::xml;

/// `Expires` in the 2004 versions, `GrantedExpires` in 2011 responses.
pub(super) fn expires_element(version: EventingVersion) -> &'static str {
    match version {
        EventingVersion::W3c2011 => "GrantedExpires",
        _ => "Expires",
    }
}

/// The body of a SubscribeResponse: the identifier in the body (2004/01) or as a reference
/// parameter of the SubscriptionManager endpoint reference (2004/08: `wse:Identifier`; 2011:
/// herald's own element, as 2011 defines none).
///
/// A 2004/08 response may carry `extension`, after `wse:Expires` (a pulled subscription's
/// `wsen:EnumerationContext`).
pub(super) fn subscribe_response(
    version: EventingVersion,
    wsa: WsaVersion,
    manager_address: &str,
    (id, granted): (SubscriptionId, &str),
    extra_parameter: Option<String>,
    extension: Option<String>,
) -> String {
    let granted = xml::escape(granted);
    let mut id_text = [0; 5 + uuid::fmt::Hyphenated::LENGTH];
    id_text[..5].copy_from_slice(b"uuid:");
    id.uuid().hyphenated().encode_lower(&mut id_text[5..]);
    // ASCII by construction.
    let id_text = std::str::from_utf8(&id_text).unwrap_or_default();
    let mut out = String::with_capacity(384 + manager_address.len());
    out.push_str("<wse:SubscribeResponse>");
    let manager = |out: &mut String, parameter: [&str; 3]| {
        let parameter = parameter.concat();
        let parameters: Vec<&str> = std::iter::once(parameter.as_str())
            .chain(extra_parameter.as_deref())
            .collect();
        out.push_str("<wse:SubscriptionManager>");
        addressing::write_epr_parts(out, wsa, manager_address, &parameters, &[]);
        out.push_str("</wse:SubscriptionManager>");
    };
    match version {
        EventingVersion::Jan2004 => out.extend([
            "<wse:Id>",
            id_text,
            "</wse:Id><wse:Expires>",
            &granted,
            "</wse:Expires>",
        ]),
        EventingVersion::Aug2004 => {
            manager(&mut out, ["<wse:Identifier>", id_text, "</wse:Identifier>"]);
            out.extend(["<wse:Expires>", &granted, "</wse:Expires>"]);
            out.push_str(extension.as_deref().unwrap_or_default());
        }
        EventingVersion::W3c2011 => {
            let parameter = ["<hrd:SubscriptionId>", id_text, "</hrd:SubscriptionId>"];
            manager(&mut out, parameter);
            out.extend(["<wse:GrantedExpires>", &granted, "</wse:GrantedExpires>"]);
        }
    }
    out.push_str("</wse:SubscribeResponse>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HERALD_NS;

    /// A SubscribeResponse body in a document with the prefixes it uses declared.
    fn parsed(body: &str, wsa: WsaVersion, version: EventingVersion) -> String {
        format!(
            r#"<r xmlns:wsa="{}" xmlns:wse="{}" xmlns:hrd="{HERALD_NS}">{body}</r>"#,
            wsa.ns(),
            version.ns()
        )
    }

    /// The names of the elements under the SubscriptionManager's reference parameters and
    /// properties, and its address as read back.
    fn manager(text: &str) -> (Vec<String>, Vec<String>, String) {
        let document = roxmltree::Document::parse(text).unwrap();
        let under = |kind: &str| -> Vec<String> {
            document
                .descendants()
                .filter(|n| n.tag_name().name() == kind)
                .flat_map(|n| n.children().filter(|c| c.is_element()))
                .map(|c| c.tag_name().name().to_owned())
                .collect()
        };
        let address = document
            .descendants()
            .find(|n| n.tag_name().name() == "Address")
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_owned();
        (
            under("ReferenceParameters"),
            under("ReferenceProperties"),
            address,
        )
    }

    #[test]
    fn the_identifier_goes_where_each_addressing_version_carries_it() {
        let id = SubscriptionId::new_random();
        let address = "http://h/eventing/s/subscriptions?a=1&b=2";
        let cases = [
            // WS-Addressing 1.0 has reference parameters only.
            (
                EventingVersion::W3c2011,
                WsaVersion::W3c2005,
                vec!["SubscriptionId", "x"],
                vec![],
            ),
            (
                EventingVersion::Aug2004,
                WsaVersion::Aug2004,
                vec!["Identifier", "x"],
                vec![],
            ),
            // 2003/03 has reference properties only: the parameters go there.
            (
                EventingVersion::Aug2004,
                WsaVersion::Mar2003,
                vec![],
                vec!["Identifier", "x"],
            ),
        ];
        for (version, wsa, parameters, properties) in cases {
            let body = subscribe_response(
                version,
                wsa,
                address,
                (id, "PT1H"),
                Some("<hrd:x/>".into()),
                None,
            );
            let text = parsed(&body, wsa, version);
            let (found_parameters, found_properties, found_address) = manager(&text);
            assert_eq!(found_parameters, parameters, "{version:?} {wsa:?}: {body}");
            assert_eq!(found_properties, properties, "{version:?} {wsa:?}: {body}");
            assert_eq!(found_address, address, "escaped and read back: {body}");
            assert!(body.contains(&id.to_string()), "{body}");
        }
    }

    #[test]
    fn a_2004_01_response_carries_the_identifier_in_the_body() {
        let id = SubscriptionId::new_random();
        let body = subscribe_response(
            EventingVersion::Jan2004,
            WsaVersion::Mar2003,
            "http://h/m",
            (id, "PT1H"),
            None,
            None,
        );
        assert_eq!(
            body,
            format!(
                "<wse:SubscribeResponse><wse:Id>{id}</wse:Id><wse:Expires>PT1H</wse:Expires></wse:SubscribeResponse>"
            )
        );
    }
}
