//! The OpenAPI document at `/api/v1/openapi.json`: OpenAPI 3.1, every route of the JSON API in
//! it, and what herald answers matching it: schemathesis drives every operation against a
//! herald with a source, a context service, an invoker and its agents, and channels, and finds
//! no server error, no undocumented status, content type or body.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::contexts::context_service;
use crate::harness::*;
use crate::invocations::{invoker, with_invokers};

const TOKEN: &str = "openapi-test-token";

/// Every route of the JSON API, with its methods: a route added without a description in the
/// document fails the test (add it here and annotate its handler).
const ROUTES: &[(&str, &[&str])] = &[
    ("/api/v1/sources/{source}/events", &["post"]),
    ("/api/v1/sources/{source}/events/batch", &["post"]),
    ("/api/v1/subscriptions", &["get", "post"]),
    ("/api/v1/subscriptions/{id}", &["get", "patch", "delete"]),
    (
        "/api/v1/contexts/{service}/instances/{id}",
        &["get", "delete"],
    ),
    (
        "/api/v1/contexts/{service}/instances/{id}/callbacks",
        &["post"],
    ),
    ("/api/v1/invokers/{name}/events", &["post"]),
    ("/api/v1/invocations/{id}", &["get"]),
    ("/api/v1/invocations/{id}/retry", &["post"]),
    ("/api/v1/agents", &["get"]),
    ("/api/v1/overview", &["get"]),
    ("/api/v1/agents/{name}/receive", &["post"]),
    ("/api/v1/agents/{name}/ack", &["post"]),
    ("/api/v1/agents/{name}/nack", &["post"]),
    ("/api/v1/channels", &["post"]),
    ("/api/v1/channels/{token}", &["get", "delete"]),
    ("/api/v1/channels/{token}/renew", &["post"]),
    ("/channels/{token}", &["post"]),
    ("/channels/{token}/callback", &["post"]),
    ("/channels/{token}/notifications", &["get"]),
];

/// The routes the bearer token guards (the rest take the channel's token as capability).
fn protected(path: &str) -> bool {
    path.starts_with("/api/v1/")
        && !path.starts_with("/api/v1/channels/")
        && path != "/api/v1/openapi.json"
        || path == "/channels/{token}/callback"
}

async fn start() -> TestServer {
    TestServer::start_with(|config| {
        config.api_token = Some(TOKEN.into());
        config
            .contexts
            .push(context_service("cart", "http://127.0.0.1:9/cart"));
        with_invokers(
            config,
            vec![invoker("orders", "http://127.0.0.1:9/orders".into(), &[])],
            &["orders-in"],
        );
    })
    .await
}

