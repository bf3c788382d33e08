//! `db smoke`: each T-SQL construct the store depends on and that no check here can prove (sqlparser
//! accepts what SQL Server may refuse), run once against the real server, one line each: ok, or the
//! server's error number and text. A DBA's one-minute answer to "will it run here?".
//!
//! Nothing of the store's own schema is touched, not even on failure: the writes (the migration's DDL,
//! a stamp, its lease, MERGE_WINDOW and QUARANTINE_WINDOW) go to a scratch schema created inside one
//! transaction that is rolled back, which takes the scratch schema with it. Should the connection
//! drop midway, the server rolls the transaction back (`XACT_ABORT`, and a closed session's open
//! transaction never commits). So the smoke runs before the first migration too.

use crate::bind::StatementColumns;
use crate::check::trial_commit;
use crate::schema::{MIGRATION_LOCK_TIMEOUT, MIGRATIONS, read_start_checks, start_refusal};
use crate::session::{Failure, PooledSession, checkout};
use crate::{SchemaName, SqlServerStore, bind, sql, stamps, types};
use azs_core::check::{self, CheckItem, DatabaseCheck};
use azs_core::ports::StoreError;
use azs_core::status::{DriftCounts, LastVerified};
use azs_core::window::ReportedWindow;
use chrono::{Duration, Utc};

impl SqlServerStore {
    /// Runs each risky construct once (see the module's documentation). Never fails: a failure to
    /// connect is itself the report's one `fail` line.
    pub async fn smoke(&self) -> DatabaseCheck {
        let mut s = match checkout(&self.pool).await {
            Ok(s) => s,
            Err(f) => {
                let fix = f.fix();
                let item = CheckItem::fail("connect", StoreError::from(f).to_string(), fix);
                return DatabaseCheck::new("sqlserver", self.address.clone(), vec![item]);
            }
        };
        let mut items = vec![CheckItem::ok("connect", "TLS, login and the session's SET options")];
        items.push(start_checks(&mut s).await);
        items.push(line("sp-getapplock", applock(&mut s).await));
        if let Err(f) = s.begin().await {
            items.push(line("begin-transaction", Err(f)));
        }
        items.push(line("convert-binary-16", convert_key(&mut s).await));
        items.push(line("openjson-with", openjson(&mut s).await));
        s.rollback().await;
        items.push(merge_window(&mut s).await);
        items.push(rating_triggers(&mut s).await);
        DatabaseCheck::new("sqlserver", self.address.clone(), items)
    }
}

/// A construct's outcome as one line: ok, or the server's error number and text.
fn line(name: &'static str, outcome: Result<String, Failure>) -> CheckItem {
    match outcome {
        Ok(detail) => CheckItem::ok(name, detail),
        Err(f) => {
            let fix = f.fix();
            CheckItem::fail(name, StoreError::from(f).to_string(), fix)
        }
    }
}

async fn start_checks(s: &mut PooledSession) -> CheckItem {
    const NAME: &str = "rcsi-and-compatibility";
    let settings = match read_start_checks(s).await {
        Ok(settings) => settings,
        Err(f) => return line(NAME, Err(f)),
    };
    match start_refusal(settings.as_ref()) {
        None => CheckItem::ok(
            NAME,
            format!(
                "READ_COMMITTED_SNAPSHOT ON, compatibility level {}",
                settings.and_then(|s| s.compatibility_level).unwrap_or(0)
            ),
        ),
        Some(reason) => {
            CheckItem::fail(NAME, reason, "do what the reason names (an ALTER DATABASE, or Database=)")
        }
    }
}

async fn applock(s: &mut PooledSession) -> Result<String, Failure> {
    let resource = format!("azs-usage:smoke:{}", s.schema());
    let granted = s.query_one(bind::applock_acquire(&resource, MIGRATION_LOCK_TIMEOUT)).await?;
    let code = granted.as_ref().and_then(|r| types::opt::<i32>(r, 0).ok().flatten());
    // Released only when granted: releasing a lock not held raises Msg 1223, which would hide the
    // real answer (a timeout is -1, a deadlock -3).
    if code.is_some_and(|c| c >= 0) {
        s.execute(bind::applock_release(&resource)).await?;
    }
    match code {
        Some(c) if c >= 0 => Ok(format!("sp_getapplock granted ({c}), sp_releaseapplock released")),
        other => Err(Failure::other(format!("sp_getapplock returned {other:?}"))),
    }
}

async fn convert_key(s: &mut PooledSession) -> Result<String, Failure> {
    let key = check::probe_row().key();
    let hex = bind::key_hex(key.bytes());
    let row = s.query_one(bind::smoke_convert_key(&hex)).await?.ok_or_else(|| Failure::other("no row"))?;
    let bytes: &[u8] = types::req(&row, 0)?;
    if bytes == key.bytes() {
        Ok(format!("CONVERT(binary(16), '{hex}', 2) read back as the key's 16 bytes"))
    } else {
        Err(Failure::other(format!("{hex} read back as {bytes:02X?}")))
    }
}

