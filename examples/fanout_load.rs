//! A quick measure of fan-out: herald in-process with a temporary store, a counting sink on
//! loopback, `SUBSCRIBERS` W3C 2011 subscriptions, `EVENTS` events published in batches of 10;
//! prints deliveries per second from the first publish to the last delivery.
//!
//! `cargo run --release --example fanout_load [SUBSCRIBERS] [EVENTS]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use herald::app::Application;
use herald::config::Config;

async fn sink(State(count): State<Arc<AtomicU64>>) -> StatusCode {
    count.fetch_add(1, Ordering::Relaxed);
    StatusCode::ACCEPTED
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let subscribers: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let events: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);

    let received = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/sink", post(sink))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_url = format!("http://{}/sink", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.data_dir = dir.path().to_path_buf();
    config.allowed_networks = vec!["127.0.0.0/8".parse().unwrap()];
    let application = Application::build(config).await.expect("herald starts");
    let base = format!("http://{}", application.local_addr().unwrap());
    tokio::spawn(application.run_until_stopped(std::future::pending()));

    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let subscribe = format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wse="http://www.w3.org/2011/03/ws-evt"><s:Header><wsa:Action>http://www.w3.org/2011/03/ws-evt/Subscribe</wsa:Action></s:Header><s:Body><wse:Subscribe><wse:Delivery><wse:NotifyTo><wsa:Address>{sink_url}</wsa:Address></wse:NotifyTo></wse:Delivery></wse:Subscribe></s:Body></s:Envelope>"#
    );
    let started = Instant::now();
    for _ in 0..subscribers {
        let response = client
            .post(format!("{base}/eventing/default"))
            .header("Content-Type", "application/soap+xml")
            .body(subscribe.clone())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    println!("{subscribers} subscriptions in {:?}", started.elapsed());

    let started = Instant::now();
    for batch in 0..events.div_ceil(10) {
        let mut body = String::from(r#"<h:Events xmlns:h="urn:herald:publish">"#);
        for i in 0..10.min(events - batch * 10) {
            body.push_str(&format!(
                r#"<h:Event action="urn:bench:tick"><b:tick xmlns:b="urn:bench" n="{}"/></h:Event>"#,
                batch * 10 + i
            ));
        }
        body.push_str("</h:Events>");
        let response = client
            .post(format!("{base}/api/v1/sources/default/events/batch"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
    }
    let expected = subscribers * events;
    while received.load(Ordering::Relaxed) < expected {
        assert!(started.elapsed() < Duration::from_secs(600), "timed out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "fan-out: {events} events x {subscribers} subscribers = {expected} deliveries in {elapsed:.2} s: {:.0} deliveries/s",
        expected as f64 / elapsed
    );
}