async fn json(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

async fn document(server: &TestServer) -> Value {
    // Open: no token.
    let response = server
        .client
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("GET the document");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/json");
    json(response).await
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_route() {
    let server = start().await;
    let document = document(&server).await;
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or("")
            .starts_with("3.1."),
        "{}",
        document["openapi"]
    );
    let schemes = &document["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(schemes["type"], "http");
    assert_eq!(schemes["scheme"], "bearer");
    let paths = document["paths"].as_object().expect("paths");
    let mut described = 0;
    for (path, methods) in ROUTES {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not in the document"));
        for method in *methods {
            let operation = item
                .get(*method)
                .unwrap_or_else(|| panic!("{method} {path} is not in the document"));
            described += 1;
            let secured = operation["security"]
                .as_array()
                .is_some_and(|list| list.iter().any(|r| r.get("bearerAuth").is_some()));
            assert_eq!(secured, protected(path), "{method} {path}: security");
            let responses = operation["responses"].as_object().expect("responses");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let problem = response["content"]["application/problem+json"].is_object();
                    let channel =
                        path.starts_with("/channels/") && response.get("headers").is_some();
                    assert!(
                        problem || channel,
                        "{method} {path} {status}: not a problem"
                    );
                }
            }
            if secured {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
        }
    }
    // Nothing documented that the list does not know.
    let operations: usize = paths
        .values()
        .map(|item| {
            item.as_object().map_or(0, |o| {
                o.keys().filter(|k| k.as_str() != "parameters").count()
            })
        })
        .sum();
    assert_eq!(
        operations, described,
        "the document has operations the list lacks"
    );
    server.stop().await;
}

/// Whether schemathesis's `st` is installed; loud when not, fatal under HERALD_REQUIRE_TOOLS=1.
fn schemathesis_installed() -> bool {
    if Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
    {
        return true;
    }
    let how = "python3 -m pip install schemathesis";
    if std::env::var("HERALD_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("schemathesis is not installed and HERALD_REQUIRE_TOOLS=1: install it with `{how}`");
    }
    eprintln!("\n\n*** SKIPPED: schemathesis is not installed ({how}) ***\n");
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_document() {
    if !schemathesis_installed() {
        return;
    }
    let server = start().await;
    // Something to find: a published event, a webhook subscription, an open channel.
    let client = &server.client;
    let auth = format!("Bearer {TOKEN}");
    let published = client
        .post(server.url("/api/v1/sources/default/events?action=urn:a"))
        .header("authorization", &auth)
        .body("<e xmlns='urn:e'/>")
        .send()
        .await
        .expect("publish");
    assert_eq!(published.status(), 202);
    let made = client
        .post(server.url("/api/v1/subscriptions"))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"source": "default", "url": "http://127.0.0.1:9/hook"}).to_string(),
        )
        .send()
        .await
        .expect("subscribe");
    assert_eq!(made.status(), 201);
    let made: Value = json(made).await;
    let opened = client
        .post(server.url("/api/v1/channels"))
        .header("authorization", &auth)
        .send()
        .await
        .expect("open");
    assert_eq!(opened.status(), 201);
    let opened: Value = json(opened).await;
    let raised = client
        .post(server.url("/api/v1/invokers/orders/events"))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(serde_json::json!({"key": "k1", "payload": "<o xmlns='urn:o'/>"}).to_string())
        .send()
        .await
        .expect("raise");
    assert_eq!(raised.status(), 202);
    let raised: Value = json(raised).await;

    // The resources above named in the operations' paths, so that requests reach past the
    // lookups (each operation's other parameters are still generated).
    let report = tempfile::tempdir().expect("temporary directory");
    let config = format!(
        r#"
[[operations]]
include-path-regex = "^/api/v1/sources/"
parameters = {{ "path.source" = "default" }}

[[operations]]
include-path-regex = "^/api/v1/subscriptions/"
parameters = {{ "path.id" = "{subscription}" }}

[[operations]]
include-path-regex = "^/api/v1/contexts/"
parameters = {{ "path.service" = "cart" }}

[[operations]]
include-path-regex = "^/api/v1/invokers/"
parameters = {{ "path.name" = "orders" }}

[[operations]]
include-path-regex = "^/api/v1/invocations/"
parameters = {{ "path.id" = "{invocation}" }}

[[operations]]
include-path-regex = "^/api/v1/agents/"
parameters = {{ "path.name" = "orders-in" }}

[[operations]]
include-path-regex = "^(/api/v1)?/channels/"
parameters = {{ "path.token" = "{token}" }}
"#,
        subscription = made["id"].as_str().expect("id"),
        invocation = raised["invocation_id"].as_str().expect("invocation id"),
        token = opened["token"].as_str().expect("token"),
    );
    let config_file = report.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).expect("write the schemathesis configuration");

    let url = server.url("/api/v1/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("st")
            .args(["--no-color", "--config-file"])
            .arg(&config_file)
            .args(["run", &url])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args(["--max-examples", "20", "--seed", "1", "--workers", "2"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-time", "60", "--request-timeout", "40"])
            .args(["--suppress-health-check", "all"])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(report.path())
            .output()
            .expect("st runs")
    })
    .await
    .expect("schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{stdout}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    server.stop().await;
}
