//! The subscription lifecycle's batches (new subscriptions, renewals, ends) written through a
//! connection of herald's own, on the group commit's task itself. Through the driver, each
//! batch went to the connection's thread and its rows came back to the committing task: two
//! threads woken per batch, each waiting for a core behind the requests being parsed, on the
//! one path every Subscribe, Renew and Unsubscribe waits on. Here the batch's statement runs
//! where the batch was gathered, under the writer's turn like every other write, and blocks
//! that runtime worker for the statement and its sync.
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use libsqlite3_sys as ffi;

use super::super::StoreError;
use super::super::codec::Columns;

/// An open connection and the statements prepared on it, by their text's address (each is a
/// `'static` string: one statement per batch length of each kind of write).
pub(super) struct Direct {
    db: *mut ffi::sqlite3,
    prepared: HashMap<usize, *mut ffi::sqlite3_stmt>,
}

/// A value bound to a statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bind<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
}

// SAFETY: the connection is used by one thread at a time (it lives behind a mutex), which is all
// SQLite's multi-thread mode asks of it (`SQLITE_OPEN_NOMUTEX`: no lock of SQLite's own around
// each call); SQLite allows a connection to move between threads.
unsafe impl Send for Direct {}

/// Leaves out SQLite's count of the memory it holds, which nothing here reads (no statistics, no
/// heap limit): kept, it takes a lock of the whole library's around each of SQLite's
/// allocations and frees (about half of the 40 a Subscribe takes in `callgrind`). Only a library
/// not yet in use can be told; once in use, SQLite refuses (SQLITE_MISUSE) and nothing changes.
pub(super) fn configure_library() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    // SAFETY: `SQLITE_CONFIG_MEMSTATUS` takes one int. `sqlite3_config` is not thread-safe: in
    // the server the store's open is the process's first use of SQLite, so nothing else runs
    // it then. In tests another thread may be starting SQLite at the same moment; the flag it
    // sets only chooses whether memory is counted, so the worst outcome is a count not kept.
    CONFIGURED.call_once(|| unsafe {
        ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
    });
}

