//! The database schema the store lives in: its name (the one piece of text spliced into SQL, so it is
//! validated strictly) and the versioned migrations that build it.
//!
//! Migrations run under an exclusive, session-owned application lock (`sp_getapplock`) with a timeout,
//! so two cold starts never migrate at once: the second waits, then finds nothing left to do. Each
//! migration's DDL and its row in `schema_migrations` commit in one transaction (T-SQL DDL is
//! transactional).

use crate::bind::{self, Bound};
use crate::session::{Failure, Session};
use crate::sql::{self, Statement};
use crate::types;
use std::fmt;
use std::time::Duration;

/// A validated SQL Server schema name: 1-128 characters, an ASCII letter or `_` first, then ASCII
/// letters, digits or `_`. It is always spliced bracketed (`[name]`), so a reserved word is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema name {name:?}: {rule}")]
pub struct InvalidSchemaName {
    pub name: String,
    pub rule: &'static str,
}

/// Schemas SQL Server owns; tables cannot live there.
const RESERVED: &[&str] = &["sys", "information_schema", "guest", "db_owner", "db_ddladmin"];

impl SchemaName {
    pub const DEFAULT: &'static str = "azs_usage";

    pub fn parse(name: &str) -> Result<Self, InvalidSchemaName> {
        let invalid = |rule| Err(InvalidSchemaName { name: name.to_owned(), rule });
        let mut chars = name.chars();
        match chars.next() {
            None => return invalid("must not be empty"),
            Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
                return invalid("must start with an ASCII letter or '_'");
            }
            Some(_) => {}
        }
        if name.len() > 128 {
            return invalid("must be at most 128 characters");
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return invalid("may contain only ASCII letters, digits and '_'");
        }
        if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return invalid("is a schema SQL Server reserves");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `sql` with every `{schema}` replaced by `[name]`.
    pub(crate) fn render(&self, sql: &str) -> String {
        sql.replace("{schema}", &format!("[{}]", self.0))
    }
}

impl Default for SchemaName {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub statements: &'static [&'static Statement],
}

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    statements: &[
        &sql::V1_STAMPS,
        &sql::V1_STAMP_TOMBSTONES,
        &sql::V1_SUBSCRIPTION_MAPPINGS,
        &sql::V1_STAMP_NUMBERS,
        &sql::V1_TENANT_NUMBERS,
        &sql::V1_USAGE_WINDOWS,
        &sql::V1_USAGE_ROWS,
        &sql::V1_USAGE_ROWS_LOCK_ESCALATION,
        &sql::V1_USAGE_ROWS_UNMAPPED,
        &sql::V1_USAGE_ROWS_BILLING,
        &sql::V1_PROCESSING_STATUS,
        &sql::V1_STAMP_LEASES,
        &sql::V1_QUARANTINED_ROWS,
        &sql::V1_REPROCESS_LOG,
        &sql::V1_AUDIT_RECORDS,
        &sql::V1_AUDIT_RECORDS_STAMP,
        &sql::V1_PRICE_BOOK_VERSIONS,
        &sql::V1_PRICE_BOOK_VERSIONS_NEVER_CHANGE,
        &sql::V1_RATING_ASSIGNMENTS,
        &sql::V1_STATEMENTS,
        &sql::V1_STATEMENTS_BY_MONTH,
        &sql::V1_STATEMENTS_FINAL_NEVER_CHANGE,
        &sql::V1_VERIFY_HISTORY,
        &sql::V1_PROCESSING_STATUS_KEEPS_VERIFIES,
    ],
}];

/// The schema version this build writes.
pub const LATEST_VERSION: i32 = 1;

