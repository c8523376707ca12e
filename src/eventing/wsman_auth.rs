//! Sink authentication in a WS-Management Subscribe (DSP0226 §10.2): `wsman:Auth/@Profile` in
//! `wse:Delivery` names how herald authenticates when it delivers, and a `wst:IssuedTokens`
//! SOAP header carries the subscriber's credentials for the sink — a
//! `wst:RequestSecurityTokenResponse` whose `wst:TokenType` is the WS-Security user name token
//! (as openwsman and Intel AMT send it, or DMTF's `…/wsman/token/userName`), whose
//! `wst:RequestedSecurityToken` holds a `wsse:UsernameToken`, and whose `wsp:AppliesTo` names
//! the NotifyTo address.
//!
//! Faults (all Sender; `wsman:FaultDetail` names in parentheses):
//! - a profile herald does not deliver with (Kerberos, an unknown URI):
//!   `wsman:UnsupportedFeature` (`AuthorizationMode`);
//! - an https profile with an http NotifyTo: `wsman:UnsupportedFeature` (`InsecureAddress`);
//! - a token other than a user name token with a PasswordText password (a certificate
//!   thumbprint, a password digest): `wsman:UnsupportedFeature` (`FormatSecurityToken`);
//! - credentials applying to another address than NotifyTo: `wsman:InvalidParameter`
//!   (`InvalidAddress`);
//! - a Basic or Digest profile without credentials, credentials that fit no use (no
//!   `wsman:Auth`, the plain mutual profile, Pull mode), or a user name that cannot be sent:
//!   `wsman:InvalidParameter`.
//!
//! What needs herald's configuration (a client certificate, a credentials key) is the engine's
//! to check.

use roxmltree::Node;

use super::faults::{Problem, WsmanFault};
use super::wsman::WSMAN_NS;
use crate::domain::secret::Secret;
use crate::domain::subscription::{EndpointRef, WsaVersion};
use crate::domain::wsman::{AuthProfile, SinkAuth, WsmanMode, profiles};
use crate::soap::xml;

/// WS-Trust 2005/02, as DSP0226 uses it.
pub const WST_NS: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust";
/// WS-Trust 1.3, accepted too.
pub const WST13_NS: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
/// WS-Security's secext namespace (`wsse:UsernameToken`).
pub const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Policy, in which `wsp:AppliesTo` is.
const WSP_NAMESPACES: [&str; 2] = [
    "http://schemas.xmlsoap.org/ws/2004/09/policy",
    "http://www.w3.org/ns/ws-policy",
];
/// The token types of a user name token.
const USERNAME_TOKEN_TYPES: [&str; 2] = [
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#UsernameToken",
    "http://schemas.dmtf.org/wbem/wsman/1/wsman/token/userName",
];
/// A password in the clear (the default type).
const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
/// The longest user name and password accepted.
const MAX_CREDENTIAL_CHARS: usize = 1024;

/// Whether herald understands this header block (for mustUnderstand).
pub fn understood(ns: &str, local: &str) -> bool {
    matches!(ns, WST_NS | WST13_NS) && local == "IssuedTokens"
}

/// One user name token of a `wst:IssuedTokens` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UsernameToken {
    /// `wsp:AppliesTo`'s address, when given.
    applies_to: Option<String>,
    username: String,
    password: Option<Secret>,
}

/// The credentials a request carried in `wst:IssuedTokens`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuedTokens {
    tokens: Vec<UsernameToken>,
}

fn invalid_parameter(why: String, detail: Option<&'static str>) -> Problem {
    Problem::Wsman(WsmanFault::sender(
        "InvalidParameter",
        format!("An operation parameter is not valid: {why}"),
        detail,
    ))
}

fn unsupported(why: String, detail: &'static str) -> Problem {
    Problem::Wsman(WsmanFault::sender(
        "UnsupportedFeature",
        format!("The requested feature is not supported: {why}"),
        Some(detail),
    ))
}

/// The first child of `node` named `local` in one of `namespaces`.
fn child_in<'a, 'input>(
    node: Node<'a, 'input>,
    namespaces: &[&str],
    local: &str,
) -> Option<Node<'a, 'input>> {
    xml::elements(node).find(|child| {
        child.tag_name().name() == local
            && child
                .tag_name()
                .namespace()
                .is_some_and(|ns| namespaces.contains(&ns))
    })
}

