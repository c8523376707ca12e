//! WS-Management sink authentication (`wsman:Auth`, DSP0226) end to end: real sinks on
//! loopback that demand HTTP Basic, HTTP Digest (a real challenge, the answer verified) and a
//! client certificate over TLS; a wrong password retried until DeliveryFailure, with the
//! SubscriptionEnd authenticated at NotifyTo's origin only; the password sealed in the store,
//! kept across a restart, and never in a log line or an API answer; each refusal's fault.

use std::time::Duration;

use base64::Engine as _;
use herald::config::Config;
use herald::delivery::retry::RetryPolicy;
use herald::domain::secret::Secret;

use crate::auth_sink::{AuthSink, Demand, Pki, challenges, nonces_answered};
use crate::delivery::wait_status;
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::Sink;
use crate::wsman::{PUSH, WSMAN, assert_wsman_fault, send};

/// A credentials key (base64 of the bytes 0–31), given to herald on PostgreSQL: nodes sharing a
/// database must be given one; SQLite makes its own.
const TEST_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WSMAN_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
const SECPROFILE: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/";
const USERNAME_TOKEN: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#UsernameToken";
const USER: &str = "collector";

/// The test configuration, with a credentials key on PostgreSQL.
fn keyed(store: &TestStore, config: &mut Config) {
    if store.is_postgres() {
        config.sink_security.credentials_key = Some(Secret::new(TEST_KEY));
    }
}

/// The `wst:IssuedTokens` header with a user name token applying to `applies_to`, as openwsman
/// sends it (mustUnderstand).
fn issued_tokens(token_type: &str, password: &str, applies_to: &str) -> String {
    format!(
        r#"<wst:IssuedTokens xmlns:wst="http://schemas.xmlsoap.org/ws/2005/02/trust" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy" s:mustUnderstand="true">
      <wst:RequestSecurityTokenResponse>
        <wst:TokenType>{token_type}</wst:TokenType>
        <wst:RequestedSecurityToken>
          <wsse:UsernameToken><wsse:Username>{USER}</wsse:Username><wsse:Password>{password}</wsse:Password></wsse:UsernameToken>
        </wst:RequestedSecurityToken>
        <wsp:AppliesTo><a:EndpointReference><a:Address>{applies_to}</a:Address></a:EndpointReference></wsp:AppliesTo>
      </wst:RequestSecurityTokenResponse>
    </wst:IssuedTokens>"#
    )
}

fn credentials(password: &str, applies_to: &str) -> String {
    issued_tokens(USERNAME_TOKEN, password, applies_to)
}

