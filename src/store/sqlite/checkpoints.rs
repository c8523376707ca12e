//! Checkpoints off the commit path. SQLite's automatic checkpoint runs inside the commit that
//! crosses its threshold: that batch's writers waited while megabytes of the log were copied
//! into the database file and synced, and every batch queued behind them waited too. Here no
//! connection checkpoints on commit (`wal_autocheckpoint = 0`, set where the store opens); a
//! task of its own copies the log back every [`Limits::every`] with a PASSIVE checkpoint, which
//! never waits for a writer or a reader. Pages written several times between two checkpoints
//! are copied once.
//!
//! The log starts over from its beginning when a write finds it all copied back, which under a
//! steady stream of commits the background copy alone rarely leaves it. So past
//! [`Limits::starts_over`] frames the task copies the last few within the writer's turn, and
//! past [`Limits::wal_limit`] it waits for readers too: the log cannot grow without bound. A
//! reader that held one snapshot for long would then hold the writers up as long (at most the
//! busy timeout); herald's reads are short.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::turns::WriteTurns;

/// When the task copies the log back and how far it lets it grow, in frames (pages).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// How often the log is copied back.
    pub every: Duration,
    /// Frames in the log past which it is made to start over at the next write. Each time
    /// costs the writers one short wait, so not too often.
    pub starts_over: i64,
    /// Frames in the log past which the writer waits for readers so that it starts over.
    pub wal_limit: i64,
}

impl Limits {
    /// The store's: every 200 ms; start over past 64 MiB of 4 KiB pages; wait for readers
    /// past 256 MiB.
    pub const STORE: Limits = Limits {
        every: Duration::from_millis(200),
        starts_over: 16_384,
        wal_limit: 65_536,
    };
}

/// At most this many frames committed while the last copy outside the writer's turn ran are
/// left for the copy within it, when the copies outside can catch up.
const TAIL: i64 = 64;

/// Copies outside the writer's turn in one round, at most.
const TRIES: usize = 8;

/// Starts the task that checkpoints the database `options` opens, within `limits`, until
/// `closing`.
pub(super) fn start(
    options: SqliteConnectOptions,
    write: Arc<WriteTurns>,
    limits: Limits,
    tasks: &TaskTracker,
    closing: CancellationToken,
) {
    tasks.spawn(async move {
        let mut connection: Option<SqliteConnection> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(limits.every) => {}
                () = closing.cancelled() => break,
            }
            if connection.is_none() {
                match SqliteConnection::connect_with(&options).await {
                    Ok(opened) => connection = Some(opened),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot open the checkpoint connection");
                        continue;
                    }
                }
            }
            let Some(open) = connection.as_mut() else {
                continue;
            };
            if let Err(err) = copy_back(open, &write, limits).await {
                tracing::warn!(error = %err, "checkpoint failed; the log is kept");
                connection = None;
            }
        }
        if let Some(open) = connection {
            let _ = open.close().await;
        }
    });
}

/// One round: PASSIVE checkpoints until one finds at most [`TAIL`] frames committed while the
/// one before it ran (or [`TRIES`] of them have run); past [`Limits::starts_over`] frames, one
/// more within the writer's turn, which has only that tail to copy, so that the next write
/// finds the log all copied back and starts it over; past [`Limits::wal_limit`] (readers kept
/// it from starting over), a RESTART within the turn, which waits for them.
async fn copy_back(
    connection: &mut SqliteConnection,
    write: &WriteTurns,
    limits: Limits,
) -> Result<(), sqlx::Error> {
    let mut frames = checkpoint(connection, Mode::Passive).await?;
    for _ in 1..TRIES {
        if frames <= limits.starts_over {
            break;
        }
        // Each copy takes what was committed while the one before it ran.
        let before = frames;
        frames = checkpoint(connection, Mode::Passive).await?;
        if frames - before <= TAIL {
            break;
        }
    }
    if frames <= limits.starts_over {
        return Ok(());
    }
    let _turn = write.lock().await;
    if checkpoint(connection, Mode::Passive).await? > limits.wal_limit {
        checkpoint(connection, Mode::Restart).await?;
    }
    Ok(())
}

