//! The embedded store's own tests: its hot statements, paging and orphan claims.

use super::*;
use crate::store::fixtures::subscription;
use crate::store::pulls::{PulledCursor, Pulls};

#[tokio::test]
async fn orphans_of_a_lapsed_node_are_claimed_once_and_the_node_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let (a, b) = (NodeId::parse("a").unwrap(), NodeId::parse("b").unwrap());
    store
        .register_node(&a, Duration::from_secs(60))
        .await
        .unwrap();
    store
        .register_node(&b, Duration::from_secs(60))
        .await
        .unwrap();
    let owned = subscription();
    store.insert_subscription(&owned, &a, None).await.unwrap();
    let now = Timestamp::now();
    assert!(
        store.claim_orphans(&b, now, 10).await.unwrap().is_empty(),
        "a is alive"
    );
    assert_eq!(store.forget_dead_nodes(Duration::ZERO).await.unwrap(), 0);

    store.release_node(&a).await.unwrap();
    assert!(
        !store.renew_node(&a, Duration::from_secs(60)).await.unwrap(),
        "lapsed"
    );
    assert_eq!(
        store.forget_dead_nodes(Duration::ZERO).await.unwrap(),
        0,
        "owns one"
    );
    let claimed = store.claim_orphans(&b, now, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].0.id, owned.id);
    assert!(
        store.claim_orphans(&b, now, 10).await.unwrap().is_empty(),
        "claimed once"
    );
    // Progress from the old owner is refused now; the new owner's is kept.
    let progress = DeliveryProgress {
        cursor: 7,
        ..DeliveryProgress::default()
    };
    let update = [(owned.id, progress.clone())];
    assert_eq!(store.save_progress(&a, &update).await.unwrap(), [owned.id]);
    assert!(store.save_progress(&b, &update).await.unwrap().is_empty());
    // In a batch, only what is not saved comes back: an unknown id, and one this node does
    // not own, beside one it does.
    let unknown = SubscriptionId::new_random();
    let mixed = [(unknown, progress.clone()), (owned.id, progress.clone())];
    assert_eq!(store.save_progress(&b, &mixed).await.unwrap(), [unknown]);
    let refused = store.save_progress(&a, &mixed).await.unwrap();
    assert_eq!(refused.len(), 2);
    assert!(refused.contains(&unknown) && refused.contains(&owned.id));
    let owned = store.owned(&b, now, 10).all().await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].1.cursor, 7);
    assert_eq!(
        store.forget_dead_nodes(Duration::ZERO).await.unwrap(),
        1,
        "a owns nothing"
    );
    store.close().await;
}

#[tokio::test]
async fn owned_subscriptions_come_in_pages_in_the_order_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let node = NodeId::parse("n").unwrap();
    let mut ids = Vec::new();
    for _ in 0..25 {
        let mut owned = subscription();
        owned.end_to = Some(Box::new(owned.notify_to.clone()));
        store
            .insert_subscription(&owned, &node, None)
            .await
            .unwrap();
        ids.push(owned);
    }
    let mut loaded = Vec::new();
    let mut pages = store.owned(&node, Timestamp::now(), 10);
    while let Some(page) = pages.next().await.unwrap() {
        assert!(page.len() <= 10);
        loaded.extend(page.into_iter().map(|(s, _)| s));
    }
    assert_eq!(
        loaded, ids,
        "every subscription once, whole, in the order stored"
    );
    store.close().await;
}