/// A WS-Man Push Subscribe to `notify_to` with `wsman:Auth Profile="secprofile/{profile}"`.
fn subscribe_body(notify_to: &str, end_to: Option<&str>, profile: Option<&str>) -> String {
    let end_to = end_to
        .map(|url| format!("<e:EndTo><a:Address>{url}</a:Address></e:EndTo>"))
        .unwrap_or_default();
    let auth = profile
        .map(|profile| format!(r#"<w:Auth Profile="{SECPROFILE}{profile}"/>"#))
        .unwrap_or_default();
    format!(
        r#"<e:Subscribe>{end_to}
      <e:Delivery Mode="{PUSH}">
        <e:NotifyTo><a:Address>{notify_to}</a:Address></e:NotifyTo>
        {auth}
      </e:Delivery>
      <e:Expires>PT600S</e:Expires>
    </e:Subscribe>"#
    )
}

async fn subscribe(server: &TestServer, headers: &str, body: &str) -> Reply {
    send(
        server,
        &server.url("/eventing/default"),
        "Subscribe",
        headers,
        body,
    )
    .await
}

/// Subscribes and returns the subscription's identifier.
async fn subscribed(server: &TestServer, headers: &str, body: &str) -> String {
    let reply = subscribe(server, headers, body).await;
    assert_eq!(reply.status, 200, "Subscribe refused: {}", reply.text);
    reply
        .text_of(WSE08, "Identifier")
        .unwrap_or_else(|| panic!("no identifier: {}", reply.text))
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn basic_and_digest_sinks_get_their_credentials() {
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, |config| keyed(&store, config)).await;
    let sink = AuthSink::start().await;
    let cases = [
        (
            "basic",
            "http/basic",
            Demand::Basic(USER, "s3cret: with a colon"),
        ),
        (
            "digest",
            "http/digest",
            Demand::Digest(USER, "d1gest pass", "SHA-256"),
        ),
        (
            "digest-md5",
            "http/digest",
            Demand::Digest(USER, "md5 pass", "MD5"),
        ),
    ];
    for (path, profile, demand) in &cases {
        let password = match demand {
            Demand::Basic(_, password) | Demand::Digest(_, password, _) => *password,
            Demand::Nothing => unreachable!(),
        };
        sink.demand(path, demand.clone());
        subscribed(
            &server,
            &credentials(password, &sink.url(path)),
            &subscribe_body(&sink.url(path), None, Some(profile)),
        )
        .await;
    }
    for n in 1..=3 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    let within = Duration::from_secs(15);
    let seen = sink.wait_accepted("basic", 3, within).await;
    assert_eq!(
        seen.len(),
        3,
        "Basic goes with every request, never challenged"
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref()
                == Some(basic(USER, "s3cret: with a colon").as_str())),
        "{seen:#?}"
    );
    for path in ["digest", "digest-md5"] {
        let seen = sink.wait_accepted(path, 3, within).await;
        assert_eq!(
            challenges(&seen),
            1,
            "{path}: one challenge, its nonce then used again: {seen:#?}"
        );
        assert_eq!(
            seen[0].authorization, None,
            "the first request is challenged"
        );
        let counts: Vec<u32> = seen
            .iter()
            .filter(|s| s.status == 202)
            .filter_map(|s| s.nc)
            .collect();
        assert_eq!(counts, [1, 2, 3], "{path}: the nonce count goes up");
        assert_eq!(nonces_answered(&seen).len(), 1);
        assert!(
            seen.iter()
                .filter(|s| s.status == 202)
                .all(|s| s.body.contains(":tick "))
        );
    }
}

#[tokio::test]
async fn a_wrong_password_is_retried_until_delivery_failure() {
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, |config| {
        keyed(&store, config);
        for source in &mut config.sources {
            source.retry = RetryPolicy {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(100),
                give_up_after: Duration::from_millis(800),
                ..RetryPolicy::default()
            };
        }
    })
    .await;
    let sink = AuthSink::start().await;
    let elsewhere = Sink::start().await;
    sink.demand("guarded", Demand::Basic(USER, "right"));
    sink.demand("guarded-digest", Demand::Digest(USER, "right", "SHA-256"));
    // EndTo at NotifyTo's origin gets the credentials; EndTo elsewhere does not.
    let basic_id = subscribed(
        &server,
        &credentials("wrong", &sink.url("guarded")),
        &subscribe_body(
            &sink.url("guarded"),
            Some(&sink.url("guarded-end")),
            Some("http/basic"),
        ),
    )
    .await;
    let elsewhere_id = subscribed(
        &server,
        &credentials("wrong", &sink.url("guarded")),
        &subscribe_body(
            &sink.url("guarded"),
            Some(&elsewhere.url("elsewhere-end")),
            Some("http/basic"),
        ),
    )
    .await;
    let digest_id = subscribed(
        &server,
        &credentials("wrong", &sink.url("guarded-digest")),
        &subscribe_body(&sink.url("guarded-digest"), None, Some("http/digest")),
    )
    .await;
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    for id in [&basic_id, &elsewhere_id, &digest_id] {
        let status = wait_status(&server, id, Duration::from_secs(20), |s| {
            s["status"] == "ended"
        })
        .await;
        assert_eq!(status["end_reason"], "delivery_failure", "{status}");
    }
    let seen = sink.seen("guarded");
    assert!(seen.len() >= 2, "retried: {seen:#?}");
    assert!(
        seen.iter().all(|s| s.status == 401
            && s.authorization.as_deref() == Some(basic(USER, "wrong").as_str())),
        "{seen:#?}"
    );
    let seen = sink.seen("guarded-digest");
    assert!(
        challenges(&seen) >= 4,
        "each attempt answers a challenge and is refused: {seen:#?}"
    );
    assert!(seen.iter().all(|s| s.status == 401));
    assert!(seen.iter().any(|s| {
        s.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Digest "))
    }));

    let end = sink
        .wait_accepted("guarded-end", 1, Duration::from_secs(15))
        .await;
    assert!(end[0].body.contains("SubscriptionEnd") && end[0].body.contains("DeliveryFailure"));
    assert_eq!(
        end[0].authorization.as_deref(),
        Some(basic(USER, "wrong").as_str()),
        "SubscriptionEnd to NotifyTo's origin is authenticated as the notifications are"
    );
    let end = elsewhere
        .wait_accepted("elsewhere-end", 1, Duration::from_secs(15))
        .await;
    assert!(
        end[0].headers.get("authorization").is_none(),
        "credentials never go to another origin"
    );
}