/// A credential's text: trimmed of nothing (a password may begin with a space), bounded, and
/// free of control characters (it goes into an HTTP header).
fn credential(node: Node<'_, '_>, what: &str) -> Result<String, Problem> {
    let text: String = node
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    if text.chars().count() > MAX_CREDENTIAL_CHARS || text.chars().any(char::is_control) {
        return Err(invalid_parameter(
            format!("the {what} in wst:IssuedTokens cannot be sent in an HTTP header"),
            None,
        ));
    }
    Ok(text)
}

impl IssuedTokens {
    /// Reads the `wst:IssuedTokens` among a request's header blocks.
    pub fn read<'a, 'input: 'a>(
        blocks: impl Iterator<Item = Node<'a, 'input>>,
    ) -> Result<IssuedTokens, Problem> {
        let mut issued = blocks.filter(|block| {
            understood(
                block.tag_name().namespace().unwrap_or(""),
                block.tag_name().name(),
            )
        });
        let Some(header) = issued.next() else {
            return Ok(IssuedTokens::default());
        };
        if issued.next().is_some() {
            return Err(Problem::InvalidHeader(
                "wst:IssuedTokens appears more than once".into(),
            ));
        }
        let trust = header.tag_name().namespace().unwrap_or(WST_NS);
        let mut tokens = Vec::new();
        for response in xml::children_named(header, trust, "RequestSecurityTokenResponse") {
            let token_type = xml::single_child(response, trust, "TokenType")?
                .map(xml::trimmed_text)
                .unwrap_or_default();
            if !USERNAME_TOKEN_TYPES.contains(&token_type.as_str()) {
                return Err(unsupported(
                    format!(
                        "herald takes a user name token for the event sink, not a security \
                         token of type '{}'",
                        token_type.chars().take(120).collect::<String>()
                    ),
                    "FormatSecurityToken",
                ));
            }
            let username_token = xml::single_child(response, trust, "RequestedSecurityToken")?
                .map(|requested| xml::single_child(requested, WSSE_NS, "UsernameToken"))
                .transpose()?
                .flatten()
                .ok_or_else(|| {
                    invalid_parameter(
                        "a user name token response holds no wsse:UsernameToken".into(),
                        None,
                    )
                })?;
            let username = match xml::single_child(username_token, WSSE_NS, "Username")? {
                Some(node) => credential(node, "user name")?.trim().to_owned(),
                None => String::new(),
            };
            if username.is_empty() {
                return Err(invalid_parameter(
                    "the wsse:UsernameToken has no wsse:Username".into(),
                    None,
                ));
            }
            let password = match xml::single_child(username_token, WSSE_NS, "Password")? {
                None => None,
                Some(node) => {
                    let kind = node.attribute("Type").map_or(PASSWORD_TEXT, str::trim);
                    if kind != PASSWORD_TEXT {
                        return Err(unsupported(
                            "herald needs the sink's password as PasswordText to authenticate \
                             with it, not a password digest"
                                .into(),
                            "FormatSecurityToken",
                        ));
                    }
                    Some(Secret::new(credential(node, "password")?))
                }
            };
            let applies_to = child_in(response, &WSP_NAMESPACES, "AppliesTo")
                .and_then(|applies| {
                    applies.descendants().find(|n| {
                        n.is_element()
                            && n.tag_name().name() == "Address"
                            && n.tag_name()
                                .namespace()
                                .and_then(WsaVersion::from_ns)
                                .is_some()
                    })
                })
                .map(xml::trimmed_text);
            tokens.push(UsernameToken {
                applies_to,
                username,
                password,
            });
        }
        Ok(IssuedTokens { tokens })
    }

    /// Whether the request carried any credentials.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// How herald is to authenticate to a subscription's sink: its `wsman:Auth` in `delivery` with
