//! Callback contexts on several nodes (PostgreSQL): any node serves any instance, and kill -9
//! of the node delivering an instance's callbacks loses none that was acknowledged.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::contexts::Backend;
use crate::harness::*;
use crate::sink::Sink;

const CONTEXT_NS: &str = "http://schemas.microsoft.com/ws/2006/05/context";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
const WSA: &str = "http://www.w3.org/2005/08/addressing";

fn request(headers: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"{SOAP12}\" xmlns:a=\"{WSA}\"><s:Header><a:Action>urn:x:AddItem</a:Action>{headers}</s:Header><s:Body><AddItem xmlns=\"urn:x\"/></s:Body></s:Envelope>"
    )
}

async fn post(base: &TestServer, body: String) -> (u16, String) {
    let response = base
        .client
        .post(base.url("/contexts/cart"))
        .header("Content-Type", "application/soap+xml")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn queue(server: &TestServer, id: &str, n: u64) -> u16 {
    server
        .client
        .post(server.url(&format!("/api/v1/contexts/cart/instances/{id}/callbacks")))
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({
                "action": "urn:x:Shipped",
                "body": format!("<Shipped xmlns=\"urn:x\"><n>{n}</n></Shipped>"),
            })
            .to_string(),
        )
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn kill_9_of_the_node_delivering_callbacks_loses_none() {
    let store = TestStore::new().await;
    assert!(
        store.is_postgres(),
        "several nodes need {DATABASE_VARIABLE} (PostgreSQL)"
    );
    let backend = Backend::start().await;
    let sink = Sink::start().await;
    let config = store.data_dir().join("contexts.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\npoll_interval_ms = 200\n\n[contexts.cart]\nbackend = \"{}\"\nretry_initial = \"PT0.05S\"\nretry_max = \"PT0.2S\"\n",
            backend.url
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut processes: Vec<Process> = (0..2)
        .map(|n| {
            Process::start_with(
                &store,
                &["--config", &config, "--node-id", &format!("ctx-{n}")],
            )
        })
        .collect();
    let servers: Vec<TestServer> = processes.iter().map(Process::client).collect();

    // Node 0 mints the instance and stores its callback endpoint: node 0 delivers it.
    let callback = format!(
        "<CallbackContext xmlns=\"http://schemas.microsoft.com/ws/2008/02/context\"><CallbackEndpointReference><a:Address>{}</a:Address><a:ReferenceParameters><Context xmlns=\"{CONTEXT_NS}\"><Property name=\"instanceId\">client</Property></Context></a:ReferenceParameters></CallbackEndpointReference></CallbackContext>",
        sink.url("client")
    );
    let (status, text) = post(&servers[0], request(&callback)).await;
    assert_eq!(status, 200, "{text}");
    let document = roxmltree::Document::parse(&text).unwrap();
    let id = document
        .descendants()
        .find(|n| n.has_tag_name((CONTEXT_NS, "Property")))
        .and_then(|n| n.text())
        .unwrap()
        .to_owned();
    // Node 1 serves the same instance.
    let context = format!(
        "<Context xmlns=\"{CONTEXT_NS}\"><Property name=\"instanceId\">{id}</Property></Context>"
    );
    let (status, text) = post(&servers[1], request(&context)).await;
    assert_eq!(status, 200, "any node serves any instance: {text}");

    // Callbacks through both nodes; node 0 is killed a third of the way in.
    const TOTAL: u64 = 300;
    let mut acknowledged = Vec::new();
    let mut killed_at = None;
    for n in 0..TOTAL {
        if n == TOTAL / 3 {
            processes[0].kill();
            killed_at = Some(Instant::now());
        }
        let through = if killed_at.is_some() {
            1
        } else {
            (n % 2) as usize
        };
        if queue(&servers[through], &id, n).await == 202 {
            acknowledged.push(n);
        }
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(acknowledged.len() as u64 >= TOTAL * 2 / 3);
    let killed_at = killed_at.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let firsts = loop {
        let mut firsts: Vec<u64> = Vec::new();
        for received in sink.accepted("client") {
            let n: u64 = received.text_of("urn:x", "n").unwrap().parse().unwrap();
            if !firsts.contains(&n) {
                firsts.push(n);
            }
        }
        if acknowledged.iter().all(|n| firsts.contains(n)) {
            break firsts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged callbacks arrived",
            acknowledged.iter().filter(|n| firsts.contains(n)).count(),
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        firsts.windows(2).all(|w| w[0] < w[1]),
        "first arrivals in order: {firsts:?}"
    );
    let duplicates = sink.accepted_count("client") - firsts.len();
    let (status, instance): (u16, Value) = {
        let response = servers[1]
            .client
            .get(servers[1].url(&format!("/api/v1/contexts/cart/instances/{id}")))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            serde_json::from_str(&response.text().await.unwrap()).unwrap(),
        )
    };
    assert_eq!(status, 200);
    assert_eq!(
        instance["node"], "ctx-1",
        "the survivor took the instance over"
    );
    println!(
        "{} callbacks acknowledged, node killed after {:?}: lost 0, duplicates {duplicates}",
        acknowledged.len(),
        killed_at.elapsed()
    );
}
