//! Connections from clients that hold them without finishing a request: slow headers, idle
//! keep-alive, a short body, a huge chunk size. Each is closed after its timeout; beyond
//! `max_connections` new ones are closed at once (not queued), the log says so, and herald
//! serves again as soon as a slot frees.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Reads until the server closes the connection (or `within` passes); returns what it sent
/// and how long it took.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "still open after {within:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

fn address(server: &TestServer) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn clients_that_stall_are_cut_off() {
    let server = TestServer::start_with(|config| {
        config.connections.header_timeout = Duration::from_millis(300);
        config.connections.body_timeout = Duration::from_millis(300);
    })
    .await;
    let within = Duration::from_secs(5);

    // Slow headers: the request line and one header, then nothing.
    let mut slow = TcpStream::connect(address(&server)).await.unwrap();
    slow.write_all(b"POST /eventing/default HTTP/1.1\r\nHost: herald\r\n")
        .await
        .unwrap();
    let (_, took) = until_closed(&mut slow, within).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");

    // Idle keep-alive: one request answered, then silence.
    let mut idle = TcpStream::connect(address(&server)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = until_closed(&mut idle, within).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A body shorter than its Content-Length: 408 once the body timeout passes.
    for path in ["/api/v1/sources/default/events", "/eventing/default"] {
        let mut short = TcpStream::connect(address(&server)).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/xml\r\nHerald-Action: urn:x\r\nContent-Length: 100\r\n\r\n<e/>"
        );
        short.write_all(head.as_bytes()).await.unwrap();
        let (answer, _) = until_closed(&mut short, within).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
    }

    // A chunk that announces 4 GiB and sends three bytes.
    let mut chunked = TcpStream::connect(address(&server)).await.unwrap();
    chunked
        .write_all(b"POST /api/v1/sources/default/events HTTP/1.1\r\nHost: herald\r\nContent-Type: application/xml\r\nHerald-Action: urn:x\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\nabc")
        .await
        .unwrap();
    let (answer, _) = until_closed(&mut chunked, within).await;
    assert!(
        answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 413"),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn beyond_max_connections_new_ones_are_refused_at_once() {
    let store = TestStore::new().await;
    let config = store.data_dir().join("connections.toml");
    std::fs::write(&config, "max_connections = 4\nheader_timeout_ms = 20000\n").unwrap();
    let process = Process::start_with(&store, &["--config", config.to_str().unwrap()]);
    let server = process.client();
    let address = address(&server);
    // Four clients hold every slot, sending nothing.
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fifth is closed at once, with nothing read and nothing answered (or, if the reset
    // comes first, not even connected).
    let mut reached = 0;
    for _ in 0..3 {
        let mut extra = match TcpStream::connect(&address).await {
            Ok(extra) => extra,
            // herald accepted it and reset it before the handshake's end was read here.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {
                reached += 1;
                continue;
            }
            Err(err) => panic!("connecting failed otherwise: {err}"),
        };
        reached += 1;
        let _ = extra
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
            .await;
        let (answer, took) = until_closed(&mut extra, Duration::from_secs(2)).await;
        assert_eq!(answer, "", "refused, not answered");
        assert!(
            took < Duration::from_secs(1),
            "refused at once, not queued: {took:?}"
        );
    }
    // A slot frees: herald serves again.
    drop(holders.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = server.metrics().await;
    assert!(
        reached > 0,
        "no connection beyond the limit got through to be refused"
    );
    assert!(
        metrics.contains(&format!("herald_connections_refused_total {reached}")),
        "{reached} refused: {metrics}"
    );
    let warnings: Vec<String> = process
        .log()
        .into_iter()
        .filter(|line| line.contains("WARN") && line.contains("connection limit reached"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for three refusals: {warnings:#?}"
    );
}
