//! The one documented list of environment variables, shared by the Lambda functions, the Azure custom
//! handler and the CLI. The README's configuration table and the Terraform modules are checked against
//! [`ENVIRONMENT`] by tests.

/// Where a variable is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Every deployed function must have it set (Terraform sets it on both clouds).
    ByFunctions,
    /// Optional everywhere; the default applies when unset.
    Optional,
    /// Set only on Azure (the Function App's own settings).
    OnAzureOnly,
}

#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    pub needed: Needed,
    pub default: &'static str,
}

pub const DATABASE: &str = "AZS_USAGE_DATABASE";
pub const DATABASE_AUTH: &str = "AZS_USAGE_DATABASE_AUTH";
pub const SECRETS: &str = "AZS_USAGE_SECRETS";
pub const SECRET_PREFIX: &str = "AZS_USAGE_SECRET_PREFIX";
pub const CONCURRENCY: &str = "AZS_USAGE_CONCURRENCY";
pub const SUBSCRIBER_CONCURRENCY: &str = "AZS_USAGE_SUBSCRIBER_CONCURRENCY";
pub const SETTLE_DELAY: &str = "AZS_USAGE_SETTLE_DELAY";
pub const TIME_BUDGET: &str = "AZS_USAGE_TIME_BUDGET";
pub const LEASE_TTL: &str = "AZS_USAGE_LEASE_TTL";
pub const MAX_PAGES_PER_WINDOW: &str = "AZS_USAGE_MAX_PAGES_PER_WINDOW";
pub const MAX_ROWS_PER_WINDOW: &str = "AZS_USAGE_MAX_ROWS_PER_WINDOW";
pub const MAX_QUARANTINED_PER_WINDOW: &str = "AZS_USAGE_MAX_QUARANTINED_PER_WINDOW";
pub const MAX_BYTES_PER_WINDOW: &str = "AZS_USAGE_MAX_BYTES_PER_WINDOW";
pub const MAX_PAGE_BYTES: &str = "AZS_USAGE_MAX_PAGE_BYTES";
pub const LOG: &str = "AZS_USAGE_LOG";
pub const LOG_FORMAT: &str = "AZS_USAGE_LOG_FORMAT";
pub const API_TOKEN_SECRET: &str = "AZS_USAGE_API_TOKEN_SECRET";
pub const SECRET_KMS_KEY: &str = "AZS_USAGE_SECRET_KMS_KEY";
/// The Azure SDKs' name for a user-assigned managed identity's client id.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const DATABASE_CA: &str = "AZS_USAGE_DATABASE_CA";
pub const ALLOWED_STAMP_HOSTS: &str = "AZS_USAGE_ALLOWED_STAMP_HOSTS";
pub const COLLECT_SCHEDULE: &str = "COLLECT_SCHEDULE";
pub const FAN_OUT: &str = "AZS_USAGE_FAN_OUT";
pub const STAMP_QUEUE_URL: &str = "AZS_USAGE_STAMP_QUEUE_URL";
pub const DEAD_LETTER_QUEUE_URL: &str = "AZS_USAGE_DEAD_LETTER_QUEUE_URL";
pub const CONTINUATION_DELAY: &str = "AZS_USAGE_CONTINUATION_DELAY";
pub const MAX_ATTEMPTS: &str = "AZS_USAGE_MAX_ATTEMPTS";
pub const VERIFY_TRAILING_HOURS: &str = "AZS_USAGE_VERIFY_TRAILING_HOURS";
/// Set by the Functions host for a custom handler: the port to listen on (never by an operator).
pub const CUSTOM_HANDLER_PORT: &str = "FUNCTIONS_CUSTOMHANDLER_PORT";
/// Set by App Service (Functions included) to `True` when its Authentication (Easy Auth) is on: only
/// then are the `X-MS-CLIENT-PRINCIPAL-*` headers the platform's and not the client's.
pub const EASY_AUTH_ENABLED: &str = "WEBSITE_AUTH_ENABLED";
pub const MAX_SPAN_HOURS: &str = "AZS_USAGE_MAX_SPAN_HOURS";

