//! `db check` for a SQL Server / Azure SQL database: everything a first real-server run depends on,
//! each item ok / warning / fail with its fix. Nothing is created or migrated; the trial commit
//! registers a probe stamp and commits a one-row window through the store's own code inside an outer
//! transaction that is rolled back.

use crate::schema::{MINIMUM_COMPATIBILITY_LEVEL, is_system_database};
use crate::session::{Failure, PooledSession, Session, checkout};
use crate::types::{opt, opt_text};
use crate::{LATEST_VERSION, SqlServerStore, bind, ledger, sql, stamps};
use azs_core::check::{self, CheckItem, DatabaseCheck};
use azs_core::ports::{StoreError, WindowCommit, WindowWrite};
use azs_core::window::ReportedWindow;

/// SQL Server 2016 (13.x): OPENJSON, `DROP ... IF EXISTS`, `SESSION_CONTEXT`.
const MINIMUM_MAJOR_VERSION: u32 = 13;

impl SqlServerStore {
    /// Connects (without migrating) and reports on the server, the database, the session and the
    /// schema. Never fails: a failure to connect is itself the report's one `fail` item.
    pub async fn check(&self) -> DatabaseCheck {
        let target = self.address.clone();
        let mut session = match checkout(&self.pool).await {
            Ok(s) => s,
            Err(f) => {
                let fix = f.fix();
                let item = CheckItem::fail("connect", StoreError::from(f).to_string(), fix);
                return DatabaseCheck::new("sqlserver", target, vec![item]);
            }
        };
        let mut items = vec![];
        let target = match server(&mut session, &mut items).await {
            Some(database) => format!("{target}, database {database}"),
            None => target,
        };
        database(&mut session, &mut items).await;
        session_options(&mut session, &mut items).await;
        let migrated = schema(&mut session, &mut items).await;
        items.push(if migrated {
            trial_commit(&mut session).await
        } else {
            CheckItem::warning(
                "trial-commit",
                "not attempted: the schema is not at this build's version",
                "migrate first (any azs-usage command that opens the store, run by a login with db_ddladmin), then check again",
            )
        });
        DatabaseCheck::new("sqlserver", target, items)
    }
}

/// A query's failure as one `fail` item, with the fix for its kind.
fn failed(name: &'static str, what: &str, f: Failure) -> CheckItem {
    let fix = f.fix();
    CheckItem::fail(name, format!("{what}: {}", StoreError::from(f)), fix)
}

/// Server version and edition; returns the database name.
async fn server(s: &mut PooledSession, items: &mut Vec<CheckItem>) -> Option<String> {
    let row = match s.query_one(bind::none(&sql::CHECK_SERVER)).await {
        Ok(Some(row)) => row,
        Ok(None) => return None,
        Err(f) => {
            items.push(failed("server-version", "reading SERVERPROPERTY", f));
            return None;
        }
    };
    let version = opt_text(&row, 0).ok().flatten().unwrap_or_default();
    let edition = opt_text(&row, 1).ok().flatten().unwrap_or_default();
    let engine = opt::<i32>(&row, 2).ok().flatten();
    let database = opt_text(&row, 3).ok().flatten();
    items.push(CheckItem::ok(
        "connect",
        format!("connected; database {}", database.as_deref().unwrap_or("?")),
    ));
    items.push(version_item(&version, &edition, engine));
    if let Some(name) = database.as_deref().filter(|n| is_system_database(n)) {
        items.push(CheckItem::fail(
            "database",
            format!("connected to the system database {name}: every start is refused"),
            "name the usage database in the connection string: Database=<name> (without it a login lands in its default database)",
        ));
    }
    database
}

pub(crate) fn version_item(version: &str, edition: &str, engine: Option<i32>) -> CheckItem {
    let kind = match engine {
        Some(5) => "Azure SQL Database",
        Some(8) => "Azure SQL Managed Instance",
        Some(6 | 11) => "Azure Synapse",
        _ => "SQL Server",
    };
    let detail = format!("{kind} {version} ({edition})");
    let major: Option<u32> = version.split('.').next().and_then(|m| m.parse().ok());
    match (engine, major) {
        (Some(6 | 11), _) => CheckItem::fail(
            "server-version",
            detail,
            "Azure Synapse is not supported: use Azure SQL Database, Managed Instance or SQL Server 2016+",
        ),
        (Some(5 | 8), _) => CheckItem::ok("server-version", detail),
        (_, Some(m)) if m >= MINIMUM_MAJOR_VERSION => CheckItem::ok("server-version", detail),
        _ => CheckItem::fail("server-version", detail, "use SQL Server 2016 (13.x) or later, or Azure SQL"),
    }
}

