//! Building the adapters from the configuration: the one place that knows which database, secret
//! store and stamp client a process uses. Every entry point (Lambda, Azure handler, CLI) builds one
//! [`Services`] per process and reuses it across invocations.

use crate::config::{AppConfig, DatabaseAuth, DatabaseLocation};
use crate::registrar::Registrar;
use anyhow::{Context, Result};
use azs_core::collect::{CollectSettings, Collector};
use azs_core::ports::{SecretStore, Store, UsageSource};
use azs_core::registration::CredentialSecretRules;
use std::sync::Arc;

/// Everything a process needs, built once.
#[derive(Clone)]
pub struct Services {
    pub config: AppConfig,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    pub source: Arc<dyn UsageSource>,
    pub registrar: Registrar,
    pub collector: Collector,
}

impl Services {
    pub async fn build(config: &AppConfig) -> Result<Services> {
        let secrets = azs_secrets::connect(&azs_secrets::SecretStoreConfig::parse(
            Some(&config.secrets),
            Some(&config.secret_prefix),
        )?)
        .await
        .context("opening the secret store")?;
        let store = open_store(config, secrets.as_ref()).await?;
        let source: Arc<dyn UsageSource> =
            Arc::new(azs_azure_stack::AzureStackClient::new(azs_azure_stack::ClientSettings {
                limits: config.pull_limits,
                ..Default::default()
            }));
        Ok(Self::assemble(config.clone(), store, secrets, source))
    }

    /// Wires already-built adapters (tests use this to put fault-injecting wrappers around real ones).
    pub fn assemble(
        config: AppConfig,
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretStore>,
        source: Arc<dyn UsageSource>,
    ) -> Services {
        let settings = CollectSettings {
            concurrency: config.concurrency,
            settle_delay: chrono::Duration::from_std(config.settle_delay)
                .unwrap_or(chrono::Duration::hours(1)),
            lease_ttl: config.lease_ttl,
            ..CollectSettings::default()
        };
        let registrar = Registrar::new(
            store.clone(),
            secrets.clone(),
            source.clone(),
            azs_azure_stack::credential::credential_from_registration,
            credential_secret_rules(&config),
        );
        let collector = Collector::new(store.clone(), secrets.clone(), source.clone(), settings);
        Services { config, store, secrets, source, registrar, collector }
    }
}

/// Stamp credentials come from under the configured prefix, and never from the service's own secrets.
fn credential_secret_rules(config: &AppConfig) -> CredentialSecretRules {
    let database = match &config.database {
        DatabaseLocation::FromSecret(name) => Some(name.clone()),
        _ => None,
    };
    CredentialSecretRules::new(
        config.secret_prefix.clone(),
        database.into_iter().chain(config.api_token_secret.clone()),
    )
}

async fn open_store(config: &AppConfig, secrets: &dyn SecretStore) -> Result<Arc<dyn Store>> {
    Ok(match database_location(config, secrets).await? {
        DatabaseLocation::Sqlite(path) => Arc::new(
            azs_store_sqlite::SqliteStore::open(&path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        DatabaseLocation::SqlServer(connection) => Arc::new(
            azs_store_sqlserver::SqlServerStore::connect(sql_server_config(config, &connection)?)
                .await
                .context("connecting to SQL Server")?,
        ),
        DatabaseLocation::FromSecret(_) => anyhow::bail!("the database secret names another secret"),
    })
}

/// The SQL Server store's settings from the configuration: the connection string, how to log in, and
/// a pool sized for the configured concurrency.
fn sql_server_config(config: &AppConfig, connection: &str) -> Result<azs_store_sqlserver::SqlServerConfig> {
    let auth = match config.database_auth {
        DatabaseAuth::ConnectionString => azs_store_sqlserver::Auth::ConnectionString,
        DatabaseAuth::ManagedIdentity => azs_store_sqlserver::Auth::ManagedIdentity,
    };
    Ok(azs_store_sqlserver::SqlServerConfig::parse_with(connection, auth)
        .context("AZS_USAGE_DATABASE is not a usable SQL Server connection string")?
        .with_concurrency(config.concurrency))
}

/// `azs-usage db check`: what the configured database is like, without creating, migrating or
/// changing anything in it (the trial commit is rolled back). The secret store is opened only when the
/// connection string lives there.
pub async fn check_database(config: &AppConfig) -> Result<azs_core::check::DatabaseCheck> {
    let location = match &config.database {
        DatabaseLocation::FromSecret(_) => {
            let secrets = azs_secrets::connect(&azs_secrets::SecretStoreConfig::parse(
                Some(&config.secrets),
                Some(&config.secret_prefix),
            )?)
            .await
            .context("opening the secret store")?;
            database_location(config, secrets.as_ref()).await?
        }
        other => other.clone(),
    };
    Ok(match location {
        DatabaseLocation::Sqlite(path) => {
            tokio::task::spawn_blocking(move || azs_store_sqlite::check_database(&path))
                .await
                .context("the SQLite check ended abnormally")?
        }
        DatabaseLocation::SqlServer(connection) => {
            let store = azs_store_sqlserver::SqlServerStore::lazy(sql_server_config(config, &connection)?)
                .context("SQL Server settings")?;
            store.check().await
        }
        DatabaseLocation::FromSecret(_) => anyhow::bail!("the database secret names another secret"),
    })
}

/// Where the database is, reading the connection string from the secret store when it lives there.
async fn database_location(config: &AppConfig, secrets: &dyn SecretStore) -> Result<DatabaseLocation> {
    Ok(match &config.database {
        DatabaseLocation::FromSecret(name) => {
            let value = secrets
                .get_secret(name)
                .await
                .with_context(|| format!("reading the database connection from secret {name:?}"))?
                .with_context(|| {
                    format!("AZS_USAGE_DATABASE names secret {name:?}, which is not in the secret store")
                })?;
            let parsed = crate::config::AppConfig::from_lookup(|v| {
                (v == crate::config::DATABASE).then(|| value.expose().to_owned())
            })
            .context("the database secret does not hold a usable connection string")?;
            parsed.database
        }
        other => other.clone(),
    })
}
