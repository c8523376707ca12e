//! New subscriptions written through a connection of herald's own, on the group commit's task
//! itself. Through the driver, each batch went to the connection's thread and its rows came
//! back to the committing task: two threads woken per batch, each waiting for a core behind
//! the requests being parsed, on the one path every Subscribe waits on. Here the batch's
//! statement runs where the batch was gathered, under the writer's turn like every other write.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::path::Path;
use std::ptr;

use libsqlite3_sys as ffi;

use super::super::StoreError;
use super::super::codec::Columns;
use super::super::subscription_writes::NewSubscription;

/// An open connection and the insert statements prepared on it, one per batch length.
pub(super) struct Direct {
    db: *mut ffi::sqlite3,
    inserts: HashMap<usize, *mut ffi::sqlite3_stmt>,
}

// SAFETY: the connection is opened in SQLite's serialized mode and used by one thread at a time
// (it lives behind a mutex); SQLite allows a connection to move between threads.
unsafe impl Send for Direct {}

impl Direct {
    /// Opens `path` as the store's other connections do: `synchronous=FULL`, the log copied back
    /// by the store's own task, a busy timeout.
    pub fn open(path: &Path) -> Result<Direct, StoreError> {
        let name = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| StoreError::Corrupt("the database path holds a NUL".into()))?;
        let mut db = ptr::null_mut();
        let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_FULLMUTEX;
        // SAFETY: `name` is NUL-terminated; `db` receives the handle, closed on failure below.
        let code = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, ptr::null()) };
        let direct = Direct {
            db,
            inserts: HashMap::new(),
        };
        direct.check(code)?;
        direct.execute(
            c"PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA busy_timeout = 10000;",
        )?;
        Ok(direct)
    }

    /// Inserts `batch` with `statement` (the insert for `rows` rows, the batch padded with rows
    /// of NULLs that it skips); returns each inserted row's id and cursor.
    pub fn insert(
        &mut self,
        rows: usize,
        statement: &str,
        batch: &[NewSubscription],
    ) -> Result<Vec<Returned>, StoreError> {
        let stmt = self.prepared(rows, statement)?;
        let bound = self.bind_all(stmt, batch);
        let result = bound.and_then(|()| self.step_all(stmt));
        // SAFETY: `stmt` is a live statement of this connection; resetting it ends its run and
        // clearing drops the pointers bound into `batch`, which outlives this call.
        unsafe {
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
        }
        result
    }

    fn prepared(
        &mut self,
        rows: usize,
        statement: &str,
    ) -> Result<*mut ffi::sqlite3_stmt, StoreError> {
        if let Some(stmt) = self.inserts.get(&rows) {
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
        self.inserts.insert(rows, stmt);
        Ok(stmt)
    }

    /// Binds each write's values in the order of the insert's rows; the rows past the batch
    /// stay NULL.
    fn bind_all(
        &self,
        stmt: *mut ffi::sqlite3_stmt,
        batch: &[NewSubscription],
    ) -> Result<(), StoreError> {
        let mut index: c_int = 0;
        for write in batch {
            let row = &write.row;
            let texts = [
                Some(row.id.as_str()),
                Some(&row.source),
                Some(&row.eventing),
                Some(&row.soap),
                Some(&row.addressing),
                Some(&row.notify_to),
                row.end_to.as_deref(),
                Some(&row.delivery_mode),
                Some(&row.format),
                row.filter.as_deref(),
            ];
            for text in texts {
                index += 1;
                self.bind_text(stmt, index, text)?;
            }
            index += 1;
            self.bind_int(stmt, index, row.expires_at)?;
            index += 1;
            self.bind_text(stmt, index, Some(&row.expiry_kind))?;
            index += 1;
            self.bind_int(stmt, index, Some(row.created_at))?;
            for text in [
                Some(row.manager_address.as_str()),
                Some(&row.log_kind),
                Some(&row.delivery),
                row.webhook.as_deref(),
            ] {
                index += 1;
                self.bind_text(stmt, index, text)?;
            }
            index += 1;
            self.bind_int(stmt, index, row.retry_interval_ms)?;
            index += 1;
            self.bind_int(stmt, index, row.retry_total)?;
            index += 1;
            self.bind_text(stmt, index, row.wsman.as_deref())?;
            index += 1;
            self.bind_text(stmt, index, Some(&write.owner))?;
            index += 1;
            self.bind_int(stmt, index, write.start_after)?;
        }
        Ok(())
    }

    fn bind_text(
        &self,
        stmt: *mut ffi::sqlite3_stmt,
        index: c_int,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        // SAFETY: the text stays alive and unchanged until the statement's bindings are cleared
        // (`insert`), so SQLite may keep the pointer (SQLITE_STATIC) rather than copy it.
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

    /// Runs the statement to its end: its rows are `id, cursor`.
    fn step_all(&self, stmt: *mut ffi::sqlite3_stmt) -> Result<Vec<Returned>, StoreError> {
        let mut rows = Vec::new();
        loop {
            // SAFETY: `stmt` is a live, bound statement of this connection.
            match unsafe { ffi::sqlite3_step(stmt) } {
                ffi::SQLITE_ROW => {
                    // SAFETY: the row is current; the text is copied before the next step.
                    let id = unsafe {
                        let text = ffi::sqlite3_column_text(stmt, 0);
                        let length = ffi::sqlite3_column_bytes(stmt, 0);
                        if text.is_null() {
                            return Err(StoreError::Corrupt(
                                "an inserted row without an id".into(),
                            ));
                        }
                        let bytes =
                            std::slice::from_raw_parts(text, usize::try_from(length).unwrap_or(0));
                        String::from_utf8_lossy(bytes).into_owned()
                    };
                    // SAFETY: as above.
                    let cursor = unsafe { ffi::sqlite3_column_int64(stmt, 1) };
                    rows.push(Returned { id, cursor });
                }
                ffi::SQLITE_DONE => return Ok(rows),
                code => return Err(self.error(code)),
            }
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
            for stmt in self.inserts.values() {
                ffi::sqlite3_finalize(*stmt);
            }
            ffi::sqlite3_close(self.db);
        }
    }
}

/// A row an insert returned.
pub(super) struct Returned {
    id: String,
    cursor: i64,
}

impl Columns for Returned {
    fn text(&self, name: &str) -> Result<String, StoreError> {
        match name {
            "id" => Ok(self.id.clone()),
            _ => Err(StoreError::Corrupt(format!("no text column {name}"))),
        }
    }

    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.text(name).map(Some)
    }

    fn int(&self, name: &str) -> Result<i64, StoreError> {
        match name {
            "cursor" => Ok(self.cursor),
            _ => Err(StoreError::Corrupt(format!("no integer column {name}"))),
        }
    }

    fn optional_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.int(name).map(Some)
    }
}