/// Collations, compatibility level, row versioning.
async fn database(s: &mut PooledSession, items: &mut Vec<CheckItem>) {
    let row = match s.query_one(bind::none(&sql::CHECK_DATABASE)).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            items.push(CheckItem::fail(
                "database",
                "sys.databases has no row for the current database",
                "connect to a user database (`Database=` / `Initial Catalog=` in the connection string)",
            ));
            return;
        }
        Err(f) => {
            items.push(failed("database", "reading sys.databases", f));
            return;
        }
    };
    let db_collation = opt_text(&row, 0).ok().flatten();
    let tempdb_collation = opt_text(&row, 1).ok().flatten();
    let level = opt::<i32>(&row, 2).ok().flatten();
    let rcsi = opt::<i32>(&row, 3).ok().flatten();
    let snapshot = opt::<i32>(&row, 4).ok().flatten();
    items.push(collation_item(db_collation.as_deref(), tempdb_collation.as_deref()));
    items.push(compatibility_item(level));
    items.push(isolation_item(rcsi == Some(1), snapshot == Some(1)));
}

pub(crate) fn collation_item(database: Option<&str>, tempdb: Option<&str>) -> CheckItem {
    let (database, tempdb) = (database.unwrap_or("unknown"), tempdb.unwrap_or("unknown"));
    if database == tempdb {
        CheckItem::ok("collation", format!("database and tempdb: {database}"))
    } else {
        // Not a problem for this store (it makes no temp tables, and its JSON text meets our tables
        // COLLATE DATABASE_DEFAULT), but it is for other tools' ad-hoc queries that join temp tables
        // to ours.
        CheckItem::ok(
            "collation",
            format!(
                "database {database}, tempdb {tempdb} (they differ: the store makes no temp tables, \
                 other tools' queries that join theirs to ours need COLLATE DATABASE_DEFAULT)"
            ),
        )
    }
}

pub(crate) fn compatibility_item(level: Option<i32>) -> CheckItem {
    match level {
        Some(l) if l >= MINIMUM_COMPATIBILITY_LEVEL => CheckItem::ok("compatibility-level", l.to_string()),
        Some(l) => CheckItem::fail(
            "compatibility-level",
            format!("{l}: OPENJSON, which writes each window, needs 130 or more; every start is refused"),
            "ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 130 (or higher)",
        ),
        None => CheckItem::warning(
            "compatibility-level",
            "unknown",
            "check sys.databases.compatibility_level is 130 or more",
        ),
    }
}

pub(crate) fn isolation_item(rcsi: bool, snapshot: bool) -> CheckItem {
    let detail = format!(
        "READ_COMMITTED_SNAPSHOT {}, ALLOW_SNAPSHOT_ISOLATION {}",
        if rcsi { "ON" } else { "OFF" },
        if snapshot { "ON" } else { "OFF" }
    );
    if rcsi {
        CheckItem::ok("row-versioning", detail)
    } else {
        CheckItem::fail(
            "row-versioning",
            format!(
                "{detail}: an export running while a range is reprocessed could mix an hour's old and new rows, so the store refuses to migrate or write"
            ),
            "ALTER DATABASE CURRENT SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE (Azure SQL has it on by default)",
        )
    }
}

/// The seven index SET options, as the store's session has them after its set-up batch.
async fn session_options(s: &mut PooledSession, items: &mut Vec<CheckItem>) {
    const OPTIONS: [(&str, i32); 7] = [
        ("ANSI_NULLS", 1),
        ("ANSI_PADDING", 1),
        ("ANSI_WARNINGS", 1),
        ("ARITHABORT", 1),
        ("CONCAT_NULL_YIELDS_NULL", 1),
        ("QUOTED_IDENTIFIER", 1),
        ("NUMERIC_ROUNDABORT", 0),
    ];
    let row = match s.query_one(bind::none(&sql::CHECK_SESSION_OPTIONS)).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(f) => {
            items.push(failed("session-set-options", "reading SESSIONPROPERTY", f));
            return;
        }
    };
    let wrong: Vec<String> = OPTIONS
        .iter()
        .enumerate()
        .filter(|(i, (_, want))| opt::<i32>(&row, *i).ok().flatten() != Some(*want))
        .map(|(_, (name, want))| format!("{name} should be {}", if *want == 1 { "ON" } else { "OFF" }))
        .collect();
    items.push(if wrong.is_empty() {
        CheckItem::ok("session-set-options", "the seven index SET options are as filtered indexes require")
    } else {
        CheckItem::fail(
            "session-set-options",
            wrong.join(", "),
            "report this as a bug: the store sets these on every connection; a server-side logon trigger may be overriding them",
        )
    });
}