/// The statements that run per page at start, per progress batch and per poll must use the
/// indexes that keep them proportional to their work, not to the table.
#[tokio::test]
async fn hot_statements_use_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    for (name, sql, args, wanted, refused) in [
        (
            "owned page",
            OWNED_PAGE,
            4,
            "subscriptions_owner (owner=? AND rowid>?)",
            "TEMP B-TREE",
        ),
        (
            "save progress",
            SAVE_PROGRESS,
            2,
            "sqlite_autoindex_subscriptions_1 (id=?)",
            "subscriptions_owner",
        ),
        (
            "ids not saved",
            NOT_OWNED,
            2,
            "sqlite_autoindex_subscriptions_1 (id=?)",
            "subscriptions_owner",
        ),
        (
            "claim orphans",
            CLAIM_ORPHANS,
            4,
            "SEARCH s USING INDEX subscriptions_owner (owner=?)",
            "SCAN s",
        ),
    ] {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for _ in 0..args {
            query = query.bind(Option::<String>::None);
        }
        let plan: Vec<String> = query
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|row| row.text("detail").unwrap())
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains(wanted), "{name}: {plan}");
        assert!(!plan.contains(refused), "{name}: {plan}");
    }
    store.close().await;
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert!(matches!(
        SqliteStore::open(dir.path()).await,
        Err(StoreError::InUse { .. })
    ));
    store.close().await;
    SqliteStore::open(dir.path()).await.unwrap().close().await;
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_on_every_read_never_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let node = NodeId::parse("embedded").unwrap();
    store
        .register_node(&node, Duration::from_secs(60))
        .await
        .unwrap();
    let now = Timestamp::now();
    let corruptions = [
        ("cursor = -1", "cursor"),
        ("attempts = -3", "attempts"),
        ("log_kind = 'lake'", "log_kind"),
        ("status = 'paused'", "status"),
        (
            "status = 'ended', end_reason = 'expired', ended_at = NULL",
            "ended_at",
        ),
        (
            "status = 'ended', end_reason = NULL, ended_at = 1",
            "end_reason",
        ),
        (
            "status = 'ended', end_reason = 'expired', ended_at = 1, end_notice = 'lost'",
            "end_notice",
        ),
    ];
    for (damage, column) in corruptions {
        let subscription = subscription();
        store
            .insert_subscription(&subscription, &node, None)
            .await
            .unwrap();
        let statement = format!("UPDATE subscriptions SET {damage} WHERE id = ?");
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(subscription.id.key())
            .execute(&store.pool)
            .await
            .unwrap();
        let record = store.subscription_record(subscription.id).await;
        assert!(
            matches!(&record, Err(StoreError::Corrupt(what)) if what.starts_with(column)),
            "{damage}: {record:?}"
        );
        if damage.starts_with("status") {
            continue;
        }
        // The start reads owned subscriptions in pages of JSON: the same column is refused.
        let page = store.owned(&node, now, 100).all().await;
        assert!(
            matches!(&page, Err(StoreError::Corrupt(what)) if what.starts_with(column)),
            "{damage}: {:?}",
            page.map(|page| page.len())
        );
        sqlx::query("DELETE FROM subscriptions")
            .execute(&store.pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn appends_to_several_logs_share_one_transaction_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let (a, b, c) = (
        SourceName::parse("a").unwrap(),
        SourceName::parse("b").unwrap(),
        SourceName::parse("c").unwrap(),
    );
    let event = |action: &str| NewEvent {
        action: action.into(),
        payload: "<e/>".into(),
    };
    let now = Timestamp::now();
    let appended = store
        .append_to_logs(
            &[
                (a.clone(), vec![event("a1"), event("a2")]),
                (b.clone(), vec![event("b1")]),
                (c.clone(), Vec::new()),
                (a.clone(), vec![event("a3")]),
            ],
            now,
        )
        .await
        .unwrap();
    let seqs: Vec<Vec<(String, u64)>> = appended
        .iter()
        .map(|events| events.iter().map(|e| (e.action.clone(), e.seq)).collect())
        .collect();
    assert_eq!(
        seqs,
        [
            vec![("a1".to_owned(), 1), ("a2".to_owned(), 2)],
            vec![("b1".to_owned(), 1)],
            vec![],
            vec![("a3".to_owned(), 3)],
        ]
    );
    let kept = |events: &[Event]| -> Vec<(u64, String, String)> {
        let kept = events
            .iter()
            .map(|e| (e.seq, e.id.to_string(), e.action.clone()));
        kept.collect()
    };
    let b_stored = store.events_after(&b, 0, 10).await.unwrap();
    assert_eq!(kept(&b_stored), kept(&appended[1]), "stored as returned");
    let stored: Vec<u64> = store
        .events_after(&a, 0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(stored, [1, 2, 3]);
    let mut heads = store.source_heads().await.unwrap();
    heads.sort();
    assert_eq!(heads, [(a, 3), (b, 1)]);
}

#[tokio::test]
async fn an_ended_logs_head_is_forgotten_once_it_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let node = NodeId::parse("embedded").unwrap();
    let log = SourceName::parse("cart.0123456789abcdef0123456789abcdef").unwrap();
    let event = NewEvent {
        action: "a".into(),
        payload: "<e/>".into(),
    };
    store
        .append_events(&log, std::slice::from_ref(&event), Timestamp::now())
        .await
        .unwrap();
    assert!(!store.forget_log(&log).await.unwrap(), "it holds an event");
    // An active reader keeps it too, events or not.
    let reader = Subscription {
        source: log.clone(),
        ..subscription()
    };
    store
        .insert_subscription(&reader, &node, None)
        .await
        .unwrap();
    let later = Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    store.compact_events(&log, later).await.unwrap();
    assert_eq!(store.log_head(&log).await.unwrap(), 1);
    assert!(
        !store.forget_log(&log).await.unwrap(),
        "it has an active reader"
    );
    store
        .end_subscription(reader.id, EndReason::Unsubscribed, Timestamp::now())
        .await
        .unwrap();
    store.compact_events(&log, later).await.unwrap();
    assert!(store.forget_log(&log).await.unwrap());
    assert_eq!(store.log_head(&log).await.unwrap(), 0);
    assert!(
        store
            .source_heads()
            .await
            .unwrap()
            .iter()
            .all(|(name, _)| name != &log)
    );
}

#[tokio::test]
async fn a_pulled_cursor_moves_forward_only_and_never_past_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let node = NodeId::parse("a").unwrap();
    store
        .register_node(&node, Duration::from_secs(60))
        .await
        .unwrap();
    let pulled = subscription();
    let source = pulled.source.clone();
    store
        .insert_subscription(&pulled, &node, None)
        .await
        .unwrap();
    let events: Vec<NewEvent> = (0..3)
        .map(|_| NewEvent {
            action: "urn:a".into(),
            payload: "<a/>".into(),
        })
        .collect();
    let now = Timestamp::now();
    store.append_events(&source, &events, now).await.unwrap();
    let at = |cursor, head| Some(PulledCursor { cursor, head });
    assert_eq!(
        store.advance_pulled(pulled.id, 2, now).await.unwrap(),
        at(2, 3)
    );
    assert_eq!(
        store.advance_pulled(pulled.id, 1, now).await.unwrap(),
        at(2, 3),
        "never backwards"
    );
    assert_eq!(
        store.advance_pulled(pulled.id, 4, now).await.unwrap(),
        at(2, 3),
        "never past the head"
    );
    assert_eq!(
        store.advance_pulled(pulled.id, 3, now).await.unwrap(),
        at(3, 3)
    );
    store
        .end_subscription(pulled.id, EndReason::Unsubscribed, now)
        .await
        .unwrap();
    assert_eq!(store.advance_pulled(pulled.id, 3, now).await.unwrap(), None);
}

