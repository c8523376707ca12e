//! Invocation callbacks on two nodes (PostgreSQL): raises taken on either node, keys raised on
//! both at once named once, and every invocation called exactly once and its callback
//! delivered, whichever node claims it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::invocations::{Service, drain, invocation, raise};

/// Distinct keys raised, half on each node.
const KEYS: usize = 300;
/// Keys raised on both nodes at once.
const TWINS: usize = 30;

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn two_nodes_share_the_invocations_and_call_each_exactly_once() {
    let store = TestStore::new().await;
    assert!(
        store.is_postgres(),
        "several nodes need {DATABASE_VARIABLE} (PostgreSQL)"
    );
    let service = Service::start().await;
    let config = store.data_dir().join("invokers.toml");
    std::fs::write(
        &config,
        format!(
            "[cluster]\npoll_interval_ms = 200\n\n[invokers.shared]\nurl = \"{}/echo\"\nsoap = \"1.1\"\naction = \"urn:r:Order\"\nconcurrency = 8\n[invokers.shared.parameters]\ncallback_event = \"shared.done\"\n",
            service.url
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let processes: Vec<Process> = (0..2)
        .map(|n| {
            Process::start_with(
                &store,
                &["--config", &config, "--node-id", &format!("inv-{n}")],
            )
        })
        .collect();
    let servers: Vec<Arc<TestServer>> = processes.iter().map(|p| Arc::new(p.client())).collect();

    // Eight raisers per node; each twin key is raised on both nodes at the same moment.
    let mut raising = tokio::task::JoinSet::new();
    for (n, server) in servers.iter().enumerate() {
        for part in 0..8 {
            let server = server.clone();
            raising.spawn(async move {
                let mut answers = Vec::new();
                let keys = (part..KEYS).step_by(8).filter(|i| i % 2 == n);
                let twins = (part..TWINS).step_by(8).map(|i| KEYS + i);
                for i in keys.chain(twins) {
                    let body = json!({"key": format!("k{i}"), "payload": format!("<a xmlns=\"urn:a\">k{i}</a>")});
                    let (status, raised) = raise(&server, "shared", body).await;
                    assert!(status == 202 || status == 200, "{status} {raised}");
                    let id = raised["invocation_id"].as_str().unwrap().to_owned();
                    answers.push((format!("k{i}"), id, status == 202));
                }
                answers
            });
        }
    }
    let mut named: HashMap<String, Vec<(String, bool)>> = HashMap::new();
    while let Some(part) = raising.join_next().await {
        for (key, id, new) in part.unwrap() {
            named.entry(key).or_default().push((id, new));
        }
    }
    assert_eq!(named.len(), KEYS + TWINS);
    for (key, answers) in &named {
        let new = answers.iter().filter(|(_, new)| *new).count();
        assert_eq!(new, 1, "{key}: {answers:?}");
        assert!(
            answers.iter().all(|(id, _)| *id == answers[0].0),
            "{key}: {answers:?}"
        );
    }

    // Callbacks drained from both nodes: every invocation's, once.
    let count = KEYS + TWINS;
    let mut callbacks = Vec::new();
    for round in 0..60 {
        if callbacks.len() >= count {
            break;
        }
        let server = &servers[round % 2];
        callbacks.extend(
            drain(
                server,
                "inbound",
                count - callbacks.len(),
                Duration::from_secs(2),
            )
            .await,
        );
    }
    let ids: HashSet<&str> = callbacks
        .iter()
        .map(|m| m["correlation_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(callbacks.len(), count, "every invocation's callback, once");
    assert_eq!(ids, HashSet::from(["shared.done"]));
    let mut calls: HashMap<String, usize> = HashMap::new();
    for body in service.calls("echo") {
        let key = body.split("<a xmlns=\"urn:a\">").nth(1).unwrap();
        *calls
            .entry(key.split('<').next().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(calls.len(), count, "every invocation called");
    let twice: Vec<&String> = calls
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    assert!(twice.is_empty(), "called more than once: {twice:?}");
    // Each done, none taken over (both nodes lived throughout); the two nodes' counts of calls
    // add up to one per invocation.
    for answers in named.values() {
        let record = invocation(&servers[0], &answers[0].0).await;
        assert_eq!(
            (&record["state"], &record["resumed"]),
            (&json!("done"), &json!(0)),
            "{record}"
        );
    }
    let mut per_node = Vec::new();
    for server in &servers {
        let metrics = server.metrics().await;
        let called: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("herald_invocations_total{") && l.contains("invoker=\"shared\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        per_node.push(called as usize);
    }
    assert_eq!(
        per_node.iter().sum::<usize>(),
        count,
        "calls per node: {per_node:?}"
    );
    eprintln!("invocations called per node: {per_node:?}");
    drop(processes);
}
