//! Connections: opening one (TLS, the login or a managed identity's token, Azure SQL's redirect), the
//! small pool that keeps them across invocations, and a [`Session`] that runs bound statements and
//! remembers whether its connection broke.

use crate::bind::Bound;
use crate::config::{Auth, SqlServerConfig};
use crate::retry::{breaks_connection, is_transient_server_error};
use crate::{SchemaName, sql};
use azs_core::ports::StoreError;
use azure_core::credentials::TokenCredential;
use futures::TryStreamExt;
use futures::stream::BoxStream;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tiberius::{AuthMethod, Client, Row, ToSql, TokenRow};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

type Connection = Client<Compat<TcpStream>>;

/// The scope of Azure SQL Database tokens (azure_identity asks in the v2 `scope` form).
pub const AZURE_SQL_SCOPE: &str = "https://database.windows.net/.default";

/// Why an operation did not complete, before it becomes a [`StoreError`].
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server or the connection failed.
    Db(tiberius::error::Error),
    /// Opening a connection failed (network, TLS, login, token).
    Connect { message: String, transient: bool },
    /// A domain answer (unknown stamp, duplicate, fenced) or a local refusal.
    Store(StoreError),
}

impl Failure {
    pub(crate) fn other(message: impl Into<String>) -> Self {
        Failure::Store(StoreError::Other(message.into()))
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Failure::Store(StoreError::Unavailable(message.into()))
    }

    pub(crate) fn is_transient(&self) -> bool {
        match self {
            Failure::Db(e) => is_transient_server_error(e),
            Failure::Connect { transient, .. } => *transient,
            Failure::Store(_) => false,
        }
    }

    /// The SQL Server error number, if the server sent one.
    pub(crate) fn code(&self) -> Option<u32> {
        match self {
            Failure::Db(e) => e.code(),
            _ => None,
        }
    }
}

impl From<tiberius::error::Error> for Failure {
    fn from(e: tiberius::error::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Store(e) => e,
            Failure::Connect { message, .. } => StoreError::Unavailable(message),
            Failure::Db(e) if breaks_connection(&e) || is_transient_server_error(&e) => {
                StoreError::Unavailable(describe(&e))
            }
            Failure::Db(e) => StoreError::Other(describe(&e)),
        }
    }
}

fn describe(e: &tiberius::error::Error) -> String {
    match e {
        tiberius::error::Error::Server(t) => format!("SQL Server error {}: {}", t.code(), t.message()),
        other => other.to_string(),
    }
}

/// One connection, as the store uses it.
pub(crate) struct Session {
    client: Connection,
    schema: SchemaName,
    broken: bool,
}

impl Session {
    pub(crate) fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Notes a connection-level failure so the pool drops the connection instead of reusing it.
    fn check<T>(&mut self, r: Result<T, tiberius::error::Error>) -> Result<T, Failure> {
        r.map_err(|e| {
            if breaks_connection(&e) {
                self.broken = true;
            }
            Failure::Db(e)
        })
    }

    /// Runs a statement without parameters as a plain batch (transaction control, DDL).
    pub(crate) async fn batch(&mut self, statement: &'static sql::Statement) -> Result<(), Failure> {
        assert_eq!(statement.params, 0, "{} takes parameters: bind it", statement.name);
        let text = self.schema.render(statement.sql);
        let r = match self.client.simple_query(text).await {
            Ok(stream) => stream.into_results().await.map(drop),
            Err(e) => Err(e),
        };
        self.check(r)
    }

    /// Runs a statement; returns the rows it affected.
    pub(crate) async fn execute(&mut self, bound: Bound<'_>) -> Result<u64, Failure> {
        let text = self.schema.render(bound.statement.sql);
        let params: Vec<&dyn ToSql> = bound.params.iter().map(|p| p as &dyn ToSql).collect();
        let r = self.client.execute(text, &params).await.map(|r| r.total());
        self.check(r)
    }