pub const ENVIRONMENT: &[EnvVar] = &[
    EnvVar { name: DATABASE, needed: Needed::ByFunctions, default: "sqlite:azs-usage.db" },
    EnvVar { name: DATABASE_AUTH, needed: Needed::Optional, default: "connection-string" },
    EnvVar { name: SECRETS, needed: Needed::ByFunctions, default: "file:azs-usage-secrets.json" },
    EnvVar { name: SECRET_PREFIX, needed: Needed::ByFunctions, default: "azs-usage/" },
    EnvVar { name: CONCURRENCY, needed: Needed::Optional, default: "8" },
    EnvVar { name: SUBSCRIBER_CONCURRENCY, needed: Needed::Optional, default: "8" },
    EnvVar { name: SETTLE_DELAY, needed: Needed::Optional, default: "1h" },
    EnvVar { name: TIME_BUDGET, needed: Needed::Optional, default: "platform" },
    EnvVar { name: LEASE_TTL, needed: Needed::Optional, default: "10m" },
    EnvVar { name: MAX_PAGES_PER_WINDOW, needed: Needed::Optional, default: "10000" },
    EnvVar { name: MAX_ROWS_PER_WINDOW, needed: Needed::Optional, default: "250000" },
    EnvVar { name: MAX_QUARANTINED_PER_WINDOW, needed: Needed::Optional, default: "1000" },
    EnvVar { name: MAX_BYTES_PER_WINDOW, needed: Needed::Optional, default: "512MiB" },
    EnvVar { name: MAX_PAGE_BYTES, needed: Needed::Optional, default: "16MiB" },
    EnvVar { name: MAX_SPAN_HOURS, needed: Needed::Optional, default: "1" },
    EnvVar { name: LOG, needed: Needed::Optional, default: "info" },
    EnvVar { name: LOG_FORMAT, needed: Needed::Optional, default: "json" },
    EnvVar { name: API_TOKEN_SECRET, needed: Needed::Optional, default: "" },
    EnvVar { name: AZURE_CLIENT_ID, needed: Needed::Optional, default: "" },
    EnvVar { name: SECRET_KMS_KEY, needed: Needed::Optional, default: "" },
    EnvVar { name: DATABASE_CA, needed: Needed::Optional, default: "" },
    EnvVar {
        name: ALLOWED_STAMP_HOSTS,
        // Both Terraform modules require it: a deployed webhook is where callers name URLs.
        needed: Needed::ByFunctions,
        default: "",
    },
    EnvVar { name: COLLECT_SCHEDULE, needed: Needed::OnAzureOnly, default: "0 5 * * * *" },
    EnvVar { name: FAN_OUT, needed: Needed::Optional, default: "in-process" },
    EnvVar { name: STAMP_QUEUE_URL, needed: Needed::Optional, default: "" },
    EnvVar { name: DEAD_LETTER_QUEUE_URL, needed: Needed::Optional, default: "" },
    EnvVar { name: CONTINUATION_DELAY, needed: Needed::Optional, default: "30s" },
    EnvVar { name: MAX_ATTEMPTS, needed: Needed::Optional, default: "3" },
    EnvVar { name: VERIFY_TRAILING_HOURS, needed: Needed::Optional, default: "24" },
];

