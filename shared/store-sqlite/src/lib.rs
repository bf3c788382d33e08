//! The embedded default store: every port of [`azs_core::ports::Store`] over one SQLite file.
//!
//! - Usage rows and the stamp's watermark move in one transaction (`commit_window`), fenced by the
//!   stamp's lease and by the watermark itself, so a zombie or overlapping run can neither double nor
//!   skip a window.
//! - Several processes may open the same file: WAL, a busy timeout, `BEGIN IMMEDIATE` for every write,
//!   and a retry when the database stays busy. Within a process, writes go through one connection (SQLite
//!   has one writer anyway) and reads through a small pool.
//! - rusqlite is synchronous: each call runs on tokio's blocking pool.
//! - The schema is migrated on open (`migrations/*.sql`, recorded in `schema_migrations`).

mod audit;
mod check;
mod codec;
mod db;
mod leases;
mod ledger;
mod mappings;
mod migrations;
#[cfg(test)]
mod query_plans;
mod rating;
mod stamps;
mod status;

use azs_core::ports::StoreError;
use db::Database;
use std::path::Path;
use std::sync::Arc;

pub use check::check_database;
pub use migrations::{LATEST_VERSION, known_versions};

/// A store on one SQLite database. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Database>,
    /// Windows take turns here before their rows are copied for the blocking pool: SQLite has one
    /// writer anyway, and stamps queueing for it then hold one copy of a window between them, not one
    /// each.
    commit_turn: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    /// Blocking: call it at startup, or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Ok(Self { db: Arc::new(Database::open(path.as_ref())?), commit_turn: Arc::default() })
    }

    /// A private database that lives as long as this store (tests, demos).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Ok(Self { db: Arc::new(Database::open_in_memory()?), commit_turn: Arc::default() })
    }

    /// The highest migration applied to the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(|db| db.read(|conn| Ok(migrations::current_version(conn)?))).await
    }

    /// Runs `job` on the blocking pool: rusqlite calls block on I/O and on other writers.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || job(&db))
            .await
            .map_err(|e| StoreError::Other(format!("store task ended abnormally: {e}")))?
    }
}
