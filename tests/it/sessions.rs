//! The PostgreSQL store's lifecycle writes run on sessions of their own, outside the pool
//! (src/store/postgres/session.rs): a session killed on the server while idle costs no failed
//! write, and one lost while in use is replaced, so the writes after it succeed.

use std::time::Duration;

use herald::domain::expiry::ExpiryKind;
use herald::store::{NodeId, PostgresStore, Store};
use jiff::Timestamp;
use sqlx::Connection as _;

use crate::harness::*;

/// A store whose sessions carry a name of their own, so that only they are killed; the
/// statement that kills them.
async fn named_store(store: &TestStore) -> (PostgresStore, String) {
    let url = store
        .database_url()
        .unwrap_or_else(|| panic!("this test needs PostgreSQL: set {DATABASE_VARIABLE}"));
    let name = format!(
        "herald_sessions_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let opened = PostgresStore::open(&format!("{url}&application_name={name}"))
        .await
        .expect("the store opens");
    let kill = format!(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE application_name = '{name}'"
    );
    (opened, kill)
}

/// The number of live sessions named as `kill` names them.
async fn sessions(store: &TestStore, kill: &str) -> i64 {
    let count = kill.replace("pg_terminate_backend(pid, 5000)", "COUNT(*)");
    let url = store.database_url().expect("PostgreSQL");
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(count))
        .fetch_one(&mut connection)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn lifecycle_sessions_killed_while_idle_cost_no_failed_write() {
    let store = TestStore::new().await;
    let (opened, kill) = named_store(&store).await;
    let node = NodeId::parse("sessions").unwrap();
    let first = crate::group_commit::subscription(1);
    opened
        .insert_subscription(&first, &node, None)
        .await
        .unwrap();
    for round in 0..5 {
        store.execute(&[&kill]).await;
        assert_eq!(
            sessions(&store, &kill).await,
            0,
            "round {round}: all killed"
        );
        // Idle past the session's test: every write finds out first, and goes on a new one.
        tokio::time::sleep(Duration::from_millis(60)).await;
        let subscription = crate::group_commit::subscription(10 + round);
        opened
            .insert_subscription(&subscription, &node, None)
            .await
            .unwrap_or_else(|err| panic!("round {round}: Subscribe after a kill: {err}"));
        let renewed = opened
            .renew_subscription(
                first.id,
                Some(Timestamp::from_second(4_100_000_000).unwrap()),
                ExpiryKind::Duration,
                Timestamp::now(),
            )
            .await
            .unwrap_or_else(|err| panic!("round {round}: Renew after a kill: {err}"));
        assert!(renewed, "round {round}: the first subscription renewed");
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn a_lifecycle_session_lost_in_use_is_replaced() {
    let store = TestStore::new().await;
    let (opened, kill) = named_store(&store).await;
    let node = NodeId::parse("sessions").unwrap();
    let (first, other) = (
        crate::group_commit::subscription(1),
        crate::group_commit::subscription(2),
    );
    opened
        .insert_subscription(&first, &node, None)
        .await
        .unwrap();
    opened
        .insert_subscription(&other, &node, None)
        .await
        .unwrap();
    let renew = |id| {
        opened.renew_subscription(
            id,
            Some(Timestamp::from_second(4_100_000_000).unwrap()),
            ExpiryKind::Duration,
            Timestamp::now(),
        )
    };
    renew(first.id).await.expect("the renewal session opens");

    // The row held by another transaction, so that the next renewal waits on it: its session is
    // killed while the statement runs.
    let url = store.database_url().expect("PostgreSQL");
    let mut locker = sqlx::PgConnection::connect(url).await.unwrap();
    let mut holding = sqlx::Connection::begin(&mut locker).await.unwrap();
    sqlx::query("SELECT id FROM subscriptions WHERE id = $1 FOR UPDATE")
        .bind(first.id.key())
        .fetch_one(&mut *holding)
        .await
        .unwrap();
    // The renewal of `other` goes right after the first fails, so its session is not tested
    // first: the lost one must have been dropped, and this must go on a new one.
    let waiting = async { (renew(first.id).await, renew(other.id).await) };
    let killing = async {
        let waits = kill
            .replace("pg_terminate_backend(pid, 5000)", "COUNT(*)")
            .replace("WHERE ", "WHERE wait_event_type = 'Lock' AND ");
        let mut watcher = sqlx::PgConnection::connect(url).await.unwrap();
        for _ in 0..500 {
            let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(waits.clone()))
                .fetch_one(&mut watcher)
                .await
                .unwrap();
            if count > 0 {
                store.execute(&[&kill]).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the renewal never waited on the row");
    };
    let ((renewed, next), ()) = tokio::join!(waiting, killing);
    holding.commit().await.unwrap();
    assert!(
        renewed.is_err(),
        "the renewal whose session was killed failed"
    );
    let next = next.unwrap_or_else(|err| panic!("the renewal after the session was lost: {err}"));
    assert!(next, "renewed on a new session");
}