/// the credentials for `notify_to`, the password (in the clear, for the engine to seal) apart.
pub fn sink_auth(
    delivery: Node<'_, '_>,
    mode: WsmanMode,
    notify_to: &EndpointRef,
    issued: &IssuedTokens,
) -> Result<Option<(SinkAuth, Option<Secret>)>, Problem> {
    let Some(auth) = xml::single_child(delivery, WSMAN_NS, "Auth")? else {
        if !issued.is_empty() {
            return Err(invalid_parameter(
                "wst:IssuedTokens carries credentials for the event sink, but wse:Delivery has \
                 no wsman:Auth saying how to use them"
                    .into(),
                None,
            ));
        }
        return Ok(None);
    };
    let uri = auth.attribute("Profile").map(str::trim).unwrap_or("");
    let Some((profile, https)) = AuthProfile::from_uri(uri) else {
        return Err(unsupported(
            format!(
                "herald does not deliver with the security profile '{}'; it delivers with {}",
                uri.chars().take(120).collect::<String>(),
                profiles::SUPPORTED.join(", ")
            ),
            "AuthorizationMode",
        ));
    };
    if mode == WsmanMode::Pull {
        return Err(invalid_parameter(
            "wsman:Auth names how to authenticate to the event sink, and nothing is delivered \
             in Pull mode"
                .into(),
            None,
        ));
    }
    let address = notify_to.address.as_str();
    let is_https = address
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
    if https && !is_https {
        return Err(unsupported(
            format!("the security profile {uri} needs an https NotifyTo address"),
            "InsecureAddress",
        ));
    }
    let mut mine = Vec::new();
    for token in &issued.tokens {
        match &token.applies_to {
            Some(other) if other != address => {
                return Err(invalid_parameter(
                    "the credentials in wst:IssuedTokens apply to another address than \
                     NotifyTo's; herald authenticates to NotifyTo only"
                        .into(),
                    Some("InvalidAddress"),
                ));
            }
            _ => mine.push(token),
        }
    }
    if mine.len() > 1 {
        return Err(invalid_parameter(
            "wst:IssuedTokens holds more than one user name token for NotifyTo".into(),
            None,
        ));
    }
    let token = mine.pop();
    let Some(scheme) = profile.http_scheme() else {
        if token.is_some() {
            return Err(invalid_parameter(
                format!(
                    "the security profile {uri} authenticates with herald's certificate alone \
                     and takes no user name token"
                ),
                None,
            ));
        }
        return Ok(Some((
            SinkAuth {
                profile,
                username: None,
                password: None,
            },
            None,
        )));
    };
    let Some(UsernameToken {
        username,
        password: Some(password),
        ..
    }) = token.cloned()
    else {
        return Err(invalid_parameter(
            format!(
                "the security profile {uri} needs the event sink's user name and password: a \
                 wst:IssuedTokens header whose wsse:UsernameToken applies to the NotifyTo \
                 address"
            ),
            None,
        ));
    };
    if scheme == crate::domain::wsman::HttpScheme::Basic && username.contains(':') {
        return Err(invalid_parameter(
            "an HTTP Basic user name cannot contain ':'".into(),
            None,
        ));
    }
    Ok(Some((
        SinkAuth {
            profile,
            username: Some(username),
            password: None,
        },
        Some(password),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe_parts(headers: &str, delivery_extra: &str) -> (IssuedTokens, String) {
        let text = format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wst="{WST_NS}" xmlns:wsse="{WSSE_NS}" xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="{WSMAN_NS}"><s:Header>{headers}</s:Header><s:Body><Delivery>{delivery_extra}</Delivery></s:Body></s:Envelope>"#
        );
        let doc = roxmltree::Document::parse(&text).unwrap();
        let header = doc
            .descendants()
            .find(|n| n.has_tag_name(("http://www.w3.org/2003/05/soap-envelope", "Header")))
            .unwrap();
        (
            IssuedTokens::read(xml::elements(header)).unwrap(),
            text.clone(),
        )
    }

    fn token(applies_to: &str, password: &str) -> String {
        format!(
            r#"<wst:IssuedTokens s:mustUnderstand="true"><wst:RequestSecurityTokenResponse><wst:TokenType>{}</wst:TokenType><wst:RequestedSecurityToken><wsse:UsernameToken><wsse:Username> user </wsse:Username>{password}</wsse:UsernameToken></wst:RequestedSecurityToken><wsp:AppliesTo><a:EndpointReference><a:Address>{applies_to}</a:Address></a:EndpointReference></wsp:AppliesTo></wst:RequestSecurityTokenResponse></wst:IssuedTokens>"#,
            USERNAME_TOKEN_TYPES[0]
        )
    }

    fn auth_of(
        headers: &str,
        auth: &str,
        notify_to: &str,
    ) -> Result<Option<(SinkAuth, Option<Secret>)>, Problem> {
        let (issued, text) = subscribe_parts(headers, auth);
        let doc = roxmltree::Document::parse(&text).unwrap();
        let delivery = doc
            .descendants()
            .find(|n| n.has_tag_name("Delivery"))
            .unwrap();
        let notify_to = EndpointRef {
            address: notify_to.into(),
            reference_parameters: Vec::new(),
            reference_properties: Vec::new(),
        };
        sink_auth(delivery, WsmanMode::Push, &notify_to, &issued)
    }

    fn fault_of(
        result: Result<Option<(SinkAuth, Option<Secret>)>, Problem>,
    ) -> (String, Option<String>) {
        match result {
            Err(Problem::Wsman(fault)) => {
                (fault.subcode.to_owned(), fault.detail.map(str::to_owned))
            }
            other => panic!("not a WS-Man fault: {other:?}"),
        }
    }

    #[test]
    fn credentials_for_notify_to_go_with_the_profile() {
        let sink = "http://sink.example/events";
        let auth = format!(r#"<w:Auth Profile="{}"/>"#, profiles::HTTP_DIGEST);
        let (found, password) = auth_of(
            &token(sink, "<wsse:Password> p w </wsse:Password>"),
            &auth,
            sink,
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.profile, AuthProfile::Digest);
        assert_eq!(found.username.as_deref(), Some("user"));
        assert_eq!(
            password.unwrap().expose(),
            " p w ",
            "a password is taken as written"
        );
        assert_eq!(auth_of("", "", sink).unwrap(), None);
        let mutual = format!(r#"<w:Auth Profile="{}"/>"#, profiles::HTTPS_MUTUAL);
        let (found, password) = auth_of("", &mutual, "https://sink.example/")
            .unwrap()
            .unwrap();
        assert_eq!((found.profile, password), (AuthProfile::Mutual, None));
    }

    #[test]
    fn each_refusal_has_its_fault() {
        let sink = "http://sink.example/events";
        let basic = format!(r#"<w:Auth Profile="{}"/>"#, profiles::HTTP_BASIC);
        let with_password = token(sink, "<wsse:Password>pw</wsse:Password>");
        type Case<'a> = (String, String, &'a str, (&'a str, Option<&'a str>));
        let cases: Vec<Case> = vec![
            (
                String::new(),
                r#"<w:Auth Profile="http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/spnego-kerberos"/>"#.into(),
                sink,
                ("UnsupportedFeature", Some("AuthorizationMode")),
            ),
            (String::new(), basic.clone(), sink, ("InvalidParameter", None)),
            (
                token(sink, ""),
                basic.clone(),
                sink,
                ("InvalidParameter", None),
            ),
            (
                with_password.clone(),
                format!(r#"<w:Auth Profile="{}"/>"#, profiles::HTTPS_BASIC),
                sink,
                ("UnsupportedFeature", Some("InsecureAddress")),
            ),
            (
                token("http://elsewhere.example/", "<wsse:Password>pw</wsse:Password>"),
                basic.clone(),
                sink,
                ("InvalidParameter", Some("InvalidAddress")),
            ),
            (with_password.clone(), String::new(), sink, ("InvalidParameter", None)),
            (
                token("https://sink.example/", "<wsse:Password>pw</wsse:Password>"),
                format!(r#"<w:Auth Profile="{}"/>"#, profiles::HTTPS_MUTUAL),
                "https://sink.example/",
                ("InvalidParameter", None),
            ),
        ];
        for (headers, auth, notify_to, expected) in cases {
            let (subcode, detail) = fault_of(auth_of(&headers, &auth, notify_to));
            assert_eq!(
                (subcode.as_str(), detail.as_deref()),
                expected,
                "{headers} {auth}"
            );
        }
        let digest_password = token(
            sink,
            r#"<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">x</wsse:Password>"#,
        );
        let text = format!(
            r#"<h xmlns:s="x" xmlns:wst="{WST_NS}" xmlns:wsse="{WSSE_NS}" xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing">{digest_password}{}</h>"#,
            token(sink, "")
                .replace(
                    USERNAME_TOKEN_TYPES[0],
                    "http://schemas.dmtf.org/wbem/wsman/1/wsman/token/certificateThumbprint"
                )
                .replace("IssuedTokens s:mustUnderstand=\"true\"", "IssuedTokens")
        );
        let doc = roxmltree::Document::parse(&text).unwrap();
        for block in xml::elements(doc.root_element()) {
            match IssuedTokens::read(std::iter::once(block)) {
                Err(Problem::Wsman(fault)) => {
                    assert_eq!(
                        (fault.subcode, fault.detail),
                        ("UnsupportedFeature", Some("FormatSecurityToken"))
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
