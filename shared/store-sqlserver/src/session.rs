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
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tiberius::{AuthMethod, Client, ColumnData, Row, ToSql};
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
    /// Opening a connection failed (network, TLS, login, token); `fix` is what an operator does about
    /// this kind of failure (`db check` prints it).
    Connect { message: String, transient: bool, fix: &'static str },
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

    /// What an operator does about this kind of failure (`db check` and `db smoke` print it).
    pub(crate) fn fix(&self) -> &'static str {
        match self {
            Failure::Connect { fix, .. } => fix,
            Failure::Db(e) => server_fix(e),
            Failure::Store(_) => "see the error above",
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

/// What the pool must know about a session before lending it again. A session is reused only when its
/// last request ran to completion, no transaction is open on it and nothing on it failed in a way that
/// may have ended or desynchronised the server's session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifecycle {
    /// A connection-level failure, or a server error after which the session may be dead (transient or
    /// severe): the next request would fail or, worse, appear to succeed on a session the server killed.
    broken: bool,
    /// A request was sent and its future dropped before it finished (client disconnect, host cancel,
    /// an aborted task, a `select!` that lost): its response, and its locks, may still be pending.
    in_request: bool,
    /// How many `BEGIN TRANSACTION`s were sent and not yet ended by a `COMMIT` (one each) or a
    /// `ROLLBACK` (all of them), as `@@TRANCOUNT` counts. Lending a session with one open would make the
    /// next caller's writes part of a transaction nobody commits: they report success, hold locks, and
    /// are rolled back when the connection finally closes.
    open_transactions: u32,
    /// The session was switched to another schema (`Session::switch_schema`): its connection closes
    /// when it is given back.
    retired: bool,
}

impl Lifecycle {
    pub(crate) fn reusable(&self) -> bool {
        !self.broken && !self.in_request && self.open_transactions == 0 && !self.retired
    }

    /// Runs one request, noting it in flight until it returns: a request whose future is dropped stays
    /// "in flight" for ever, which is how a cancelled call keeps its connection out of the pool.
    pub(crate) async fn track<T>(
        &mut self,
        request: impl Future<Output = Result<T, tiberius::error::Error>>,
    ) -> Result<T, Failure> {
        self.in_request = true;
        let result = request.await;
        self.in_request = false;
        result.map_err(|e| {
            if discards_session(&e) {
                self.broken = true;
            }
            Failure::Db(e)
        })
    }

    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    fn reusable_but_for_the_transaction(&self) -> bool {
        !self.broken && !self.in_request
    }

    fn began(&mut self) {
        self.open_transactions += 1;
    }

    fn committed(&mut self) {
        self.open_transactions = self.open_transactions.saturating_sub(1);
    }

    fn rolled_back(&mut self) {
        self.open_transactions = 0;
    }
}

/// Whether a failed request leaves its session unfit for reuse: the connection itself failed, or the
/// server answered with a transient error (Azure SQL ends the session on 40613, 40197, 10928, ...) or a
/// severity of 20 or more ("fatal": the server closes the connection).
pub(crate) fn discards_session(e: &tiberius::error::Error) -> bool {
    let class = match e {
        tiberius::error::Error::Server(t) => Some(t.class()),
        _ => None,
    };
    breaks_connection(e) || discards_after_server_error(e.code(), class)
}

/// [`discards_session`] for a server error, by number and severity.
pub(crate) fn discards_after_server_error(code: Option<u32>, class: Option<u8>) -> bool {
    /// Severity 20-25: "fatal errors", the server terminates the connection.
    const FATAL_SEVERITY: u8 = 20;
    code.is_some_and(|c| crate::retry::TRANSIENT_ERRORS.contains(&c))
        || class.is_some_and(|c| c >= FATAL_SEVERITY)
}

/// A parameter as a view of the bound value. tiberius asks each parameter for its value with
/// `ToSql::to_sql`, which for a `ColumnData` is a clone: an owned text (a window's JSON) would be copied
/// whole before it is encoded. A borrowed view's clone copies nothing.
fn reborrow<'a>(value: &'a ColumnData<'_>) -> ColumnData<'a> {
    match value {
        ColumnData::String(Some(text)) => ColumnData::String(Some(Cow::Borrowed(text.as_ref()))),
        ColumnData::Binary(Some(bytes)) => ColumnData::Binary(Some(Cow::Borrowed(bytes.as_ref()))),
        other => other.clone(),
    }
}

/// One connection, as the store uses it.
pub(crate) struct Session {
    client: Connection,
    schema: SchemaName,
    lifecycle: Lifecycle,
}

impl Session {
    pub(crate) fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Sends the following statements to `schema` instead (`db smoke`'s scratch schema); returns the
    /// one it replaced. A session switched once is never lent again, even if switched back: a caller
    /// cancelled in between would otherwise hand the pool a session that writes elsewhere.
    pub(crate) fn switch_schema(&mut self, schema: SchemaName) -> SchemaName {
        self.lifecycle.retired = true;
        std::mem::replace(&mut self.schema, schema)
    }

    /// Runs a statement without parameters as a plain batch (transaction control, DDL).
    pub(crate) async fn batch(&mut self, statement: &'static sql::Statement) -> Result<(), Failure> {
        assert_eq!(statement.params, 0, "{} takes parameters: bind it", statement.name);
        let text = self.schema.render(statement.sql);
        let client = &mut self.client;
        self.lifecycle
            .track(async move {
                match client.simple_query(text).await {
                    Ok(stream) => stream.into_results().await.map(drop),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// Runs a statement; returns the rows it affected.
    pub(crate) async fn execute(&mut self, bound: Bound<'_>) -> Result<u64, Failure> {
        let text = self.schema.render(bound.statement.sql);
        let borrowed: Vec<ColumnData<'_>> = bound.params.iter().map(reborrow).collect();
        let params: Vec<&dyn ToSql> = borrowed.iter().map(|p| p as &dyn ToSql).collect();
        let client = &mut self.client;
        self.lifecycle.track(async move { client.execute(text, &params).await.map(|r| r.total()) }).await
    }

    /// Runs a query; returns the rows of its first result set.
    pub(crate) async fn query(&mut self, bound: Bound<'_>) -> Result<Vec<Row>, Failure> {
        let text = self.schema.render(bound.statement.sql);
        let borrowed: Vec<ColumnData<'_>> = bound.params.iter().map(reborrow).collect();
        let params: Vec<&dyn ToSql> = borrowed.iter().map(|p| p as &dyn ToSql).collect();
        let client = &mut self.client;
        self.lifecycle
            .track(async move {
                match client.query(text, &params).await {
                    Ok(stream) => stream.into_first_result().await,
                    Err(e) => Err(e),
                }
            })
            .await
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
        let borrowed: Vec<ColumnData<'_>> = bound.params.iter().map(reborrow).collect();
        let params: Vec<&dyn ToSql> = borrowed.iter().map(|p| p as &dyn ToSql).collect();
        let client = &mut self.client;
        let mut stopped = None;
        let result = self
            .lifecycle
            .track(async {
                let mut rows: BoxStream<'_, tiberius::Result<Row>> =
                    client.query(text, &params).await?.into_row_stream();
                while let Some(row) = rows.try_next().await? {
                    if let Err(f) = each(row) {
                        stopped = Some(f);
                        break;
                    }
                }
                Ok(())
            })
            .await;
        match stopped {
            Some(failure) => {
                // Rows may be left unread on the wire; tiberius drains them before the next request,
                // but a long export is cheaper to abandon with its connection.
                self.lifecycle.mark_broken();
                Err(failure)
            }
            None => result,
        }
    }

    pub(crate) async fn begin(&mut self) -> Result<(), Failure> {
        // Marked before it is sent: a BEGIN cancelled in flight may still have opened the transaction.
        self.lifecycle.began();
        self.batch(&sql::BEGIN).await
    }

    /// Commits when `result` is Ok, rolls back otherwise; returns `result` (or the commit's failure).
    pub(crate) async fn finish<T>(&mut self, result: Result<T, Failure>) -> Result<T, Failure> {
        match result {
            Ok(value) => {
                self.batch(&sql::COMMIT).await?;
                self.lifecycle.committed();
                Ok(value)
            }
            Err(failure) => {
                self.rollback().await;
                Err(failure)
            }
        }
    }

    /// Rolls back every open transaction (an inner one's rollback ends the outer ones too, as in
    /// T-SQL); a session whose rollback fails stays counted as open, so the pool drops it.
    pub(crate) async fn rollback(&mut self) {
        if self.lifecycle.reusable_but_for_the_transaction() && self.batch(&sql::ROLLBACK).await.is_ok() {
            self.lifecycle.rolled_back();
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
                    fix: FIX_TOKEN,
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
        .map_err(|e| connect_failure(&address, &e))?;
        let mut session = Session { client, schema: self.schema.clone(), lifecycle: Lifecycle::default() };
        session.batch(&sql::SESSION_OPTIONS).await?;
        Ok(session)
    }
}

/// Why a connection could not be opened, whether trying again may help, and what fixes it. A TLS
/// failure (a name the certificate does not hold, an issuer not trusted, an expired certificate, no
/// common TLS version, an unreadable CA file) is the same on every attempt: it is not retried, and the
/// message names the problem and its fix.
pub(crate) fn connect_failure(address: &str, e: &tiberius::error::Error) -> Failure {
    if let tiberius::error::Error::Tls(detail) = e {
        return Failure::Connect {
            message: format!(
                "cannot connect to SQL Server at {address}: TLS failed, {}",
                crate::retry::certificate_problem(detail)
            ),
            transient: false,
            fix: FIX_TLS,
        };
    }
    // tiberius passes only certificate rejections as `Error::Tls`: every other handshake failure
    // (an alert, no common TLS version) and an unreadable CA file reach us as `Error::Io`.
    if let tiberius::error::Error::Io { kind, message } = e
        && let Some(problem) = crate::retry::tls_io_problem(*kind, message)
    {
        return Failure::Connect {
            message: format!("cannot connect to SQL Server at {address}: {problem}"),
            transient: false,
            fix: FIX_TLS,
        };
    }
    Failure::Connect {
        message: format!("cannot connect to SQL Server at {address}: {}", describe(e)),
        transient: breaks_connection(e) || is_transient_server_error(e),
        fix: connect_fix(e),
    }
}

const FIX_TLS: &str = "fix the certificate problem named above (store README, \"Certificates\"): rustls \
    matches the host against subjectAltName only, so SQL Server's auto-generated certificate fails even \
    as the CA file; install one whose subjectAltName names the host";
const FIX_TOKEN: &str = "the managed identity could not get a token: check that the function has an \
    identity (AZURE_CLIENT_ID names a user-assigned one) and that its endpoint is reachable";

/// What fixes a statement's failure: by the server's error number, else by the connection's state.
fn server_fix(e: &tiberius::error::Error) -> &'static str {
    match e.code() {
        Some(code) => fix_for_code(code),
        None if breaks_connection(e) => {
            "the connection broke in the middle: run it again; if it repeats, check the network path \
             (idle timeouts of a firewall or NAT, the Azure SQL gateway)"
        }
        None => "see the error above",
    }
}

/// What fixes a connect failure that is not TLS, by the server's error number or the network's error.
pub(crate) fn connect_fix(e: &tiberius::error::Error) -> &'static str {
    use std::io::ErrorKind;
    match e {
        _ if e.code().is_some() => e.code().map_or("see the error above", fix_for_code),
        tiberius::error::Error::Io { kind: ErrorKind::TimedOut | ErrorKind::ConnectionRefused, .. } => {
            "no answer from the server: check the server name and port (1433; Azure SQL Managed \
             Instance's public endpoint is 3342), the firewall or network security group, and the DNS of \
             a private endpoint"
        }
        tiberius::error::Error::Io { .. } => {
            "the connection failed: check the server name and port, DNS, and any proxy or firewall between"
        }
        _ => "see the error above",
    }
}

/// What an operator does about SQL Server error `code`.
pub(crate) fn fix_for_code(code: u32) -> &'static str {
    match code {
        18456 => {
            "the login was refused (Msg 18456): check the user and password in the connection string, or \
             for a managed identity that the database has CREATE USER [identity name] FROM EXTERNAL \
             PROVIDER and the identity is the one the function runs as"
        }
        4060 => {
            "the database named in the connection string cannot be opened by this login (Msg 4060): check \
             Database= and that the login has a user in that database"
        }
        40615 | 40914 => {
            "the Azure SQL firewall refused this client's address: add a firewall rule or a virtual network \
             rule for the function's outbound addresses, or use a private endpoint"
        }
        229 | 230 | 262 | 297 | 300 => {
            "the login lacks a permission (Msg 229/262/300): ALTER ROLE db_datareader ADD MEMBER [login]; \
             ALTER ROLE db_datawriter ADD MEMBER [login] (and db_ddladmin for the login that migrates)"
        }
        208 => {
            "an object is missing (Msg 208): \"Invalid object name 'OPENJSON'\" means a compatibility \
             level below 130 (ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 130); one of our tables \
             means the schema is not migrated (start azs-usage once with a login in db_ddladmin)"
        }
        1934 => {
            "a SET option the filtered index needs is off (Msg 1934): a logon trigger or the server's \
             `user options` overrides the session's; remove the override, or report it"
        }
        code if crate::retry::TRANSIENT_ERRORS.contains(&code) => {
            "the service is busy, failing over or resuming a paused database: run it again in a minute"
        }
        _ => {
            "the server refused it: look the error number up (sys.messages, or Microsoft's \"Database \
             engine errors\" page) and report it with this output"
        }
    }
}

/// Opening the TCP connection shares the connect timeout with the TDS handshake (as ADO.NET's
/// `Connect Timeout` covers both): the handshake gets what the TCP connect left, not the whole limit
/// again. `Connect Timeout=0` waits as long as the network does.
async fn connect(mut config: tiberius::Config) -> Result<Connection, tiberius::error::Error> {
    let opening = TcpStream::connect(config.get_addr());
    let tcp = match config.get_handshake_timeout() {
        None => opening.await?,
        Some(limit) => {
            let started = Instant::now();
            let tcp = tokio::time::timeout(limit, opening).await.map_err(|_| timed_out(limit))??;
            config.handshake_timeout(Some(handshake_budget(limit, started.elapsed())));
            tcp
        }
    };
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

fn timed_out(limit: Duration) -> tiberius::error::Error {
    tiberius::error::Error::Io {
        kind: std::io::ErrorKind::TimedOut,
        message: format!("TCP connect timed out after {}s", limit.as_secs()),
    }
}

/// What is left of the connect timeout for the handshake after the TCP connect took `spent` (at least
/// a millisecond: tiberius treats zero as "fail at the first wait").
pub(crate) fn handshake_budget(limit: Duration, spent: Duration) -> Duration {
    limit.saturating_sub(spent).max(Duration::from_millis(1))
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

/// What the pool lends: something it can judge reusable and check before lending it again.
pub(crate) trait Lendable: Send + 'static {
    fn reusable(&self) -> bool;
    /// A round trip proving the connection still works (after it sat idle for a while).
    fn validate(&mut self) -> BoxFuture<'_, bool>;
}

impl Lendable for Session {
    fn reusable(&self) -> bool {
        self.lifecycle.reusable()
    }

    fn validate(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.batch(&sql::PING).await.is_ok() })
    }
}

/// How the pool opens a new session.
pub(crate) type Open<S> = Box<dyn Fn() -> BoxFuture<'static, Result<S, Failure>> + Send + Sync>;

impl Connector {
    pub(crate) fn into_open(self) -> Open<Session> {
        let connector = Arc::new(self);
        Box::new(move || {
            let connector = Arc::clone(&connector);
            Box::pin(async move { connector.open().await })
        })
    }
}

/// A small pool: at most `size` connections, opened on demand, reused most-recent-first. (The
/// published bb8/deadpool adapters pin tiberius 0.12, and bb8 itself hands a waiting caller a timeout
/// instead of the reason a connection could not be opened.)
pub(crate) struct Pool<S = Session> {
    open: Open<S>,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Idle<S>>>,
}

struct Idle<S> {
    session: S,
    opened: Instant,
    returned: Instant,
}

impl<S: Lendable> Pool<S> {
    pub(crate) fn new(open: Open<S>, size: u32) -> Arc<Self> {
        Arc::new(Self {
            open,
            permits: Arc::new(Semaphore::new(size.max(1) as usize)),
            idle: Mutex::new(Vec::new()),
        })
    }

    fn take_idle(&self) -> Option<Idle<S>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop()
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

/// A session on loan from the pool. It goes back when dropped only if it is reusable (see
/// [`Lifecycle`]) and young enough; otherwise it is dropped, which closes its connection (the server then
/// rolls back whatever it had open and frees its locks).
pub(crate) struct PooledSession<S: Lendable = Session> {
    session: Option<S>,
    opened: Instant,
    pool: Arc<Pool<S>>,
    _permit: OwnedSemaphorePermit,
}

impl<S: Lendable> Deref for PooledSession<S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.session.as_ref().expect("present until dropped")
    }
}

impl<S: Lendable> DerefMut for PooledSession<S> {
    fn deref_mut(&mut self) -> &mut S {
        self.session.as_mut().expect("present until dropped")
    }
}

impl<S: Lendable> Drop for PooledSession<S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take()
            && session.reusable()
            && self.opened.elapsed() < MAX_LIFETIME
        {
            let idle = Idle { session, opened: self.opened, returned: Instant::now() };
            self.pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(idle);
        }
    }
}

