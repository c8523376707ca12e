//! The log's frames written in one call per run. SQLite writes each frame of a commit to the
//! log with two `pwrite`s (its 24-byte header, then its page), about 36 for a batch of new
//! subscriptions, all on the one path every Subscribe waits on. The lifecycle's connection
//! ([`super::direct`]) and the store's writer (publishes, cursors, invocations and agents) open
//! their database through a VFS of herald's that is the system's own except for the log:
//! there, writes that continue one another are gathered in memory, and anything else done with
//! the file (the commit's sync first of all) writes them first, in one call. The log's frames
//! become visible to other connections only once the commit has synced them
//! (`synchronous = FULL`, which every connection of the store sets), so none ever reads a frame
//! still gathered here.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

/// The VFS's name, for `sqlite3_open_v2`.
pub(super) const NAME: &CStr = c"herald-gathered-log";

/// Most bytes gathered before they are written anyway: the system VFS writes at most this much
/// in one call (`seekAndWriteFd` keeps the low 17 bits of the length), and a page is at most
/// 64 KiB, so any one write of SQLite's fits.
const MOST: usize = 0x1_ffff;

/// A log file: its gathered run of bytes, then (at [`INNER`]) the system VFS's own file.
#[repr(C)]
struct LogFile {
    file: ffi::sqlite3_file,
    gathered: Vec<u8>,
    /// Where in the file the gathered run starts.
    start: i64,
}

/// Where the system VFS's file starts within ours.
const INNER: usize = std::mem::size_of::<LogFile>().next_multiple_of(16);

/// The system's VFS, whose files these wrap (its address).
static SYSTEM: OnceLock<usize> = OnceLock::new();

/// Registers the VFS (once) and returns its name; `None` when SQLite has no default VFS.
pub(super) fn register() -> Option<&'static CStr> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find` initialises SQLite and returns the default VFS or null; the
        // copy made of it lives for the whole process (leaked), as a registered VFS must.
        unsafe {
            let system = ffi::sqlite3_vfs_find(ptr::null());
            if system.is_null() {
                return false;
            }
            let mut vfs = ptr::read(system);
            vfs.szOsFile = c_int::try_from(INNER).unwrap_or(c_int::MAX) + (*system).szOsFile;
            vfs.zName = NAME.as_ptr();
            vfs.pNext = ptr::null_mut();
            vfs.xOpen = Some(open);
            SYSTEM.get_or_init(|| system as usize);
            ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0) == ffi::SQLITE_OK
        }
    });
    registered.then_some(NAME)
}

fn system() -> *mut ffi::sqlite3_vfs {
    SYSTEM.get().copied().unwrap_or(0) as *mut ffi::sqlite3_vfs
}

/// The system VFS's file within ours.
///
/// # Safety
/// `file` is a [`LogFile`] this VFS opened.
unsafe fn inner(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: SQLite allocated `szOsFile` bytes for the file: ours, then the system's at INNER.
    unsafe { file.cast::<u8>().add(INNER).cast() }
}

/// The system file's method `$name`, called with `$args` after the gathered bytes are written.
macro_rules! written_then {
    ($file:ident, $name:ident $(, $arg:expr)*) => {{
        // SAFETY: SQLite calls each method with a file this VFS opened as a log file.
        unsafe {
            let code = write_gathered($file);
            if code != ffi::SQLITE_OK {
                return code;
            }
            let inner = inner($file);
            match (*(*inner).pMethods).$name {
                Some(method) => method(inner $(, $arg)*),
                None => ffi::SQLITE_OK,
            }
        }
    }};
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let system = system();
    // SAFETY: `system` is the registered VFS's source, alive for the process; `file` has room
    // for the system's file (at its start, or at INNER for a log file).
    unsafe {
        let Some(system_open) = (*system).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return system_open(system, name, file, flags, out_flags);
        }
        (*file).pMethods = ptr::null();
        let code = system_open(system, name, inner(file), flags, out_flags);
        if code != ffi::SQLITE_OK {
            return code;
        }
        ptr::write(
            file.cast::<LogFile>(),
            LogFile {
                file: ffi::sqlite3_file {
                    pMethods: &LOG_METHODS,
                },
                gathered: Vec::new(),
                start: 0,
            },
        );
        ffi::SQLITE_OK
    }
}