/// The settings every entry point reads, parsed once from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppConfig {
    pub database: DatabaseLocation,
    pub database_auth: DatabaseAuth,
    /// The raw `AZS_USAGE_SECRETS` value (parsed by the secret store crate).
    pub secrets: String,
    pub secret_prefix: String,
    pub concurrency: usize,
    /// Per stamp: `subscriberId` queries of one window in flight at once.
    pub subscriber_concurrency: usize,
    pub settle_delay: std::time::Duration,
    pub time_budget: TimeBudget,
    pub lease_ttl: std::time::Duration,
    pub pull_limits: azs_core::ports::PullLimits,
    /// Most reported hours one catch-up window may cover (1 to `LONGEST_SPAN_HOURS`).
    pub max_span_hours: u32,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub api_token_secret: Option<String>,
    /// `AZS_USAGE_ALLOWED_STAMP_HOSTS`; `None` allows any https host but the special addresses.
    pub allowed_stamp_hosts: Option<azs_azure_stack::StampHosts>,
    /// KMS key for new stamp credential secrets (AWS Secrets Manager).
    pub secret_kms_key: Option<String>,
    /// `AZURE_CLIENT_ID`: a user-assigned managed identity for Key Vault.
    pub managed_identity_client_id: Option<String>,
    /// Where the SQL Server CA bundle is.
    pub database_ca: Option<DatabaseCa>,
    pub fan_out: FanOut,
    /// SQS queue URLs (AWS, queue fan-out); both or neither.
    pub stamp_queue_url: Option<String>,
    pub dead_letter_queue_url: Option<String>,
    pub continuation_delay: std::time::Duration,
    pub max_attempts: u32,
    /// Hours the scheduled verify compares once a day per stamp; 0 = off.
    pub verify_trailing_hours: u32,
    /// `AZS_USAGE_MAX_QUARANTINED_PER_WINDOW`.
    pub max_quarantined_per_window: u64,
}

/// The SQL Server CA bundle: a secret holding the PEM text, or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseCa {
    Secret(String),
    File(std::path::PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// The timer collects every stamp itself, `concurrency` at a time.
    InProcess,
    /// The timer enqueues per-stamp work for queue-triggered workers.
    Queue,
}

#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    Sqlite(std::path::PathBuf),
    SqlServer(String),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
    /// The connection string is in the secret store under this name.
    FromSecret(String),
}

