//! A group commit's own database session: one connection, kept from batch to batch, so that a
//! batch costs the one round trip of its statement.
//!
//! Through the pool, sqlx sends a `Sync` and waits for the server's answer when a connection is
//! handed out (`test_before_acquire`) and again when it is handed back: three round trips per
//! batch, two of them only to learn the session is alive (BENCHMARKS.md, twenty-sixth pass).
//! Here the session is tested only when it has been idle for [`IDLE_TEST`]: a session killed on
//! the server while idle (a restart, a failover, an operator) costs no failed statement, as the
//! pool's test promised. A statement that fails because the session is gone (killed while a
//! batch ran, or between two close batches) drops it, and the next use opens another: the
//! group commit retries a failed batch's writes one by one (`group_commit`), each then on a
//! live session.

use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{Mutex, MutexGuard};

use super::super::StoreError;

/// A session idle this long is tested before a statement is sent on it. Under load batches
/// follow one another far faster, and none is tested; at a trickle, each is.
pub(super) const IDLE_TEST: Duration = Duration::from_millis(25);

/// One connection, opened when first needed and again whenever it was lost.
pub(super) struct Session {
    options: PgConnectOptions,
    held: Mutex<Held>,
}

struct Held {
    connection: Option<PgConnection>,
    last_used: Instant,
}

/// The session, live, for one statement. Hand the statement's result to [`InUse::finish`].
pub(super) struct InUse<'a> {
    held: MutexGuard<'a, Held>,
}

impl Session {
    /// A session that connects with `options` when first used.
    pub fn new(options: PgConnectOptions) -> Session {
        Session {
            options,
            held: Mutex::new(Held {
                connection: None,
                last_used: Instant::now(),
            }),
        }
    }

    /// The session, tested first when it has been idle, or a new one.
    pub async fn live(&self) -> Result<InUse<'_>, StoreError> {
        let mut held = self.held.lock().await;
        let idle = held.last_used.elapsed() >= IDLE_TEST;
        if let Some(connection) = held.connection.as_mut()
            && idle
            && connection.ping().await.is_err()
        {
            held.connection = None;
        }
        if held.connection.is_none() {
            held.connection = Some(PgConnection::connect_with(&self.options).await?);
        }
        Ok(InUse { held })
    }
}

impl InUse<'_> {
    /// The connection to send the statement on.
    pub fn connection(&mut self) -> &mut PgConnection {
        self.held
            .connection
            .as_mut()
            .expect("a session in use holds a connection")
    }

    /// Passes the statement's result on; a session it shows lost is dropped, to be opened again
    /// on its next use.
    pub fn finish<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        self.held.last_used = Instant::now();
        if let Err(err) = &result
            && session_lost(err)
        {
            self.held.connection = None;
        }
        Ok(result?)
    }
}

/// Whether `err` means the session is gone (or can no longer be trusted), rather than that the
/// statement was refused on a session that goes on: I/O, the protocol, a dropped connection,
/// or the server's own word (SQLSTATE class 08, connection exception; 57P01–57P03, terminated
/// by an administrator, a crash or a server that cannot take connections now).
fn session_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::PoolClosed
        | sqlx::Error::PoolTimedOut => true,
        _ => false,
    }
}
