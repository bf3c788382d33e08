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
    pub meaning: &'static str,
}

pub const DATABASE: &str = "AZS_USAGE_DATABASE";
pub const DATABASE_SECRET: &str = "AZS_USAGE_DATABASE_SECRET";
pub const DATABASE_AUTH: &str = "AZS_USAGE_DATABASE_AUTH";
pub const SECRETS: &str = "AZS_USAGE_SECRETS";
pub const SECRET_PREFIX: &str = "AZS_USAGE_SECRET_PREFIX";
pub const CONCURRENCY: &str = "AZS_USAGE_CONCURRENCY";
pub const SETTLE_DELAY: &str = "AZS_USAGE_SETTLE_DELAY";
pub const TIME_BUDGET: &str = "AZS_USAGE_TIME_BUDGET";
pub const LOG: &str = "AZS_USAGE_LOG";
pub const LOG_FORMAT: &str = "AZS_USAGE_LOG_FORMAT";
pub const API_TOKEN_SECRET: &str = "AZS_USAGE_API_TOKEN_SECRET";
pub const COLLECT_SCHEDULE: &str = "COLLECT_SCHEDULE";

pub const ENVIRONMENT: &[EnvVar] = &[
    EnvVar {
        name: DATABASE,
        needed: Needed::ByFunctions,
        default: "sqlite:azs-usage.db",
        meaning: "The database: `sqlite:PATH` (or a bare path), or a SQL Server connection string \
                  (ADO.NET `Server=...;Database=...` or `sqlserver://`). `secret:NAME` reads it from the secret store.",
    },
    EnvVar {
        name: DATABASE_AUTH,
        needed: Needed::Optional,
        default: "connection-string",
        meaning: "SQL Server authentication: `connection-string` (credentials in the string) or \
                  `managed-identity` (Azure AD token for https://database.windows.net/).",
    },
    EnvVar {
        name: SECRETS,
        needed: Needed::ByFunctions,
        default: "file:azs-usage-secrets.json",
        meaning: "The secret store: `file:PATH` (mode 0600), `aws-secrets-manager`, or \
                  `azure-key-vault:https://NAME.vault.azure.net`.",
    },
    EnvVar {
        name: SECRET_PREFIX,
        needed: Needed::ByFunctions,
        default: "azs-usage/",
        meaning: "Prefix of stamp credential secret names (Key Vault: `/` and `_` become `-`).",
    },
    EnvVar {
        name: CONCURRENCY,
        needed: Needed::Optional,
        default: "8",
        meaning: "How many stamps one run collects at once.",
    },
    EnvVar {
        name: SETTLE_DELAY,
        needed: Needed::Optional,
        default: "1h",
        meaning: "How far behind now the last collected reported hour ends (`30m`, `1h`, `90m`).",
    },
    EnvVar {
        name: TIME_BUDGET,
        needed: Needed::Optional,
        default: "platform",
        meaning: "How long one collection run may take before it stops starting windows. Default: the \
                  Lambda deadline minus 60 s; 4m30s on Azure (Consumption's 5 min); unlimited in the CLI.",
    },
    EnvVar {
        name: LOG,
        needed: Needed::Optional,
        default: "info",
        meaning: "Log filter (tracing EnvFilter syntax).",
    },
    EnvVar {
        name: LOG_FORMAT,
        needed: Needed::Optional,
        default: "json",
        meaning: "`json` lines (functions) or `text` (CLI default on a terminal).",
    },
    EnvVar {
        name: API_TOKEN_SECRET,
        needed: Needed::Optional,
        default: "",
        meaning: "Name of the secret holding the bearer token the webhook app requires (`azs-usage serve`; \
                  behind platform auth on Lambda and Azure it is optional).",
    },
    EnvVar {
        name: COLLECT_SCHEDULE,
        needed: Needed::OnAzureOnly,
        default: "0 5 * * * *",
        meaning: "NCRONTAB schedule of the collect-usage timer (Azure; AWS uses the Scheduler expression).",
    },
];