/// Never the connection string or URL: either may carry a password (an `AppConfig` printed with `{:?}`
/// must not leak it).
impl std::fmt::Debug for DatabaseLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::SqlServer(_) => f.write_str("SqlServer(<connection string>)"),
            Self::Postgres(_) => f.write_str("Postgres(<url>)"),
            Self::FromSecret(name) => f.debug_tuple("FromSecret").field(name).finish(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseAuth {
    /// The connection string's or URL's own login (a password, or none).
    ConnectionString,
    /// A managed identity's Microsoft Entra ID token (SQL Server, Azure Database for PostgreSQL).
    ManagedIdentity,
    /// An AWS RDS IAM authentication token from the process's AWS credentials (RDS and Aurora
    /// PostgreSQL only).
    AwsIam,
}

impl DatabaseAuth {
    /// Every value `AZS_USAGE_DATABASE_AUTH` takes, as written there: the parser reads this table, and
    /// the infrastructure checks hold what Terraform sets against it.
    pub const SETTINGS: [(&'static str, DatabaseAuth); 3] = [
        ("connection-string", DatabaseAuth::ConnectionString),
        ("managed-identity", DatabaseAuth::ManagedIdentity),
        ("aws-iam", DatabaseAuth::AwsIam),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBudget {
    /// Whatever the platform allows (Lambda deadline minus a reserve; Azure's function timeout).
    Platform,
    Fixed(std::time::Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// A variable that is set but unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {rule}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub rule: String,
}

/// The port the Functions host gives the custom handler. Apart from [`AppConfig`] because the handler
/// listens before it reads anything else: the host waits for `GET /`, and a bad setting must reach the
/// operator through an invocation's answer rather than stop the handler from starting.
pub fn custom_handler_port(lookup: impl Fn(&str) -> Option<String>) -> Result<u16, ConfigError> {
    let rule = |rule: &str| ConfigError { variable: CUSTOM_HANDLER_PORT, rule: rule.into() };
    let value = lookup(CUSTOM_HANDLER_PORT).ok_or_else(|| rule("is not set: the Functions host sets it"))?;
    value.trim().parse().map_err(|_| rule("must be a port number"))
}

/// Whether App Service Authentication (Easy Auth) is on in front of the handler
/// ([`EASY_AUTH_ENABLED`] is `True`, as App Service writes it). Apart from [`AppConfig`] because the
/// platform sets it, never an operator.
pub fn easy_auth_enabled(lookup: impl Fn(&str) -> Option<String>) -> bool {
    lookup(EASY_AUTH_ENABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl AppConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so that flags (CLI) and tests can supply values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            let value = lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            value.unwrap_or_else(|| default_of(name).to_owned())
        };
        let database = parse_database(&get(DATABASE))?;
        let database_auth = {
            let setting = get(DATABASE_AUTH);
            match DatabaseAuth::SETTINGS.iter().find(|(name, _)| *name == setting) {
                Some((_, auth)) => *auth,
                None => {
                    return Err(ConfigError {
                        variable: DATABASE_AUTH,
                        rule: format!(
                            "must be `connection-string`, `managed-identity` or `aws-iam`, not {setting:?}"
                        ),
                    });
                }
            }
        };
        if database_auth == DatabaseAuth::AwsIam {
            aws_iam_fits(&database)?;
        }
        let concurrency =
            get(CONCURRENCY).parse::<usize>().ok().filter(|n| (1..=256).contains(n)).ok_or_else(|| {
                ConfigError { variable: CONCURRENCY, rule: "must be a whole number from 1 to 256".into() }
            })?;
        let subscriber_concurrency =
            get(SUBSCRIBER_CONCURRENCY).parse::<usize>().ok().filter(|n| (1..=64).contains(n)).ok_or_else(
                || ConfigError {
                    variable: SUBSCRIBER_CONCURRENCY,
                    rule: "must be a whole number from 1 to 64".into(),
                },
            )?;
        let settle_delay = parse_duration(&get(SETTLE_DELAY)).ok_or_else(|| ConfigError {
            variable: SETTLE_DELAY,
            rule: "must be a duration such as 30m, 1h or 1h30m".into(),
        })?;
        let time_budget = match get(TIME_BUDGET).as_str() {
            "platform" => TimeBudget::Platform,
            other => TimeBudget::Fixed(parse_duration(other).filter(|d| !d.is_zero()).ok_or_else(|| {
                ConfigError {
                    variable: TIME_BUDGET,
                    rule: "must be `platform` or a positive duration such as 4m30s".into(),
                }
            })?),
        };
        let lease_ttl = parse_duration(&get(LEASE_TTL)).filter(|d| d.as_secs() >= 1).ok_or_else(|| {
            ConfigError { variable: LEASE_TTL, rule: "must be a duration of at least 1s such as 10m".into() }
        })?;
        let count =
            |variable: &'static str| {
                get(variable).replace('_', "").parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ConfigError { variable, rule: "must be a whole number of at least 1".into() }
                })
            };
        let bytes = |variable: &'static str| {
            parse_bytes(&get(variable)).filter(|n| *n >= 1024).ok_or_else(|| ConfigError {
                variable,
                rule: "must be a size of at least 1KiB such as 16MiB, 1GiB or a number of bytes".into(),
            })
        };
        let pull_limits = azs_core::ports::PullLimits {
            max_pages: count(MAX_PAGES_PER_WINDOW)?,
            max_rows: count(MAX_ROWS_PER_WINDOW)?,
            max_bytes: bytes(MAX_BYTES_PER_WINDOW)?,
            max_page_bytes: bytes(MAX_PAGE_BYTES)?,
        };
        let longest = azs_core::window::LONGEST_SPAN_HOURS;
        let max_span_hours =
            get(MAX_SPAN_HOURS).parse::<u32>().ok().filter(|n| (1..=longest).contains(n)).ok_or_else(
                || ConfigError {
                    variable: MAX_SPAN_HOURS,
                    rule: format!("must be a whole number from 1 to {longest}"),
                },
            )?;
        let log_format = match get(LOG_FORMAT).as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            _ => return Err(ConfigError { variable: LOG_FORMAT, rule: "must be `json` or `text`".into() }),
        };
        let allowed_stamp_hosts = lookup(ALLOWED_STAMP_HOSTS)
            .filter(|v| !v.trim().is_empty())
            .map(|v| azs_azure_stack::StampHosts::parse(&v))
            .transpose()
            .map_err(|rule| ConfigError { variable: ALLOWED_STAMP_HOSTS, rule })?;
        let fan_out = match get(FAN_OUT).as_str() {
            "in-process" => FanOut::InProcess,
            "queue" => FanOut::Queue,
            other => {
                return Err(ConfigError {
                    variable: FAN_OUT,
                    rule: format!("must be `in-process` or `queue`, not {other:?}"),
                });
            }
        };
        let url = |name: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                Some(v) if !(v.starts_with("https://") || v.starts_with("http://")) => {
                    Err(ConfigError { variable: name, rule: "must be an SQS queue URL (https://...)".into() })
                }
                other => Ok(other),
            }
        };
        let stamp_queue_url = url(STAMP_QUEUE_URL)?;
        let dead_letter_queue_url = url(DEAD_LETTER_QUEUE_URL)?;
        if stamp_queue_url.is_some() != dead_letter_queue_url.is_some() {
            let missing = if stamp_queue_url.is_none() { STAMP_QUEUE_URL } else { DEAD_LETTER_QUEUE_URL };
            return Err(ConfigError {
                variable: missing,
                rule: format!("must be set together with {STAMP_QUEUE_URL} and {DEAD_LETTER_QUEUE_URL}"),
            });
        }
        let continuation_delay = parse_duration(&get(CONTINUATION_DELAY))
            .filter(|d| d.as_secs() <= 900)
            .ok_or_else(|| ConfigError {
                variable: CONTINUATION_DELAY,
                rule: "must be a duration from 0s to 15m such as 30s".into(),
            })?;
        let max_attempts =
            get(MAX_ATTEMPTS).parse::<u32>().ok().filter(|n| (1..=20).contains(n)).ok_or_else(|| {
                ConfigError { variable: MAX_ATTEMPTS, rule: "must be a whole number from 1 to 20".into() }
            })?;
        let verify_trailing_hours =
            get(VERIFY_TRAILING_HOURS).parse::<u32>().ok().filter(|n| *n <= 168).ok_or_else(|| {
                ConfigError {
                    variable: VERIFY_TRAILING_HOURS,
                    rule: "must be a whole number of hours from 0 (off) to 168".into(),
                }
            })?;
        Ok(Self {
            verify_trailing_hours,
            max_quarantined_per_window: count(MAX_QUARANTINED_PER_WINDOW)?,
            fan_out,
            stamp_queue_url,
            dead_letter_queue_url,
            continuation_delay,
            max_attempts,
            database,
            database_auth,
            secrets: get(SECRETS),
            secret_prefix: get(SECRET_PREFIX),
            concurrency,
            subscriber_concurrency,
            settle_delay,
            time_budget,
            lease_ttl,
            pull_limits,
            max_span_hours,
            log_filter: get(LOG),
            log_format,
            api_token_secret: lookup(API_TOKEN_SECRET).filter(|v| !v.trim().is_empty()),
            secret_kms_key: lookup(SECRET_KMS_KEY).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
            managed_identity_client_id: lookup(AZURE_CLIENT_ID)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            database_ca: match lookup(DATABASE_CA).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => Some(match v.strip_prefix("secret:") {
                    Some(name) if !name.trim().is_empty() => DatabaseCa::Secret(name.trim().to_owned()),
                    Some(_) => {
                        return Err(ConfigError {
                            variable: DATABASE_CA,
                            rule: "secret: needs a secret name".into(),
                        });
                    }
                    None => DatabaseCa::File(v.into()),
                }),
            },
            allowed_stamp_hosts,
        })
    }
}