    /// Runs a query; returns the rows of its first result set.
    pub(crate) async fn query(&mut self, bound: Bound<'_>) -> Result<Vec<Row>, Failure> {
        let text = self.schema.render(bound.statement.sql);
        let params: Vec<&dyn ToSql> = bound.params.iter().map(|p| p as &dyn ToSql).collect();
        let r = match self.client.query(text, &params).await {
            Ok(stream) => stream.into_first_result().await,
            Err(e) => Err(e),
        };
        self.check(r)
    }

    pub(crate) async fn query_one(&mut self, bound: Bound<'_>) -> Result<Option<Row>, Failure> {
        Ok(self.query(bound).await?.into_iter().next())
    }

    /// Streams a query's rows to `each`, stopping at the first error `each` returns.
    pub(crate) async fn for_each_row(
        &mut self,
        bound: Bound<'_>,
        mut each: impl FnMut(Row) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let text = self.schema.render(bound.statement.sql);
        let params: Vec<&dyn ToSql> = bound.params.iter().map(|p| p as &dyn ToSql).collect();
        let result = async {
            let mut rows: BoxStream<'_, tiberius::Result<Row>> =
                self.client.query(text, &params).await.map_err(Failure::Db)?.into_row_stream();
            while let Some(row) = rows.try_next().await.map_err(Failure::Db)? {
                each(row)?;
            }
            Ok(())
        }
        .await;
        if let Err(Failure::Db(e)) = &result {
            if breaks_connection(e) {
                self.broken = true;
            }
        } else if result.is_err() {
            // Rows may be left unread on the wire; tiberius drains them before the next request, but a
            // long export is cheaper to abandon with its connection.
            self.broken = true;
        }
        result
    }

    /// Replaces the contents of `#staging` with `rows` (one bulk load).
    pub(crate) async fn stage(&mut self, rows: Vec<TokenRow<'_>>) -> Result<u64, Failure> {
        self.batch(&sql::CLEAR_STAGING).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let r = async {
            let mut load = self.client.bulk_insert_columns("#staging", crate::bind::STAGING_COLUMNS).await?;
            for row in rows {
                load.send(row).await?;
            }
            Ok(load.finalize().await?.total())
        }
        .await;
        if r.is_err() {
            // A bulk load cut short leaves the connection mid-protocol.
            self.broken = true;
        }
        r.map_err(Failure::Db)
    }

    pub(crate) async fn begin(&mut self) -> Result<(), Failure> {
        self.batch(&sql::BEGIN).await
    }

    /// Commits when `result` is Ok, rolls back otherwise; returns `result` (or the commit's failure).
    pub(crate) async fn finish<T>(&mut self, result: Result<T, Failure>) -> Result<T, Failure> {
        match result {
            Ok(value) => {
                self.batch(&sql::COMMIT).await?;
                Ok(value)
            }
            Err(failure) => {
                if !self.broken && self.batch(&sql::ROLLBACK).await.is_err() {
                    self.broken = true;
                }
                Err(failure)
            }
        }
    }
}

/// Opens connections for the pool.
pub(crate) struct Connector {
    config: tiberius::Config,
    schema: SchemaName,
    credential: Option<Arc<dyn TokenCredential>>,
}

impl Connector {
    pub(crate) fn new(config: &SqlServerConfig) -> Result<Self, StoreError> {
        let credential: Option<Arc<dyn TokenCredential>> = match &config.auth {
            Auth::ConnectionString => None,
            Auth::ManagedIdentity => {
                use azure_identity::{
                    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
                };
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: config.managed_identity_client_id.clone().map(UserAssignedId::ClientId),
                    ..Default::default()
                };
                let credential = ManagedIdentityCredential::new(Some(options))
                    .map_err(|e| StoreError::Unavailable(format!("managed identity: {e}")))?;
                Some(credential)
            }
        };
        Ok(Self { config: config.tiberius.clone(), schema: config.schema.clone(), credential })
    }

    async fn open(&self) -> Result<Session, Failure> {
        let mut config = self.config.clone();
        if let Some(credential) = &self.credential {
            // The credential caches tokens and refreshes them before they expire; asking for every new
            // connection means a connection never logs in with a stale one.
            let token =
                credential.get_token(&[AZURE_SQL_SCOPE], None).await.map_err(|e| Failure::Connect {
                    message: format!("managed identity token for Azure SQL: {e}"),
                    transient: true,
                })?;
            config.authentication(AuthMethod::aad_token(token.token.secret()));
        }
        let address = config.get_addr();
        let client = match connect(config.clone()).await {
            // Azure SQL's "redirect" connection policy sends the client to the database's node.
            Err(tiberius::error::Error::Routing { host, port }) => {
                config.host(&host);
                config.port(port);
                connect(config).await
            }
            other => other,
        }
        .map_err(|e| {
            let transient = breaks_connection(&e) || is_transient_server_error(&e);
            Failure::Connect {
                message: format!("cannot connect to SQL Server at {address}: {}", describe(&e)),
                transient,
            }
        })?;
        let mut session = Session { client, schema: self.schema.clone(), broken: false };
        session.batch(&sql::SESSION_OPTIONS).await?;
        session.batch(&sql::CREATE_STAGING).await?;
        Ok(session)
    }
}

