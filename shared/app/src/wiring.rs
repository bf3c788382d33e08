//! Building the adapters from the configuration: the one place that knows which database, secret
//! store and stamp client a process uses. Every entry point (Lambda, Azure handler, CLI) builds one
//! [`Services`] per process and reuses it across invocations.

use crate::administration::Administration;
use crate::config::{AppConfig, DatabaseAuth, DatabaseCa, DatabaseLocation};
use crate::mapper::SubscriptionMapper;
use crate::registrar::Registrar;
use anyhow::{Context, Result};
use azs_core::collect::{CollectSettings, Collector};
use azs_core::fan_out::{FanOutSettings, StampFanOut};
use azs_core::ports::{SecretStore, StampQueue, Store, UsageSource};
use azs_core::registration::CredentialSecretRules;
use std::sync::Arc;

/// Everything a process needs, built once.
#[derive(Clone)]
pub struct Services {
    pub config: AppConfig,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    pub source: Arc<dyn UsageSource>,
    /// Stamp administration.
    pub registrar: Registrar,
    /// Mapping administration.
    pub mapper: SubscriptionMapper,
    pub collector: Collector,
    /// The timer's and the worker's side of queue fan-out (used when `fan_out` is `queue`).
    pub fan_out: StampFanOut,
    /// The SQS stamp queue, when its URLs are configured (AWS). Azure's queue is the invocation's
    /// output bindings, built per invocation by the handler.
    pub queue: Option<Arc<dyn StampQueue>>,
    /// Price books, assignments and statements on the same database, opened once with the store
    /// (`None` where the database could not open them; `assemble` leaves them out).
    pub rating: Option<Arc<dyn azs_core::rating::ports::RatingStore>>,
}

impl Services {
    /// What the webhook serves: stamp and mapping administration.
    pub fn administration(&self) -> Administration {
        Administration {
            stamps: self.registrar.clone(),
            mappings: self.mapper.clone(),
            quarantine: crate::quarantine::QuarantineList::new(self.store.clone(), self.store.clone()),
            audit: self.audit(),
            statements: self.rating.clone().map(|rating| {
                Arc::new(crate::rating::StatementService {
                    store: self.store.clone(),
                    rating,
                    settings: azs_core::rating::StatementSettings::default(),
                })
            }),
        }
    }

    /// The audit trail, as `audit list` and `GET /audit` read it.
    pub fn audit(&self) -> crate::audit::AuditLog {
        crate::audit::AuditLog::new(self.store.clone(), self.store.clone())
    }

    pub async fn build(config: &AppConfig) -> Result<Services> {
        let secrets = open_secrets(config).await?;
        let store = open_store(config, secrets.as_ref()).await?;
        let source: Arc<dyn UsageSource> = Arc::new(
            azs_azure_stack::AzureStackClient::new(azs_azure_stack::ClientSettings {
                limits: config.pull_limits,
                subscriber_concurrency: config.subscriber_concurrency,
                ..Default::default()
            })
            .with_allowed_hosts(config.allowed_stamp_hosts.clone()),
        );
        let mut services = Self::assemble(config.clone(), store, secrets, source);
        // A second handle on the same database (the rating ports are apart from `Store`), opened once
        // here for the webhook and the timer; a database that cannot hold them leaves rating off and
        // says why in the start-up log.
        services.rating = match open_rating_store(config).await {
            Ok(rating) => Some(rating),
            Err(e) => {
                tracing::warn!(reason = %format!("{e:#}"), "price books and statements unavailable");
                None
            }
        };
        if let (Some(queue_url), Some(dead_letter_url)) =
            (&config.stamp_queue_url, &config.dead_letter_queue_url)
        {
            let sdk = azs_secrets::aws_sdk_config().await?;
            services.queue =
                Some(Arc::new(azs_queue_sqs::SqsStampQueue::new(&sdk, queue_url, dead_letter_url)));
        }
        Ok(services)
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
            max_span_hours: config.max_span_hours,
            verify_trailing_hours: config.verify_trailing_hours,
            max_quarantined_per_window: config.max_quarantined_per_window,
            ..CollectSettings::default()
        };
        let Administration { stamps: registrar, mappings: mapper, .. } = Administration::new(
            store.clone(),
            secrets.clone(),
            source.clone(),
            azs_azure_stack::credential::credential_from_registration,
            credential_secret_rules(&config),
        );
        let collector = Collector::new(store.clone(), secrets.clone(), source.clone(), settings);
        let fan_out = StampFanOut::new(
            store.clone(),
            store.clone(),
            collector.clone(),
            FanOutSettings {
                continuation_delay: config.continuation_delay,
                max_attempts: config.max_attempts,
            },
        );
        Services {
            config,
            store,
            secrets,
            source,
            registrar,
            mapper,
            collector,
            fan_out,
            queue: None,
            rating: None,
        }
    }
}

