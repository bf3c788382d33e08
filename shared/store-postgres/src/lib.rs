//! A production store: every port of [`azs_core::ports::Store`] over PostgreSQL (Amazon RDS or Aurora
//! PostgreSQL, Azure Database for PostgreSQL, or any server from version 13 on).
//!
//! - **Crates.** tokio-postgres is the asynchronous client the Rust PostgreSQL ecosystem is built on
//!   (rust-postgres, maintained since 2013, the binary protocol, pipelining, portals for bounded
//!   reads); deadpool-postgres is its small, widely used pool (recycles connections, drops closed
//!   ones, timeouts on waiting and connecting). sqlx was the other candidate: it brings a macro
//!   layer, its own migration runner and a second TLS stack we do not want, for nothing this store
//!   needs. TLS is rustls with the `ring` provider, as everywhere in the workspace, through
//!   tokio-postgres-rustls.
//! - **The exactly-once commit.** A window's rows, its quarantined rows and the watermark commit in
//!   one READ COMMITTED transaction that first locks the stamp (`FOR SHARE`), its status row
//!   (`FOR UPDATE`) and its lease row (`FOR SHARE`), then checks that the lease is the caller's and
//!   the watermark is where the window expects it (`ledger::commit_in`). A lease taken over, a status
//!   written or a mapping set meanwhile waits for the commit, and a later commit of the same window
//!   sees the moved watermark: fenced. Rows go in with `INSERT .. SELECT FROM unnest(..) ON CONFLICT
//!   DO NOTHING`, thousands per statement.
//! - **Migrations** are numbered SQL files (`migrations/`), recorded in `schema_migrations` and applied
//!   in one transaction under an advisory lock, so concurrent cold starts migrate once.
//! - **Retries.** Serialization failures, deadlocks, a server shutting down and lost connections are
//!   retried on a fresh connection with back-off (`retry`); anything else fails the call at once.
//! - **Login** is the URL's user and password (scram-sha-256 or md5, as the server asks), or a token
//!   asked for on every new connection (`login`): a managed identity's Microsoft Entra ID token for
//!   Azure Database for PostgreSQL, an AWS RDS IAM authentication token for RDS and Aurora (a
//!   SigV4-presigned `connect` URL signed with aws-sigv4, which aws-config already builds: aws-sdk-rds
//!   would add a whole generated SDK crate to the build for one function), or any [`PasswordSource`].

mod audit;
mod check;
mod config;
mod leases;
mod ledger;
mod login;
mod mappings;
mod rating;
pub mod retry;
mod schema;
mod stamps;
mod status;

pub use config::{
    CONNECT_TIMEOUT, ConfigError, DEFAULT_POOL_SIZE, POOL_HEADROOM, PostgresConfig, TlsMode, is_postgres_url,
};
pub use ledger::ROW_LIMITS;
pub use login::{
    ENTRA_ID_SCOPE, EntraIdToken, PasswordSource, RDS_TOKEN_LIFETIME, RdsIamToken, rds_auth_token,
};
pub use retry::RetryPolicy;
pub use schema::{LATEST_VERSION, known_versions};

use azs_core::ports::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tracing::warn;

/// A store on one PostgreSQL database. Cheap to clone; build one per process and share it.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    retry: RetryPolicy,
    /// `host:port/database`, for reports and errors.
    address: String,
    /// Why the last login token could not be had (see `login::Connector`).
    token_failure: Arc<Mutex<Option<String>>>,
}

/// An operation's future, borrowing what the operation was called with.
type Op<'a, T> = Pin<Box<dyn Future<Output = Result<T, Failure>> + Send + 'a>>;

impl PostgresStore {
    /// Builds the pool and brings the schema up to date.
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        let store = Self::lazy(config)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Builds the pool without connecting: the first operation opens the first connection.
    pub fn lazy(config: PostgresConfig) -> Result<Self, StoreError> {
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let token_failure = Arc::new(Mutex::new(None));
        let password = config.password_source.clone();
        let manager = match config.tls {
            TlsMode::Disable => Manager::from_connect(
                config.client.clone(),
                login::Connector {
                    tls: tokio_postgres::NoTls,
                    password,
                    token_failure: Arc::clone(&token_failure),
                },
                manager_config,
            ),
            TlsMode::Prefer | TlsMode::Require => {
                let tls = config.rustls().map_err(|e| StoreError::Other(e.to_string()))?;
                Manager::from_connect(
                    config.client.clone(),
                    login::Connector {
                        tls: tokio_postgres_rustls::MakeRustlsConnect::new(tls),
                        password,
                        token_failure: Arc::clone(&token_failure),
                    },
                    manager_config,
                )
            }
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Other(format!("building the connection pool: {e}")))?;
        Ok(Self { pool, retry: config.retry, address: config.address(), token_failure })
    }