/// A session from the pool: an idle one if a usable one is there, else a new connection. Opening
/// failures reach the caller as they are (so they can be retried or reported).
pub(crate) async fn checkout<S: Lendable>(pool: &Arc<Pool<S>>) -> Result<PooledSession<S>, Failure> {
    let permit = tokio::time::timeout(CHECKOUT_TIMEOUT, Arc::clone(&pool.permits).acquire_owned())
        .await
        .map_err(|_| Failure::Connect {
            message: "timed out waiting for a database connection from the pool".into(),
            transient: true,
            fix: "every pooled connection stayed busy for a minute: look for blocking sessions \
                  (sys.dm_exec_requests, blocking_session_id) or raise AZS_USAGE_CONCURRENCY's pool headroom",
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
        if idle.returned.elapsed() >= VALIDATE_AFTER && !idle.session.validate().await {
            continue;
        }
        return Ok(lend(idle.session, idle.opened));
    }
    let session = (pool.open)().await?;
    Ok(lend(session, Instant::now()))
}

#[cfg(test)]
mod tests {
    //! The pool's lending rules, through its own checkout and return paths, with a stand-in session that
    //! keeps its state in the same [`Lifecycle`] a real one does (no server runs here).
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Probe {
        id: usize,
        lifecycle: Lifecycle,
    }

    impl Lendable for Probe {
        fn reusable(&self) -> bool {
            self.lifecycle.reusable()
        }
        fn validate(&mut self) -> BoxFuture<'_, bool> {
            Box::pin(async { true })
        }
    }

    impl Probe {
        async fn request(&mut self, outcome: Result<(), tiberius::error::Error>) -> Result<(), Failure> {
            self.lifecycle.track(async { outcome }).await
        }
        /// A request the server never answers (until its caller gives up on it).
        async fn hang(&mut self) -> Result<(), Failure> {
            self.lifecycle.track(futures::future::pending()).await
        }
    }

    fn pool(size: u32) -> (Arc<Pool<Probe>>, Arc<AtomicUsize>) {
        let opened = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&opened);
        let open: Open<Probe> = Box::new(move || {
            let id = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move { Ok(Probe { id, lifecycle: Lifecycle::default() }) })
        });
        (Pool::new(open, size), opened)
    }

    fn io_error() -> tiberius::error::Error {
        tiberius::error::Error::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() }
    }

    #[tokio::test]
    async fn a_session_whose_requests_finished_is_lent_again() {
        let (pool, opened) = pool(2);
        let mut s = checkout(&pool).await.unwrap();
        s.request(Ok(())).await.unwrap();
        drop(s);
        assert_eq!(pool.idle_count(), 1);
        let s = checkout(&pool).await.unwrap();
        assert_eq!((s.id, opened.load(Ordering::SeqCst)), (1, 1));
    }

    #[tokio::test]
    async fn a_cancelled_request_never_returns_its_connection_to_the_pool() {
        // Given a call whose request is cancelled in flight (a timeout firing, as a host cancel would)
        let (pool, opened) = pool(1);
        let mut s = checkout(&pool).await.unwrap();
        let cancelled = tokio::time::timeout(Duration::from_millis(10), s.hang()).await;
        assert!(cancelled.is_err(), "the request was cut short");
        drop(s);

        // Then the connection is closed, not pooled, and its permit is free: the next caller gets a new one
        assert_eq!(pool.idle_count(), 0);
        let s = checkout(&pool).await.unwrap();
        assert_eq!((s.id, opened.load(Ordering::SeqCst)), (2, 2));
    }

    #[tokio::test]
    async fn an_aborted_task_holding_a_session_does_not_leak_it_into_the_pool() {
        let (pool, _) = pool(1);
        let task_pool = Arc::clone(&pool);
        let task = tokio::spawn(async move {
            let mut s = checkout(&task_pool).await.unwrap();
            s.lifecycle.began();
            let _ = s.hang().await;
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(pool.idle_count(), 0);
        let s = tokio::time::timeout(Duration::from_secs(1), checkout(&pool)).await.unwrap().unwrap();
        assert_eq!(s.id, 2, "a fresh connection, within the pool's size of one");
    }

    #[tokio::test]
    async fn a_session_with_an_open_transaction_is_discarded_and_one_that_ended_it_is_kept() {
        let (pool, _) = pool(2);
        let mut s = checkout(&pool).await.unwrap();
        s.lifecycle.began();
        s.request(Ok(())).await.unwrap();
        drop(s);
        assert_eq!(pool.idle_count(), 0, "BEGIN without COMMIT/ROLLBACK: never lent again");

        let mut s = checkout(&pool).await.unwrap();
        s.lifecycle.began();
        s.lifecycle.began();
        s.request(Ok(())).await.unwrap();
        s.lifecycle.committed();
        assert!(!s.reusable(), "an inner COMMIT leaves the outer transaction open");
        s.lifecycle.rolled_back();
        drop(s);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_broken_connection_is_discarded_a_refused_statement_is_not() {
        let (pool, _) = pool(2);
        let mut s = checkout(&pool).await.unwrap();
        assert!(s.request(Err(io_error())).await.is_err());
        drop(s);
        assert_eq!(pool.idle_count(), 0);

        let mut s = checkout(&pool).await.unwrap();
        assert!(s.request(Err(tiberius::error::Error::Conversion("x".into()))).await.is_err());
        drop(s);
        assert_eq!(pool.idle_count(), 1);
    }

    #[test]
    fn transient_and_fatal_server_errors_end_the_session_ordinary_refusals_do_not() {
        for (code, class) in [(40613, 16), (40197, 20), (10928, 16), (49918, 16), (1205, 13), (3980, 20)] {
            assert!(discards_after_server_error(Some(code), Some(class)), "{code} class {class}");
        }
        for (code, class) in [(2627, 14), (547, 16), (8152, 16), (2628, 16)] {
            assert!(!discards_after_server_error(Some(code), Some(class)), "{code} class {class}");
        }
    }

    #[test]
    fn a_parameter_is_handed_to_tiberius_without_copying_its_text() {
        let json = "[{\"k\":\"00\"}]".repeat(1000);
        let bound = ColumnData::String(Some(Cow::Owned(json.clone())));
        let view = reborrow(&bound);
        let handed = ToSql::to_sql(&view);
        let (ColumnData::String(Some(original)), ColumnData::String(Some(handed))) = (&bound, &handed) else {
            panic!("a string stays a string");
        };
        assert!(matches!(handed, Cow::Borrowed(_)), "no copy of the text");
        assert_eq!(original.as_ptr(), handed.as_ptr(), "the very bytes bound");
        assert_eq!(reborrow(&ColumnData::I32(Some(7))), ColumnData::I32(Some(7)));
    }

    #[test]
    fn the_connect_timeout_is_shared_by_the_tcp_connect_and_the_handshake_not_applied_twice() {
        let limit = Duration::from_secs(15);
        assert_eq!(handshake_budget(limit, Duration::from_secs(4)), Duration::from_secs(11));
        assert_eq!(handshake_budget(limit, Duration::from_secs(20)), Duration::from_millis(1));
    }

    #[tokio::test]
    async fn the_pool_never_lends_more_sessions_than_its_size() {
        let (pool, _) = pool(2);
        let a = checkout(&pool).await.unwrap();
        let _b = checkout(&pool).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(20), checkout(&pool)).await.is_err());
        drop(a);
        assert!(tokio::time::timeout(Duration::from_millis(200), checkout(&pool)).await.is_ok());
    }

    #[test]
    fn a_session_switched_to_another_schema_is_never_lent_again() {
        let mut lifecycle = Lifecycle::default();
        assert!(lifecycle.reusable());
        lifecycle.retired = true;
        assert!(!lifecycle.reusable(), "it would write to the scratch schema for its next borrower");
        assert!(lifecycle.reusable_but_for_the_transaction(), "its own rollback is still sent");
    }

    #[test]
    fn each_kind_of_failure_has_its_own_fix() {
        use std::io::ErrorKind;
        let fixes = [
            (18456, "CREATE USER"),
            (4060, "Database="),
            (40615, "firewall"),
            (262, "db_datawriter"),
            (208, "COMPATIBILITY_LEVEL = 130"),
            (1934, "SET option"),
            (40613, "in a minute"),
            (50000, "look the error number up"),
        ];
        for (code, names) in fixes {
            assert!(fix_for_code(code).contains(names), "{code}: {}", fix_for_code(code));
        }
        let io = |kind| tiberius::error::Error::Io { kind, message: "x".into() };
        assert!(connect_fix(&io(ErrorKind::TimedOut)).contains("no answer"));
        assert!(connect_fix(&io(ErrorKind::ConnectionRefused)).contains("port"));
        assert!(connect_fix(&io(ErrorKind::ConnectionReset)).contains("connection failed"));
        let tls = connect_failure("db:1433", &tiberius::error::Error::Tls("UnknownIssuer".into()));
        assert!(tls.fix().contains("subjectAltName"), "{}", tls.fix());
        let broke = Failure::Db(io(ErrorKind::ConnectionReset));
        assert!(broke.fix().contains("run it again"));
        let refused = connect_failure("db:1433", &io(ErrorKind::ConnectionRefused));
        assert!(refused.fix().contains("no answer"));
    }
}
