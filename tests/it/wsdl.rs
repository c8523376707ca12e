//! The WSDL and schemas herald serves per source: well-formed, concrete (herald's addresses),
//! every schema they name served; and a real WSDL consumer (Python zeep) generating a client
//! from each WSDL and driving Subscribe → GetStatus → Renew → Unsubscribe through it over SOAP
//! 1.1 and 1.2, checked against herald's JSON API and a real sink.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use crate::sink::Sink;

/// The `?wsdl` forms, with the eventing version (as the JSON API names it) and its addressing.
pub const WSDLS: [(&str, &str, &str); 3] = [
    ("?wsdl", "2011", "2005/08"),
    ("?wsdl=2004-08", "2004/08", "2004/08"),
    ("?wsdl=2004-01", "2004/01", "2003/03"),
];

const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// GET `url`: status, Content-Type and body.
pub async fn get(server: &TestServer, url: &str) -> (u16, String, String) {
    let response = server.client.get(url).send().await.expect("GET");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

#[tokio::test]
async fn every_served_wsdl_and_schema_is_well_formed_concrete_and_complete() {
    let server = TestServer::start().await;
    let source_url = server.url("/eventing/default");
    let mut schemas = BTreeSet::new();
    for (query, version, _) in WSDLS {
        let (status, content_type, text) = get(&server, &format!("{source_url}{query}")).await;
        assert_eq!(status, 200, "{query}: {text}");
        assert_eq!(content_type, "text/xml; charset=utf-8", "{query}");
        let document = roxmltree::Document::parse(&text)
            .unwrap_or_else(|err| panic!("{query} is not well-formed: {err}"));
        let locations: Vec<&str> = document
            .descendants()
            .filter(|n| n.tag_name().name() == "address")
            .filter_map(|n| n.attribute("location"))
            .collect();
        assert!(
            locations.contains(&source_url.as_str()),
            "{query}: {locations:?}"
        );
        if version != "2004/01" {
            let manager = format!("{source_url}/subscriptions");
            assert!(
                locations.contains(&manager.as_str()),
                "{query}: {locations:?}"
            );
        }
        // A port per binding per endpoint: SOAP 1.1 and 1.2.
        let ports = document
            .descendants()
            .filter(|n| n.tag_name().name() == "port")
            .count();
        assert_eq!(ports, if version == "2004/01" { 2 } else { 4 }, "{query}");
        schemas.extend(
            document
                .descendants()
                .filter_map(|n| n.attribute("schemaLocation"))
                .map(str::to_owned),
        );
    }
    // Every schema named, and every schema those name in turn, is served and qualified.
    let mut seen = BTreeSet::new();
    while let Some(location) = schemas.pop_first() {
        if !seen.insert(location.clone()) {
            continue;
        }
        assert!(
            location.starts_with(&format!("{source_url}?xsd=")),
            "{location}"
        );
        let (status, content_type, text) = get(&server, &location).await;
        assert_eq!(status, 200, "{location}: {text}");
        assert_eq!(content_type, "text/xml; charset=utf-8", "{location}");
        let document = roxmltree::Document::parse(&text)
            .unwrap_or_else(|err| panic!("{location} is not well-formed: {err}"));
        let root = document.root_element();
        assert!(root.has_tag_name((XSD_NS, "schema")), "{location}");
        if root.attribute("targetNamespace") != Some(XML_NS) {
            assert_eq!(
                root.attribute("elementFormDefault"),
                Some("qualified"),
                "{location}"
            );
        }
        schemas.extend(
            document
                .descendants()
                .filter_map(|n| n.attribute("schemaLocation"))
                .map(str::to_owned),
        );
    }
    assert!(seen.len() >= 7, "{seen:?}");

    // Precise refusals.
    for (path, status, title) in [
        ("/eventing/nowhere?wsdl", 404, "Unknown source"),
        (
            "/eventing/default?wsdl=2004",
            400,
            "Unknown WS-Eventing version",
        ),
        ("/eventing/default?xsd=nothing", 404, "Unknown schema"),
        ("/eventing/default", 400, "Bad description request"),
        (
            "/eventing/default?wsdl&xsd=xml",
            400,
            "Bad description request",
        ),
    ] {
        let (got, content_type, text) = get(&server, &server.url(path)).await;
        assert_eq!(got, status, "{path}: {text}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        let problem: serde_json::Value = serde_json::from_str(&text).expect("problem JSON");
        assert_eq!(problem["title"], title, "{path}");
    }
}

/// Whether zeep can be imported.
fn zeep_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import zeep"])
        .output()
        .is_ok_and(|output| output.status.success());
    tool_available(found, "zeep", "python3 -m pip install zeep")
}

/// `found`, or else: a failure when `HERALD_REQUIRE_TOOLS=1` (CI installs every tool), and
/// otherwise a loud skip on stderr. `how` is the install hint.
pub fn tool_available(found: bool, tool: &str, how: &str) -> bool {
    if found {
        return true;
    }
    if std::env::var("HERALD_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{tool} is not installed and HERALD_REQUIRE_TOOLS=1: install it with `{how}`");
    }
    eprintln!("\n\n*** SKIPPED: {tool} is not installed ({how}) ***\n");
    false
}