fn default_of(name: &str) -> &'static str {
    ENVIRONMENT.iter().find(|v| v.name == name).map(|v| v.default).unwrap_or("")
}

/// `aws-iam` is a login to RDS or Aurora PostgreSQL, over TLS. A database named by a secret is
/// checked when the secret is read (`wiring`).
fn aws_iam_fits(database: &DatabaseLocation) -> Result<(), ConfigError> {
    let refuse = |rule: String| Err(ConfigError { variable: DATABASE_AUTH, rule });
    match database {
        DatabaseLocation::Postgres(url) => match azs_store_postgres::PostgresConfig::parse(url) {
            Ok(c) if c.tls_mode() != azs_store_postgres::TlsMode::Require => refuse(format!(
                "aws-iam needs TLS: RDS accepts IAM logins only over it, so {DATABASE} must say \
                 sslmode=verify-full, verify-ca or require (it says {})",
                if c.tls_mode() == azs_store_postgres::TlsMode::Disable {
                    "sslmode=disable"
                } else {
                    "sslmode=prefer, or nothing, whose default is prefer"
                }
            )),
            _ => Ok(()),
        },
        DatabaseLocation::Sqlite(_) | DatabaseLocation::SqlServer(_) => refuse(format!(
            "aws-iam is a login to RDS or Aurora PostgreSQL; {DATABASE} is not a postgres:// URL"
        )),
        DatabaseLocation::FromSecret(_) => Ok(()),
    }
}