impl Direct {
    /// Opens `path` as the store's other connections do: `synchronous=FULL`, the log copied back
    /// by the store's own task, a busy timeout.
    pub fn open(path: &Path) -> Result<Direct, StoreError> {
        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| StoreError::Corrupt("the database path holds a NUL".into()))?;
        let mut db = ptr::null_mut();
        // The caller's mutex serializes every use, so SQLite's own lock per call (2k instructions
        // of a new subscription's 35k in `callgrind`) is left out.
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX;
        // The log's frames written in one call per run (`wal_writes`), which needs the sync at
        // each commit set below.
        let vfs = super::wal_writes::register().map_or(ptr::null(), CStr::as_ptr);
        // SAFETY: `name` and `vfs` are NUL-terminated (or null); `db` receives the handle,
        // closed on failure below.
        let code = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, vfs) };
        let direct = Direct {
            db,
            prepared: HashMap::new(),
        };
        direct.check(code)?;
        direct.execute(
            c"PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA busy_timeout = 10000;",
        )?;
        Ok(direct)
    }

    /// Runs `statement` with `values` bound in order (the parameters past them stay NULL) and
    /// returns its rows.
    pub fn run(
        &mut self,
        statement: &'static str,
        values: &[Bind<'_>],
    ) -> Result<Vec<Returned>, StoreError> {
        let stmt = self.prepared(statement)?;
        let bound = values
            .iter()
            .zip(1..)
            .try_for_each(|(value, index)| match *value {
                Bind::Text(text) => self.bind_text(stmt, index, text),
                Bind::Int(int) => self.bind_int(stmt, index, int),
            });
        let result = bound.and_then(|()| self.step_all(stmt));
        // SAFETY: `stmt` is a live statement of this connection; resetting it ends its run and
        // clearing drops the pointers bound into `values`' texts, which outlive this call.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        result
    }

    /// How many rows the last INSERT, UPDATE or DELETE changed.
    pub fn changes(&self) -> u64 {
        // SAFETY: the connection is open.
        let changed = unsafe { ffi::sqlite3_changes64(self.db) };
        u64::try_from(changed).unwrap_or(0)
    }

    /// Whether a transaction is open (SQLite ends one itself after some errors).
    pub fn in_transaction(&self) -> bool {
        // SAFETY: the connection is open.
        unsafe { ffi::sqlite3_get_autocommit(self.db) == 0 }
    }

    fn prepared(&mut self, statement: &'static str) -> Result<*mut ffi::sqlite3_stmt, StoreError> {
        let key = statement.as_ptr() as usize;
        if let Some(stmt) = self.prepared.get(&key) {
            return Ok(*stmt);
        }
        let mut stmt = ptr::null_mut();
        // SAFETY: the text and its length are valid for the call; `stmt` receives the statement.
        let code = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db,
                statement.as_ptr().cast::<c_char>(),
                c_int::try_from(statement.len()).unwrap_or(c_int::MAX),
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        self.check(code)?;
        self.prepared.insert(key, stmt);
        Ok(stmt)
    }

    fn bind_text(
        &self,
        stmt: *mut ffi::sqlite3_stmt,
        index: c_int,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        // SAFETY: the text stays alive and unchanged until the statement's bindings are cleared
        // (`run`), so SQLite may keep the pointer (SQLITE_STATIC) rather than copy it.
        let code = unsafe {
            match text {
                Some(text) => ffi::sqlite3_bind_text(
                    stmt,
                    index,
                    text.as_ptr().cast::<c_char>(),
                    c_int::try_from(text.len()).unwrap_or(c_int::MAX),
                    ffi::SQLITE_STATIC(),
                ),
                None => ffi::sqlite3_bind_null(stmt, index),
            }
        };
        self.check(code)
    }

    fn bind_int(
        &self,
        stmt: *mut ffi::sqlite3_stmt,
        index: c_int,
        value: Option<i64>,
    ) -> Result<(), StoreError> {
        // SAFETY: `stmt` is a live statement of this connection.
        let code = unsafe {
            match value {
                Some(value) => ffi::sqlite3_bind_int64(stmt, index, value),
                None => ffi::sqlite3_bind_null(stmt, index),
            }
        };
        self.check(code)
    }

    /// Runs the statement to its end, each row's columns by name (the names read once).
    fn step_all(&self, stmt: *mut ffi::sqlite3_stmt) -> Result<Vec<Returned>, StoreError> {
        let mut rows = Vec::new();
        let mut names: Option<Arc<[String]>> = None;
        loop {
            // SAFETY: `stmt` is a live, bound statement of this connection.
            match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_ROW => {
                    let names = names.get_or_insert_with(|| column_names(stmt));
                    rows.push(Returned::read(stmt, names.clone()));
                }
                ffi::SQLITE_DONE => return Ok(rows),
                code => return Err(self.error(code)),
            }
        }
    }

    /// The connection's handle, for tests that ask SQLite about it.
    #[cfg(test)]
    pub fn handle(&self) -> *mut ffi::sqlite3 {
        self.db
    }

    /// How many parameters `statement` has, and how many times SQLite has prepared it again
    /// since this connection first prepared it (preparing it now if it has not).
    #[cfg(test)]
    pub fn preparations(&mut self, statement: &'static str) -> (usize, c_int) {
        let stmt = self.prepared(statement).expect("the statement prepares");
        // SAFETY: `stmt` is a live statement of this connection.
        unsafe {
            (
                usize::try_from(ffi::sqlite3_bind_parameter_count(stmt)).unwrap_or(0),
                ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0),
            )
        }
    }

    fn execute(&self, sql: &CStr) -> Result<(), StoreError> {
        // SAFETY: `sql` is NUL-terminated; no callback.
        let code = unsafe {
            ffi::sqlite3_exec(
                self.db,
                sql.as_ptr(),
                None,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        self.check(code)
    }

    fn check(&self, code: c_int) -> Result<(), StoreError> {
        if code == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(code))
        }
    }

    fn error(&self, code: c_int) -> StoreError {
        // SAFETY: the message belongs to the connection and is copied at once.
        let message = unsafe {
            let text = ffi::sqlite3_errmsg(self.db);
            if text.is_null() {
                String::new()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        StoreError::Database(sqlx::Error::Protocol(format!(
            "SQLite error {code}: {message}"
        )))
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        // SAFETY: each statement and the connection are finalized once, here.
        unsafe {
            for stmt in self.prepared.values() {
                ffi::sqlite3_finalize(*stmt);
            }
            ffi::sqlite3_close(self.db);
        }
    }
}

/// A column's value.
enum Column {
    Null,
    Int(i64),
    Text(String),
}

/// The names of `stmt`'s columns, in order.
fn column_names(stmt: *mut ffi::sqlite3_stmt) -> Arc<[String]> {
    // SAFETY: `stmt` is a live statement; each name is copied at once.
    unsafe {
        (0..ffi::sqlite3_column_count(stmt))
            .map(|i| {
                let name = ffi::sqlite3_column_name(stmt, i);
                if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                }
            })
            .collect()
    }
}