/// Runs the zeep client on one WSDL over one SOAP version; its steps as JSON objects.
async fn run_zeep(
    wsdl: String,
    soap: &'static str,
    notify_to: String,
    end_to: String,
) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wsdl/zeep_client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                script,
                &wsdl,
                "--soap",
                soap,
                "--notify-to",
                &notify_to,
                "--end-to",
                &end_to,
            ])
            .output()
            .expect("run python3")
    })
    .await
    .expect("zeep client");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "zeep client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_zeep_generates_from_each_wsdl_subscribes_renews_and_unsubscribes() {
    if !zeep_available() {
        return;
    }
    let server = TestServer::start().await;
    let sink = Sink::start().await;
    let source_url = server.url("/eventing/default");
    let mut ends = 0;
    for (query, version, addressing) in WSDLS {
        for soap in ["11", "12"] {
            let steps = run_zeep(
                format!("{source_url}{query}"),
                soap,
                sink.url("notify"),
                sink.url("end"),
            )
            .await;
            assert_session(
                &server,
                &sink,
                &steps,
                (query, version, addressing),
                soap,
                &mut ends,
            )
            .await;
        }
    }
    assert_eq!(server.active("default").await, 0);
}

/// Checks the steps a generated client printed for one session (Subscribe → GetStatus, where
/// the version has it → Renew → Unsubscribe on `wsdl`'s source over SOAP `soap`, "11" or "12")
/// against herald's JSON API and, for 2004/01, the SubscriptionEnd the sink heard (`ends`
/// counts those so far).
pub async fn assert_session(
    server: &TestServer,
    sink: &Sink,
    steps: &[serde_json::Value],
    wsdl: (&str, &str, &str),
    soap: &str,
    ends: &mut usize,
) {
    let (query, version, addressing) = wsdl;
    let context = format!("{query} over SOAP {soap}");
    let source_url = server.url("/eventing/default");
    let names: Vec<&str> = steps.iter().filter_map(|s| s["step"].as_str()).collect();
    let expected: &[&str] = if version == "2004/01" {
        &["subscribe", "renew", "unsubscribe"]
    } else {
        &["subscribe", "get_status", "renew", "unsubscribe"]
    };
    assert_eq!(names, expected, "{context}");

    // Subscribe created a subscription in the WSDL's dialect, granted as asked.
    let subscribed = &steps[0];
    let id = subscribed["id"].as_str().expect("id");
    assert!(id.starts_with("uuid:"), "{context}: {id}");
    assert_eq!(subscribed["expires"], "PT10M", "{context}");
    if version != "2004/01" {
        assert_eq!(
            subscribed["manager"].as_str(),
            Some(format!("{source_url}/subscriptions").as_str()),
            "{context}"
        );
        let remaining = seconds(steps[1]["expires"].as_str().expect("status"));
        assert!(
            (590.0..=600.0).contains(&remaining),
            "{context}: {remaining}"
        );
    }
    // Renew changed the expiry.
    assert_eq!(steps[names.len() - 2]["expires"], "PT20M", "{context}");

    // Unsubscribe ended it, as herald's JSON API reports.
    let (status, _, text) = get(server, &server.url(&format!("/api/v1/subscriptions/{id}"))).await;
    assert_eq!(status, 200, "{context}: {text}");
    let view: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(view["status"], "ended", "{context}: {view}");
    assert_eq!(view["end_reason"], "unsubscribed", "{context}: {view}");
    assert_eq!(view["dialect"]["eventing"], version, "{context}: {view}");
    assert_eq!(
        view["dialect"]["addressing"], addressing,
        "{context}: {view}"
    );
    let soap_version = if soap == "11" { "1.1" } else { "1.2" };
    assert_eq!(view["dialect"]["soap"], soap_version, "{context}: {view}");
    assert_eq!(view["notify_to"], sink.url("notify"), "{context}");
    let lifetime = lifetime_seconds(&view);
    assert!(
        (1190.0..=1210.0).contains(&lifetime),
        "{context}: renewed to 20 minutes: {view}"
    );

    // 2004/01 reports every end to EndTo: the sink hears of the Unsubscribe.
    if version == "2004/01" {
        *ends += 1;
        let received = sink
            .wait_accepted("end", *ends, Duration::from_secs(10))
            .await;
        let last = received.last().expect("SubscriptionEnd");
        assert_eq!(last.text_of(WSE01, "Id").as_deref(), Some(id), "{context}");
        assert_eq!(
            last.text_of(WSE01, "Code").as_deref(),
            Some("wse:Unsubscribed"),
            "{context}"
        );
    }
}

/// Seconds between a subscription's creation and its expiry, from the JSON API's view.
fn lifetime_seconds(view: &serde_json::Value) -> f64 {
    let instant = |field: &str| -> jiff::Timestamp {
        view[field]
            .as_str()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("{field} in {view}"))
    };
    let span = instant("expires_at") - instant("created_at");
    span.total(jiff::Unit::Second).expect("seconds")
}