fn parse_database(value: &str) -> Result<DatabaseLocation, ConfigError> {
    let lower = value.to_ascii_lowercase();
    if let Some(name) = value.strip_prefix("secret:") {
        return if azs_core::registration::is_valid_secret_name(name) {
            Ok(DatabaseLocation::FromSecret(name.to_owned()))
        } else {
            Err(ConfigError { variable: DATABASE, rule: "secret:NAME needs a valid secret name".into() })
        };
    }
    if let Some(path) = value.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return Err(ConfigError { variable: DATABASE, rule: "sqlite: needs a file path".into() });
        }
        return Ok(DatabaseLocation::Sqlite(path.into()));
    }
    if azs_store_postgres::is_postgres_url(value) {
        // Checked here so that a malformed URL is a configuration error at start, not a failed run.
        azs_store_postgres::PostgresConfig::parse(value)
            .map_err(|e| ConfigError { variable: DATABASE, rule: e.to_string() })?;
        return Ok(DatabaseLocation::Postgres(value.trim().to_owned()));
    }
    if lower.starts_with("sqlserver://") || lower.starts_with("server=") || lower.contains(";database=") {
        return Ok(DatabaseLocation::SqlServer(value.to_owned()));
    }
    if value.contains(';') || value.contains("://") {
        return Err(ConfigError {
            variable: DATABASE,
            rule: "must be sqlite:PATH, a path, a SQL Server connection string (Server=...) or sqlserver:// URL, \
                   a postgres:// URL, or secret:NAME"
                .into(),
        });
    }
    Ok(DatabaseLocation::Sqlite(value.into()))
}

/// Parses `16MiB`, `512KiB`, `1GiB` (and `KB`/`MB`/`GB` as the same binary units) or a bare number of bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