async fn openjson(s: &mut PooledSession) -> Result<String, Failure> {
    let row = check::probe_row();
    let quantity = types::Quantity::new(row.quantity).map_err(|e| Failure::other(e.to_string()))?;
    let checked = [bind::CheckedRow { key: row.key(), row: &row, quantity }];
    let back = s
        .query_one(bind::smoke_openjson(bind::window_rows(&checked)))
        .await?
        .ok_or_else(|| Failure::other("OPENJSON returned no row"))?;
    let key: &[u8] = types::req(&back, 0)?;
    let start: chrono::DateTime<chrono::Utc> = types::req(&back, 1)?;
    let additional: Option<&str> = types::opt(&back, 5)?;
    if key == row.key().bytes() && start == row.usage_start && additional == row.additional_info.as_deref() {
        Ok("OPENJSON ... WITH (nvarchar(max), datetime2(0), decimal(38, 12), tinyint) read back as sent"
            .into())
    } else {
        Err(Failure::other(format!(
            "read back differently: key {key:02X?}, start {start}, additionalInfo {additional:?}"
        )))
    }
}

/// The migration's DDL, then MERGE_WINDOW (and the stamp, lease and quarantine statements around it)
/// on a probe stamp through `db check`'s trial commit, all in a scratch schema inside one transaction
/// that is rolled back (see the module's documentation).
async fn merge_window(s: &mut PooledSession) -> CheckItem {
    const NAME: &str = "merge-window";
    let scratch = scratch_schema();
    let real = s.switch_schema(scratch.clone());
    let built = async {
        s.begin().await?;
        s.batch(&sql::CREATE_SCHEMA).await?;
        for statement in MIGRATIONS.iter().flat_map(|m| m.statements) {
            s.batch(statement).await?;
        }
        Ok::<_, Failure>(())
    }
    .await;
    let item = match built {
        Ok(()) => {
            // trial_commit rolls back every open transaction: the scratch schema goes with it.
            let mut item = trial_commit(s).await;
            item.name = NAME;
            item.detail = format!(
                "{}; in scratch schema {scratch}, created with the migration's DDL and removed by the rollback",
                item.detail
            );
            item
        }
        Err(f) if f.code().is_some_and(|c| PERMISSION_DENIED.contains(&c)) => CheckItem::warning(
            NAME,
            format!(
                "not run: this login may not create the scratch schema {scratch}: {}",
                StoreError::from(f)
            ),
            "run `db smoke` with the login that migrates (db_ddladmin: CREATE SCHEMA, CREATE TABLE); \
             nothing is kept, the schema goes with the rolled-back transaction",
        ),
        Err(f) => {
            let fix = f.fix();
            CheckItem::fail(
                NAME,
                format!("the migration's DDL in scratch schema {scratch}: {}", StoreError::from(f)),
                fix,
            )
        }
    };
    s.rollback().await;
    s.switch_schema(real);
    item
}

/// The rating tables' triggers, which no static check can run, in a scratch schema inside one
/// transaction: a verify recorded on a probe stamp lands in `verify_history` (the status row's
/// trigger), and an edit of a final statement is refused by its trigger with error 51000, which
/// (XACT_ABORT, on in every trigger) rolls the whole transaction back, the scratch schema with it.
async fn rating_triggers(s: &mut PooledSession) -> CheckItem {
    const NAME: &str = "rating-triggers";
    let scratch = scratch_schema();
    let real = s.switch_schema(scratch.clone());
    let outcome = async {
        s.begin().await?;
        s.batch(&sql::CREATE_SCHEMA).await?;
        for statement in MIGRATIONS.iter().flat_map(|m| m.statements) {
            s.batch(statement).await?;
        }
        let now = Utc::now();
        let columns = stamps::columns(&check::probe_stamp(now))?;
        stamps::insert(s, &columns).await?;
        let hour = check::trial_hour();
        let range = ReportedWindow { start: hour, end: hour + Duration::hours(1) };
        let verified = LastVerified { at: types::millis(now), range };
        s.execute(bind::record_verified(columns.id, &verified, &DriftCounts::default())).await?;
        let kept = s.query(bind::verify_history(columns.id, range.start, range.end)).await?.len();
        if kept != 1 {
            return Err(Failure::other(format!(
                "verify_history holds {kept} rows for the one verify recorded"
            )));
        }
        let final_ = StatementColumns {
            billing_subscription_id: SMOKE_SUBSCRIPTION,
            month: "2026-01".into(),
            state: "final",
            body: "{}".into(),
            updated_at: types::millis(now),
        };
        s.execute(bind::insert_statement(&final_)).await?;
        match s.execute(bind::smoke_edit_final(SMOKE_SUBSCRIPTION)).await {
            Err(f) if f.code() == Some(NEVER_CHANGE_ERROR) => {}
            Err(f) => return Err(f),
            Ok(rows) => return Err(Failure::other(format!("a final statement was changed ({rows} row)"))),
        }
        let open = s.query_one(bind::none(&sql::SMOKE_TRANCOUNT)).await?;
        match open.as_ref().map(|r| types::opt::<i32>(r, 0)).transpose()?.flatten() {
            Some(0) => {
                Ok("a verify kept in verify_history; an edit of a final statement refused (51000) and \
                 its transaction rolled back, the scratch schema with it"
                    .to_owned())
            }
            other => Err(Failure::other(format!(
                "the refused edit left {other:?} transactions open (XACT_ABORT should have rolled it back)"
            ))),
        }
    }
    .await;
    s.rollback().await;
    s.switch_schema(real);
    match outcome {
        Err(f) if f.code().is_some_and(|c| PERMISSION_DENIED.contains(&c)) => CheckItem::warning(
            NAME,
            format!(
                "not run: this login may not create the scratch schema {scratch}: {}",
                StoreError::from(f)
            ),
            "run `db smoke` with the login that migrates (db_ddladmin); nothing is kept",
        ),
        outcome => line(NAME, outcome),
    }
}

