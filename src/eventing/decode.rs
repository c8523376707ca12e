//! Reading WS-Eventing request bodies into engine requests.

use roxmltree::Node;

use super::faults::Problem;
use super::version::{FORMAT_UNWRAP, FORMAT_WRAP, HERALD_NS, PUSH_MODE, WSE_2004_08_NS};
use crate::delivery::policy;
use crate::domain::expiry::{ExpiryRules, RequestedExpiry};
use crate::domain::subscription::{
    EndpointRef, EventingVersion, Filter, NotificationFormat, SourceName, SubscriptionId,
    WireDialect,
};
use crate::engine::{ParsedEndpoints, SubscribeRequest};
use crate::filter;
use crate::soap::addressing::{self, is_anonymous};
use crate::soap::xml::{self, Repeated};

// WS-Management puts its filter in `wsman:Filter` beside `wse:Filter`.
use super::wsman::WSMAN_NS;
use super::wsman_auth::IssuedTokens;
use super::wsman_delivery;
use crate::domain::wsman::WsmanMode;

/// The longest endpoint address accepted.
const MAX_ADDRESS_BYTES: usize = 2048;

impl From<Repeated> for Problem {
    fn from(err: Repeated) -> Problem {
        Problem::InvalidMessage(err.to_string())
    }
}

/// Decodes a `wse:Subscribe` element, with the credentials for its sink that the request's
/// `wst:IssuedTokens` header carried (WS-Management only).
pub fn subscribe(
    element: Node<'_, '_>,
    dialect: WireDialect,
    source: SourceName,
    manager_address: String,
    credentials: &IssuedTokens,
) -> Result<SubscribeRequest, Problem> {
    let version = dialect.eventing;
    if version != EventingVersion::Aug2004 && !credentials.is_empty() {
        return Err(Problem::InvalidMessage(
            "credentials for the event sink (wst:IssuedTokens) go with a WS-Management \
             Subscribe (WS-Eventing 2004/08 with wsman:Auth)"
                .into(),
        ));
    }
    let ns = version.ns();
    let (end_to, end_url) = match xml::single_child(element, ns, "EndTo")? {
        Some(node) => endpoint(node).map(|(end_to, url)| (Some(end_to), Some(url)))?,
        None => (None, None),
    };
    let extensions;
    let ((notify_to, notify_url), delivery_mode, format) = match version {
        EventingVersion::Jan2004 => {
            extensions = wsman_delivery::bookmark_extensions(element, &source)?;
            let notify_to =
                xml::single_child(element, ns, "NotifyTo")?.ok_or(Problem::NoDeliveryMechanism)?;
            (
                notify_endpoint(notify_to)?,
                PUSH_MODE.to_owned(),
                NotificationFormat::Unwrap,
            )
        }
        EventingVersion::Aug2004 => {
            let delivery = xml::single_child(element, ns, "Delivery")?.ok_or_else(|| {
                Problem::InvalidMessage("wse:Subscribe must contain wse:Delivery".into())
            })?;
            let mode = delivery
                .attribute("Mode")
                .map_or(PUSH_MODE, str::trim)
                .to_owned();
            let wsman_mode = match mode.as_str() {
                PUSH_MODE => WsmanMode::Push,
                other => wsman_delivery::mode_of(other)
                    .ok_or_else(|| Problem::DeliveryModeUnavailable(mode.clone()))?,
            };
            let (notify_to, notify_url) =
                match (wsman_mode, xml::single_child(delivery, ns, "NotifyTo")?) {
                    // Nothing is sent in Pull mode: a NotifyTo, if any, is not used.
                    (WsmanMode::Pull, _) => (
                        EndpointRef {
                            address: dialect.addressing.anonymous().to_owned(),
                            reference_parameters: Vec::new(),
                            reference_properties: Vec::new(),
                        },
                        None,
                    ),
                    (_, Some(notify_to)) => notify_endpoint(notify_to)?,
                    (_, None) => return Err(Problem::NoDeliveryMechanism),
                };
            extensions = wsman_delivery::delivery_extensions(
                element,
                delivery,
                wsman_mode,
                &source,
                (&notify_to, credentials),
            )?;
            ((notify_to, notify_url), mode, NotificationFormat::Unwrap)
        }
        EventingVersion::W3c2011 => {
            extensions = wsman_delivery::bookmark_extensions(element, &source)?;
            let delivery =
                xml::single_child(element, ns, "Delivery")?.ok_or(Problem::NoDeliveryMechanism)?;
            let notify_to =
                xml::single_child(delivery, ns, "NotifyTo")?.ok_or(Problem::NoDeliveryMechanism)?;
            let format = match xml::single_child(element, ns, "Format")? {
                None => NotificationFormat::Unwrap,
                Some(format) => match format.attribute("Name").map_or(FORMAT_UNWRAP, str::trim) {
                    FORMAT_UNWRAP => NotificationFormat::Unwrap,
                    FORMAT_WRAP => NotificationFormat::Wrap,
                    other => return Err(Problem::DeliveryFormatUnavailable(other.to_owned())),
                },
            };
            (notify_endpoint(notify_to)?, PUSH_MODE.to_owned(), format)
        }
    };
    let (expires, expiry_rules) = expires(element, version)?;
    let filter = filter(element, version)?;
    Ok(SubscribeRequest {
        source,
        dialect,
        notify_to,
        end_to,
        parsed: ParsedEndpoints {
            notify_to: notify_url,
            end_to: end_url,
        },
        delivery_mode,
        format,
        filter,
        expires,
        expiry_rules,
        manager_address,
        connection_retry: extensions.connection_retry,
        wsman: extensions.wsman,
        start: extensions.start,
        sink_password: extensions.sink_password,
    })
}