    /// `host:port/database`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Applies the migrations this build knows that the database lacks; returns the schema version.
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        self.run("migrate", |client| Box::pin(schema::migrate(client))).await
    }

    /// The highest migration applied to the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.run("schema_version", |client| {
            Box::pin(async move { schema::current_version(&client).await.map_err(Failure::from) })
        })
        .await
    }

    /// Creates database `name` on this store's server (tests make one per run, so runs never meet).
    /// `name` must be a plain lower-case identifier.
    pub async fn create_database(&self, name: &str) -> Result<(), StoreError> {
        let statement = format!("CREATE DATABASE {}", plain_identifier(name)?);
        let statement = &statement;
        self.run("create_database", |client| {
            Box::pin(async move { Ok(client.batch_execute(statement).await?) })
        })
        .await
    }

    /// Drops database `name` on this store's server, ending its sessions first; all of its stamps,
    /// mappings and usage rows are gone.
    pub async fn drop_database(&self, name: &str) -> Result<(), StoreError> {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", plain_identifier(name)?);
        let statement = &statement;
        self.run("drop_database", |client| {
            Box::pin(async move { Ok(client.batch_execute(statement).await?) })
        })
        .await
    }

    /// A pooled connection; a login token that could not be had is the failure's cause.
    async fn connection(&self) -> Result<Object, Failure> {
        self.pool.get().await.map_err(|e| {
            let token = self.token_failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match (token, &e) {
                (Some(cause), PoolError::Backend(_)) => Failure::Login(cause),
                _ => Failure::Pool(e),
            }
        })
    }

    /// Runs `op` on a pooled connection, again on a fresh one after a back-off while it fails
    /// transiently. A connection that failed is not given back to the pool.
    async fn run<'a, T>(
        &'a self,
        operation: &'static str,
        op: impl Fn(Object) -> Op<'a, T>,
    ) -> Result<T, StoreError> {
        let mut attempt = 1;
        loop {
            let result = match self.connection().await {
                Ok(client) => op(client).await,
                Err(failure) => Err(failure),
            };
            match result {
                Err(failure) if failure.is_transient() && attempt < self.retry.attempts => {
                    attempt += 1;
                    let wait = self.retry.delay_before(attempt);
                    warn!(operation, attempt, wait_ms = wait.as_millis() as u64, error = %failure,
                        "transient database failure; trying again on a fresh connection");
                    tokio::time::sleep(wait).await;
                }
                other => return other.map_err(StoreError::from),
            }
        }
    }
}

/// `name` when it needs no quoting: lower-case ASCII letters, digits and `_`, not starting with a digit.
fn plain_identifier(name: &str) -> Result<&str, StoreError> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if plain { Ok(name) } else { Err(StoreError::Other(format!("{name:?} is not a plain database name"))) }
}

/// A call's failure before it is reported: the server's or the pool's (maybe transient), or a domain
/// answer.
#[derive(Debug)]
pub(crate) enum Failure {
    Pg(tokio_postgres::Error),
    Pool(PoolError),
    Store(StoreError),
    /// Another transaction wrote the same unique key first; the operation looks again.
    Raced(String),
    /// The login token could not be had (the identity endpoint may answer next time).
    Login(String),
}

impl Failure {
    fn is_transient(&self) -> bool {
        match self {
            Failure::Pg(e) => retry::is_transient(e),
            Failure::Pool(e) => retry::is_transient_pool(e),
            Failure::Raced(_) | Failure::Login(_) => true,
            Failure::Store(_) => false,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Pg(e) => f.write_str(&describe(e)),
            Failure::Pool(PoolError::Backend(e)) => write!(f, "connecting: {}", describe(e)),
            Failure::Pool(e) => write!(f, "connection pool: {e}"),
            Failure::Store(e) => write!(f, "{e}"),
            Failure::Raced(what) => f.write_str(what),
            Failure::Login(cause) => write!(f, "logging in: {cause}"),
        }
    }
}

/// The server's message, detail and SQLSTATE (tokio-postgres's own `Display` says only "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        }
        None => {
            let source = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
            match retry::tls_refusal(e) {
                Some(rustls::Error::InvalidCertificate(_)) => format!(
                    "{e}{source} (not retried: the server's certificate must chain to the CA given with \
                     sslrootcert= or AZS_USAGE_DATABASE_CA, for RDS the region's RDS CA bundle, or to the \
                     system's roots, and hold the URL's host name)"
                ),
                Some(_) => {
                    format!("{e}{source} (not retried: the TLS handshake fails the same way each time)")
                }
                None => format!("{e}{source}"),
            }
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        let transient = f.is_transient();
        match f {
            Failure::Store(e) => e,
            other if transient => StoreError::Unavailable(other.to_string()),
            other => StoreError::Other(other.to_string()),
        }
    }
}

/// `text` as PostgreSQL text can hold it: U+0000 (which it cannot) becomes U+FFFD. For messages
/// (a run's last error, a reprocess reason) that may quote what a stamp sent; usage rows are refused
/// instead (`ledger`).
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}").into() } else { text.into() }
}

/// Whether `e` is the server refusing a row for a unique key another transaction holds.
pub(crate) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// Whether `e` is a foreign key violation (a row naming a stamp that is not registered).
pub(crate) fn is_foreign_key_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
}