/// Stamp credentials come from under the configured prefix, and never from the service's own secrets.
fn credential_secret_rules(config: &AppConfig) -> CredentialSecretRules {
    let database = match &config.database {
        DatabaseLocation::FromSecret(name) => Some(name.clone()),
        _ => None,
    };
    let database_ca = match &config.database_ca {
        Some(DatabaseCa::Secret(name)) => Some(name.clone()),
        _ => None,
    };
    CredentialSecretRules::new(
        config.secret_prefix.clone(),
        database.into_iter().chain(database_ca).chain(config.api_token_secret.clone()),
    )
}

/// The configured secret store; new AWS secrets are encrypted with the configured KMS key.
async fn open_secrets(config: &AppConfig) -> Result<Arc<dyn SecretStore>> {
    azs_secrets::connect(
        &azs_secrets::SecretStoreConfig::parse(Some(&config.secrets), Some(&config.secret_prefix))?
            .with_kms_key(config.secret_kms_key.clone())
            .with_managed_identity(config.managed_identity_client_id.clone()),
    )
    .await
    .context("opening the secret store")
}

async fn open_store(config: &AppConfig, secrets: &dyn SecretStore) -> Result<Arc<dyn Store>> {
    Ok(match database_location(config, secrets).await? {
        DatabaseLocation::Sqlite(path) => Arc::new(
            azs_store_sqlite::SqliteStore::open(&path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        DatabaseLocation::SqlServer(connection) => {
            let connection = with_database_ca(config, connection, secrets).await?;
            Arc::new(
                azs_store_sqlserver::SqlServerStore::connect(sql_server_config(config, &connection)?)
                    .await
                    .context("connecting to SQL Server")?,
            )
        }
        DatabaseLocation::Postgres(url) => {
            let settings = postgres_config(config, &url).await?;
            let settings = match &config.database_ca {
                Some(ca) => settings.with_ca_file(database_ca_file(ca, secrets).await?),
                None => settings,
            };
            Arc::new(
                azs_store_postgres::PostgresStore::connect(settings)
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {}", postgres_address(&url)))?,
            )
        }
        DatabaseLocation::FromSecret(_) => anyhow::bail!("the database secret names another secret"),
    })
}

/// The PostgreSQL store's settings: the URL, how to log in (the URL's password; with
/// `managed-identity` the identity's Entra ID token for Azure Database for PostgreSQL; with `aws-iam`
/// an RDS IAM token signed with the process's AWS credentials and region), and a pool sized for the
/// configured concurrency.
async fn postgres_config(config: &AppConfig, url: &str) -> Result<azs_store_postgres::PostgresConfig> {
    let settings = azs_store_postgres::PostgresConfig::parse(url)
        .context("AZS_USAGE_DATABASE is not a usable PostgreSQL URL")?
        .with_concurrency(config.concurrency);
    Ok(match config.database_auth {
        DatabaseAuth::ConnectionString => settings,
        DatabaseAuth::ManagedIdentity => settings
            .with_entra_id(config.managed_identity_client_id.clone())
            .context("the managed identity for PostgreSQL")?,
        DatabaseAuth::AwsIam => {
            let sdk = azs_secrets::aws_sdk_config().await.context("AWS credentials for the RDS IAM login")?;
            let credentials = sdk
                .credentials_provider()
                .context("AZS_USAGE_DATABASE_AUTH=aws-iam: the AWS SDK found no credentials provider")?;
            let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
            settings.with_rds_iam(&region, credentials).context("AZS_USAGE_DATABASE_AUTH=aws-iam")?
        }
    })
}

/// `host:port/database` of a PostgreSQL URL, for messages (never the password).
fn postgres_address(url: &str) -> String {
    azs_store_postgres::PostgresConfig::parse(url).map(|c| c.address()).unwrap_or_else(|_| "?".into())
}

/// The connection string with the configured CA bundle (`AZS_USAGE_DATABASE_CA`), if any.
async fn with_database_ca(
    config: &AppConfig,
    connection: String,
    secrets: &dyn SecretStore,
) -> Result<String> {
    Ok(match &config.database_ca {
        Some(ca) => with_trusted_ca(&connection, &database_ca_file(ca, secrets).await?),
        None => connection,
    })
}

/// The SQL Server store's settings from the configuration: the connection string, how to log in, and
/// a pool sized for the configured concurrency.
fn sql_server_config(config: &AppConfig, connection: &str) -> Result<azs_store_sqlserver::SqlServerConfig> {
    let auth = match config.database_auth {
        DatabaseAuth::ConnectionString => azs_store_sqlserver::Auth::ConnectionString,
        DatabaseAuth::ManagedIdentity => azs_store_sqlserver::Auth::ManagedIdentity,
        // Refused at start for a connection string in the variable; this is one read from a secret.
        DatabaseAuth::AwsIam => {
            anyhow::bail!(
                "AZS_USAGE_DATABASE_AUTH=aws-iam is a login to RDS or Aurora PostgreSQL, not SQL Server"
            )
        }
    };
    Ok(azs_store_sqlserver::SqlServerConfig::parse_with(connection, auth)
        .context("AZS_USAGE_DATABASE is not a usable SQL Server connection string")?
        .with_concurrency(config.concurrency))
}

/// `azs-usage db check`: what the configured database is like, without creating, migrating or
/// changing anything in it (the trial commit is rolled back). The secret store is opened only when the
/// connection string lives there.
pub async fn check_database(config: &AppConfig) -> Result<azs_core::check::DatabaseCheck> {
    Ok(match unopened_database(config).await? {
        UnopenedDatabase::Sqlite(path) => {
            tokio::task::spawn_blocking(move || azs_store_sqlite::check_database(&path))
                .await
                .context("the SQLite check ended abnormally")?
        }
        UnopenedDatabase::SqlServer(store) => store.check().await,
        UnopenedDatabase::Postgres(store) => store.check().await,
    })
}

/// The rating ports (price books, assignments, statements) on the configured database, its schema
/// brought up to date as the collector's store would. The secret store is opened only when the
/// connection string or the CA lives there.
pub async fn open_rating_store(config: &AppConfig) -> Result<Arc<dyn azs_core::rating::ports::RatingStore>> {
    Ok(match unopened_database(config).await? {
        UnopenedDatabase::Sqlite(path) => Arc::new(
            azs_store_sqlite::SqliteStore::open(&path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        UnopenedDatabase::SqlServer(store) => {
            store.migrate().await.context("connecting to SQL Server")?;
            Arc::new(store)
        }
        UnopenedDatabase::Postgres(store) => {
            store
                .migrate()
                .await
                .with_context(|| format!("connecting to PostgreSQL at {}", store.address()))?;
            Arc::new(store)
        }
    })
}

/// `azs-usage db smoke`: each T-SQL construct the SQL Server store depends on, run once against the
/// server and rolled back, one line each. SQLite and PostgreSQL need none: the test suite runs every
/// statement of theirs against the real engine.
pub async fn smoke_database(config: &AppConfig) -> Result<azs_core::check::DatabaseCheck> {
    use azs_core::check::{CheckItem, DatabaseCheck};
    Ok(match unopened_database(config).await? {
        UnopenedDatabase::Sqlite(path) => DatabaseCheck::new(
            "sqlite",
            path.display().to_string(),
            vec![CheckItem::ok(
                "smoke",
                "not needed: SQLite is linked in and runs every statement in the test suite; `db check` \
                 covers the file",
            )],
        ),
        UnopenedDatabase::SqlServer(store) => store.smoke().await,
        UnopenedDatabase::Postgres(store) => DatabaseCheck::new(
            "postgres",
            store.address().to_owned(),
            vec![CheckItem::ok(
                "smoke",
                "not needed: every statement of the PostgreSQL store runs against a real PostgreSQL server                  in the test suite; `db check` makes a trial commit on this one",
            )],
        ),
    })
}

/// The configured database, not yet opened (no connection, no migration).
enum UnopenedDatabase {
    Sqlite(std::path::PathBuf),
    SqlServer(azs_store_sqlserver::SqlServerStore),
    Postgres(azs_store_postgres::PostgresStore),
}

/// Reads the secret store only when the connection string or the CA lives there.
async fn unopened_database(config: &AppConfig) -> Result<UnopenedDatabase> {
    let needs_secrets = matches!(config.database, DatabaseLocation::FromSecret(_))
        || matches!(config.database_ca, Some(DatabaseCa::Secret(_)));
    let secrets = if needs_secrets { Some(open_secrets(config).await?) } else { None };
    let location = match (&config.database, &secrets) {
        (DatabaseLocation::FromSecret(_), Some(secrets)) => {
            database_location(config, secrets.as_ref()).await?
        }
        (other, _) => other.clone(),
    };
    Ok(match location {
        DatabaseLocation::Sqlite(path) => UnopenedDatabase::Sqlite(path),
        DatabaseLocation::SqlServer(connection) => {
            let connection = match (&config.database_ca, &secrets) {
                (Some(DatabaseCa::Secret(_)), Some(secrets)) => {
                    with_database_ca(config, connection, secrets.as_ref()).await?
                }
                (Some(DatabaseCa::File(path)), _) => with_trusted_ca(&connection, path),
                _ => connection,
            };
            let store = azs_store_sqlserver::SqlServerStore::lazy(sql_server_config(config, &connection)?)
                .context("SQL Server settings")?;
            UnopenedDatabase::SqlServer(store)
        }
        DatabaseLocation::Postgres(url) => {
            let settings = postgres_config(config, &url).await?;
            let settings = match (&config.database_ca, &secrets) {
                (Some(ca @ DatabaseCa::Secret(_)), Some(secrets)) => {
                    settings.with_ca_file(database_ca_file(ca, secrets.as_ref()).await?)
                }
                (Some(DatabaseCa::File(path)), _) => settings.with_ca_file(path),
                _ => settings,
            };
            let store = azs_store_postgres::PostgresStore::lazy(settings).context("PostgreSQL settings")?;
            UnopenedDatabase::Postgres(store)
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

/// The CA bundle as a file, which is what the SQL Server and PostgreSQL stores take: a secret's PEM text is written
/// to the temp directory (on Lambda the package holds only `bootstrap`, and /tmp is writable).
async fn database_ca_file(ca: &DatabaseCa, secrets: &dyn SecretStore) -> Result<std::path::PathBuf> {
    match ca {
        DatabaseCa::File(path) => Ok(path.clone()),
        DatabaseCa::Secret(name) => {
            let pem = secrets
                .get_secret(name)
                .await
                .with_context(|| format!("reading the database CA bundle from secret {name:?}"))?
                .with_context(|| {
                    format!(
                        "{} names secret {name:?}, which is not in the secret store",
                        crate::config::DATABASE_CA
                    )
                })?;
            if !pem.expose().contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!("{}: secret {name:?} holds no PEM certificate", crate::config::DATABASE_CA);
            }
            write_ca_file(&std::env::temp_dir(), pem.expose())
        }
    }
}

/// Writes the CA bundle where the database client reads it, whole: to a file of this process first,
/// then renamed over the shared name, so a client reading it at that moment (another process on the
/// machine, another cold start's connect) sees the old bundle or the new one, never a truncated file.
/// The SQL Server client reads the file at every connect and refuses a short or empty one as a
/// certificate problem that is not retried. `.pem`: the client reads every certificate of a PEM
/// bundle, but only one from other files.
fn write_ca_file(dir: &std::path::Path, pem: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("azs-usage-database-ca.pem");
    let partial = dir.join(format!(
        "azs-usage-database-ca.pem.{}.{}.partial",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&partial, pem).with_context(|| format!("writing {}", partial.display()))?;
    if let Err(e) = std::fs::rename(&partial, &path) {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(path)
}

/// Adds `TrustServerCertificateCA=<path>` unless the connection string names a CA itself.
fn with_trusted_ca(connection: &str, ca: &std::path::Path) -> String {
    if connection.to_ascii_lowercase().contains("trustservercertificateca") {
        return connection.to_owned();
    }
    let ca = ca.display().to_string();
    // Quoted: a path may hold `;`, `&`, `#` or `=`, which would end the value or start another.
    if connection.starts_with("sqlserver://") {
        let separator = if connection.contains('?') { '&' } else { '?' };
        let ca: String = url::form_urlencoded::byte_serialize(ca.as_bytes()).collect();
        format!("{connection}{separator}trustServerCertificateCA={ca}")
    } else {
        format!(
            "{};TrustServerCertificateCA=\"{}\"",
            connection.trim_end_matches(';'),
            ca.replace('"', "\"\"")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_file_is_never_seen_half_written_by_a_reader() {
        // Given writers of the CA bundle and a reader of it at the same time (the SQL Server client
        // reads it at every connect)
        let dir = std::env::temp_dir().join(format!("azs-usage-ca-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem =
            format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", "A".repeat(64 * 1024));
        let path = write_ca_file(&dir, &pem).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (dir, pem, stop) = (dir.clone(), pem.clone(), std::sync::Arc::clone(&stop));
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        write_ca_file(&dir, &pem).unwrap();
                    }
                })
            })
            .collect();
        // Then every read is the whole bundle
        for _ in 0..500 {
            assert_eq!(std::fs::read_to_string(&path).unwrap().len(), pem.len());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writers.into_iter().for_each(|w| w.join().unwrap());
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("azs-usage-database-ca.pem")],
            "no partial file is left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_ca_bundle_is_added_to_either_connection_string_form_once() {
        let ca = std::path::Path::new("/tmp/ca.pem");
        assert_eq!(
            with_trusted_ca("Server=tcp:db,1433;Database=x;Encrypt=true;", ca),
            "Server=tcp:db,1433;Database=x;Encrypt=true;TrustServerCertificateCA=\"/tmp/ca.pem\""
        );
        assert_eq!(
            with_trusted_ca("sqlserver://db/x?encrypt=true", ca),
            "sqlserver://db/x?encrypt=true&trustServerCertificateCA=%2Ftmp%2Fca.pem"
        );
        assert_eq!(
            with_trusted_ca("sqlserver://db/x", ca),
            "sqlserver://db/x?trustServerCertificateCA=%2Ftmp%2Fca.pem"
        );
        let own = "Server=db;TrustServerCertificateCA=/etc/own.pem";
        assert_eq!(with_trusted_ca(own, ca), own);
    }

    #[test]
    fn a_ca_path_with_separators_in_it_stays_one_value() {
        let ca = std::path::Path::new("/etc/certs;x=1/my \"ca\"&#.pem");
        for connection in
            ["Server=tcp:db.example,1433;Database=x;User Id=u;Password=p", "sqlserver://u:p@db.example/x"]
        {
            let with_ca = with_trusted_ca(connection, ca);
            let parsed = azs_store_sqlserver::SqlServerConfig::parse(&with_ca)
                .unwrap_or_else(|e| panic!("{with_ca}: {e}"));
            let seen = format!("{parsed:?}");
            assert!(seen.contains(r#"/etc/certs;x=1/my \"ca\"&#.pem"#), "{with_ca} -> {seen}");
        }
    }

    #[test]
    fn the_result_is_accepted_by_the_sql_server_client_configuration() {
        let connection = with_trusted_ca(
            "Server=tcp:db.example,1433;Database=x;User Id=u;Password=p",
            std::path::Path::new("/tmp/ca.pem"),
        );
        azs_store_sqlserver::SqlServerConfig::parse_with(
            &connection,
            azs_store_sqlserver::Auth::ConnectionString,
        )
        .expect("a connection string with a CA file parses");
    }
}