/// Decodes the optional `wse:Expires` of a Subscribe or Renew, with the version's rules.
pub fn expires(
    element: Node<'_, '_>,
    version: EventingVersion,
) -> Result<(Option<RequestedExpiry>, ExpiryRules), Problem> {
    let found = xml::single_child(element, version.ns(), "Expires")?;
    let requested = found
        .map(|node| RequestedExpiry::parse(&xml::trimmed_text(node)))
        .transpose()
        .map_err(Problem::Expiration)?;
    let rules = match version {
        EventingVersion::W3c2011 => {
            let best_effort = match found.and_then(|node| node.attribute("BestEffort")) {
                None => false,
                Some(value) => match value.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(Problem::InvalidMessage(format!(
                            "BestEffort must be an xs:boolean, not '{}'",
                            other.chars().take(40).collect::<String>()
                        )));
                    }
                },
            };
            ExpiryRules {
                absent_means_unbounded: true,
                zero_means_unbounded: true,
                exact: !best_effort,
            }
        }
        _ => ExpiryRules {
            absent_means_unbounded: false,
            zero_means_unbounded: false,
            exact: false,
        },
    };
    Ok((requested, rules))
}

/// A pushed subscription's NotifyTo, with its address parsed for the endpoint check.
fn notify_endpoint(node: Node<'_, '_>) -> Result<(EndpointRef, Option<url::Url>), Problem> {
    endpoint(node).map(|(epr, url)| (epr, Some(url)))
}

/// An endpoint reference, and its address as the HTTP client will dial it.
fn endpoint(node: Node<'_, '_>) -> Result<(EndpointRef, url::Url), Problem> {
    let name = node.tag_name().name();
    let epr =
        addressing::read_epr(node).map_err(|why| Problem::UnusableEpr(format!("{name}: {why}")))?;
    let url = check_address(&epr.address)
        .map_err(|why| Problem::UnusableEpr(format!("{name}: {why}")))?;
    Ok((epr, url))
}

