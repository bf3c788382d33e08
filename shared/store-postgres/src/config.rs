//! The store's settings from a `postgres://` / `postgresql://` URL: where the server is, who logs in
//! (the URL's user and password), how TLS is checked, and how many connections the pool keeps.
//!
//! `sslmode` follows libpq's names, but TLS here never means "encrypted and unverified": rustls always
//! checks the server's certificate chain and host name. So `require`, `verify-ca` and `verify-full`
//! all mean what libpq calls `verify-full`, `prefer` (libpq's default, and ours) uses TLS with the same
//! checks when the server offers it and plain TCP when it does not, and `disable` is plain TCP. The CA
//! is `sslrootcert=PATH` (a PEM bundle), else [`PostgresConfig::with_ca_file`], else the system's roots.

use crate::retry::RetryPolicy;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Connections kept when nothing sizes the pool.
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Connections beyond the collector's concurrency: status writes, lease renewals and reads run beside
/// the stamps' commits.
pub const POOL_HEADROOM: usize = 4;
/// How long a caller waits for a pooled connection (or a new one) before the call fails as unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not a PostgreSQL URL: {0}")]
    Url(String),
    #[error("sslmode={0} is not supported (use disable, prefer, require, verify-ca or verify-full)")]
    SslMode(String),
    #[error("login: {0}")]
    Login(String),
    /// RDS accepts an IAM token only over TLS; without it the login fails with "PAM authentication
    /// failed", which names neither the cause nor the fix.
    #[error(
        "sslmode={0} cannot carry an AWS RDS IAM token: RDS accepts IAM logins only over TLS \
         (set sslmode=verify-full, verify-ca or require in the URL)"
    )]
    IamWithoutTls(&'static str),
    #[error("the CA bundle {path}: {message}")]
    Ca { path: String, message: String },
}

/// How the connection is protected (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    /// `require`, `verify-ca` and `verify-full`: TLS, certificate and host name checked.
    Require,
}

