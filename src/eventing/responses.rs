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
    let manager = |parameter: String| {
        let epr = crate::domain::subscription::EndpointRef {
            address: manager_address.to_owned(),
            reference_parameters: std::iter::once(parameter)
                .chain(extra_parameter.clone())
                .collect(),
            reference_properties: Vec::new(),
        };
        addressing::write_epr_content(wsa, &epr)
    };
    match version {
        EventingVersion::Jan2004 => format!(
            "<wse:SubscribeResponse><wse:Id>{id}</wse:Id><wse:Expires>{granted}</wse:Expires></wse:SubscribeResponse>"
        ),
        EventingVersion::Aug2004 => format!(
            "<wse:SubscribeResponse><wse:SubscriptionManager>{}</wse:SubscriptionManager><wse:Expires>{granted}</wse:Expires>{}</wse:SubscribeResponse>",
            manager(format!("<wse:Identifier>{id}</wse:Identifier>")),
            extension.unwrap_or_default()
        ),
        EventingVersion::W3c2011 => format!(
            "<wse:SubscribeResponse><wse:SubscriptionManager>{}</wse:SubscriptionManager><wse:GrantedExpires>{granted}</wse:GrantedExpires></wse:SubscribeResponse>",
            manager(format!("<hrd:SubscriptionId>{id}</hrd:SubscriptionId>"))
        ),
    }
}
