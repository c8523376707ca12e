//! PostgreSQL's schema migrations, applied in order at start under an advisory lock.

use jiff::Timestamp;
use sqlx::Executor;

use super::super::StoreError;
use super::super::codec::millis;
use super::PostgresStore;

/// Schema migrations, applied in order at start, under an advisory lock so that nodes starting
/// together apply each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_herald.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_logs_and_readers.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_invocations_and_agents.sql"),
    ),
    (4, include_str!("../migrations/postgres/0004_channels.sql")),
    (5, include_str!("../migrations/postgres/0005_webhooks.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_connection_retry.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_wsman_delivery.sql"),
    ),
    (
        8,
        include_str!("../migrations/postgres/0008_owned_pages.sql"),
    ),
    (
        9,
        include_str!("../migrations/postgres/0009_hot_cursors.sql"),
    ),
    (
        10,
        include_str!("../migrations/postgres/0010_one_owner_index.sql"),
    ),
    (
        11,
        include_str!("../migrations/postgres/0011_claim_order.sql"),
    ),
    (
        12,
        include_str!("../migrations/postgres/0012_insert_rows.sql"),
    ),
    (
        13,
        include_str!("../migrations/postgres/0013_sweep_marks.sql"),
    ),
];

/// The advisory lock key taken while migrating ("herald" in ASCII).
const MIGRATION_LOCK: i64 = 0x6865_7261_6c64;

impl PostgresStore {
    /// Applies the migrations not yet applied, each once, even with nodes starting together.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        for (version, sql) in MIGRATIONS {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if applied.is_none() {
                tx.execute(*sql).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(millis(Timestamp::now()))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