/// How long opening a TCP connection may take (the TDS handshake has its own timeout in the config).
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

async fn connect(config: tiberius::Config) -> Result<Connection, tiberius::error::Error> {
    let tcp = tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(config.get_addr()))
        .await
        .map_err(|_| tiberius::error::Error::Io {
            kind: std::io::ErrorKind::TimedOut,
            message: format!("TCP connect timed out after {}s", TCP_CONNECT_TIMEOUT.as_secs()),
        })??;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

// ---------------------------------------------------------------------------------------------------
// The pool
// ---------------------------------------------------------------------------------------------------

/// How long a caller waits for one of the pool's connections to be free.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(60);
/// Azure SQL's gateway drops connections idle for about 30 minutes; a frozen function instance may
/// keep some far longer. Idle ones are closed well before, and every one is renewed after a while.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// A connection idle longer than this is pinged before it is handed out.
const VALIDATE_AFTER: Duration = Duration::from_secs(10);

/// A small pool: at most `size` connections, opened on demand, reused most-recent-first. (The
/// published bb8/deadpool adapters pin tiberius 0.12, and bb8 itself hands a waiting caller a timeout
/// instead of the reason a connection could not be opened.)
pub(crate) struct Pool {
    connector: Connector,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    session: Session,
    opened: Instant,
    returned: Instant,
}

impl Pool {
    pub(crate) fn new(connector: Connector, size: u32) -> Arc<Self> {
        Arc::new(Self {
            connector,
            permits: Arc::new(Semaphore::new(size.max(1) as usize)),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop()
    }
}

/// A session on loan from the pool; it goes back when dropped, unless its connection broke or aged.
pub(crate) struct PooledSession {
    session: Option<Session>,
    opened: Instant,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Deref for PooledSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledSession {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && !session.broken
            && self.opened.elapsed() < MAX_LIFETIME
        {
            let idle = Idle { session, opened: self.opened, returned: Instant::now() };
            self.pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(idle);
        }
    }
}

/// A session from the pool: an idle one if a usable one is there, else a new connection. Opening
/// failures reach the caller as they are (so they can be retried or reported).
pub(crate) async fn checkout(pool: &Arc<Pool>) -> Result<PooledSession, Failure> {
    let permit = tokio::time::timeout(CHECKOUT_TIMEOUT, Arc::clone(&pool.permits).acquire_owned())
        .await
        .map_err(|_| Failure::Connect {
            message: "timed out waiting for a database connection from the pool".into(),
            transient: true,
        })?
        .expect("the pool's semaphore is never closed");
    let lend = |session, opened| PooledSession {
        session: Some(session),
        opened,
        pool: Arc::clone(pool),
        _permit: permit,
    };
    while let Some(mut idle) = pool.take_idle() {
        if idle.opened.elapsed() >= MAX_LIFETIME || idle.returned.elapsed() >= IDLE_TIMEOUT {
            continue;
        }
        if idle.returned.elapsed() >= VALIDATE_AFTER && idle.session.batch(&sql::PING).await.is_err() {
            continue;
        }
        return Ok(lend(idle.session, idle.opened));
    }
    let session = pool.connector.open().await?;
    Ok(lend(session, Instant::now()))
}
