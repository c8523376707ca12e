//! A quick measure of durable Subscribe throughput: starts herald in-process on loopback with a
//! temporary store, runs `CONCURRENCY` clients sending W3C 2011 Subscribe requests for
//! `SECONDS`, and prints requests per second and latency percentiles.
//!
//! `cargo run --release --example subscribe_load [CONCURRENCY] [SECONDS]`

use std::time::{Duration, Instant};

use herald::app::Application;
use herald::config::Config;

const SUBSCRIBE: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wse="http://www.w3.org/2011/03/ws-evt"><s:Header><wsa:Action>http://www.w3.org/2011/03/ws-evt/Subscribe</wsa:Action><wsa:MessageID>urn:uuid:6f0f5f3e-0000-4000-8000-000000000001</wsa:MessageID></s:Header><s:Body><wse:Subscribe><wse:Delivery><wse:NotifyTo><wsa:Address>http://127.0.0.1:9/sink</wsa:Address></wse:NotifyTo></wse:Delivery><wse:Expires>PT1H</wse:Expires></wse:Subscribe></s:Body></s:Envelope>"#;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.data_dir = dir.path().to_path_buf();
    config.log_level = "warn".into();
    config.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let application = Application::build(config).await.expect("herald starts");
    let url = format!(
        "http://{}/eventing/default",
        application.local_addr().unwrap()
    );
    tokio::spawn(application.run_until_stopped(std::future::pending()));

    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut failures = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("Content-Type", "application/soap+xml; charset=utf-8")
                        .body(SUBSCRIBE)
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(sent.elapsed());
                        }
                        _ => failures += 1,
                    }
                }
                (latencies, failures)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for worker in workers {
        let (l, f) = worker.await.expect("worker");
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        !latencies.is_empty(),
        "no Subscribe succeeded ({failures} failed)"
    );
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "subscribe: {} ok, {failures} failed in {elapsed:.1} s with {concurrency} clients: {:.0}/s, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap()
    );
}
