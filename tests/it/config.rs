//! Configuration as the binary reads it: built-in defaults, then the file, then `HERALD_*`
//! environment variables, then flags; a refused value stops herald with the reason.

use crate::harness::*;

/// Publishes an event of about `size` bytes to `source`; returns the HTTP status.
async fn publish_sized(server: &TestServer, source: &str, token: Option<&str>, size: usize) -> u16 {
    let payload = format!(
        r#"<e:pad xmlns:e="urn:test">{}</e:pad>"#,
        "x".repeat(size.saturating_sub(40))
    );
    let mut request = server
        .client
        .post(server.url(&format!("/api/v1/sources/{source}/events")))
        .header("Content-Type", "application/xml")
        .header("Herald-Action", "urn:test:pad");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .body(payload)
        .send()
        .await
        .expect("publish")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_environment_sits_between_the_file_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "max_body_bytes = 2048\n[sources.fromfile]\n").unwrap();
    let data_dir = dir.path().join("data");
    let environment = [
        ("HERALD_CONFIG", file.to_str().unwrap()),
        ("HERALD_LISTEN", "127.0.0.1:0"),
        ("HERALD_DATA_DIR", data_dir.to_str().unwrap()),
        ("HERALD_MAX_BODY_BYTES", "4096"),
        ("HERALD_API_TOKEN", "s3cret"),
        ("HERALD_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8"),
        ("HERALD_LOG_LEVEL", "warn"),
    ];
    let mut command = Process::command();
    command.arg("serve").envs(environment);
    let process = Process::spawn(command);
    let server = process.client();

    // HERALD_DATA_DIR: the store is there.
    assert!(
        data_dir.join("herald.db").exists(),
        "store in HERALD_DATA_DIR"
    );
    // HERALD_CONFIG: the file's sources replace the built-in `default`.
    assert_eq!(
        publish_sized(&server, "default", Some("s3cret"), 100).await,
        404
    );
    // HERALD_API_TOKEN guards publishing.
    assert_eq!(publish_sized(&server, "fromfile", None, 100).await, 401);
    assert_eq!(
        publish_sized(&server, "fromfile", Some("s3cret"), 100).await,
        202
    );
    // HERALD_MAX_BODY_BYTES (4096) beats the file (2048).
    assert_eq!(
        publish_sized(&server, "fromfile", Some("s3cret"), 3000).await,
        202
    );
    assert_eq!(
        publish_sized(&server, "fromfile", Some("s3cret"), 5000).await,
        413
    );
    // HERALD_ALLOWED_NETWORKS, comma-separated: a loopback NotifyTo is accepted.
    let reply = Message::new(
        Soap::V12,
        W3C2011,
        "Subscribe",
        subscribe_body(W3C2011, "http://127.0.0.1:9/notify", ""),
    )
    .send(&server, &server.url("/eventing/fromfile"))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    drop(process);

    // A flag beats the environment.
    let mut command = Process::command();
    command
        .args(["serve", "--max-body-bytes", "8192"])
        .envs(environment);
    let process = Process::spawn(command);
    let server = process.client();
    assert_eq!(
        publish_sized(&server, "fromfile", Some("s3cret"), 5000).await,
        202
    );
    assert_eq!(
        publish_sized(&server, "fromfile", Some("s3cret"), 9000).await,
        413
    );
}

#[test]
fn a_refused_value_stops_herald_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (variable, value, reason) in [
        (
            "HERALD_LEASE_TTL_MS",
            "5",
            "invalid configuration: cluster.lease_ttl_ms must be 400-600000",
        ),
        (
            "HERALD_ALLOWED_NETWORKS",
            "127.0.0.0/8,everywhere",
            "invalid configuration: allowed_networks: 'everywhere' is not an IP address or CIDR network",
        ),
        (
            "HERALD_DATABASE",
            "mysql://localhost/herald",
            "invalid configuration: database must be a postgres:// URL",
        ),
        (
            "HERALD_CONFIG",
            "/nonexistent/herald.toml",
            "cannot read configuration file /nonexistent/herald.toml",
        ),
    ] {
        let output = Process::command()
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir.path())
            .env(variable, value)
            .output()
            .expect("herald runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{variable}={value} was accepted");
        assert!(
            output.stdout.is_empty(),
            "{variable}={value}: herald started"
        );
        assert!(
            stderr.contains(reason),
            "{variable}={value}: expected {reason:?} in {stderr}"
        );
    }
    // Nothing was created on the way.
    assert!(!dir.path().join("herald.db").exists());
}

/// `herald serve` runs without transparent huge pages (see `herald::memory`): the kernel says
/// so of the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_server_runs_without_transparent_huge_pages() {
    let store = TestStore::new().await;
    let process = Process::start(&store);
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid())).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("THP_enabled:"))
        .expect("the kernel reports THP_enabled");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}