/// Notifications are pushed over HTTP, so an endpoint must be an absolute http(s) URL: returned
/// as the client will read it.
fn check_address(address: &str) -> Result<url::Url, String> {
    if address.len() > MAX_ADDRESS_BYTES {
        return Err(format!(
            "the address is longer than {MAX_ADDRESS_BYTES} bytes"
        ));
    }
    if is_anonymous(address) {
        return Err("an anonymous address cannot receive pushed messages".into());
    }
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .ok_or_else(|| "the address must be an absolute http or https URL".to_owned())?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the address has no usable host".into());
    }
    // As the HTTP client will read it: the URL the endpoint policy judges and delivery dials.
    policy::parse_endpoint(address).map_err(|_| "the address is not a valid URL".into())
}

fn filter(element: Node<'_, '_>, version: EventingVersion) -> Result<Option<Filter>, Problem> {
    let wse_filter = xml::single_child(element, version.ns(), "Filter")?;
    let wsman_filter = xml::single_child(element, WSMAN_NS, "Filter")?;
    let node = match (wse_filter, wsman_filter) {
        (Some(_), Some(_)) => {
            return Err(Problem::InvalidMessage(
                "wse:Filter and wsman:Filter cannot both be given".into(),
            ));
        }
        (Some(node), None) | (None, Some(node)) => node,
        (None, None) => return Ok(None),
    };
    let dialect = node
        .attribute("Dialect")
        .map_or(version.default_filter_dialect(), str::trim)
        .to_owned();
    if !filter::is_supported(&dialect) {
        return Err(Problem::FilterDialectUnavailable(dialect));
    }
    if xml::elements(node).next().is_some() {
        return Err(Problem::CannotProcessFilter(format!(
            "dialect {dialect} takes text, not elements"
        )));
    }
    let expression = xml::trimmed_text(node);
    if expression.is_empty() {
        return Err(Problem::EmptyFilter);
    }
    if expression.len() > filter::MAX_EXPRESSION_BYTES {
        return Err(Problem::CannotProcessFilter(format!(
            "the expression is longer than {} bytes",
            filter::MAX_EXPRESSION_BYTES
        )));
    }
    let namespaces = node
        .namespaces()
        .filter(|ns| ns.name() != Some("xml"))
        .map(|ns| (ns.name().unwrap_or("").to_owned(), ns.uri().to_owned()))
        .collect();
    Ok(Some(Filter {
        dialect,
        expression,
        namespaces,
    }))
}

/// Finds the subscription a manager request is about: `wse:Id` in the 2004/01 body, otherwise
/// the identifier header echoed from the SubscriptionManager reference parameters (herald's own
/// element, or `wse:Identifier` as 2004/08 clients send it).
pub fn subscription_id<'a, 'input: 'a>(
    version: EventingVersion,
    body_element: Node<'a, 'input>,
    header_blocks: impl Iterator<Item = Node<'a, 'input>>,
) -> Result<SubscriptionId, Problem> {
    let text = if version == EventingVersion::Jan2004 {
        let id = xml::single_child(body_element, version.ns(), "Id")?.ok_or_else(|| {
            Problem::InvalidMessage(format!(
                "wse:{} must contain wse:Id",
                body_element.tag_name().name()
            ))
        })?;
        xml::trimmed_text(id)
    } else {
        identifier_text(version, header_blocks)?.ok_or_else(|| {
            Problem::UnknownSubscription(
                "the request carries no subscription identifier header (the reference \
                 parameter of the SubscriptionManager endpoint reference)"
                    .into(),
            )
        })?
    };
    SubscriptionId::parse(&text).ok_or_else(|| {
        Problem::UnknownSubscription(format!(
            "'{}' is not an identifier issued here",
            text.chars().take(80).collect::<String>()
        ))
    })
}

