//! Versioned schema migrations, applied on open. Each is a numbered SQL file in `migrations/`; the
//! versions applied are recorded in `schema_migrations`. Applying runs in one `BEGIN IMMEDIATE`
//! transaction, so processes opening a new file at the same moment migrate it exactly once.

use rusqlite::{Connection, TransactionBehavior};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
    /// Work SQL cannot do (computing a hash), run after `sql`, then `then_sql`; same transaction.
    step: Option<Step>,
}

struct Step {
    run: fn(&Connection) -> rusqlite::Result<()>,
    then_sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
        step: None,
    },
    Migration {
        version: 2,
        name: "tenant numbers",
        sql: include_str!("../migrations/0002_tenant_numbers.sql"),
        step: None,
    },
    Migration {
        version: 3,
        name: "stamp tombstones",
        sql: include_str!("../migrations/0003_stamp_tombstones.sql"),
        step: None,
    },
    Migration {
        version: 4,
        name: "128-bit row key",
        sql: include_str!("../migrations/0004_row_key_128.sql"),
        step: Some(Step {
            run: rekey_usage_rows,
            then_sql: include_str!("../migrations/0004_row_key_128_index.sql"),
        }),
    },
    Migration {
        version: 5,
        name: "tenant last reported",
        sql: include_str!("../migrations/0005_tenant_last_reported.sql"),
        step: None,
    },
    Migration {
        version: 6,
        name: "quarantine",
        sql: include_str!("../migrations/0006_quarantine.sql"),
        step: None,
    },
    Migration {
        version: 7,
        name: "duplicate rows",
        sql: include_str!("../migrations/0007_duplicate_rows.sql"),
        step: None,
    },
    Migration {
        version: 8,
        name: "verified",
        sql: include_str!("../migrations/0008_verified.sql"),
        step: None,
    },
    Migration { version: 9, name: "audit", sql: include_str!("../migrations/0009_audit.sql"), step: None },
    Migration { version: 10, name: "rating", sql: include_str!("../migrations/0010_rating.sql"), step: None },
    Migration {
        version: 11,
        name: "billing rows",
        sql: include_str!("../migrations/0011_billing_rows.sql"),
        step: None,
    },
    Migration {
        version: 12,
        name: "billing rows covering",
        sql: include_str!("../migrations/0012_billing_rows_covering.sql"),
        step: None,
    },
];

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = 12;

/// Every migration version this build knows, in order. Versions are assigned to parallel work, so
/// one may be missing for a while; each is applied when it is not yet recorded, not only when it is
/// above the highest one recorded.
pub fn known_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

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
    let applied: std::collections::HashSet<i64> = tx
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.execute_batch(m.sql)?;
        if let Some(step) = &m.step {
            (step.run)(&tx)?;
            tx.execute_batch(step.then_sql)?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            (m.version, m.name, chrono::Utc::now().timestamp_millis()),
        )?;
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    tx.commit()
}

/// Migration 4's step: every stored row's 128-bit key, from its stored fields. The fields are stored
/// exactly as the key hashes them (quantity as its exact decimal text), so the recomputed key is the
/// one a re-pull of the same row computes.
fn rekey_usage_rows(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare(
        "SELECT rowid, subscription_id, meter_id, usage_start, usage_end, quantity, resource_uri,
                location, tags, additional_info
         FROM usage_rows",
    )?;
    let mut write = conn.prepare("UPDATE usage_rows SET row_key = ?2, row_key_low = ?3 WHERE rowid = ?1")?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let row = azs_core::UsageRow {
            subscription_id: r.get(1)?,
            meter_id: r.get(2)?,
            usage_start: crate::codec::get_secs(r, 3)?,
            usage_end: crate::codec::get_secs(r, 4)?,
            quantity: crate::codec::get_quantity(r, 5)?,
            resource_uri: r.get(6)?,
            location: r.get(7)?,
            tags: r.get(8)?,
            additional_info: r.get(9)?,
        };
        let (high, low) = row.key().halves();
        write.execute((r.get::<_, i64>(0)?, high, low))?;
    }
    Ok(())
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
        assert!(MIGRATIONS.windows(2).all(|w| w[1].version > w[0].version));
    }
}