/// The probe statement's billing subscription (in the scratch schema only).
const SMOKE_SUBSCRIPTION: &str = "azs-usage-smoke";
/// The error number the never-edit triggers THROW (`sql::V1_STATEMENTS_FINAL_NEVER_CHANGE`).
const NEVER_CHANGE_ERROR: u32 = 51000;

/// Server errors that mean "not allowed" (CREATE SCHEMA / CREATE TABLE permission denied, Msg 262;
/// a schema that does not exist or may not be used, Msg 2760).
const PERMISSION_DENIED: &[u32] = &[262, 2760];

/// A schema name of its own for one smoke run.
fn scratch_schema() -> SchemaName {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    SchemaName::parse(&format!("azs_usage_smoke_{}", &suffix[..12])).expect("a plain identifier")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tables of the store's schema, as the migration creates them.
    fn tables() -> Vec<String> {
        MIGRATIONS
            .iter()
            .flat_map(|m| m.statements)
            .chain([&&sql::CREATE_MIGRATIONS_TABLE])
            .filter_map(|s| s.sql.strip_prefix("CREATE TABLE {schema}."))
            .map(|rest| {
                rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn every_statement_names_the_stores_tables_through_the_schema_it_is_rendered_for() {
        // So a session switched to the scratch schema writes nothing of the real one: no statement may
        // name one of our tables bare or under a fixed schema.
        let tables = tables();
        assert!(tables.len() >= 12, "{tables:?}");
        for statement in sql::ALL {
            let text = statement.sql;
            for table in &tables {
                for (at, _) in text.match_indices(table.as_str()) {
                    let before = text[..at].chars().next_back();
                    let after = text[at + table.len()..].chars().next();
                    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                    // Part of another name, or a column alias of the same name (`AS quarantined_rows`).
                    if word(before) || word(after) || text[..at].ends_with("AS ") {
                        continue;
                    }
                    assert!(
                        text[..at].ends_with("{schema}."),
                        "{} names table {table} without {{schema}}: {text}",
                        statement.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_trigger_smoke_expects_the_error_the_trigger_throws_on_the_statement_it_edits() {
        let trigger = sql::V1_STATEMENTS_FINAL_NEVER_CHANGE.sql;
        assert!(trigger.contains(&format!("THROW {NEVER_CHANGE_ERROR},")), "{trigger}");
        assert!(trigger.contains("ON {schema}.statements AFTER UPDATE"));
        assert!(sql::SMOKE_EDIT_FINAL.sql.starts_with("UPDATE {schema}.statements SET"));
        assert!(!sql::SMOKE_EDIT_FINAL.sql.contains("final"), "past the store's own guard");
    }

    #[test]
    fn each_smoke_gets_a_scratch_schema_of_its_own_never_the_stores() {
        let (a, b) = (scratch_schema(), scratch_schema());
        assert_ne!(a, b);
        for s in [&a, &b] {
            assert!(s.as_str().starts_with("azs_usage_smoke_"), "{s}");
            assert_ne!(s, &SchemaName::default());
            assert_eq!(sql::CREATE_SCHEMA.sql, "CREATE SCHEMA {schema}", "alone in its batch");
            assert_eq!(s.render(sql::CREATE_SCHEMA.sql), format!("CREATE SCHEMA [{s}]"));
        }
    }
}
