//! A store written by herald before logs and readers (2 Dec 2026: schema 3 on SQLite, 1 on
//! PostgreSQL) is upgraded in place when herald starts on it: every subscription is delivered
//! again where it stood, with its filter, retry state and expiry, reads as a SOAP-push reader
//! of a source's log, and the log goes on from its head. The fixtures are in
//! `tests/data/stores/`; each was made by the release binary of that day (the PostgreSQL one's
//! header says how).

use std::time::Duration;

use herald::config::Config;
use serde_json::Value;

use crate::delivery::{status_json, subscribe_to};
use crate::harness::*;
use crate::publish::{TICK_ACTION, publish, tick};
use crate::sink::Sink;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/stores");

/// The fixtures' source: subscriptions that never expire are granted. Their subscriptions have
/// been failing since the fixture was made (their sink is down): delivery must not give them up
/// however long ago that was (the default gives up after a day of failures).
fn as_the_fixture_was_made(config: &mut Config) {
    config.sources[0].expiry.max = None;
    config.sources[0].retry.give_up_after = Duration::from_secs(100 * 365 * 24 * 3600);
}

/// Checks the two stored subscriptions, then that the log and new subscriptions go on.
async fn check_upgraded(store: &TestStore, w2011: &str, w2004: &str) {
    let server = TestServer::start_in(store, as_the_fixture_was_made).await;
    assert_eq!(
        server
            .wait_active("default", 2, Duration::from_secs(10))
            .await,
        2,
        "both stored subscriptions are delivered again"
    );
    let expect = |status: &Value, cursor: u64, backlog: u64| {
        assert_eq!(status["status"], "active", "{status}");
        assert_eq!(status["log"], "source", "{status}");
        assert_eq!(status["delivery"], "soap-push", "{status}");
        assert_eq!(status["cursor"], cursor, "{status}");
        assert_eq!(status["head"], 3, "{status}");
        assert_eq!(status["backlog"], backlog, "{status}");
        assert_eq!(status["last_error"], "connection refused", "{status}");
    };
    let unbounded = status_json(&server, w2011).await;
    expect(&unbounded, 0, 3);
    assert_eq!(unbounded["expires_at"], Value::Null);
    let filtered = status_json(&server, w2004).await;
    expect(&filtered, 1, 2);
    assert_eq!(filtered["filter"]["expression"], "//o:order[@total > 100]");
    assert_eq!(filtered["end_to"], "http://127.0.0.1:9/fixture/end");
    assert_eq!(filtered["expires_at"], "2199-01-01T00:00:00.000Z");
    // The log goes on from its head; a new subscription gets what follows.
    let sink = Sink::start().await;
    let extra = "<wse:Expires>PT1H</wse:Expires>";
    let managed = subscribe_to(&server, Soap::V12, W3C2011, &sink.url("after"), extra).await;
    let (_, seq) = publish(&server, "default", TICK_ACTION, &tick(7)).await;
    assert_eq!(seq, 4);
    let received = sink
        .wait_accepted("after", 1, Duration::from_secs(10))
        .await;
    assert_eq!(received[0].tick, Some(7));
    let after = status_json(&server, &managed.id).await;
    assert_eq!(
        (&after["log"], &after["delivery"]),
        (&"source".into(), &"soap-push".into())
    );
    server.stop().await;
    // Each active subscription that expires has its sweep mark at its expiry.
    let unmarked = "SELECT COUNT(*) FROM subscriptions WHERE status = 'active'
         AND (sweep_at IS NOT DISTINCT FROM expires_at) = FALSE";
    assert_eq!(store.integers(unmarked).await, [0]);
    let key = w2004.trim_start_matches("uuid:");
    let marked = format!("SELECT sweep_at - expires_at FROM subscriptions WHERE id = '{key}'");
    assert_eq!(store.integers(&marked).await, [0], "the fixture's expiry");
    // Started again, nothing is migrated twice.
    let server = TestServer::start_in(store, as_the_fixture_was_made).await;
    assert_eq!(
        server
            .wait_active("default", 3, Duration::from_secs(10))
            .await,
        3
    );
    server.stop().await;
}

#[tokio::test]
async fn an_embedded_store_from_before_logs_and_readers_is_upgraded_in_place() {
    let store = TestStore::embedded();
    std::fs::copy(
        format!("{FIXTURES}/2026-12-02-sqlite/herald.db"),
        store.data_dir().join("herald.db"),
    )
    .expect("copy the fixture");
    assert_eq!(
        store
            .integers("SELECT MAX(version) FROM schema_migrations")
            .await,
        [3]
    );
    check_upgraded(
        &store,
        "uuid:1da4a0c6-5df1-4b67-a8cc-77e4b7db484b",
        "uuid:ef253533-30e7-41fa-afb2-e92e5c477b4a",
    )
    .await;
    assert_eq!(
        store
            .integers("SELECT MAX(version) FROM schema_migrations")
            .await,
        [11]
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn a_postgres_database_from_before_logs_and_readers_is_upgraded_in_place() {
    let store = TestStore::new().await;
    assert!(
        store.is_postgres(),
        "this test needs {DATABASE_VARIABLE} to name a PostgreSQL database"
    );
    let dump = std::fs::read_to_string(format!("{FIXTURES}/2026-12-02-postgres.sql")).unwrap();
    let statements: Vec<String> = dump
        .split(";\n")
        .map(|statement| {
            statement
                .lines()
                .filter(|line| !line.starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|statement| !statement.trim().is_empty())
        .collect();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    store.execute(&statements).await;
    assert_eq!(
        store
            .integers("SELECT MAX(version) FROM schema_migrations")
            .await,
        [1]
    );
    check_upgraded(
        &store,
        "uuid:6e62ec3b-e3e1-4fff-b204-4a2fb402298e",
        "uuid:fd036b17-de2e-48b5-95d1-8ea604d64846",
    )
    .await;
    assert_eq!(
        store
            .integers("SELECT MAX(version) FROM schema_migrations")
            .await,
        [13]
    );
    // Which of the table's indexes are defined with `pattern` in their definition.
    let indexes_like = async |pattern: &str| {
        store
            .integers(&format!(
                "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema()
                 AND tablename = 'subscriptions' AND indexdef LIKE '%{pattern}%'"
            ))
            .await
    };
    // A delivery cursor's save is a heap-only update: no index of the table holds the cursor.
    assert_eq!(indexes_like("cursor").await, [0]);
    // A node's subscriptions are found through (owner, id) alone: beside an index on the owner
    // only, the planner could take the one that must sort everything the node owns.
    assert_eq!(indexes_like("(owner)").await, [0]);
    // ... and (owner, id) is there.
    assert_eq!(indexes_like("(owner, id)").await, [1]);
    // A claim reads an invoker's due invocations in its own order, (next_at, id), and stops at
    // its limit.
    let due = store
        .integers(
            "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema()
             AND tablename = 'invocations' AND indexname = 'invocations_due'
             AND indexdef LIKE '%(invoker, state, next_at, id)%'",
        )
        .await;
    assert_eq!(due, [1]);
}