#[tokio::test]
async fn an_append_that_fails_leaves_nothing_behind_and_the_next_one_is_numbered_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let log = SourceName::parse("default").unwrap();
    let event = |payload: &str| NewEvent {
        action: "urn:a".into(),
        payload: payload.into(),
    };
    let one = store
        .append_events(&log, &[event("<one/>")], Timestamp::now())
        .await
        .unwrap();
    assert_eq!(one[0].seq, 1);
    // A row where the next event goes: the append fails after its head has moved.
    let stray = "INSERT INTO events (source, seq, id, action, payload, published_at)
                 VALUES ('default', 2, 'stray', 'urn:a', '<stray/>', 0)";
    sqlx::query(stray).execute(&store.writer).await.unwrap();
    let two = [event("<two/>"), event("<three \"q\"='\\'/>")];
    assert!(
        store
            .append_events(&log, &two, Timestamp::now())
            .await
            .is_err()
    );
    assert_eq!(store.log_head(&log).await.unwrap(), 1, "the head stayed");
    // The writer connection is usable again, outside any transaction the failure left open.
    sqlx::query("DELETE FROM events WHERE id = 'stray'")
        .execute(&store.writer)
        .await
        .unwrap();
    let appended = store
        .append_events(&log, &two, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(appended.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    let stored = store.events_after(&log, 0, 10).await.unwrap();
    let read = |events: &[Event]| -> Vec<(u64, String, String)> {
        events
            .iter()
            .map(|e| (e.seq, e.id.to_string(), e.payload.clone()))
            .collect()
    };
    assert_eq!(read(&stored[1..]), read(&appended), "as returned");
    assert_eq!(stored[2].payload, "<three \"q\"='\\'/>");
    assert_eq!(store.log_head(&log).await.unwrap(), 3);
}

#[tokio::test]
async fn commits_leave_the_log_to_the_background_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let node = NodeId::parse("a").unwrap();
    let (every,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
        .fetch_one(&store.writer)
        .await
        .unwrap();
    assert_eq!(every, 0, "no commit checkpoints");
    let database = dir.path().join("herald.db");
    let before = std::fs::metadata(&database).unwrap().len();
    for _ in 0..300 {
        let mut row = subscription();
        row.notify_to.address = format!("http://127.0.0.1:1/{}", "x".repeat(2_000));
        store.insert_subscription(&row, &node, None).await.unwrap();
    }
    // 300 rows of over 2 KB reach the database file within a few of the task's rounds.
    let mut after = before;
    for _ in 0..50 {
        after = std::fs::metadata(&database).unwrap().len();
        if after >= before + 300 * 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after >= before + 300 * 2_000, "{before} → {after} bytes");
    store.close().await;
}

/// A batch of any length up to the largest is inserted whole by the statement sized for it:
/// each row once, with its own owner and cursor, and the rows of NULLs that fill the
/// statement up write nothing.
#[tokio::test]
async fn inserts_of_every_batch_length_store_each_row_once() {
    use crate::store::codec::SubscriptionRow;
    use crate::store::group_commit::{Commit, MAX_BATCH};
    use crate::store::subscription_writes::NewSubscription;

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let inserts = batch_writes::SqliteInserts(SqliteBatches {
        writer: store.writer.clone(),
        write: store.write.clone(),
        direct: Arc::new(std::sync::Mutex::new(
            direct::Direct::open(&dir.path().join("herald.db")).unwrap(),
        )),
    });
    let mut stored = 0;
    for length in [1, 2, 3, 5, 8, 31, 33, MAX_BATCH - 1, MAX_BATCH] {
        let batch: Vec<NewSubscription> = (0..length)
            .map(|i| NewSubscription {
                row: SubscriptionRow::encode(&subscription()),
                owner: format!("node-{length}"),
                // Every other one starts at a cursor of its own; the rest at the log's head.
                start_after: (i % 2 == 1).then_some(i as i64),
            })
            .collect();
        let cursors = inserts.commit(&batch).await.unwrap();
        let wanted: Vec<u64> = (0..length)
            .map(|i| if i % 2 == 1 { i as u64 } else { 0 })
            .collect();
        assert_eq!(cursors, wanted, "batch of {length}");
        stored += length;
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT id, owner, cursor FROM subscriptions WHERE owner = ?1")
                .bind(format!("node-{length}"))
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(rows.len(), length, "batch of {length}");
        for write in &batch {
            let row = rows.iter().find(|row| row.0 == write.row.id).unwrap();
            assert_eq!(row.2, write.start_after.unwrap_or(0), "batch of {length}");
        }
    }
    let (all, null_ids): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) - count(id) FROM subscriptions")
            .fetch_one(&store.pool)
            .await
            .unwrap();
    assert_eq!((all, null_ids), (stored as i64, 0));
    store.close().await;
}

