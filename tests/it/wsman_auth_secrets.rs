//! A sink's password is a secret: sealed in the store (SQLite file or PostgreSQL row), opened
//! again after a restart with the same key, and never in herald's log (at trace level) or in an
//! API answer.

use std::time::Duration;

use base64::Engine as _;

use crate::auth_sink::{AuthSink, Demand};
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::wsman::{PUSH, send};

const TEST_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PASSWORD: &str = "Zebra-4711-never-shown";
const USER: &str = "collector";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// What must never be seen: the password, and the Basic token that carries it.
fn forbidden() -> [Vec<u8>; 2] {
    [
        PASSWORD.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(format!("{USER}:{PASSWORD}"))
            .into_bytes(),
    ]
}

fn assert_clean(what: &str, bytes: &[u8]) {
    for secret in forbidden() {
        assert!(
            !contains(bytes, &secret),
            "{what} holds the password: {}",
            String::from_utf8_lossy(&secret)
        );
    }
}

async fn subscribe(server: &TestServer, sink: &AuthSink, path: &str, profile: &str) -> String {
    let notify_to = sink.url(path);
    let headers = format!(
        r#"<wst:IssuedTokens xmlns:wst="http://schemas.xmlsoap.org/ws/2005/02/trust" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" s:mustUnderstand="true">
      <wst:RequestSecurityTokenResponse>
        <wst:TokenType>http://schemas.dmtf.org/wbem/wsman/1/wsman/token/userName</wst:TokenType>
        <wst:RequestedSecurityToken><wsse:UsernameToken><wsse:Username>{USER}</wsse:Username><wsse:Password>{PASSWORD}</wsse:Password></wsse:UsernameToken></wst:RequestedSecurityToken>
      </wst:RequestSecurityTokenResponse>
    </wst:IssuedTokens>"#
    );
    let body = format!(
        r#"<e:Subscribe><e:Delivery Mode="{PUSH}"><e:NotifyTo><a:Address>{notify_to}</a:Address></e:NotifyTo><w:Auth Profile="http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/{profile}"/></e:Delivery></e:Subscribe>"#
    );
    let reply = send(
        server,
        &server.url("/eventing/default"),
        "Subscribe",
        &headers,
        &body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.text_of(WSE08, "Identifier").expect("identifier")
}

/// Every byte the store keeps about subscriptions: the SQLite files, or each PostgreSQL
/// subscription row as JSON.
async fn stored(store: &TestStore) -> Vec<u8> {
    match store.database_url() {
        None => {
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(store.data_dir()).unwrap() {
                let path = entry.unwrap().path();
                if path
                    .file_name()
                    .is_some_and(|name| name != "credentials.key")
                {
                    bytes.extend(std::fs::read(path).unwrap());
                }
            }
            bytes
        }
        Some(url) => {
            use sqlx::Connection as _;
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT row_to_json(s)::text FROM subscriptions s")
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
            rows.into_iter()
                .flat_map(|(row,)| row.into_bytes())
                .collect()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_passwords_are_sealed_survive_a_restart_and_are_never_shown() {
    let store = TestStore::new().await;
    let sink = AuthSink::start().await;
    sink.demand("basic", Demand::Basic(USER, PASSWORD));
    sink.demand("digest", Demand::Digest(USER, PASSWORD, "SHA-256"));
    let start = || {
        let mut command = Process::command();
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args([
                "--allowed-networks",
                "127.0.0.0/8",
                "--lease-ttl-ms",
                "2000",
            ])
            .args(["--log-format", "json", "--log-level", "trace"])
            .args(store.args());
        if store.is_postgres() {
            // Every node sharing the database is given the same key.
            command.env("HERALD_CREDENTIALS_KEY", TEST_KEY);
        }
        Process::spawn(command)
    };
    let mut first = start();
    let server = first.client();
    let ids = [
        subscribe(&server, &sink, "basic", "http/basic").await,
        subscribe(&server, &sink, "digest", "http/digest").await,
    ];
    publish(&server, "default", TICK_ACTION, &tick(1)).await;
    for path in ["basic", "digest"] {
        sink.wait_accepted(path, 1, Duration::from_secs(15)).await;
    }

    // Not in what the API, the console and the command line show.
    for path in ids
        .iter()
        .map(|id| format!("/api/v1/subscriptions/{id}"))
        .chain(["/api/v1/overview".to_owned()])
    {
        let answer = server.client.get(server.url(&path)).send().await.unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{path}");
        let text = answer.text().await.unwrap();
        assert_clean(&path, text.as_bytes());
        assert!(!text.contains("sealed"), "{path}: {text}");
    }
    // Sealed in the store.
    let bytes = stored(&store).await;
    assert_clean("the store", &bytes);
    assert!(
        contains(&bytes, b"sealed_password"),
        "the store keeps the sealed form"
    );

    // The same key opens it after a restart (on PostgreSQL, on the node that takes over).
    let mut logs = first.log();
    first.kill();
    let second = start();
    let server = second.client();
    publish(&server, "default", TICK_ACTION, &tick(2)).await;
    for path in ["basic", "digest"] {
        sink.wait_accepted(path, 2, Duration::from_secs(30)).await;
    }
    logs.extend(second.log());
    assert!(
        logs.iter().any(|line| line.contains("delivery attempt")),
        "the log is at trace level: {} lines",
        logs.len()
    );
    for line in &logs {
        assert_clean("a log line", line.as_bytes());
    }
}
