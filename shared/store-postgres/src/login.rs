//! Logging in with a short-lived token instead of a fixed password: Microsoft Entra ID for Azure
//! Database for PostgreSQL (a managed identity's access token is the password), or any other
//! [`PasswordSource`]. The pool asks the source on every new connection, so a connection never logs in
//! with an expired token; the source caches and refreshes as it sees fit.

use async_trait::async_trait;
use deadpool_postgres::Connect;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

/// The scope of Azure Database for PostgreSQL's Entra ID tokens.
pub const ENTRA_ID_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// Where a connection's password comes from when it is not in the URL. Errors never carry a secret.
#[async_trait]
pub trait PasswordSource: Send + Sync {
    async fn password(&self) -> Result<String, String>;
}

/// A managed identity's Entra ID token (the system-assigned identity, or the user-assigned one with
/// this client id).
pub struct EntraIdToken {
    credential: Arc<dyn azure_core::credentials::TokenCredential>,
}

impl EntraIdToken {
    pub fn managed_identity(client_id: Option<String>) -> Result<Self, String> {
        use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(UserAssignedId::ClientId),
            ..Default::default()
        };
        let credential =
            ManagedIdentityCredential::new(Some(options)).map_err(|e| format!("managed identity: {e}"))?;
        Ok(Self { credential })
    }
}

#[async_trait]
impl PasswordSource for EntraIdToken {
    async fn password(&self) -> Result<String, String> {
        let token = self
            .credential
            .get_token(&[ENTRA_ID_SCOPE], None)
            .await
            .map_err(|e| format!("Entra ID token for Azure Database for PostgreSQL: {e}"))?;
        Ok(token.token.secret().to_owned())
    }
}

/// Opens the pool's connections: the password from the source (when there is one), then TLS or not.
pub(crate) struct Connector<T> {
    pub tls: T,
    pub password: Option<Arc<dyn PasswordSource>>,
    /// Why the last token could not be had: the pool only carries tokio-postgres errors, so the store
    /// reads the cause here (see `PostgresStore::run`).
    pub token_failure: Arc<Mutex<Option<String>>>,
}

impl<T> Connect for Connector<T>
where
    T: MakeTlsConnect<Socket> + Clone + Sync + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>> + Send + '_>>
    {
        let tls = self.tls.clone();
        let mut config = pg_config.clone();
        let source = self.password.clone();
        let failure = Arc::clone(&self.token_failure);
        Box::pin(async move {
            if let Some(source) = source {
                match source.password().await {
                    Ok(password) => {
                        config.password(password);
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        // A tokio-postgres error without a network round trip: a configuration
                        // with no host. The store reports the token failure recorded above instead.
                        return match tokio_postgres::Config::new().connect(tokio_postgres::NoTls).await {
                            Err(e) => Err(e),
                            Ok(_) => unreachable!("a configuration without a host never connects"),
                        };
                    }
                }
            }
            let (client, connection) = config.connect(tls).await?;
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "PostgreSQL connection ended");
                }
            });
            Ok((client, task))
        })
    }
}
