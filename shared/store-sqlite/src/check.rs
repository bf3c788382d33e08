//! `db check` for a SQLite database file: whether it can be opened for writing, its journal mode,
//! integrity, schema version, and a trial commit of a one-row window through the store's own write
//! path inside a transaction that is rolled back. Nothing is created or migrated: a missing file is
//! reported, not made.

use crate::ledger::{OwnedCommit, commit_in};
use crate::migrations::{self, LATEST_VERSION};
use crate::stamps::insert_in;
use azs_core::check::{self, CheckItem, DatabaseCheck};
use azs_core::ports::WindowWrite;
use azs_core::window::ReportedWindow;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;

/// Checks the database file at `path`. Blocking (call it from `spawn_blocking` in async code).
pub fn check_database(path: &Path) -> DatabaseCheck {
    let target = path.display().to_string();
    let mut items = vec![CheckItem::ok(
        "sqlite-version",
        format!("SQLite {} (bundled with azs-usage)", rusqlite::version()),
    )];
    if !path.exists() {
        items.push(missing_file(path));
        return DatabaseCheck::new("sqlite", target, items);
    }
    // READ_WRITE without CREATE: a check never makes a file, and a file it cannot write is a finding.
    let conn = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .and_then(|c| c.busy_timeout(std::time::Duration::from_secs(5)).map(|()| c))
    {
        Ok(conn) => conn,
        Err(e) => {
            items.push(CheckItem::fail(
                "database-file",
                format!("cannot open {target} for reading and writing: {e}"),
                "give the user running azs-usage read and write access to the file and its folder",
            ));
            return DatabaseCheck::new("sqlite", target, items);
        }
    };
    items.push(CheckItem::ok("database-file", format!("{target} opens for reading and writing")));
    items.push(journal_mode(&conn));
    items.push(integrity(&conn));
    let version = schema_version(&conn);
    let migrated = version.as_ref().is_ok_and(|v| *v == LATEST_VERSION);
    items.push(version_item(version));
    items.push(if migrated {
        trial_commit(conn)
    } else {
        CheckItem::warning(
            "trial-commit",
            "not attempted: the schema is not at this build's version",
            "run any azs-usage command that opens the store (e.g. `azs-usage status`) to migrate it, then check again",
        )
    });
    DatabaseCheck::new("sqlite", target, items)
}

fn missing_file(path: &Path) -> CheckItem {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match std::fs::metadata(folder) {
        Ok(m) if m.is_dir() && !m.permissions().readonly() => CheckItem::warning(
            "database-file",
            format!("{} does not exist yet; its folder is writable", path.display()),
            "nothing to do if this is a new installation: the first azs-usage command creates and migrates it",
        ),
        Ok(_) => CheckItem::fail(
            "database-file",
            format!("{} does not exist and {} is not a writable folder", path.display(), folder.display()),
            "point AZS_USAGE_DATABASE at a writable folder",
        ),
        Err(e) => CheckItem::fail(
            "database-file",
            format!(
                "{} does not exist and its folder {} cannot be read: {e}",
                path.display(),
                folder.display()
            ),
            "create the folder, or point AZS_USAGE_DATABASE elsewhere",
        ),
    }
}

fn journal_mode(conn: &Connection) -> CheckItem {
    match conn.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)) {
        Ok(mode) if mode.eq_ignore_ascii_case("wal") => CheckItem::ok("journal-mode", "WAL"),
        Ok(mode) => CheckItem::warning(
            "journal-mode",
            format!("{mode}: writers block readers and other processes"),
            "open the store once with azs-usage (it switches the file to WAL), or run `PRAGMA journal_mode=WAL`",
        ),
        Err(e) => CheckItem::fail(
            "journal-mode",
            format!("cannot read the journal mode: {e}"),
            "check the file is a SQLite database",
        ),
    }
}