#[tokio::test]
async fn mutual_profiles_present_heralds_client_certificate() {
    let pki = Pki::new();
    let sink = AuthSink::start_tls(&pki).await;
    assert!(
        pki.refused_without_certificate(&sink.url("m")).await,
        "the TLS sink takes only clients with a certificate from its CA"
    );
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, |config| {
        keyed(&store, config);
        config.sink_security.ca_certificates = Some(pki.file("ca.pem"));
        config.sink_security.client_certificate = Some(pki.file("client.pem"));
        config.sink_security.client_key = Some(pki.file("client.key"));
    })
    .await;
    sink.demand("mb", Demand::Basic(USER, "tls basic"));
    sink.demand("md", Demand::Digest(USER, "tls digest", "SHA-256"));
    subscribed(
        &server,
        "",
        &subscribe_body(&sink.url("m"), None, Some("https/mutual")),
    )
    .await;
    subscribed(
        &server,
        &credentials("tls basic", &sink.url("mb")),
        &subscribe_body(&sink.url("mb"), None, Some("https/mutual/basic")),
    )
    .await;
    subscribed(
        &server,
        &credentials("tls digest", &sink.url("md")),
        &subscribe_body(&sink.url("md"), None, Some("https/mutual/digest")),
    )
    .await;
    for n in 1..=2 {
        publish(&server, "default", TICK_ACTION, &tick(n)).await;
    }
    let within = Duration::from_secs(15);
    let seen = sink.wait_accepted("m", 2, within).await;
    assert!(seen.iter().all(|s| s.authorization.is_none()));
    let seen = sink.wait_accepted("mb", 2, within).await;
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let seen = sink.wait_accepted("md", 2, within).await;
    assert_eq!(challenges(&seen), 1, "{seen:#?}");
}

#[tokio::test]
async fn sink_auth_refusals_have_their_faults() {
    let store = TestStore::new().await;
    let server = TestServer::start_in(&store, |_| {}).await;
    let sink = "http://127.0.0.1:9/events";
    let secure = "https://127.0.0.1:9/events";
    let cases: [(String, String, &str, Option<&str>); 7] = [
        // A profile herald does not deliver with.
        (
            String::new(),
            subscribe_body(sink, None, Some("http/spnego-kerberos")),
            "UnsupportedFeature",
            Some("AuthorizationMode"),
        ),
        // Basic without credentials.
        (
            String::new(),
            subscribe_body(sink, None, Some("http/basic")),
            "InvalidParameter",
            None,
        ),
        // An https profile with an http NotifyTo.
        (
            credentials("pw", sink),
            subscribe_body(sink, None, Some("https/digest")),
            "UnsupportedFeature",
            Some("InsecureAddress"),
        ),
        // Credentials for another address.
        (
            credentials("pw", "http://127.0.0.1:10/other"),
            subscribe_body(sink, None, Some("http/basic")),
            "InvalidParameter",
            Some("InvalidAddress"),
        ),
        // A token herald cannot use.
        (
            issued_tokens(
                "http://schemas.dmtf.org/wbem/wsman/1/wsman/token/certificateThumbprint",
                "pw",
                sink,
            ),
            subscribe_body(sink, None, Some("http/basic")),
            "UnsupportedFeature",
            Some("FormatSecurityToken"),
        ),
        // Credentials, and no wsman:Auth to use them with.
        (
            credentials("pw", sink),
            subscribe_body(sink, None, None),
            "InvalidParameter",
            None,
        ),
        // A mutual profile, and herald has no client certificate.
        (
            String::new(),
            subscribe_body(secure, None, Some("https/mutual")),
            "UnsupportedFeature",
            Some("AuthorizationMode"),
        ),
    ];
    for (headers, body, subcode, detail) in cases {
        let reply = subscribe(&server, &headers, &body).await;
        assert_wsman_fault(&reply, (WSMAN, subcode), WSMAN_FAULT, detail);
    }
    // DMTF's own user name token type is taken as well as WS-Security's.
    let reply = subscribe(
        &server,
        &issued_tokens(
            "http://schemas.dmtf.org/wbem/wsman/1/wsman/token/userName",
            "pw",
            sink,
        ),
        &subscribe_body(sink, None, Some("http/basic")),
    )
    .await;
    if store.is_postgres() {
        // No credentials key: PostgreSQL nodes cannot keep a password.
        assert_wsman_fault(
            &reply,
            (WSMAN, "UnsupportedFeature"),
            WSMAN_FAULT,
            Some("AuthorizationMode"),
        );
        assert!(
            reply.fault().reason.contains("cannot keep credentials"),
            "{}",
            reply.text
        );
    } else {
        // SQLite made its key beside the database, readable by herald's user alone.
        assert_eq!(reply.status, 200, "{}", reply.text);
        let key = store.data_dir().join("credentials.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }
    assert_eq!(
        server.active("default").await,
        u64::from(!store.is_postgres())
    );
}
