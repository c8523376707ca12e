//! A claim of a lapsed node's subscriptions and that node's return under the same name, racing
//! on PostgreSQL: the claim holds the lapsed node's row until it commits, so the returning
//! node's renewal of its lease waits for it, or the claim waits for the renewal and then takes
//! none of that node's rows. That is what lets a node read its own rows without locking each.

use std::time::Duration;

use futures_util::future::join_all;
use herald::store::NodeId;
use jiff::Timestamp;
use sqlx::Connection;

use crate::harness::*;

/// Subscriptions the lapsed node owns.
const OWNED: usize = 10;

#[tokio::test]
#[ignore = "needs PostgreSQL: set HERALD_TEST_DATABASE and pass -- --include-ignored"]
async fn a_claim_racing_a_nodes_return_waits_for_it_and_takes_none_of_its_rows() {
    let store = TestStore::new().await;
    let url = store
        .database_url()
        .unwrap_or_else(|| panic!("this test needs PostgreSQL: set {DATABASE_VARIABLE}"))
        .to_owned();
    let opened = store.open().await;
    let (returning, claimer) = (
        NodeId::parse("returning").unwrap(),
        NodeId::parse("claimer").unwrap(),
    );
    opened
        .register_node(&returning, Duration::from_millis(1))
        .await
        .unwrap();
    let subscriptions: Vec<_> = (0..OWNED).map(crate::group_commit::subscription).collect();
    let stored = subscriptions
        .iter()
        .map(|s| opened.insert_subscription(s, &returning, None));
    for written in join_all(stored).await {
        written.expect("stored");
    }
    opened
        .register_node(&claimer, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The returning node's renewal, under way: its row locked and its lease extended, not yet
    // committed.
    let mut renewal = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut renewing = renewal.begin().await.unwrap();
    sqlx::query("UPDATE nodes SET lease_until = lease_until + 3600000 WHERE id = 'returning'")
        .execute(&mut *renewing)
        .await
        .unwrap();

    let claiming = {
        let (opened, claimer) = (opened.clone(), claimer.clone());
        tokio::spawn(async move { opened.claim_orphans(&claimer, Timestamp::now(), 100).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !claiming.is_finished(),
        "the claim went ahead while the lapsed node's renewal was under way"
    );
    renewing.commit().await.unwrap();
    let claimed = claiming.await.unwrap().expect("the claim");
    assert!(
        claimed.is_empty(),
        "the claim took {} rows of a node whose lease was renewed meanwhile",
        claimed.len()
    );
    assert_eq!(
        store
            .integers("SELECT COUNT(*) FROM subscriptions WHERE owner = 'returning'")
            .await,
        vec![OWNED as i64]
    );
    opened.close().await;
}
