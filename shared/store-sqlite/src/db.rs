//! Connections: one writer and a pool of readers per store, their settings, and what a busy or broken
//! database becomes as a [`StoreError`].

use crate::migrations;
use azs_core::ports::StoreError;
use rusqlite::{Connection, ErrorCode};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tracing::warn;

/// How long one statement waits for another process's write lock before SQLite reports BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries of a whole call that still met BUSY after the timeout (another process writing for long).
const BUSY_RETRIES: u32 = 5;
/// Idle readers kept open; more are opened when calls overlap and closed afterwards.
const IDLE_READERS: usize = 4;
/// Page cache of the writer (KiB). A window of 10,000 rows is about 8 MiB of pages; the cache holds it
/// without the memory a small function instance cannot spare.
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// Page cache of each reader (KiB). Readers mostly walk a range once (an export, a verify's stored
/// hour, a status list), which a cache does not speed up, and several run at once (one per stamp
/// verified): with the writer's cache, 4 stamps verifying held 4 x 16 MiB of pages.
const READER_CACHE_KIB: i64 = 2 * 1024;
/// WAL pages written before a commit checkpoints them into the database file (SQLite's default is
/// 1,000, which made every 10,000-row window pay a checkpoint and its fsyncs: about 20% of write
/// throughput in `examples/write_bench`). The WAL file is cut back to `WAL_LIMIT_BYTES` afterwards.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16 * 1024;
const WAL_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// A call's failure before it is reported: a SQLite error (retried when BUSY) or a domain answer.
pub(crate) enum Failure {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Store(e) => e,
            Failure::Sql(e) => match e.sqlite_error_code() {
                Some(
                    ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::CannotOpen
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::ReadOnly
                    | ErrorCode::PermissionDenied,
                ) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Other(e.to_string()),
            },
        }
    }
}

pub(crate) fn is_busy(f: &Failure) -> bool {
    matches!(f, Failure::Sql(e) if matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    ))
}

/// Whether `e` is a foreign-key violation (a row naming a stamp that is not registered).
pub(crate) fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

pub(crate) struct Database {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// `None` for an in-memory database, which only the writer connection can see.
    path: Option<PathBuf>,
}

impl Database {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = retry_busy(|| {
            let conn = Connection::open(path)?;
            configure(&conn, WRITER_CACHE_KIB)?;
            // WAL lets readers (and other processes' readers) go on while one writer commits.
            let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                warn!(journal_mode = %mode, "the database did not switch to WAL");
            }
            Ok(conn)
        })?;
        retry_busy(|| Ok(migrations::migrate(&mut writer)?))?;
        Ok(Self { writer: Mutex::new(writer), readers: Mutex::new(Vec::new()), path: Some(path.into()) })
    }

    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut writer = Connection::open_in_memory().map_err(Failure::from)?;
        configure(&writer, WRITER_CACHE_KIB).map_err(Failure::from)?;
        migrations::migrate(&mut writer).map_err(Failure::from)?;
        Ok(Self { writer: Mutex::new(writer), readers: Mutex::new(Vec::new()), path: None })
    }

    /// Runs `op` on the writer connection, again from the start if the database was busy. `op` opens
    /// its own `BEGIN IMMEDIATE` transaction when it writes more than one statement.
    pub fn write<T>(
        &self,
        mut op: impl FnMut(&mut Connection) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        retry_busy(|| op(&mut conn))
    }

    /// Runs `op` on a reader connection, again from the start if the database was busy.
    pub fn read<T>(&self, mut op: impl FnMut(&Connection) -> Result<T, Failure>) -> Result<T, StoreError> {
        self.with_reader(|conn| retry_busy(|| op(conn)))
    }

    /// Lends a reader connection (the writer, for an in-memory database) without retrying: for calls
    /// that hand results out as they go and so cannot start over.
    pub fn with_reader<T>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(path) = &self.path else {
            return op(&lock(&self.writer));
        };
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => retry_busy(|| {
                let conn = Connection::open(path)?;
                configure(&conn, READER_CACHE_KIB)?;
                Ok(conn)
            })?,
        };
        let result = op(&conn);
        let mut idle = lock(&self.readers);
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

fn configure(conn: &Connection, cache_kib: i64) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn retry_busy<T>(mut op: impl FnMut() -> Result<T, Failure>) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(f) if is_busy(&f) && attempt < BUSY_RETRIES => {
                attempt += 1;
                warn!(attempt, "database busy beyond the busy timeout; retrying");
                std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
            }
            result => return result.map_err(StoreError::from),
        }
    }
}

/// A poisoned lock only means another call panicked; the connection itself is still usable (an open
/// transaction was rolled back when its guard dropped).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