/// Writes what is gathered, in one call.
///
/// # Safety
/// `file` is a [`LogFile`] this VFS opened.
unsafe fn write_gathered(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per this function's contract.
    unsafe {
        let log = file.cast::<LogFile>();
        if (*log).gathered.is_empty() {
            return ffi::SQLITE_OK;
        }
        let inner = inner(file);
        let Some(write) = (*(*inner).pMethods).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let gathered = &mut (*log).gathered;
        let length = c_int::try_from(gathered.len()).unwrap_or(c_int::MAX);
        let code = write(inner, gathered.as_ptr().cast(), length, (*log).start);
        gathered.clear();
        code
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    bytes: *const c_void,
    length: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: `file` is a log file this VFS opened; SQLite passes `length` readable bytes.
    unsafe {
        let log = file.cast::<LogFile>();
        let bytes = std::slice::from_raw_parts(bytes.cast::<u8>(), length.max(0) as usize);
        let gathered = &(*log).gathered;
        let continues = !gathered.is_empty()
            && offset == (*log).start + gathered.len() as i64
            && gathered.len() + bytes.len() <= MOST;
        if !continues {
            let code = write_gathered(file);
            if code != ffi::SQLITE_OK {
                return code;
            }
            (*log).start = offset;
        }
        (*log).gathered.extend_from_slice(bytes);
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is a log file this VFS opened; SQLite closes it once.
    unsafe {
        let written = write_gathered(file);
        let inner = inner(file);
        let closed = match (*(*inner).pMethods).xClose {
            Some(close) => close(inner),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(&raw mut (*file.cast::<LogFile>()).gathered);
        if written != ffi::SQLITE_OK {
            written
        } else {
            closed
        }
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    bytes: *mut c_void,
    length: c_int,
    offset: i64,
) -> c_int {
    written_then!(file, xRead, bytes, length, offset)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    written_then!(file, xTruncate, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    written_then!(file, xSync, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    written_then!(file, xFileSize, size)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    written_then!(file, xLock, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    written_then!(file, xUnlock, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    written_then!(file, xCheckReservedLock, out)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    argument: *mut c_void,
) -> c_int {
    written_then!(file, xFileControl, op, argument)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is a log file this VFS opened.
    unsafe {
        let inner = inner(file);
        (*(*inner).pMethods)
            .xSectorSize
            .map_or(4096, |size| size(inner))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` is a log file this VFS opened.
    unsafe {
        let inner = inner(file);
        (*(*inner).pMethods)
            .xDeviceCharacteristics
            .map_or(0, |characteristics| characteristics(inner))
    }
}

/// A log file's methods: version 1 (the shared memory and memory-mapped methods are the
/// database file's, never a log's).
static LOG_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::path::Path;

    use super::super::direct::{Bind, Direct};
    use super::*;
    use crate::store::codec::Columns;

    /// A log file opened through the VFS, in memory SQLite would have given it.
    struct Opened {
        memory: Vec<u64>,
    }

    impl Opened {
        fn open(path: &Path) -> Opened {
            let vfs = register().expect("the VFS registers");
            // SAFETY: the VFS was registered under that name; the memory has its file's size.
            unsafe {
                let vfs = ffi::sqlite3_vfs_find(vfs.as_ptr());
                let words = usize::try_from((*vfs).szOsFile).unwrap().div_ceil(8);
                let mut opened = Opened {
                    memory: vec![0; words],
                };
                let name = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                let flags =
                    ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_READWRITE;
                let code = (*vfs).xOpen.unwrap()(
                    vfs,
                    name.as_ptr(),
                    opened.file(),
                    flags,
                    ptr::null_mut(),
                );
                assert_eq!(code, ffi::SQLITE_OK);
                // SQLite keeps the name for as long as the file is open.
                std::mem::forget(name);
                opened
            }
        }

        fn file(&mut self) -> *mut ffi::sqlite3_file {
            self.memory.as_mut_ptr().cast()
        }

        fn methods(&mut self) -> &'static ffi::sqlite3_io_methods {
            // SAFETY: the file is open, its methods static.
            unsafe { &*(*self.file()).pMethods }
        }

        fn write(&mut self, bytes: &[u8], offset: i64) {
            let write = self.methods().xWrite.unwrap();
            let length = c_int::try_from(bytes.len()).unwrap();
            // SAFETY: the file is open and `bytes` readable.
            let code = unsafe { write(self.file(), bytes.as_ptr().cast(), length, offset) };
            assert_eq!(code, ffi::SQLITE_OK);
        }

        fn sync(&mut self) {
            let sync = self.methods().xSync.unwrap();
            // SAFETY: the file is open.
            assert_eq!(
                unsafe { sync(self.file(), ffi::SQLITE_SYNC_FULL) },
                ffi::SQLITE_OK
            );
        }

        fn read(&mut self, length: usize, offset: i64) -> Vec<u8> {
            let read = self.methods().xRead.unwrap();
            let mut bytes = vec![0u8; length];
            let size = c_int::try_from(length).unwrap();
            // SAFETY: the file is open and `bytes` writable.
            let code = unsafe { read(self.file(), bytes.as_mut_ptr().cast(), size, offset) };
            assert_eq!(code, ffi::SQLITE_OK);
            bytes
        }

        fn close(mut self) {
            let close = self.methods().xClose.unwrap();
            // SAFETY: the file is open, and closed once.
            assert_eq!(unsafe { close(self.file()) }, ffi::SQLITE_OK);
        }
    }

    fn on_disk(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_log_s_writes_reach_the_file_together_at_the_next_sync_or_read() {
        let dir = tempfile::tempdir().unwrap();
        // The system VFS gives a log its database's mode: the database must be there.
        std::fs::File::create(dir.path().join("herald.db")).unwrap();
        let path = dir.path().join("herald.db-wal");
        let mut log = Opened::open(&path);
        log.write(b"head", 0);
        log.write(b"er-page-one", 4);
        log.write(b"|page-two", 15);
        assert!(on_disk(&path).is_empty(), "gathered, not yet written");
        log.sync();
        assert_eq!(on_disk(&path), b"header-page-one|page-two");
        // A write elsewhere writes the run before it first; a read sees both.
        log.write(b"HEAD", 0);
        log.write(b"TAIL", 24);
        assert_eq!(on_disk(&path), b"HEADer-page-one|page-two");
        assert_eq!(log.read(28, 0), b"HEADer-page-one|page-twoTAIL");
        assert_eq!(on_disk(&path), b"HEADer-page-one|page-twoTAIL");
        log.write(b"!", 28);
        log.close();
        assert_eq!(on_disk(&path), b"HEADer-page-one|page-twoTAIL!");
    }

    /// One integer a statement returns, read through the system's own VFS.
    fn read_elsewhere(path: &Path, sql: &CStr) -> String {
        let name = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a connection and a statement of this function's own, closed before it returns.
        unsafe {
            let mut db = ptr::null_mut();
            let flags = ffi::SQLITE_OPEN_READONLY;
            assert_eq!(
                ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, ptr::null()),
                ffi::SQLITE_OK
            );
            let mut stmt = ptr::null_mut();
            let code = ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, ptr::null_mut());
            assert_eq!(code, ffi::SQLITE_OK);
            assert_eq!(ffi::sqlite3_step(stmt), ffi::SQLITE_ROW);
            let text = CStr::from_ptr(ffi::sqlite3_column_text(stmt, 0).cast())
                .to_string_lossy()
                .into_owned();
            ffi::sqlite3_finalize(stmt);
            ffi::sqlite3_close(db);
            text
        }
    }

    fn run(direct: &mut Direct, sql: &'static str) {
        direct.run(sql, &[]).unwrap();
    }

    #[test]
    fn a_database_written_through_it_reads_whole_from_other_connections_and_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.db");
        std::fs::File::create(&path).unwrap();
        let mut direct = Direct::open(&path).unwrap();
        run(&mut direct, "PRAGMA journal_mode = WAL");
        // A small cache: the long transaction spills pages into the log before it commits,
        // and reads them back from there.
        run(&mut direct, "PRAGMA cache_size = 8");
        run(
            &mut direct,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        );
        let rows = "SELECT count(*) || '/' || sum(length(v)) FROM t";
        for round in 0..3 {
            run(&mut direct, "BEGIN IMMEDIATE");
            for _ in 0..500 {
                let value = "x".repeat(700);
                direct
                    .run("INSERT INTO t (v) VALUES (?1)", &[Bind::Text(Some(&value))])
                    .unwrap();
            }
            let counted = direct.run(rows, &[]).unwrap();
            let expected = format!("{}/{}", 500 * (round + 1), 350_000 * (round + 1));
            assert_eq!(
                counted[0]
                    .text("count(*) || '/' || sum(length(v))")
                    .unwrap(),
                expected
            );
            run(&mut direct, "COMMIT");
            assert_eq!(read_elsewhere(&path, c"PRAGMA integrity_check"), "ok");
            assert_eq!(
                read_elsewhere(&path, c"SELECT count(*) || '/' || sum(length(v)) FROM t"),
                expected
            );
            if round == 1 {
                // The log starts over from its beginning at the next write.
                run(&mut direct, "PRAGMA wal_checkpoint(RESTART)");
            }
        }
        drop(direct);
        assert_eq!(
            read_elsewhere(&path, c"SELECT count(*) || '/' || sum(length(v)) FROM t"),
            "1500/1050000"
        );
    }

    /// The name of the VFS a connection was opened through.
    fn vfs_of(db: *mut ffi::sqlite3) -> String {
        let mut vfs: *mut ffi::sqlite3_vfs = ptr::null_mut();
        // SAFETY: `db` is an open connection; the VFS it answers is registered for the process.
        unsafe {
            let code = ffi::sqlite3_file_control(
                db,
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_VFS_POINTER,
                (&raw mut vfs).cast(),
            );
            assert_eq!(code, ffi::SQLITE_OK);
            CStr::from_ptr((*vfs).zName).to_string_lossy().into_owned()
        }
    }

    #[tokio::test]
    async fn the_store_s_writers_open_their_database_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::SqliteStore::open(dir.path()).await.unwrap();
        let mut writer = store.writer.acquire().await.unwrap();
        let mut handle = writer.lock_handle().await.unwrap();
        assert_eq!(
            vfs_of(handle.as_raw_handle().as_ptr()),
            "herald-gathered-log"
        );
        drop(handle);
        drop(writer);
        let mut reader = store.pool.acquire().await.unwrap();
        let mut handle = reader.lock_handle().await.unwrap();
        assert_eq!(vfs_of(handle.as_raw_handle().as_ptr()), "unix");
        drop(handle);
        drop(reader);
        let direct = Direct::open(&dir.path().join("herald.db")).unwrap();
        assert_eq!(vfs_of(direct.handle()), "herald-gathered-log");
    }
}