/// Migration version and permissions; returns whether the schema is at this build's version.
async fn schema(s: &mut PooledSession, items: &mut Vec<CheckItem>) -> bool {
    let schema = s.schema().clone();
    let version = async {
        let ledger = format!("[{schema}].[schema_migrations]");
        if int(s, bind::table_id(&ledger)).await?.is_none() {
            return Ok(None);
        }
        int(s, bind::none(&sql::SCHEMA_VERSION)).await
    }
    .await;
    let version = match version {
        Ok(v) => v.unwrap_or(0),
        Err(f) => {
            items.push(failed("migration-version", "reading schema_migrations", f));
            return false;
        }
    };
    items.push(match version {
        0 => CheckItem::warning(
            "migration-version",
            format!("schema {schema} has no azs-usage tables yet"),
            "the first start migrates it (needs db_ddladmin), or let an admin run any azs-usage command once",
        ),
        v if v < LATEST_VERSION => CheckItem::warning(
            "migration-version",
            format!("schema {schema} is at version {v}; this build migrates it to {LATEST_VERSION} on start"),
            "start once with a login that has db_ddladmin (back the database up first)",
        ),
        v if v == LATEST_VERSION => {
            CheckItem::ok("migration-version", format!("schema {schema} at version {v}"))
        }
        v => CheckItem::fail(
            "migration-version",
            format!("schema {schema} is at version {v}, newer than this build's {LATEST_VERSION}"),
            "run the azs-usage version that migrated it, or a newer one",
        ),
    });
    let migrated = version == LATEST_VERSION;
    let row = match s.query_one(bind::check_permissions(schema.as_str())).await {
        Ok(Some(row)) => row,
        Ok(None) => return migrated,
        Err(f) => {
            items.push(failed("permissions", "reading HAS_PERMS_BY_NAME", f));
            return migrated;
        }
    };
    let has = |i: usize| opt::<i32>(&row, i).ok().flatten() == Some(1);
    let (create_table, create_schema, alter_schema) = (has(0), has(1), has(2));
    let dml = ["SELECT", "INSERT", "UPDATE", "DELETE"];
    let missing_dml: Vec<&str> =
        dml.iter().enumerate().filter(|(i, _)| !has(3 + i)).map(|(_, p)| *p).collect();
    let may_migrate = create_table && (alter_schema || (version == 0 && create_schema));
    items.push(permissions_item(&schema.to_string(), migrated, may_migrate, &missing_dml));
    migrated
}

pub(crate) fn permissions_item(
    schema: &str,
    migrated: bool,
    may_migrate: bool,
    missing_dml: &[&str],
) -> CheckItem {
    let grant = "ALTER ROLE db_datareader ADD MEMBER [login]; ALTER ROLE db_datawriter ADD MEMBER [login]";
    match (migrated, may_migrate, missing_dml.is_empty()) {
        (true, _, true) => CheckItem::ok(
            "permissions",
            format!("may read and write schema {schema}{}", if may_migrate { " and migrate it" } else { "" }),
        ),
        (true, _, false) => CheckItem::fail(
            "permissions",
            format!("lacks {} on schema {schema}", missing_dml.join(", ")),
            grant,
        ),
        (false, true, _) => {
            CheckItem::ok("permissions", format!("may create schema {schema}'s tables (migrate on start)"))
        }
        (false, false, _) => CheckItem::fail(
            "permissions",
            format!("schema {schema} is not migrated and this login may not create its tables"),
            "ALTER ROLE db_ddladmin ADD MEMBER [login] (or let an admin start azs-usage once to migrate)",
        ),
    }
}

