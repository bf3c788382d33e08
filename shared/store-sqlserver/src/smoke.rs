//! `db smoke`: each T-SQL construct the store depends on and that no check here can prove (sqlparser
//! accepts what SQL Server may refuse), run once against the real server, one line each: ok, or the
//! server's error number and text. Everything that writes runs inside one transaction that is rolled
//! back; nothing is created or migrated. A DBA's one-minute answer to "will it run here?".

use crate::check::trial_commit;
use crate::schema::{MIGRATION_LOCK_TIMEOUT, start_refusal};
use crate::session::{Failure, PooledSession, checkout};
use crate::{LATEST_VERSION, SqlServerStore, bind, sql, types};
use azs_core::check::{self, CheckItem, DatabaseCheck};
use azs_core::ports::StoreError;

impl SqlServerStore {
    /// Runs each risky construct once (see the module's documentation). Never fails: a failure to
    /// connect is itself the report's one `fail` line.
    pub async fn smoke(&self) -> DatabaseCheck {
        let mut s = match checkout(&self.pool).await {
            Ok(s) => s,
            Err(f) => {
                let item =
                    CheckItem::fail("connect", StoreError::from(f).to_string(), "see `azs-usage db check`");
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
        DatabaseCheck::new("sqlserver", self.address.clone(), items)
    }
}

/// A construct's outcome as one line: ok, or the server's error number and text.
fn line(name: &'static str, outcome: Result<String, Failure>) -> CheckItem {
    match outcome {
        Ok(detail) => CheckItem::ok(name, detail),
        Err(f) => CheckItem::fail(
            name,
            StoreError::from(f).to_string(),
            "the server refused it: see the error number",
        ),
    }
}

async fn start_checks(s: &mut PooledSession) -> CheckItem {
    const NAME: &str = "rcsi-and-compatibility";
    let row = match s.query_one(bind::none(&sql::START_CHECKS)).await {
        Ok(row) => row,
        Err(f) => return line(NAME, Err(f)),
    };
    let rcsi = row.as_ref().and_then(|r| types::opt::<i32>(r, 0).ok().flatten());
    let level = row.as_ref().and_then(|r| types::opt::<i32>(r, 1).ok().flatten());
    match start_refusal(row.is_some(), rcsi, level) {
        None => CheckItem::ok(
            NAME,
            format!("READ_COMMITTED_SNAPSHOT ON, compatibility level {}", level.unwrap_or(0)),
        ),
        Some(reason) => CheckItem::fail(NAME, reason, "run the ALTER DATABASE named above"),
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

/// MERGE_WINDOW (and the stamp, lease and quarantine statements around it) on a scratch stamp, through
/// `db check`'s trial commit: rolled back.
async fn merge_window(s: &mut PooledSession) -> CheckItem {
    let version = s.query_one(bind::none(&sql::SCHEMA_VERSION)).await;
    match version.map(|r| r.and_then(|r| types::opt::<i32>(&r, 0).ok().flatten())) {
        Ok(Some(v)) if v == LATEST_VERSION => {
            // A one-row window with a quarantined row on a scratch stamp: the INSERTs of a stamp, its
            // lease, the fence, MERGE_WINDOW and QUARANTINE_WINDOW, all rolled back.
            let mut item = trial_commit(s).await;
            item.name = "merge-window";
            item
        }
        _ => CheckItem::warning(
            "merge-window",
            format!("not run: schema {} is not at version {LATEST_VERSION}", s.schema()),
            "start azs-usage once with a login that may migrate (db_ddladmin), then run the smoke again",
        ),
    }
}