/// An end answers with what delivery needs to let the subscription go: its id, its log, and
/// whether a SubscriptionEnd now waits for its EndTo; one not active comes back as none. The
/// expiry sweep answers the same way.
#[tokio::test]
async fn an_end_answers_with_what_delivery_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let node = NodeId::parse("embedded").unwrap();
    let plain = subscription();
    let mut noticed = subscription();
    noticed.source = SourceName::parse("other").unwrap();
    noticed.end_to = Some(Box::new(plain.notify_to.clone()));
    let mut expired = subscription();
    expired.end_to = noticed.end_to.clone();
    expired.expires_at = Some(Timestamp::from_millisecond(1_000).unwrap());
    for s in [&plain, &noticed, &expired] {
        store.insert_subscription(s, &node, None).await.unwrap();
    }
    for (s, notice) in [(&plain, false), (&noticed, true)] {
        let ended = store
            .end_subscription(s.id, EndReason::Unsubscribed, Timestamp::now())
            .await
            .unwrap();
        let (id, source) = (s.id, s.source.clone());
        assert_eq!(ended, Some(Ended { id, source, notice }));
        let again = store
            .end_subscription(s.id, EndReason::Unsubscribed, Timestamp::now())
            .await
            .unwrap();
        assert_eq!(again, None, "ended already");
    }
    let swept = store.end_expired(Timestamp::now(), 10).await.unwrap();
    assert_eq!(
        swept,
        vec![Ended {
            id: expired.id,
            source: expired.source.clone(),
            notice: true,
        }]
    );
    store.close().await;
}