async fn int(s: &mut Session, bound: bind::Bound<'_>) -> Result<Option<i32>, Failure> {
    match s.query_one(bound).await? {
        Some(row) => opt::<i32>(&row, 0),
        None => Ok(None),
    }
}

/// A probe stamp, its lease and a one-row window, written with the store's own functions inside an
/// outer transaction that is rolled back (T-SQL: the inner COMMITs only decrement @@TRANCOUNT).
pub(crate) async fn trial_commit(s: &mut PooledSession) -> CheckItem {
    const NAME: &str = "trial-commit";
    let stamp = check::probe_stamp(chrono::Utc::now());
    let start = check::trial_hour();
    let owner = "azs-usage db check";
    let commit = WindowCommit {
        stamp: &stamp.id,
        window: ReportedWindow { start, end: start + chrono::Duration::hours(1) },
        lease_owner: owner,
        write: WindowWrite::Advance,
        rows: vec![check::probe_row()],
        quarantined: vec![check::probe_quarantined_row()],
    };
    let written = async {
        let columns = stamps::columns(&stamp)?;
        let rows = ledger::checked_rows(&commit)?;
        s.begin().await?;
        stamps::insert(s, &columns).await?;
        s.execute(bind::lease_create(columns.id, owner, 60_000)).await?;
        ledger::commit_window(s, columns.id, &commit, &rows).await
    }
    .await;
    s.rollback().await;
    match written {
        Ok(receipt) if receipt.rows_written == 1 && receipt.quarantined == 1 => CheckItem::ok(
            NAME,
            "a one-row window with one quarantined row was written through the store's commit path and rolled back",
        ),
        Ok(receipt) => CheckItem::fail(
            NAME,
            format!(
                "the one-row window wrote {} rows and {} quarantined rows",
                receipt.rows_written, receipt.quarantined
            ),
            "report this as a bug: the probe row should be written exactly once",
        ),
        Err(f) => {
            let fix = f.fix();
            CheckItem::fail(
                NAME,
                format!("the store cannot commit windows here: {}", StoreError::from(f)),
                fix,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::check::CheckStatus;

    #[test]
    fn versions_before_2016_and_synapse_fail_azure_sql_passes() {
        assert_eq!(
            version_item("16.0.4135.4", "Developer Edition (64-bit)", Some(3)).status,
            CheckStatus::Ok
        );
        assert_eq!(version_item("13.0.7000.253", "Standard Edition", Some(2)).status, CheckStatus::Ok);
        assert_eq!(version_item("12.0.6024.0", "Enterprise Edition", Some(3)).status, CheckStatus::Fail);
        assert_eq!(version_item("12.0.2000.8", "SQL Azure", Some(5)).status, CheckStatus::Ok);
        assert_eq!(version_item("10.0.0", "SQL Azure", Some(6)).status, CheckStatus::Fail);
    }

    #[test]
    fn rcsi_off_fails_with_the_statement_that_turns_it_on() {
        let item = isolation_item(false, true);
        assert_eq!(item.status, CheckStatus::Fail);
        assert!(item.fix.unwrap().contains("SET READ_COMMITTED_SNAPSHOT ON"));
        assert_eq!(isolation_item(true, false).status, CheckStatus::Ok);
    }

    #[test]
    fn compatibility_below_130_fails() {
        assert_eq!(compatibility_item(Some(120)).status, CheckStatus::Fail);
        assert_eq!(compatibility_item(Some(160)).status, CheckStatus::Ok);
    }

    #[test]
    fn permissions_name_what_is_missing() {
        assert_eq!(permissions_item("azs_usage", true, false, &[]).status, CheckStatus::Ok);
        let item = permissions_item("azs_usage", true, false, &["INSERT", "DELETE"]);
        assert!(item.detail.contains("INSERT, DELETE") && item.status == CheckStatus::Fail);
        assert_eq!(permissions_item("azs_usage", false, true, &["INSERT"]).status, CheckStatus::Ok);
        assert!(permissions_item("azs_usage", false, false, &[]).fix.unwrap().contains("db_ddladmin"));
    }

    #[test]
    fn differing_collations_are_reported() {
        let item =
            collation_item(Some("Latin1_General_100_CS_AS_SC_UTF8"), Some("SQL_Latin1_General_CP1_CI_AS"));
        assert!(item.detail.contains("differ"));
    }
}
