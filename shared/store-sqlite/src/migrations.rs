//! Versioned schema migrations, applied on open. Each is a numbered SQL file in `migrations/`; the
//! versions applied are recorded in `schema_migrations`. Applying runs in one `BEGIN IMMEDIATE`
//! transaction, so processes opening a new file at the same moment migrate it exactly once.

use rusqlite::{Connection, TransactionBehavior};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../migrations/0001_initial.sql") },
    Migration {
        version: 2,
        name: "tenant numbers",
        sql: include_str!("../migrations/0002_tenant_numbers.sql"),
    },
    Migration {
        version: 3,
        name: "stamp tombstones",
        sql: include_str!("../migrations/0003_stamp_tombstones.sql"),
    },
];

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = 3;

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)";

pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(CREATE_LEDGER)?;
    let current = current_version(&tx)?;
    if current > LATEST_VERSION {
        // A newer build migrated this file; writing with an older idea of the schema could corrupt it.
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "the database is at schema version {current}; this build knows up to {LATEST_VERSION}"
            )),
        ));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            (m.version, m.name, chrono::Utc::now().timestamp_millis()),
        )?;
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    tx.commit()
}

pub(crate) fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_version_is_the_last_migration() {
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
        assert!(MIGRATIONS.windows(2).all(|w| w[1].version == w[0].version + 1));
    }
}