fn integrity(conn: &Connection) -> CheckItem {
    let verdicts: rusqlite::Result<Vec<String>> =
        conn.prepare("PRAGMA quick_check").and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match verdicts {
        Ok(v) if v == ["ok"] => CheckItem::ok("integrity", "PRAGMA quick_check: ok"),
        Ok(v) => CheckItem::fail(
            "integrity",
            format!("PRAGMA quick_check: {}", v.into_iter().take(3).collect::<Vec<_>>().join("; ")),
            "restore the file from a backup (or `sqlite3 FILE .recover`) before collecting into it",
        ),
        Err(e) => CheckItem::fail(
            "integrity",
            format!("cannot run PRAGMA quick_check: {e}"),
            "check the file is a SQLite database written by azs-usage",
        ),
    }
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    let ledger: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        [],
        |r| r.get(0),
    )?;
    if ledger { migrations::current_version(conn) } else { Ok(0) }
}

fn version_item(version: rusqlite::Result<i64>) -> CheckItem {
    match version {
        Ok(v) if v == LATEST_VERSION => {
            CheckItem::ok("migration-version", format!("schema version {v} (this build's)"))
        }
        Ok(0) => CheckItem::warning(
            "migration-version",
            "no azs-usage schema in this file",
            "run any azs-usage command that opens the store (e.g. `azs-usage status`): it migrates on open",
        ),
        Ok(v) if v < LATEST_VERSION => CheckItem::warning(
            "migration-version",
            format!("schema version {v}; this build migrates it to {LATEST_VERSION} on open"),
            "nothing to do: the next azs-usage command migrates it (back the file up first)",
        ),
        Ok(v) => CheckItem::fail(
            "migration-version",
            format!("schema version {v} is newer than this build's {LATEST_VERSION}"),
            "run the azs-usage version that migrated this file, or a newer one",
        ),
        Err(e) => CheckItem::fail(
            "migration-version",
            format!("cannot read the schema version: {e}"),
            "check the file is a SQLite database written by azs-usage",
        ),
    }
}

/// Registers a probe stamp, takes its lease and commits a one-row window with the store's own
/// functions, all inside one write transaction that is then rolled back.
fn trial_commit(mut conn: Connection) -> CheckItem {
    const NAME: &str = "trial-commit";
    if let Err(e) = conn.pragma_update(None, "foreign_keys", true) {
        return CheckItem::fail(NAME, format!("cannot enable foreign keys: {e}"), "check the SQLite build");
    }
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            return CheckItem::fail(
                NAME,
                format!("cannot take the write lock: {e}"),
                "another process holds the database locked for writing: find it, or retry",
            );
        }
    };
    let stamp = check::probe_stamp(chrono::Utc::now());
    let start = check::trial_hour();
    let commit = OwnedCommit {
        stamp: stamp.id.clone(),
        window: ReportedWindow { start, end: start + chrono::Duration::hours(1) },
        lease_owner: "azs-usage db check".into(),
        write: WindowWrite::Advance,
        rows: vec![check::probe_row()],
        quarantined: vec![check::probe_quarantined_row()],
    };
    let written = insert_in(&tx, &stamp)
        .map_err(|f| format!("registering the probe stamp: {}", azs_core::ports::StoreError::from(f)))
        .and_then(|()| {
            tx.execute(
                "INSERT INTO stamp_leases (stamp_id, owner, expires_at) VALUES (?1, ?2, ?3)",
                (stamp.id.as_str(), commit.lease_owner.as_str(), i64::MAX),
            )
            .map_err(|e| format!("taking the probe stamp's lease: {e}"))
        })
        .and_then(|_| {
            commit_in(&tx, &commit)
                .map_err(|f| format!("committing the window: {}", azs_core::ports::StoreError::from(f)))
        });
    let rolled_back = tx.rollback();
    match (written, rolled_back) {
        (Ok(receipt), Ok(())) if receipt.rows_written == 1 && receipt.quarantined == 1 => CheckItem::ok(
            NAME,
            "a one-row window with one quarantined row was written through the store's commit path and rolled back",
        ),
        (Ok(receipt), Ok(())) => CheckItem::fail(
            NAME,
            format!(
                "the one-row window wrote {} rows and {} quarantined rows",
                receipt.rows_written, receipt.quarantined
            ),
            "report this as a bug: the probe row should always be written once",
        ),
        (Err(e), _) => {
            CheckItem::fail(NAME, e, "fix the error above; the store cannot commit windows to this file")
        }
        (_, Err(e)) => CheckItem::fail(
            NAME,
            format!("the trial transaction could not be rolled back: {e}"),
            "check the file: a probe stamp named \"azs-usage db check (rolled back)\" may remain",
        ),
    }
}
