//! Versioned schema migrations. Each is a numbered SQL file in `migrations/`; the versions applied are
//! recorded in `schema_migrations`. All of it runs in one transaction holding an advisory lock, so
//! processes starting at the same moment migrate a new database exactly once (PostgreSQL's DDL is
//! transactional: a failed migration leaves nothing behind).

use crate::Failure;
use azs_core::ports::StoreError;
use deadpool_postgres::Object;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../migrations/0001_initial.sql") },
    Migration { version: 2, name: "audit", sql: include_str!("../migrations/0002_audit.sql") },
    Migration { version: 3, name: "rating", sql: include_str!("../migrations/0003_rating.sql") },
    Migration { version: 4, name: "billing rows", sql: include_str!("../migrations/0004_billing_rows.sql") },
];

/// The schema version this build writes.
pub const LATEST_VERSION: i64 = 4;

/// Every migration version this build knows, in order.
pub fn known_versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

/// The advisory lock migrations take ("azs_usag" as a big-endian integer): one migrator at a time.
const MIGRATION_LOCK: i64 = 0x617a_735f_7573_6167;

const CREATE_LEDGER: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version bigint PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

pub(crate) async fn migrate(mut client: Object) -> Result<i64, Failure> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(CREATE_LEDGER).await?;
    let applied: Vec<i64> =
        tx.query("SELECT version FROM schema_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    let current = applied.iter().copied().max().unwrap_or(0);
    if current > LATEST_VERSION {
        // A newer build migrated this database; writing with an older idea of the schema could corrupt it.
        return Err(StoreError::Other(format!(
            "the database is at schema version {current}; this build knows up to {LATEST_VERSION}"
        ))
        .into());
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.batch_execute(m.sql).await?;
        tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&m.version, &m.name])
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied schema migration");
    }
    tx.commit().await?;
    Ok(LATEST_VERSION)
}

/// The highest version recorded, or 0 in a database azs-usage never migrated.
pub(crate) async fn current_version(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    let ledger: bool =
        client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await?.get(0);
    if !ledger {
        return Ok(0);
    }
    Ok(client.query_one("SELECT coalesce(max(version), 0)::bigint FROM schema_migrations", &[]).await?.get(0))
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