/// A row a statement returned: its columns by name, the names shared by every row of a run.
pub(super) struct Returned {
    names: Arc<[String]>,
    values: Vec<Column>,
}

impl Returned {
    /// The current row of `stmt`, whose columns are `names`.
    fn read(stmt: *mut ffi::sqlite3_stmt, names: Arc<[String]>) -> Returned {
        // SAFETY: the row is current; texts are copied before the next step.
        unsafe {
            let values = (0..ffi::sqlite3_column_count(stmt))
                .map(|i| match ffi::sqlite3_column_type(stmt, i) {
                    ffi::SQLITE_NULL => Column::Null,
                    ffi::SQLITE_INTEGER => Column::Int(ffi::sqlite3_column_int64(stmt, i)),
                    _ => {
                        let text = ffi::sqlite3_column_text(stmt, i);
                        let length = ffi::sqlite3_column_bytes(stmt, i);
                        if text.is_null() {
                            Column::Null
                        } else {
                            let length = usize::try_from(length).unwrap_or(0);
                            let bytes = std::slice::from_raw_parts(text, length);
                            Column::Text(String::from_utf8_lossy(bytes).into_owned())
                        }
                    }
                })
                .collect();
            Returned { names, values }
        }
    }

    fn column(&self, name: &str) -> Result<&Column, StoreError> {
        self.names
            .iter()
            .position(|column| column == name)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {name}")))
    }
}

impl Columns for Returned {
    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.column(name)? {
            Column::Null => Ok(None),
            Column::Text(text) => Ok(Some(text.clone())),
            Column::Int(_) => Err(StoreError::Corrupt(format!("{name} is not text"))),
        }
    }

    fn optional_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.column(name)? {
            Column::Null => Ok(None),
            Column::Int(int) => Ok(Some(*int)),
            Column::Text(_) => Err(StoreError::Corrupt(format!("{name} is not an integer"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_row_reads_its_columns_by_name_and_refuses_a_null_where_a_value_must_be() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.db");
        std::fs::File::create(&path).unwrap();
        let mut direct = Direct::open(&path).unwrap();
        let rows = direct
            .run(
                "SELECT NULL AS gone, ?1 AS count, ?2 AS name",
                &[Bind::Int(Some(7)), Bind::Text(Some("x"))],
            )
            .unwrap();
        let [row] = rows.as_slice() else {
            panic!("one row");
        };
        assert_eq!(row.int("count").unwrap(), 7);
        assert_eq!(row.text("name").unwrap(), "x");
        assert_eq!(row.optional_int("gone").unwrap(), None);
        for refused in [row.int("gone"), row.int("name"), row.int("absent")] {
            assert!(
                matches!(refused, Err(StoreError::Corrupt(_))),
                "{refused:?}"
            );
        }
        for refused in [row.text("gone"), row.text("count")] {
            assert!(
                matches!(refused, Err(StoreError::Corrupt(_))),
                "{refused:?}"
            );
        }
    }

    /// Every statement of the store's whose LIMIT is bound is prepared once, not again at each
    /// run (see `sql::to_sqlite`): run three times on a migrated store, SQLite prepares none of
    /// them again.
    #[tokio::test]
    async fn statements_with_a_bound_limit_are_prepared_once() {
        use super::super::super::Store;
        use super::super::super::{channels as shared, sql};
        use super::super::{channels, queues, statements};

        let dir = tempfile::tempdir().unwrap();
        let store = super::super::SqliteStore::open(dir.path()).await.unwrap();
        let mut direct = Direct::open(&dir.path().join("herald.db")).unwrap();
        let statements = [
            sql::EVENTS_AFTER.sqlite(),
            sql::END_EXPIRED_SQLITE.sqlite(),
            sql::CATCH_UP_SWEEP_MARKS_SQLITE.sqlite(),
            sql::DUE_END_NOTICES_SQLITE.sqlite(),
            shared::START_FIRINGS.sqlite(),
            shared::ENDED.sqlite(),
            queues::CLAIM,
            queues::RECEIVE,
            channels::DUE_FIRINGS,
            statements::CLAIM_ORPHANS,
            statements::OWNED_PAGE,
        ];
        for statement in statements {
            assert!(statement.contains("LIMIT"), "{statement}");
            let (parameters, _) = direct.preparations(statement);
            for run in 1..=3 {
                let values = vec![Bind::Int(Some(run)); parameters];
                direct.run(statement, &values).unwrap();
            }
            assert_eq!(direct.preparations(statement).1, 0, "{statement}");
        }
        store.close().await;
    }
}
