//! Building the adapters from the configuration: the one place that knows which database, secret
//! store and stamp client a process uses. Every entry point (Lambda, Azure handler, CLI) builds one
//! [`Services`] per process and reuses it across invocations.

use crate::config::{AppConfig, DatabaseAuth, DatabaseLocation};
use crate::registrar::Registrar;
use anyhow::{Context, Result};
use azs_core::collect::{CollectSettings, Collector};
use azs_core::ports::{SecretStore, Store, UsageSource};
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
        let source: Arc<dyn UsageSource> = Arc::new(azs_azure_stack::AzureStackClient::default());
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
        );
        let collector = Collector::new(store.clone(), secrets.clone(), source.clone(), settings);
        Services { config, store, secrets, source, registrar, collector }
    }
}

async fn open_store(config: &AppConfig, secrets: &dyn SecretStore) -> Result<Arc<dyn Store>> {
    let location = match &config.database {
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
    };
    Ok(match location {
        DatabaseLocation::Sqlite(path) => Arc::new(
            azs_store_sqlite::SqliteStore::open(&path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        DatabaseLocation::SqlServer(connection) => {
            let auth = match config.database_auth {
                DatabaseAuth::ConnectionString => azs_store_sqlserver::Auth::ConnectionString,
                DatabaseAuth::ManagedIdentity => azs_store_sqlserver::Auth::ManagedIdentity,
            };
            let cfg = azs_store_sqlserver::SqlServerConfig::parse_with(&connection, auth)
                .context("AZS_USAGE_DATABASE is not a usable SQL Server connection string")?
                .with_concurrency(config.concurrency);
            Arc::new(
                azs_store_sqlserver::SqlServerStore::connect(cfg)
                    .await
                    .context("connecting to SQL Server")?,
            )
        }
        DatabaseLocation::FromSecret(_) => anyhow::bail!("the database secret names another secret"),
    })
}
