//! A group commit's own database session: one connection, kept from batch to batch, so that a
//! batch costs the one round trip of its statement.
//!
//! Through the pool, sqlx sends a `Sync` and waits for the server's answer when a connection is
//! handed out (`test_before_acquire`) and again when it is handed back: three round trips per
//! batch, two of them only to learn the session is alive (BENCHMARKS.md, twenty-sixth pass).
//! Here the session is tested only when it has been idle for [`IDLE_TEST`], so a session killed
//! on the server (a restart, a failover, an operator) at least that long after its last use
//! costs no failed statement, as the pool's test promised. One killed sooner, or while a batch
//! runs, fails that batch's statement and is dropped; the group commit then retries a failed
//! batch of several writes one by one (`group_commit`), each on a new session, while a batch of
//! one write fails (answered as a store failure; nothing is written). The next use opens a new
//! session, taken from the pool and detached from it, so opening one waits, retries and gives
//! up as the pool does.

use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnection, PgDatabaseError, PgPool, PgSeverity};
use tokio::sync::{Mutex, MutexGuard};

use super::super::StoreError;

/// A session idle this long is tested before a statement is sent on it. Under load batches
/// follow one another far faster, and none is tested; at a trickle, each is.
pub(super) const IDLE_TEST: Duration = Duration::from_millis(25);

/// How long the test may wait for the server's answer before the session counts as lost: as
/// long as the pool waits for a connection.
const TEST_WITHIN: Duration = Duration::from_secs(10);

/// A session idle this long, or open this long, is closed and replaced rather than tested, as
/// the pool's own connections are (sqlx's defaults: 10 and 30 minutes).
const IDLE_AT_MOST: Duration = Duration::from_secs(10 * 60);
const OPEN_AT_MOST: Duration = Duration::from_secs(30 * 60);

/// After a session could not be opened, uses within this long fail at once instead of waiting
/// again: a batch that failed is retried one write at a time, and each would wait in turn.
const AFTER_FAILED_OPEN: Duration = Duration::from_secs(1);

/// One connection, opened when first needed and again whenever it was lost.
pub(super) struct Session {
    pool: PgPool,
    held: Mutex<Held>,
}

struct Held {
    /// The connection and when it was opened.
    connection: Option<(PgConnection, Instant)>,
    last_used: Instant,
    /// When opening one last failed, and how.
    failed_open: Option<(Instant, String)>,
}

/// The session, live, for one statement. The statement's result goes to [`InUse::finish`]; a
/// session in use dropped before that (its statement abandoned half way) is closed.
struct InUse<'a> {
    held: MutexGuard<'a, Held>,
    finished: bool,
}

impl Session {
    /// A session opened from `pool` when first used.
    pub fn new(pool: PgPool) -> Session {
        Session {
            pool,
            held: Mutex::new(Held {
                connection: None,
                last_used: Instant::now(),
                failed_open: None,
            }),
        }
    }

    /// Runs `query` on the session: its rows, or its error (the session dropped when the error
    /// shows it lost).
    pub async fn fetch_all(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
        let mut session = self.live().await?;
        let rows = query.fetch_all(session.connection()).await;
        session.finish(rows)
    }

    /// Runs `query` on the session for its rows, each decoded by position: the rows, or the
    /// error (the session dropped when the error shows it lost).
    pub async fn fetch_all_as<O>(
        &self,
        query: sqlx::query::QueryAs<'_, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<O>, StoreError>
    where
        O: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let mut session = self.live().await?;
        let rows = query.fetch_all(session.connection()).await;
        session.finish(rows)
    }

    /// The session, tested first when it has been idle, or a new one.
    async fn live(&self) -> Result<InUse<'_>, StoreError> {
        let mut held = self.held.lock().await;
        let idle = held.last_used.elapsed();
        if let Some((connection, opened)) = held.connection.as_mut() {
            let keep = if idle >= IDLE_AT_MOST || opened.elapsed() >= OPEN_AT_MOST {
                false
            } else if idle >= IDLE_TEST {
                matches!(
                    tokio::time::timeout(TEST_WITHIN, connection.ping()).await,
                    Ok(Ok(()))
                )
            } else {
                true
            };
            if !keep {
                held.connection = None;
            }
        }
        if held.connection.is_none() {
            if let Some((at, why)) = &held.failed_open
                && at.elapsed() < AFTER_FAILED_OPEN
            {
                return Err(StoreError::Database(sqlx::Error::Io(
                    std::io::Error::other(format!("no session to the database: {why}")),
                )));
            }
            match self.pool.acquire().await {
                Ok(connection) => {
                    held.connection = Some((connection.detach(), Instant::now()));
                    held.failed_open = None;
                }
                Err(err) => {
                    held.failed_open = Some((Instant::now(), err.to_string()));
                    return Err(err.into());
                }
            }
        }
        Ok(InUse {
            held,
            finished: false,
        })
    }
}

impl InUse<'_> {
    /// The connection to send the statement on.
    fn connection(&mut self) -> &mut PgConnection {
        &mut self
            .held
            .connection
            .as_mut()
            .expect("a session in use holds a connection")
            .0
    }

    /// Passes the statement's result on; a session it shows lost is dropped, to be opened again
    /// on its next use.
    fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        self.finished = true;
        self.held.last_used = Instant::now();
        if let Err(err) = &result
            && session_lost(err)
        {
            self.held.connection = None;
        }
        Ok(result?)
    }
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.held.connection = None;
        }
    }
}

/// Whether `err` means the session is gone (or can no longer be trusted), rather than that the
/// statement was refused on a session that goes on: I/O, TLS or the protocol; a fatal error;
/// SQLSTATE class 08 (connection exception) or 57P01–57P03 (terminated by an administrator, a
/// crash, a server that cannot take connections now); 0A000, which a statement the session
/// prepared before a migration changed its columns would give every time.
fn session_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            let fatal = db
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|pg| matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic));
            fatal
                || db.code().is_some_and(|code| {
                    code.starts_with("08") || code.starts_with("57P") || code == "0A000"
                })
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}