/// Parses `90s`, `30m`, `1h`, `1h30m`, `4m30s` (and a bare number of seconds).
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' if !number.is_empty() => {
                let n: u64 = number.parse().ok()?;
                total = total.checked_add(n.checked_mul(match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                })?)?;
                number.clear();
            }
            ' ' => {}
            _ => return None,
        }
    }
    number.is_empty().then_some(std::time::Duration::from_secs(total)).filter(|_| !text.is_empty())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_location_printed_for_debugging_shows_no_password() {
        let url = super::DatabaseLocation::Postgres("postgres://u:hunter2@db/x".into());
        let ado = super::DatabaseLocation::SqlServer("Server=db;Password=hunter2".into());
        assert!(!format!("{url:?} {ado:?}").contains("hunter2"));
    }

    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn config(vars: &[(&str, &str)]) -> Result<AppConfig, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AppConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_sqlite_file_and_the_local_secret_file() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database, DatabaseLocation::Sqlite("azs-usage.db".into()));
        assert_eq!(c.secrets, "file:azs-usage-secrets.json");
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.settle_delay, Duration::from_secs(3600));
        assert_eq!(c.time_budget, TimeBudget::Platform);
    }

    #[test]
    fn database_forms_are_recognised() {
        let db = |v| config(&[(DATABASE, v)]).unwrap().database;
        assert_eq!(db("sqlite:/tmp/x.db"), DatabaseLocation::Sqlite("/tmp/x.db".into()));
        assert_eq!(
            db("Server=tcp:x,1433;Database=billing"),
            DatabaseLocation::SqlServer("Server=tcp:x,1433;Database=billing".into())
        );
        assert_eq!(
            db("secret:azs-usage/database"),
            DatabaseLocation::FromSecret("azs-usage/database".into())
        );
        assert_eq!(
            db("postgresql://billing:pw@db.example:5432/usage?sslmode=verify-full"),
            DatabaseLocation::Postgres(
                "postgresql://billing:pw@db.example:5432/usage?sslmode=verify-full".into()
            )
        );
        assert!(config(&[(DATABASE, "postgres://u@h/d?sslmode=sometimes")]).is_err());
        assert!(config(&[(DATABASE, "mysql://x")]).is_err());
    }

    #[test]
    fn aws_iam_is_a_login_to_postgresql_over_tls() {
        let with = |database: &str| config(&[(DATABASE, database), (DATABASE_AUTH, "aws-iam")]);
        let c = with(
            "postgres://azs_usage@usage.cluster-c1.eu-west-1.rds.amazonaws.com/usage?sslmode=verify-full",
        )
        .unwrap();
        assert_eq!(c.database_auth, DatabaseAuth::AwsIam);
        assert_eq!(with("secret:azs-usage/database").unwrap().database_auth, DatabaseAuth::AwsIam);
        for (database, named) in [
            ("postgres://azs_usage@db.example/usage", "sslmode=prefer"),
            ("postgres://azs_usage@db.example/usage?sslmode=disable", "sslmode=disable"),
        ] {
            let refused = with(database).unwrap_err();
            assert_eq!(refused.variable, DATABASE_AUTH);
            assert!(refused.rule.contains(named) && refused.rule.contains("verify-full"), "{}", refused.rule);
        }
        for other in ["sqlite:/tmp/x.db", "Server=tcp:x,1433;Database=billing"] {
            let refused = with(other).unwrap_err();
            assert_eq!(refused.variable, DATABASE_AUTH);
            assert!(refused.rule.contains("PostgreSQL"), "{}", refused.rule);
        }
        let unknown = config(&[(DATABASE_AUTH, "iam")]).unwrap_err();
        assert!(unknown.rule.contains("`aws-iam`"), "{}", unknown.rule);
    }

    #[test]
    fn bad_values_name_the_variable() {
        assert_eq!(config(&[(CONCURRENCY, "0")]).unwrap_err().variable, CONCURRENCY);
        assert_eq!(config(&[(SUBSCRIBER_CONCURRENCY, "65")]).unwrap_err().variable, SUBSCRIBER_CONCURRENCY);
        assert_eq!(config(&[(SUBSCRIBER_CONCURRENCY, "16")]).unwrap().subscriber_concurrency, 16);
        assert_eq!(config(&[(SETTLE_DELAY, "soon")]).unwrap_err().variable, SETTLE_DELAY);
        assert_eq!(config(&[(TIME_BUDGET, "0s")]).unwrap_err().variable, TIME_BUDGET);
        assert_eq!(config(&[(FAN_OUT, "sqs")]).unwrap_err().variable, FAN_OUT);
        assert_eq!(config(&[(CONTINUATION_DELAY, "16m")]).unwrap_err().variable, CONTINUATION_DELAY);
        assert_eq!(config(&[(MAX_ATTEMPTS, "0")]).unwrap_err().variable, MAX_ATTEMPTS);
        assert_eq!(config(&[(MAX_SPAN_HOURS, "0")]).unwrap_err().variable, MAX_SPAN_HOURS);
        assert_eq!(config(&[(MAX_SPAN_HOURS, "25")]).unwrap_err().variable, MAX_SPAN_HOURS);
        assert_eq!(config(&[(MAX_SPAN_HOURS, "12")]).unwrap().max_span_hours, 12);
        assert_eq!(config(&[]).unwrap().max_span_hours, 1);
        assert_eq!(config(&[(STAMP_QUEUE_URL, "stamps")]).unwrap_err().variable, STAMP_QUEUE_URL);
        assert_eq!(config(&[(VERIFY_TRAILING_HOURS, "169")]).unwrap_err().variable, VERIFY_TRAILING_HOURS);
        assert_eq!(config(&[(VERIFY_TRAILING_HOURS, "-1")]).unwrap_err().variable, VERIFY_TRAILING_HOURS);
    }

    #[test]
    fn the_scheduled_verify_covers_a_day_by_default_and_zero_turns_it_off() {
        assert_eq!(config(&[]).unwrap().verify_trailing_hours, 24);
        assert_eq!(config(&[(VERIFY_TRAILING_HOURS, "0")]).unwrap().verify_trailing_hours, 0);
    }

    #[test]
    fn queue_fan_out_is_off_by_default_and_needs_both_queue_urls_together() {
        let c = config(&[]).unwrap();
        assert_eq!(
            (c.fan_out, c.continuation_delay, c.max_attempts),
            (FanOut::InProcess, Duration::from_secs(30), 3)
        );
        let only_one =
            config(&[(FAN_OUT, "queue"), (STAMP_QUEUE_URL, "https://sqs.eu-west-1.amazonaws.com/1/s")]);
        assert_eq!(only_one.unwrap_err().variable, DEAD_LETTER_QUEUE_URL);
        let both = config(&[
            (FAN_OUT, "queue"),
            (STAMP_QUEUE_URL, "https://sqs.eu-west-1.amazonaws.com/1/s"),
            (DEAD_LETTER_QUEUE_URL, "https://sqs.eu-west-1.amazonaws.com/1/d"),
        ])
        .unwrap();
        assert_eq!(both.fan_out, FanOut::Queue);
        assert!(both.stamp_queue_url.is_some() && both.dead_letter_queue_url.is_some());
    }

    #[test]
    fn pull_limits_default_sanely_and_bad_ones_name_the_variable() {
        let c = config(&[]).unwrap();
        assert_eq!(c.pull_limits, azs_core::ports::PullLimits::default());
        let c = config(&[(MAX_PAGE_BYTES, "1MiB"), (MAX_ROWS_PER_WINDOW, "1_000")]).unwrap();
        assert_eq!(c.pull_limits.max_page_bytes, 1 << 20);
        assert_eq!(c.pull_limits.max_rows, 1000);
        assert_eq!(config(&[(MAX_ROWS_PER_WINDOW, "0")]).unwrap_err().variable, MAX_ROWS_PER_WINDOW);
        assert_eq!(config(&[(MAX_PAGE_BYTES, "12 parsecs")]).unwrap_err().variable, MAX_PAGE_BYTES);
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2048"), Some(2048));
    }

    #[test]
    fn the_stamp_host_allow_list_is_parsed_once_and_a_bad_entry_names_the_variable() {
        assert_eq!(config(&[]).unwrap().allowed_stamp_hosts, None);
        let hosts =
            config(&[(ALLOWED_STAMP_HOSTS, "*.contoso.com, 10.0.0.0/8")]).unwrap().allowed_stamp_hosts;
        assert!(hosts.unwrap().check("https://a.contoso.com").is_ok());
        let e = config(&[(ALLOWED_STAMP_HOSTS, "10.0.0.0/99")]).unwrap_err();
        assert_eq!(e.variable, ALLOWED_STAMP_HOSTS);
        assert!(e.rule.contains("10.0.0.0/99"), "{}", e.rule);
    }

    #[test]
    fn the_custom_handler_port_is_the_hosts_number_or_an_error_naming_the_variable() {
        let port = |value: Option<&str>| custom_handler_port(|_| value.map(str::to_owned));
        assert_eq!(port(Some("7071")), Ok(7071));
        for bad in [None, Some(""), Some("http"), Some("70000")] {
            let e = port(bad).unwrap_err();
            assert_eq!(e.variable, CUSTOM_HANDLER_PORT, "{bad:?}");
        }
    }

    #[test]
    fn durations_parse_in_the_documented_forms() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("4m30s"), Some(Duration::from_secs(270)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1x"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn every_variable_is_documented_in_the_readme() {
        let readme = include_str!("../../../README.md");
        for v in ENVIRONMENT {
            assert!(readme.contains(v.name), "README.md does not document {}", v.name);
        }
    }
}