/// How long a cold start waits for another one's migration before giving up.
pub(crate) const MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Brings the schema up to [`LATEST_VERSION`] (creating it if needed) under the migration lock.
pub(crate) async fn migrate(session: &mut Session) -> Result<i32, Failure> {
    require_database_settings(session).await?;
    let resource = format!("azs-usage:migrate:{}", session.schema());
    let granted =
        int(session, bind::applock_acquire(&resource, MIGRATION_LOCK_TIMEOUT)).await?.unwrap_or(-999);
    if granted < 0 {
        return Err(Failure::unavailable(format!(
            "could not take the migration lock for schema {} within {}s (sp_getapplock returned {granted}); \
             another instance may be migrating",
            session.schema(),
            MIGRATION_LOCK_TIMEOUT.as_secs()
        )));
    }
    let result = migrate_locked(session).await;
    // The lock belongs to the session: release it even when migrating failed, so the pooled
    // connection does not keep other cold starts waiting.
    let released = session.execute(bind::applock_release(&resource)).await;
    let version = result?;
    released?;
    Ok(version)
}

/// What every start requires of the database, checked before anything is created or written. Refusing
/// here names the one statement that fixes each setting.
async fn require_database_settings(session: &mut Session) -> Result<(), Failure> {
    match start_refusal(read_start_checks(session).await?.as_ref()) {
        None => Ok(()),
        Some(reason) => Err(Failure::other(reason)),
    }
}

/// What START_CHECKS reads of the connected database; `None` when sys.databases shows no row for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatabaseSettings {
    pub name: Option<String>,
    pub rcsi: Option<i32>,
    pub compatibility_level: Option<i32>,
}

pub(crate) async fn read_start_checks(session: &mut Session) -> Result<Option<DatabaseSettings>, Failure> {
    let Some(row) = session.query_one(bind::none(&sql::START_CHECKS)).await? else {
        return Ok(None);
    };
    Ok(Some(DatabaseSettings {
        rcsi: types::opt::<i32>(&row, 0)?,
        compatibility_level: types::opt::<i32>(&row, 1)?,
        name: types::opt_text(&row, 2)?,
    }))
}

/// SQL Server's own databases: azs-usage's tables never belong there (a connection string without
/// `Database=` lands in the login's default database, often master).
const SYSTEM_DATABASES: &[&str] = &["master", "model", "msdb", "tempdb"];