/// The text of the subscription identifier header (herald's own element, or `wse:Identifier`),
/// if the request carries one; two different ones are refused.
fn identifier_text<'a, 'input: 'a>(
    version: EventingVersion,
    header_blocks: impl Iterator<Item = Node<'a, 'input>>,
) -> Result<Option<String>, Problem> {
    let mut found: Option<String> = None;
    for block in header_blocks {
        let is_identifier = xml::is(block, HERALD_NS, "SubscriptionId")
            || xml::is(block, WSE_2004_08_NS, "Identifier")
            || xml::is(block, version.ns(), "Identifier");
        if !is_identifier {
            continue;
        }
        let text = xml::trimmed_text(block);
        match &found {
            Some(previous) if *previous != text => {
                return Err(Problem::InvalidMessage(
                    "the request carries two different subscription identifiers".into(),
                ));
            }
            _ => found = Some(text),
        }
    }
    Ok(found)
}

/// The subscription the identifier header names, if the request carries one (a Pull may name
/// its subscription by its enumeration context alone).
pub fn identifier_header<'a, 'input: 'a>(
    version: EventingVersion,
    header_blocks: impl Iterator<Item = Node<'a, 'input>>,
) -> Result<Option<SubscriptionId>, Problem> {
    identifier_text(version, header_blocks)?
        .map(|text| {
            SubscriptionId::parse(&text).ok_or_else(|| {
                Problem::UnknownSubscription(format!(
                    "'{}' is not an identifier issued here",
                    text.chars().take(80).collect::<String>()
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(check_address("http://127.0.0.1:9/sink").is_ok());
        assert!(check_address("https://example.com").is_ok());
        for bad in [
            "mailto:x@example.com",
            "http://",
            "http:///path",
            "relative/path",
            "http://www.w3.org/2005/08/addressing/anonymous",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    /// The endpoint check judges the addresses as decoded here, so these must be each
    /// address read as the HTTP client will read it, in every version.
    #[test]
    fn the_addresses_are_handed_on_as_parsed() {
        use crate::domain::subscription::{SoapVersion, WsaVersion};
        let versions = [
            (EventingVersion::Jan2004, WsaVersion::Mar2003),
            (EventingVersion::Aug2004, WsaVersion::Aug2004),
            (EventingVersion::W3c2011, WsaVersion::W3c2005),
        ];
        for (eventing, addressing) in versions {
            let ns = eventing.ns();
            let wsa = addressing.ns();
            let delivery = match eventing {
                EventingVersion::Jan2004 => String::new(),
                _ => "<e:Delivery>".into(),
            };
            let end = if delivery.is_empty() {
                ""
            } else {
                "</e:Delivery>"
            };
            let text = format!(
                r#"<e:Subscribe xmlns:e="{ns}" xmlns:a="{wsa}"><e:EndTo><a:Address> http://Ends.Example:80/x </a:Address></e:EndTo>{delivery}<e:NotifyTo><a:Address>http://127.0.0.1:9/sink/%7e1</a:Address></e:NotifyTo>{end}</e:Subscribe>"#
            );
            let doc = roxmltree::Document::parse(&text).unwrap();
            let dialect = WireDialect {
                eventing,
                soap: SoapVersion::Soap12,
                addressing,
            };
            let request = subscribe(
                doc.root_element(),
                dialect,
                SourceName::parse("orders").unwrap(),
                "http://herald/manager".into(),
                &IssuedTokens::default(),
            )
            .unwrap_or_else(|problem| panic!("{eventing:?}: {problem:?}"));
            let parsed = |address: &str| policy::parse_endpoint(address).unwrap();
            assert_eq!(
                request.parsed.notify_to,
                Some(parsed(&request.notify_to.address)),
                "{eventing:?}"
            );
            let end_to = request.end_to.as_ref().expect("EndTo decoded");
            assert_eq!(
                request.parsed.end_to,
                Some(parsed(&end_to.address)),
                "{eventing:?}"
            );
        }
    }
}
