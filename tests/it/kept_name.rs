//! A PostgreSQL node given no `--node-id` keeps its name in its data directory: restarted, it
//! is the same node and reads its own subscriptions back rather than claiming them under a new
//! name, and a second process on the same directory is refused rather than sharing the name.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The owner of each active subscription, and the nodes the store knows.
async fn owners_and_nodes(store: &TestStore) -> (Vec<String>, Vec<String>) {
    use sqlx::{Connection, Row};
    let url = store.database_url().expect("PostgreSQL");
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    let column = |rows: Vec<sqlx::postgres::PgRow>| -> Vec<String> {
        rows.iter().map(|row| row.get::<String, _>(0)).collect()
    };
    let owners = sqlx::query("SELECT owner FROM subscriptions WHERE status = 'active'")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    let nodes = sqlx::query("SELECT id FROM nodes ORDER BY id")
        .fetch_all(&mut connection)
        .await
        .unwrap();
    (column(owners), column(nodes))
}

/// SIGTERM, and waits for the process to end.
fn stop(process: &mut Process) {
    process.terminate();
    process.child.wait().expect("reaped");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn a_node_given_no_name_keeps_one_in_its_data_directory_and_restarts_as_itself() {
    let store = TestStore::new().await;
    assert!(
        store.is_postgres(),
        "this test needs PostgreSQL: set {DATABASE_VARIABLE}"
    );
    let mut first = Process::start(&store);
    subscribe(
        &first.client(),
        Soap::V12,
        W3C2011,
        "default",
        "<wse:Expires>PT1H</wse:Expires>",
    )
    .await;
    let kept = std::fs::read_to_string(store.data_dir().join("node-id")).expect("a kept name");
    let name = kept.trim().to_owned();
    assert_eq!(
        owners_and_nodes(&store).await,
        (vec![name.clone()], vec![name.clone()])
    );

    // A second process on the same directory would share the name: refused.
    let mut second = Process::serve(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second node on the same data directory started");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut said = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(!status.success(), "a second node on one directory: {said}");
    assert!(said.contains("in use by another herald process"), "{said}");

    stop(&mut first);
    let restarted = Process::start(&store);
    let server = restarted.client();
    assert_eq!(
        server
            .wait_active("default", 1, Duration::from_secs(10))
            .await,
        1,
        "its own subscription, delivered again"
    );
    assert_eq!(
        owners_and_nodes(&store).await,
        (vec![name.clone()], vec![name]),
        "the same node, owning what it owned: nothing claimed under another name"
    );
}