pub(crate) fn is_system_database(name: &str) -> bool {
    SYSTEM_DATABASES.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Compatibility level 130 (SQL Server 2016): OPENJSON, which writes every window, is refused below it
/// (Msg 208, "Invalid object name 'OPENJSON'").
pub(crate) const MINIMUM_COMPATIBILITY_LEVEL: i32 = 130;

/// Why the database's settings refuse a start, if they do:
/// - without READ_COMMITTED_SNAPSHOT (SQL Server's default; Azure SQL's is on), an export's range scan
///   under locking READ COMMITTED can read part of an hour before a reprocess replaces it and the rest
///   after: an invoice with old and new rows of one hour. With it, each window's export query sees one
///   committed state;
/// - below compatibility level 130 every window fails on OPENJSON;
/// - a system database (master, model, msdb, tempdb) is never where the store's tables belong.
pub(crate) fn start_refusal(settings: Option<&DatabaseSettings>) -> Option<String> {
    let Some(DatabaseSettings { name, rcsi, compatibility_level: level }) = settings else {
        return Some(
            "sys.databases has no row named DB_NAME() for the connected database, so its \
             READ_COMMITTED_SNAPSHOT and compatibility level cannot be checked; connect to a user \
             database (`Database=` in the connection string) with a login that can see it"
                .into(),
        );
    };
    if let Some(name) = name.as_deref().filter(|n| is_system_database(n)) {
        return Some(format!(
            "connected to the system database {name}, where azs-usage's tables must not be created; name \
             the usage database in the connection string (`Database=<name>`; without it a login lands in \
             its default database, often master)"
        ));
    }
    let (rcsi, level) = (*rcsi, *level);
    let mut refusals = Vec::new();
    if rcsi != Some(1) {
        refusals.push(
            "the database has READ_COMMITTED_SNAPSHOT OFF, so an export could mix an hour's old and new rows \
             while it is reprocessed; an admin must run: ALTER DATABASE CURRENT SET READ_COMMITTED_SNAPSHOT ON \
             WITH ROLLBACK IMMEDIATE (Azure SQL Database has it on by default)"
                .to_owned(),
        );
    }
    match level {
        Some(l) if l >= MINIMUM_COMPATIBILITY_LEVEL => {}
        _ => refusals.push(format!(
            "the database's compatibility level is {}, below {MINIMUM_COMPATIBILITY_LEVEL}, so OPENJSON, \
             which writes every window, is refused (Msg 208); an admin must run: ALTER DATABASE CURRENT \
             SET COMPATIBILITY_LEVEL = {MINIMUM_COMPATIBILITY_LEVEL} (or higher)",
            level.map_or_else(|| "unknown".to_owned(), |l| l.to_string())
        )),
    }
    (!refusals.is_empty()).then(|| refusals.join("; and "))
}

async fn migrate_locked(session: &mut Session) -> Result<i32, Failure> {
    let schema = session.schema().clone();
    if int(session, bind::schema_id(schema.as_str())).await?.is_none() {
        session.batch(&sql::CREATE_SCHEMA).await?;
        tracing::info!(schema = %schema, "created schema");
    }
    let ledger = format!("[{schema}].[schema_migrations]");
    if int(session, bind::table_id(&ledger)).await?.is_none() {
        session.batch(&sql::CREATE_MIGRATIONS_TABLE).await?;
    }
    let current = int(session, bind::none(&sql::SCHEMA_VERSION)).await?.unwrap_or(0);
    if current > LATEST_VERSION {
        // A newer build migrated this schema; writing with an older idea of it could corrupt it.
        return Err(Failure::other(format!(
            "schema {schema} is at version {current}; this build knows up to {LATEST_VERSION}"
        )));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        session.begin().await?;
        let applied = async {
            for statement in migration.statements {
                session.batch(statement).await?;
            }
            session.execute(bind::record_migration(migration.version, migration.name)).await?;
            Ok(())
        }
        .await;
        session.finish(applied).await?;
        tracing::info!(schema = %schema, version = migration.version, name = migration.name, "applied schema migration");
    }
    Ok(current.max(MIGRATIONS.last().map_or(0, |m| m.version)))
}

/// The first column of the first row, an `int` or NULL.
async fn int(session: &mut Session, bound: Bound<'_>) -> Result<Option<i32>, Failure> {
    match session.query_one(bound).await? {
        Some(row) => types::opt::<i32>(&row, 0),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_identifiers() {
        for ok in ["azs_usage", "_x", "A", "azs_usage_test_0123abcd", &"a".repeat(128)] {
            assert_eq!(SchemaName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_anything_that_could_change_the_sql_it_is_spliced_into() {
        for bad in [
            "",
            "1abc",
            "azs usage",
            "azs-usage",
            "azs]usage",
            "[azs]",
            "azs;DROP TABLE x",
            "azs'--",
            "azs.usage",
            "#temp",
            "@var",
            "sch\u{e9}ma",
            "azs\u{0}",
            &"a".repeat(129),
            "sys",
            "INFORMATION_SCHEMA",
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn renders_bracketed_into_every_schema_hole() {
        let s = SchemaName::parse("select").unwrap();
        assert_eq!(
            s.render("SELECT * FROM {schema}.t JOIN {schema}.u"),
            "SELECT * FROM [select].t JOIN [select].u"
        );
    }

    #[test]
    fn the_latest_version_is_the_last_migration_and_versions_count_up_from_one() {
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
        assert!(MIGRATIONS.iter().enumerate().all(|(i, m)| m.version == i as i32 + 1));
    }

    #[test]
    fn usage_rows_never_escalate_to_a_table_lock() {
        let applied: Vec<&str> = MIGRATIONS.iter().flat_map(|m| m.statements.iter().map(|s| s.sql)).collect();
        let created = applied.iter().position(|s| s.contains("CREATE TABLE {schema}.usage_rows")).unwrap();
        let disabled = applied
            .iter()
            .position(|s| s.contains("ALTER TABLE {schema}.usage_rows SET (LOCK_ESCALATION = DISABLE)"))
            .expect("lock escalation is disabled on usage_rows");
        assert!(disabled > created);
    }

    #[test]
    fn migrations_take_no_parameters() {
        for m in MIGRATIONS {
            for s in m.statements {
                assert_eq!(s.params, 0, "{}", s.name);
            }
        }
    }

    fn table(name: &str) -> &'static str {
        MIGRATIONS
            .iter()
            .flat_map(|m| m.statements.iter())
            .find(|s| s.sql.contains(&format!("CREATE TABLE {{schema}}.{name} (")))
            .unwrap_or_else(|| panic!("no table {name}"))
            .sql
    }

    #[test]
    fn usage_rows_are_clustered_on_the_window_number_and_the_128_bit_key_and_carry_no_guid() {
        let rows = table("usage_rows");
        assert!(rows.contains("CONSTRAINT pk_usage_rows PRIMARY KEY CLUSTERED (window_no, row_key)"));
        assert!(rows.contains("window_no bigint NOT NULL"));
        assert!(rows.contains("row_key binary(16) NOT NULL"));
        assert!(rows.contains("tenant_no int NOT NULL"));
        assert!(!rows.contains("uniqueidentifier"), "no 16-byte stamp GUID in every row and key");
        assert!(!rows.contains("subscription_key"), "the tenant number implies it");
        // Windows are numbered in commit order (the clustered key appends) and found per stamp and hour.
        let windows = table("usage_windows");
        assert!(windows.contains("window_no bigint IDENTITY(1, 1) NOT NULL"));
        assert!(windows.contains("CONSTRAINT uq_usage_windows UNIQUE (stamp_no, reported_start)"));
        assert!(table("stamp_numbers").contains("stamp_no int IDENTITY(1, 1) NOT NULL"));
        assert!(table("tenant_numbers").contains("UNIQUE (stamp_no, subscription_key)"));
    }

    #[test]
    fn the_unmapped_index_is_keyed_by_the_tenant_number_alone_and_filtered() {
        let index = sql::V1_USAGE_ROWS_UNMAPPED.sql;
        assert!(index.contains("ON {schema}.usage_rows (tenant_no) INCLUDE (usage_start, usage_end)"));
        assert!(index.trim_end().ends_with("WHERE billing_subscription_id IS NULL"));
    }

    #[test]
    fn the_billing_index_holds_only_mapped_rows_by_subscription_and_month_and_covers_the_read() {
        let index = sql::V1_USAGE_ROWS_BILLING.sql;
        assert!(
            index.contains("ON {schema}.usage_rows (billing_subscription_id, reported_start, window_no)")
        );
        assert!(index.trim_end().ends_with("WHERE billing_subscription_id IS NOT NULL"));
        let read = sql::BILLING_ROWS.sql;
        // The range is the index's second key column, so a month is one seek range.
        assert!(read.contains(
            "WHERE r.billing_subscription_id = @P1 AND r.reported_start >= @P2 AND r.reported_start < @P3"
        ));
        // Covering: every column of the row the read names is in the index (key, included, or the
        // clustered key every nonclustered index carries), so no row is looked up.
        let key_and_included: Vec<&str> = ["window_no", "row_key"]
            .into_iter()
            .chain(index.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
            .collect();
        let named: Vec<&str> = read
            .split("r.")
            .skip(1)
            .map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap())
            .collect();
        assert!(named.len() >= 14, "{named:?}");
        let missing: Vec<&&str> = named.iter().filter(|c| !key_and_included.contains(c)).collect();
        assert!(missing.is_empty(), "BILLING_ROWS reads {missing:?}, which the index does not hold");
    }

    #[test]
    fn numbering_tables_are_created_before_the_tables_that_refer_to_them_and_dropped_after() {
        let order: Vec<&str> = MIGRATIONS[0].statements.iter().map(|s| s.name).collect();
        let at = |name: &str| order.iter().position(|n| *n == name).unwrap();
        assert!(at("V1_STAMP_NUMBERS") < at("V1_TENANT_NUMBERS"));
        assert!(at("V1_STAMP_NUMBERS") < at("V1_USAGE_WINDOWS"));
        assert!(at("V1_USAGE_ROWS") < at("V1_USAGE_ROWS_UNMAPPED"));
        assert!(at("V1_USAGE_ROWS") < at("V1_USAGE_ROWS_BILLING"));
    }

    #[test]
    fn every_table_the_migrations_create_is_dropped_with_the_schema() {
        for statement in MIGRATIONS.iter().flat_map(|m| m.statements.iter()) {
            let Some(rest) = statement.sql.strip_prefix("CREATE TABLE {schema}.") else { continue };
            let table = &rest[..rest.find(' ').unwrap()];
            let drop = format!("DROP TABLE IF EXISTS {{schema}}.{table}");
            assert!(crate::DROPS.iter().any(|d| d.sql == drop), "{table} is not dropped");
        }
    }

    #[test]
    fn a_start_is_refused_below_compatibility_level_130_naming_the_alter_that_fixes_it() {
        let refusal = start_refusal(Some(&settings(Some(1), Some(120)))).expect("refused");
        assert!(refusal.contains("compatibility level is 120"), "{refusal}");
        assert!(refusal.contains("ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 130"), "{refusal}");
        assert_eq!(start_refusal(Some(&settings(Some(1), Some(130)))), None);
        assert_eq!(start_refusal(Some(&settings(Some(1), Some(160)))), None);
        assert!(
            start_refusal(Some(&settings(Some(1), None))).is_some(),
            "an unknown level is not assumed good"
        );
    }

    #[test]
    fn a_start_is_refused_without_read_committed_snapshot_naming_the_alter_that_fixes_it() {
        let refusal = start_refusal(Some(&settings(Some(0), Some(150)))).expect("refused");
        assert!(
            refusal.contains("ALTER DATABASE CURRENT SET READ_COMMITTED_SNAPSHOT ON WITH ROLLBACK IMMEDIATE"),
            "{refusal}"
        );
        let both = start_refusal(Some(&settings(Some(0), Some(100)))).expect("refused");
        assert!(both.contains("READ_COMMITTED_SNAPSHOT") && both.contains("COMPATIBILITY_LEVEL"), "{both}");
        let missing = start_refusal(None).expect("refused");
        assert!(missing.contains("no row named DB_NAME()"), "{missing}");
    }

    fn settings(rcsi: Option<i32>, compatibility_level: Option<i32>) -> DatabaseSettings {
        DatabaseSettings { name: Some("azs_usage".into()), rcsi, compatibility_level }
    }

    #[test]
    fn a_start_on_a_system_database_is_refused_naming_it_and_the_fix() {
        for name in ["master", "model", "msdb", "tempdb", "MASTER"] {
            let on =
                DatabaseSettings { name: Some(name.into()), rcsi: Some(1), compatibility_level: Some(160) };
            let refusal = start_refusal(Some(&on)).expect("refused");
            assert!(
                refusal.contains(&format!("system database {name}")) && refusal.contains("Database="),
                "{refusal}"
            );
        }
        let user = DatabaseSettings {
            name: Some("masterdata".into()),
            rcsi: Some(1),
            compatibility_level: Some(160),
        };
        assert_eq!(start_refusal(Some(&user)), None, "only the system databases themselves");
    }
}