/// Everything the store needs to reach its database. `Debug` never shows the password.
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) client: tokio_postgres::Config,
    pub(crate) tls: TlsMode,
    pub(crate) ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub retry: RetryPolicy,
    /// Asked for the password of every new connection, instead of the URL's.
    pub(crate) password_source: Option<std::sync::Arc<dyn crate::login::PasswordSource>>,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("address", &self.address())
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .field("password_source", &self.password_source.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether `value` names a PostgreSQL database (what the composition root dispatches on).
pub fn is_postgres_url(value: &str) -> bool {
    let lower = value.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl PostgresConfig {
    /// Parses a `postgres://user:password@host:port/database?sslmode=...&sslrootcert=...` URL.
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        if !is_postgres_url(url) {
            return Err(ConfigError::Url("expected postgres:// or postgresql://".into()));
        }
        // Never echo the URL itself in an error: it carries the password.
        let mut parsed = url::Url::parse(url.trim()).map_err(|e| ConfigError::Url(e.to_string()))?;
        let mut tls = TlsMode::Prefer;
        let mut ca_file = None;
        let mut kept = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => {
                    tls = match value.as_ref() {
                        "disable" => TlsMode::Disable,
                        "prefer" | "allow" => TlsMode::Prefer,
                        "require" | "verify-ca" | "verify-full" => TlsMode::Require,
                        other => return Err(ConfigError::SslMode(other.to_owned())),
                    }
                }
                "sslrootcert" => ca_file = Some(PathBuf::from(value.as_ref())),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        let mut client =
            tokio_postgres::Config::from_str(parsed.as_str()).map_err(|e| ConfigError::Url(e.to_string()))?;
        // tokio-postgres knows only disable/prefer/require and leaves the checking to the connector;
        // the verify-* modes were mapped above, and the rustls connector always checks.
        client.ssl_mode(match tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            TlsMode::Require => tokio_postgres::config::SslMode::Require,
        });
        if client.get_application_name().is_none() {
            client.application_name("azs-usage");
        }
        if client.get_connect_timeout().is_none() {
            client.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(Self {
            client,
            tls,
            ca_file,
            pool_size: DEFAULT_POOL_SIZE,
            retry: RetryPolicy::default(),
            password_source: None,
        })
    }

    /// Trusts the CA bundle at `path` unless the URL named one (`sslrootcert`).
    pub fn with_ca_file(mut self, path: impl AsRef<Path>) -> Self {
        if self.ca_file.is_none() {
            self.ca_file = Some(path.as_ref().to_owned());
        }
        self
    }

    /// Sizes the pool for `concurrency` stamps committing at once, plus headroom.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.pool_size = concurrency.max(1) + POOL_HEADROOM;
        self
    }

    /// Logs in with a password from `source`, asked for on every new connection (a token that
    /// expires); the URL names the user.
    pub fn with_password_source(mut self, source: std::sync::Arc<dyn crate::login::PasswordSource>) -> Self {
        self.password_source = Some(source);
        self
    }

    /// Logs in with the managed identity's Entra ID token (Azure Database for PostgreSQL); the URL's
    /// user is the identity's name as the server knows it (`pgaadauth_create_principal`).
    pub fn with_entra_id(self, managed_identity_client_id: Option<String>) -> Result<Self, ConfigError> {
        let source = crate::login::EntraIdToken::managed_identity(managed_identity_client_id)
            .map_err(ConfigError::Login)?;
        Ok(self.with_password_source(std::sync::Arc::new(source)))
    }

    /// Logs in with an AWS RDS IAM authentication token for the URL's user, host and port, signed
    /// with `credentials` for `region` (RDS and Aurora PostgreSQL). The URL must ask for TLS, and name
    /// the instance's, cluster's or RDS Proxy's own endpoint: the token is signed for that host, so an
    /// alias (a CNAME of ours) fails the login.
    pub fn with_rds_iam(
        self,
        region: &str,
        credentials: aws_credential_types::provider::SharedCredentialsProvider,
    ) -> Result<Self, ConfigError> {
        match self.tls {
            TlsMode::Require => {}
            TlsMode::Prefer => return Err(ConfigError::IamWithoutTls("prefer (the default when unset)")),
            TlsMode::Disable => return Err(ConfigError::IamWithoutTls("disable")),
        }
        let host = match self.client.get_hosts() {
            [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
            [] => return Err(ConfigError::Login("an RDS IAM token needs the URL's host name".into())),
            [tokio_postgres::config::Host::Unix(_)] => {
                return Err(ConfigError::Login("an RDS IAM token is for a TCP host, not a socket".into()));
            }
            _ => {
                return Err(ConfigError::Login(
                    "an RDS IAM token is for one host; the URL names several".into(),
                ));
            }
        };
        let port = self.client.get_ports().first().copied().unwrap_or(5432);
        let user = self
            .client
            .get_user()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                ConfigError::Login(
                    "an RDS IAM token needs the URL's user (the database role granted rds_iam)".into(),
                )
            })?
            .to_owned();
        // The token is signed for the database's region, which RDS's own host names carry
        // (`<name>.<id>.<region>.rds.amazonaws.com`); the process's region (AWS_REGION, the function's)
        // is the fallback for any other name. Signed for another region, every login fails with
        // "PAM authentication failed", which names neither.
        let region = rds_host_region(&host).unwrap_or_else(|| region.trim());
        if region.is_empty() {
            return Err(ConfigError::Login("an RDS IAM token needs the AWS region (AWS_REGION)".into()));
        }
        let source = crate::login::RdsIamToken::new(&host, port, &user, region, credentials);
        Ok(self.with_password_source(std::sync::Arc::new(source)))
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Another database on the same server, with the same login (tests create one per run).
    pub fn with_database(mut self, database: &str) -> Self {
        self.client.dbname(database);
        self
    }

    pub fn database(&self) -> &str {
        self.client.get_dbname().unwrap_or("")
    }

    /// `host:port/database`, for reports and errors. Never the user's password.
    pub fn address(&self) -> String {
        let host = match self.client.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.client.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.database())
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// The rustls client configuration: ring, the CA bundle (or the system's roots), host names checked.
    pub(crate) fn rustls(&self) -> Result<rustls::ClientConfig, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let ca = |message: String| ConfigError::Ca { path: path.display().to_string(), message };
                let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
                let certs = rustls_pemfile::certs(&mut pem.as_slice())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ca(e.to_string()))?;
                if certs.is_empty() {
                    return Err(ca("no PEM certificate in it".into()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| ca(e.to_string()))?;
                }
            }
            None => {
                // A certificate the platform cannot parse is skipped, as every TLS client does.
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::Url(format!("TLS settings: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// The region of an RDS endpoint (instance, cluster, reader, proxy): the label before `rds` in
/// `<name>.<id>.<region>.rds.amazonaws.com` (or `.rds.amazonaws.com.cn`); `None` for any other name.
fn rds_host_region(host: &str) -> Option<&str> {
    let host = host.trim_end_matches('.');
    let rest =
        host.strip_suffix(".rds.amazonaws.com").or_else(|| host.strip_suffix(".rds.amazonaws.com.cn"))?;
    let region = rest.rsplit('.').next().filter(|r| *r != rest)?;
    let plausible = region.split('-').count() >= 3
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    plausible.then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_address_database_and_tls_without_showing_the_password() {
        let c = PostgresConfig::parse(
            "postgresql://billing:s3cr%40t@db.example:6432/usage?sslmode=verify-full&sslrootcert=/etc/rds-ca.pem",
        )
        .unwrap();
        assert_eq!(c.address(), "db.example:6432/usage");
        assert_eq!(c.tls_mode(), TlsMode::Require);
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/etc/rds-ca.pem")));
        assert_eq!(c.client.get_password(), Some(&b"s3cr@t"[..]));
        assert!(!format!("{c:?}").contains("s3cr"));
    }

    #[test]
    fn tls_is_preferred_by_default_and_unknown_modes_are_refused() {
        assert_eq!(PostgresConfig::parse("postgres://u@h/d").unwrap().tls_mode(), TlsMode::Prefer);
        assert_eq!(
            PostgresConfig::parse("postgres://u@h/d?sslmode=disable").unwrap().tls_mode(),
            TlsMode::Disable
        );
        assert!(matches!(
            PostgresConfig::parse("postgres://u@h/d?sslmode=maybe"),
            Err(ConfigError::SslMode(_))
        ));
        assert!(PostgresConfig::parse("sqlserver://h/d").is_err());
    }

    #[test]
    fn the_pool_is_sized_from_the_concurrency_and_a_urls_ca_wins() {
        let c = PostgresConfig::parse("postgres://u@h/d?sslrootcert=/a.pem")
            .unwrap()
            .with_concurrency(10)
            .with_ca_file("/b.pem");
        assert_eq!(c.pool_size, 10 + POOL_HEADROOM);
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/a.pem")));
    }

    fn fixed_credentials() -> aws_credential_types::provider::SharedCredentialsProvider {
        aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "test",
            ),
        )
    }

    #[test]
    fn an_rds_iam_login_is_refused_without_tls_naming_sslmode() {
        for (url, named) in [
            ("postgres://azs_usage@db.example/usage", "sslmode=prefer"),
            ("postgres://azs_usage@db.example/usage?sslmode=prefer", "sslmode=prefer"),
            ("postgres://azs_usage@db.example/usage?sslmode=disable", "sslmode=disable"),
        ] {
            let refused = PostgresConfig::parse(url).unwrap().with_rds_iam("eu-west-1", fixed_credentials());
            let message = refused.expect_err(url).to_string();
            assert!(message.contains(named) && message.contains("verify-full"), "{url}: {message}");
        }
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = format!("postgres://azs_usage@db.example/usage?sslmode={mode}");
            let config = PostgresConfig::parse(&url).unwrap().with_rds_iam("eu-west-1", fixed_credentials());
            assert!(config.expect(mode).password_source.is_some());
        }
    }

    #[test]
    fn an_rds_iam_login_needs_a_user_a_tcp_host_and_a_region() {
        let iam = |url: &str, region: &str| {
            PostgresConfig::parse(url)
                .unwrap()
                .with_rds_iam(region, fixed_credentials())
                .err()
                .map(|e| e.to_string())
        };
        let no_user = iam("postgres://db.example/usage?sslmode=require", "eu-west-1").unwrap();
        assert!(no_user.contains("user"), "{no_user}");
        let no_region = iam("postgres://u@db.example/usage?sslmode=require", " ").unwrap();
        assert!(no_region.contains("AWS_REGION"), "{no_region}");
        let socket =
            iam("postgres://u@%2Fvar%2Frun%2Fpostgresql/usage?sslmode=require", "eu-west-1").unwrap();
        assert!(socket.contains("socket"), "{socket}");
    }

    #[tokio::test]
    async fn an_rds_token_is_signed_for_the_region_its_endpoint_names_whatever_the_process_runs_in() {
        // Given a function in us-east-1 whose database is an RDS endpoint in eu-west-1 (and one named
        // by an alias, which says no region)
        let token = |url: &str| {
            let config =
                PostgresConfig::parse(url).unwrap().with_rds_iam("us-east-1", fixed_credentials()).unwrap();
            async move { config.password_source.unwrap().password().await.unwrap() }
        };
        // When their tokens are made, then each is signed for the database's region when its name
        // carries one, else for the process's
        let rds = token(
            "postgres://u@usage.cluster-c1a2b3.eu-west-1.rds.amazonaws.com:5432/usage?sslmode=verify-full",
        )
        .await;
        assert!(rds.contains("%2Feu-west-1%2Frds-db%2F"), "{rds}");
        let alias = token("postgres://u@db.example:5432/usage?sslmode=verify-full").await;
        assert!(alias.contains("%2Fus-east-1%2Frds-db%2F"), "{alias}");
        assert_eq!(rds_host_region("x.proxy-abc.cn-north-1.rds.amazonaws.com.cn"), Some("cn-north-1"));
        assert_eq!(rds_host_region("rds.amazonaws.com"), None);
        assert_eq!(rds_host_region("db.example"), None);
    }
}
