//! `db check` for PostgreSQL: the server, the schema version, and a trial commit of a one-row window
//! through the store's own write path in a transaction that is rolled back. Nothing is created or
//! migrated.

use crate::{LATEST_VERSION, PostgresStore, ledger, schema, stamps};
use azs_core::check::{self, CheckItem, DatabaseCheck};
use azs_core::ports::{StoreError, WindowCommit, WindowWrite};
use azs_core::window::ReportedWindow;

/// PostgreSQL 13: `GENERATED AS IDENTITY`, `unnest` of several arrays, and the oldest major version
/// still supported when this store was written.
const MINIMUM_SERVER_VERSION: i32 = 130_000;

impl PostgresStore {
    /// Connects (without migrating) and reports on the server, the schema and a trial commit. Never
    /// fails: a failure to connect is itself the report's one `fail` item.
    pub async fn check(&self) -> DatabaseCheck {
        let target = self.address.clone();
        let mut client = match self.connection().await {
            Ok(c) => c,
            Err(failure) => {
                let item = CheckItem::fail(
                    "connect",
                    StoreError::from(failure).to_string(),
                    "check the host and port, the firewall or security group, the user and password, \
                     and sslmode/sslrootcert (TLS certificates are always verified)",
                );
                return DatabaseCheck::new("postgres", target, vec![item]);
            }
        };
        let mut items = vec![server(&client).await];
        let version = schema::current_version(&client).await;
        let migrated = matches!(version, Ok(v) if v == LATEST_VERSION);
        items.push(version_item(version));
        items.push(if migrated {
            trial_commit(&mut client).await
        } else {
            CheckItem::warning(
                "trial-commit",
                "not attempted: the schema is not at this build's version",
                "run any azs-usage command that opens the store (e.g. `azs-usage status`) to migrate it, then check again",
            )
        });
        DatabaseCheck::new("postgres", target, items)
    }
}

async fn server(client: &tokio_postgres::Client) -> CheckItem {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, version(), current_user, current_database(),
                 coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )
        .await;
    match row {
        Ok(row) => {
            let number: i32 = row.get(0);
            let version: String = row.get(1);
            let user: String = row.get(2);
            let database: String = row.get(3);
            let tls = if row.get::<_, bool>(4) { "TLS" } else { "no TLS" };
            let detail = format!("{version}; user {user}, database {database}, {tls}");
            if number < MINIMUM_SERVER_VERSION {
                CheckItem::fail("connect", detail, "use PostgreSQL 13 or newer")
            } else {
                CheckItem::ok("connect", detail)
            }
        }
        Err(e) => CheckItem::fail("connect", crate::describe(&e), "see the error above"),
    }
}

fn version_item(version: Result<i64, tokio_postgres::Error>) -> CheckItem {
    match version {
        Ok(v) if v == LATEST_VERSION => {
            CheckItem::ok("migration-version", format!("schema version {v} (this build's)"))
        }
        Ok(0) => CheckItem::warning(
            "migration-version",
            "no azs-usage schema in this database",
            "run any azs-usage command that opens the store (e.g. `azs-usage status`): it migrates on open",
        ),
        Ok(v) if v < LATEST_VERSION => CheckItem::warning(
            "migration-version",
            format!("schema version {v}; this build migrates it to {LATEST_VERSION} on open"),
            "nothing to do: the next azs-usage command migrates it",
        ),
        Ok(v) => CheckItem::fail(
            "migration-version",
            format!("schema version {v} is newer than this build's {LATEST_VERSION}"),
            "run the azs-usage version that migrated this database, or a newer one",
        ),
        Err(e) => CheckItem::fail(
            "migration-version",
            format!("cannot read the schema version: {}", crate::describe(&e)),
            "grant the user SELECT on schema_migrations",
        ),
    }
}

/// Registers a probe stamp, takes its lease and commits a one-row window with the store's own
/// functions, all inside one transaction that is then rolled back.
async fn trial_commit(client: &mut deadpool_postgres::Object) -> CheckItem {
    const NAME: &str = "trial-commit";
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => return CheckItem::fail(NAME, crate::describe(&e), "see the error above"),
    };
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
    let written: Result<_, String> = async {
        stamps::insert_in(&tx, &stamp)
            .await
            .map_err(|f| format!("registering the probe stamp: {}", StoreError::from(f)))?;
        tx.execute(
            "INSERT INTO stamp_leases (stamp_id, owner, expires_at) VALUES ($1, $2, 'infinity')",
            &[&stamp.id.as_str(), &owner],
        )
        .await
        .map_err(|e| format!("taking the probe stamp's lease: {}", crate::describe(&e)))?;
        ledger::commit_in(&tx, &commit)
            .await
            .map_err(|f| format!("committing the window: {}", StoreError::from(f)))
    }
    .await;
    let rolled_back = tx.rollback().await;
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
            CheckItem::fail(NAME, e, "fix the error above; the store cannot commit windows to this database")
        }
        (_, Err(e)) => CheckItem::fail(
            NAME,
            format!("the trial transaction could not be rolled back: {}", crate::describe(&e)),
            "check the database: a probe stamp named \"azs-usage db check (rolled back)\" may remain",
        ),
    }
}
