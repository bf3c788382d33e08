//! The production store: every port of [`azs_core::ports::Store`] over SQL Server / Azure SQL, through
//! tiberius (TDS 7.3, rustls, TLS always required).
//!
//! - A window's rows travel as `nvarchar(max)` JSON parameters of at most `WINDOW_CHUNK_ROWS` rows; in
//!   one transaction the stamp's watermark is moved (fenced by the lease owner and the expected
//!   watermark) and a `MERGE` over `OPENJSON` of each parameter writes them into `usage_rows`,
//!   mapping them to billing subscriptions in SQL. Either all of it commits or none (`XACT_ABORT ON`, rollback on any error).
//! - Everything lives in one schema (default `azs_usage`), built by versioned migrations run under an
//!   exclusive application lock, so concurrent cold starts migrate once.
//! - Connections come from a small pool kept across invocations; each new one logs in with the
//!   connection string's credentials or a fresh managed-identity token. Azure SQL's transient errors are
//!   retried with back-off; a database that cannot be reached is `StoreError::Unavailable`.
//! - Every statement is a constant in `sql.rs` with every value a `@Pn` parameter; the only spliced
//!   text is the validated schema name. Tests parse each one (sqlparser, MsSql dialect) and check its
//!   parameter count against the one place it is bound (`bind.rs`).

mod audit;
mod bind;
mod check;
mod config;
mod leases;
mod ledger;
mod mappings;
mod rating;
pub mod retry;
mod schema;
#[cfg(test)]
mod schema_checks;
#[cfg(test)]
mod server_cases;
mod session;
mod smoke;
mod sql;
mod stamps;
mod status;
mod types;
#[doc(hidden)]
pub mod window_memory;

pub use config::{
    Auth, ConfigError, DEFAULT_COMMAND_TIMEOUT, DEFAULT_POOL_SIZE, POOL_HEADROOM, SqlServerConfig,
};
pub use ledger::{QUARANTINE_CHUNK_BYTES, QUARANTINE_CHUNK_ROWS, WINDOW_CHUNK_ROWS};
pub use retry::RetryPolicy;
pub use schema::{InvalidSchemaName, LATEST_VERSION, SchemaName};
pub use session::AZURE_SQL_SCOPE;

use azs_core::ports::StoreError;
use futures::future::BoxFuture;
use session::{Failure, Pool, PooledSession};
use std::sync::Arc;
use tracing::warn;

/// What [`SqlServerStore::drop_schema`] drops, in order (referring tables before the ones they refer to).
pub(crate) const DROPS: &[&sql::Statement] = &[
    &sql::DROP_STAMP_LEASES,
    &sql::DROP_PROCESSING_STATUS,
    &sql::DROP_SUBSCRIPTION_MAPPINGS,
    &sql::DROP_USAGE_ROWS,
    &sql::DROP_USAGE_WINDOWS,
    &sql::DROP_TENANT_NUMBERS,
    &sql::DROP_STAMP_NUMBERS,
    &sql::DROP_QUARANTINED_ROWS,
    &sql::DROP_REPROCESS_LOG,
    &sql::DROP_AUDIT_RECORDS,
    &sql::DROP_PRICE_BOOK_VERSIONS,
    &sql::DROP_RATING_ASSIGNMENTS,
    &sql::DROP_STATEMENTS,
    &sql::DROP_VERIFY_HISTORY,
    &sql::DROP_STAMPS,
    &sql::DROP_STAMP_TOMBSTONES,
    &sql::DROP_MIGRATIONS_TABLE,
    &sql::DROP_SCHEMA,
];

/// A store on one SQL Server database schema. Cheap to clone; build one per process and share it.
#[derive(Clone)]
pub struct SqlServerStore {
    pool: Arc<Pool>,
    schema: SchemaName,
    retry: RetryPolicy,
    /// `host:port`, for `db check`'s report.
    address: String,
}

impl SqlServerStore {
    /// Builds the pool and brings the schema up to date (creating it if needed).
    pub async fn connect(config: SqlServerConfig) -> Result<Self, StoreError> {
        let store = Self::lazy(config)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Builds the pool without connecting: the first operation opens the first connection. For entry
    /// points that must start fast; call [`migrate`](Self::migrate) (or use a pre-migrated schema)
    /// before the first real use.
    pub fn lazy(config: SqlServerConfig) -> Result<Self, StoreError> {
        let connector = session::Connector::new(&config)?;
        Ok(Self {
            address: config.address(),
            pool: Pool::new(connector.into_open(), config.pool_size),
            schema: config.schema,
            retry: config.retry,
        })
    }

    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Applies the migrations this build knows that the schema lacks; returns the schema version.
    pub async fn migrate(&self) -> Result<i32, StoreError> {
        self.run("migrate", |mut s| Box::pin(async move { schema::migrate(&mut s).await })).await
    }

    /// Drops every table of the schema and the schema itself: all stamps, mappings and usage rows are
    /// gone. For tests and an operator's uninstall.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        self.run("drop_schema", |mut s| {
            Box::pin(async move {
                for statement in DROPS {
                    s.batch(statement).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Runs `op` on a pooled session, again after a back-off while it fails transiently.
    async fn run<'c, T>(
        &'c self,
        operation: &'static str,
        op: impl Fn(PooledSession) -> BoxFuture<'c, Result<T, Failure>>,
    ) -> Result<T, StoreError> {
        let mut attempt = 1;
        loop {
            let result = match session::checkout(&self.pool).await {
                Ok(session) => op(session).await,
                Err(failure) => Err(failure),
            };
            match result {
                Err(failure) if failure.is_transient() && attempt < self.retry.attempts => {
                    attempt += 1;
                    let wait = self.retry.delay_before(attempt);
                    warn!(operation, attempt, wait_ms = wait.as_millis() as u64, error = ?failure,
                        "transient database failure; trying again");
                    tokio::time::sleep(wait).await;
                }
                other => return other.map_err(StoreError::from),
            }
        }
    }
}