/// How a checkpoint treats writers and readers.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Copies what it can without waiting for anyone.
    Passive,
    /// Copies everything, then waits for readers so that the next write starts the log over.
    Restart,
}

/// Runs `PRAGMA wal_checkpoint` in `mode` on `connection`; returns the frames in the log.
async fn checkpoint(connection: &mut SqliteConnection, mode: Mode) -> Result<i64, sqlx::Error> {
    let statement = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    // Whether it was kept from finishing, the frames in the log, the frames copied back.
    let (_, log_frames, _): (i64, i64, i64) =
        sqlx::query_as(statement).fetch_one(connection).await?;
    Ok(log_frames)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

    use super::*;

    fn options(dir: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(dir.join("t.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .pragma("wal_autocheckpoint", "0")
            .busy_timeout(Duration::from_secs(10))
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// A task's limits: a round every `every_ms`, starting over past `starts_over` frames,
    /// restarting past `wal_limit`.
    fn limits(every_ms: u64, starts_over: i64, wal_limit: i64) -> Option<Limits> {
        Some(Limits {
            every: Duration::from_millis(every_ms),
            starts_over,
            wal_limit,
        })
    }

    /// Commits 1,500 rows of 4 KiB one at a time, each in a writer's turn, with the task
    /// running within `limits` (none: no task) and, if `reading`, a reader reading the table
    /// meanwhile, one snapshot after another, each held 50 ms; returns the largest the log file
    /// grew to and the size of the database file.
    async fn steady_writes(limits: Option<Limits>, reading: bool) -> (u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let options = options(dir.path());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE pages (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .execute(&writer)
            .await
            .unwrap();
        let write = Arc::new(WriteTurns::default());
        let (tasks, closing) = (TaskTracker::new(), CancellationToken::new());
        if let Some(limits) = limits {
            start(
                options.clone(),
                write.clone(),
                limits,
                &tasks,
                closing.clone(),
            );
        }
        if reading {
            let readers = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .unwrap();
            let closing = closing.clone();
            tasks.spawn(async move {
                while !closing.is_cancelled() {
                    let mut read = readers.begin().await.unwrap();
                    sqlx::query("SELECT COUNT(*) FROM pages")
                        .fetch_one(&mut *read)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    read.commit().await.unwrap();
                }
            });
        }
        let wal = dir.path().join("t.db-wal");
        let mut largest = 0;
        for _ in 0..1_500 {
            let _turn = write.lock().await;
            sqlx::query("INSERT INTO pages (body) VALUES (zeroblob(4096))")
                .execute(&writer)
                .await
                .unwrap();
            largest = largest.max(size(&wal));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let database = size(&dir.path().join("t.db"));
        closing.cancel();
        tasks.close();
        tasks.wait().await;
        (largest, database)
    }

    const FRAME: u64 = 4096 + 24;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_commit_copies_the_log_back_but_the_task_does() {
        let (_, alone) = steady_writes(None, false).await;
        assert!(alone < 100 * FRAME, "no commit checkpoints: {alone} bytes");
        let (_, copied) = steady_writes(limits(20, 1_000_000, 1_000_000), false).await;
        // 1,500 rows of one page each (and their table's inner pages).
        assert!(copied >= 1_500 * 4096, "copied back: {copied} bytes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_steady_commits_the_log_starts_over_within_its_limit() {
        let (unbounded, _) = steady_writes(None, false).await;
        assert!(
            unbounded > 3_000 * FRAME / 2,
            "without the task the log holds every frame: {unbounded} bytes"
        );
        let (started_over, _) = steady_writes(limits(5, 64, 1_000_000), false).await;
        assert!(
            started_over < 600 * FRAME,
            "copied within the writer's turn and started over: {started_over} bytes"
        );
        let (restarted, _) = steady_writes(limits(5, 64, 64), true).await;
        assert!(
            restarted < 1_000 * FRAME,
            "restarted past the limit while readers read: {restarted} bytes"
        );
    }
}
