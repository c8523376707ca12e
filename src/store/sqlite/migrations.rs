//! The embedded store's schema migrations, applied in order at start.

use jiff::Timestamp;
use sqlx::Executor;

use super::super::StoreError;
use super::super::codec::millis;
use super::SqliteStore;

/// Schema migrations, applied in order at start; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_subscriptions.sql"),
    ),
    (2, include_str!("../migrations/sqlite/0002_event_log.sql")),
    (3, include_str!("../migrations/sqlite/0003_nodes.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_logs_and_readers.sql"),
    ),
    (
        5,
        include_str!("../migrations/sqlite/0005_invocations_and_agents.sql"),
    ),
    (6, include_str!("../migrations/sqlite/0006_channels.sql")),
    (7, include_str!("../migrations/sqlite/0007_webhooks.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_connection_retry.sql"),
    ),
    (
        9,
        include_str!("../migrations/sqlite/0009_wsman_delivery.sql"),
    ),
    (
        10,
        include_str!("../migrations/sqlite/0010_claim_order.sql"),
    ),
    (
        11,
        include_str!("../migrations/sqlite/0011_sweep_marks.sql"),
    ),
];

impl SqliteStore {
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        self.writer
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.writer.begin().await?;
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_none() {
                tx.execute(*sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                    .bind(version)
                    .bind(millis(Timestamp::now()))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}
