//! The command line as clap reads it: every command, subcommand and argument with its one-line help,
//! and what each turns into (a registration, a patch, a reported range). Parsing is all it does; the
//! binary's `dispatch` calls the services. In the library so that tests can walk the command tree.

use anyhow::{Context, Result, bail};
use azs_app::config;
use azs_app::registrar::StampPatch;
use azs_core::Secret;
use azs_core::rating::Month;
use azs_core::registration::StampRegistration;
use azs_core::stamp::UsageQueryMode;
use azs_core::window::ReportedWindow;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "azs-usage",
    version,
    about = "Collect Azure Stack Hub usage from every stamp into one billing database"
)]
pub struct Cli {
    /// Database: a SQLite path (default azs-usage.db), `sqlite:PATH`, a SQL Server connection string,
    /// or a `postgres://` URL.
    /// (Its value is never shown here: a SQL Server connection string may carry a password.)
    #[arg(long, global = true, env = config::DATABASE, hide_env_values = true)]
    pub database: Option<String>,
    /// Secret store: `file:PATH` (default, mode 0600), `aws-secrets-manager`, `azure-key-vault:URL`.
    #[arg(long, global = true, env = config::SECRETS, hide_env_values = true)]
    pub secrets: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Register and manage stamps.
    #[command(subcommand)]
    Stamp(StampCommand),
    /// Price books and who rates with which (kept in the SQLite store).
    #[command(subcommand)]
    PriceBook(PriceBookCommand),
    /// Monthly statements per billing subscription: show, list, finalize when proven complete.
    #[command(subcommand)]
    Statement(StatementCommand),
    /// A month's margin per meter and stamp: what the statements bill less what Microsoft charges
    /// the operator (the cost book, a price book imported under the id `operator-cost`).
    Margin {
        #[arg(long)]
        month: Month,
        #[arg(long)]
        json: bool,
    },
    /// Map tenant subscriptions to billing subscriptions.
    #[command(subcommand)]
    Mapping(MappingCommand),
    /// List tenant subscriptions that have usage but no mapping.
    Unmapped {
        #[arg(long)]
        stamp: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Rows the stamps sent that the store cannot hold exactly, kept verbatim instead of stopping the
    /// stamp (`quarantine list [--stamp ID] [--json]`).
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// Run one collection (the timer job) and print a per-stamp summary.
    Collect {
        /// Only these stamps (repeatable); default: every enabled stamp.
        #[arg(long = "stamp")]
        stamps: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-pull an already collected reported range and replace its rows (refused where it would
    /// remove rows or lower quantities, unless --allow-shrink).
    Reprocess {
        /// Stamp id or name.
        #[arg(long)]
        stamp: String,
        /// Reported start, a whole UTC hour (RFC 3339).
        #[arg(long)]
        from: String,
        /// Reported end (exclusive), a whole UTC hour.
        #[arg(long)]
        to: String,
        /// Why (recorded in the reprocess log); required unless --dry-run.
        #[arg(long)]
        reason: Option<String>,
        /// Who asks (recorded in the log); default: the OS user.
        #[arg(long)]
        by: Option<String>,
        /// Print per hour what would be added, removed and changed; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace hours even where the re-pull has fewer rows or lower quantities than stored.
        #[arg(long)]
        allow_shrink: bool,
        /// Map the replaced rows with the current mappings. Without it, rows keep the billing
        /// subscription they were billed under (rows stored unmapped take the current mapping).
        #[arg(long)]
        remap: bool,
        #[arg(long)]
        json: bool,
    },
    /// Re-pull a collected range without writing and compare it with what is stored, by row: exit 0
    /// when equal, 3 when they differ.
    Verify {
        /// Stamp id or name.
        #[arg(long)]
        stamp: String,
        /// Reported start, a whole UTC hour (RFC 3339).
        #[arg(long)]
        from: String,
        /// Reported end (exclusive), a whole UTC hour.
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Per stamp: watermark, last run, outcome, rows, unmapped, quarantined, last error.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Write stored usage rows as CSV.
    Export {
        #[arg(long)]
        csv: PathBuf,
        #[arg(long = "stamp")]
        stamps: Vec<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// Serve the registration webhook. A non-loopback --listen needs --tls-cert and --tls-key.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Development only: serve without an API token. Refused unless --listen is a loopback address;
        /// requests whose Host header is not localhost or a loopback address are refused.
        #[arg(long)]
        insecure_loopback: bool,
        /// PEM certificate chain (leaf first) to serve HTTPS with.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Check the configured database (`db check [--json]`), or run each T-SQL construct once (`db smoke`).
    #[command(subcommand)]
    Db(DbCommand),
    /// Who changed which stamp or mapping, and how (`audit list`).
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Subcommand)]
pub enum StampCommand {
    /// Register a stamp (the seed's CreateAzureStackConnection arguments, in its order).
    Add(Box<AddStamp>),
    /// Every registered stamp with where its collection stands.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One stamp's connection (never its credential) and status, by id or name.
    Show {
        stamp: String,
        #[arg(long)]
        json: bool,
    },
    /// Collect the stamp again from its watermark on.
    Enable { stamp: String },
    /// Stop collecting the stamp (its rows, watermark and credential stay).
    Disable { stamp: String },
    /// Change a stamp in place (any connection field, the credential, the query mode, the name),
    /// keeping its id and watermark. Verified against the stamp like `stamp add` unless --no-verify.
    Update(Box<UpdateStamp>),
    /// Discovery, a token and a one-hour usage query.
    Test { stamp: String },
    /// Stop collecting a stamp and delete its credential (collected rows stay).
    Remove { stamp: String },
}

#[derive(Args)]
pub struct AddStamp {
    pub admin_subscription_id: String,
    pub tenant_id: String,
    pub application_id: String,
    /// `-` when an application secret is used.
    pub certificate_thumbprint: String,
    pub admin_arm_endpoint: String,
    /// `-` to discover it.
    pub token_request_resource_url: String,
    /// `-` to discover it.
    pub authority_endpoint_url: String,
    /// Prefer the environment variable: command lines are visible to other users of the machine.
    #[arg(long, env = "AZS_USAGE_APPLICATION_SECRET", hide_env_values = true)]
    pub application_secret: Option<String>,
    /// PEM (certificate and private key) or PFX file.
    #[arg(long)]
    pub certificate_file: Option<PathBuf>,
    #[arg(long, env = "AZS_USAGE_CERTIFICATE_PASSWORD", hide_env_values = true)]
    pub certificate_password: Option<String>,
    /// A secret already in the secret store that holds the credential.
    #[arg(long)]
    pub credential_secret_name: Option<String>,
    /// The stamp signs in with AD FS. Without it: AD FS when the tenant is `adfs` or the authority
    /// ends with `/adfs`, else Azure AD (verification says when that is wrong).
    #[arg(long)]
    pub is_adfs: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// PEM bundle of the stamp's own CA (trusted in addition to the system roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// First reported hour to collect (default: start of this UTC month).
    #[arg(long)]
    pub collect_from: Option<String>,
    /// Query one tenant subscription at a time (large stamps whose all-tenant query times out).
    #[arg(long)]
    pub per_subscriber: bool,
    #[arg(long)]
    pub disabled: bool,
    /// Register without contacting the stamp.
    #[arg(long)]
    pub no_verify: bool,
    /// A stamp removed before resumes where it stopped; with a --collect-from before that point,
    /// re-collect (reprocess) those hours instead of refusing.
    #[arg(long)]
    pub recollect: bool,
    /// Also write the registered connection (without secrets) to this CSV file.
    #[arg(long)]
    pub export_csv: Option<PathBuf>,
}

/// Only what is given changes.
#[derive(Args)]
pub struct UpdateStamp {
    /// Stamp id or name.
    pub stamp: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub admin_subscription_id: Option<String>,
    #[arg(long)]
    pub tenant_id: Option<String>,
    #[arg(long)]
    pub application_id: Option<String>,
    #[arg(long)]
    pub admin_arm_endpoint: Option<String>,
    /// `-` to discover it again.
    #[arg(long)]
    pub token_request_resource_url: Option<String>,
    /// `-` to discover it again.
    #[arg(long)]
    pub authority_endpoint_url: Option<String>,
    /// `true` for an AD FS stamp, `false` for Azure AD.
    #[arg(long, value_name = "true|false")]
    pub is_adfs: Option<bool>,
    #[arg(long, value_enum)]
    pub query_mode: Option<QueryMode>,
    /// Take the new application secret from AZS_USAGE_APPLICATION_SECRET (never from the command
    /// line, which other users of the machine can see).
    #[arg(long)]
    pub application_secret_from_env: bool,
    /// New credential: PEM (certificate and private key) or PFX file; its password is taken from
    /// AZS_USAGE_CERTIFICATE_PASSWORD when set.
    #[arg(long)]
    pub certificate_file: Option<PathBuf>,
    /// `-` for none.
    #[arg(long)]
    pub certificate_thumbprint: Option<String>,
    /// New credential: a secret already in the secret store that holds it.
    #[arg(long)]
    pub credential_secret_name: Option<String>,
    /// PEM bundle of the stamp's own CA.
    #[arg(long, conflicts_with = "no_ca")]
    pub ca_file: Option<PathBuf>,
    /// Stop trusting a stamp-specific CA (system roots only).
    #[arg(long)]
    pub no_ca: bool,
    /// Change without contacting the stamp.
    #[arg(long)]
    pub no_verify: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum QueryMode {
    AllTenants,
    PerSubscriber,
}

#[derive(Subcommand)]
pub enum MappingCommand {
    /// Map a tenant subscription of a stamp to a billing subscription (its unmapped rows are back-filled).
    Set { stamp: String, external_subscription_id: String, billing_subscription_id: String },
    /// Set a stamp's mappings from a CSV, all or nothing.
    ///
    /// CSV with columns externalSubscriptionId,billingSubscriptionId (header optional).
    Import { stamp: String, file: PathBuf },
    /// Remove the mapping of a tenant subscription of a stamp.
    Remove { stamp: String, external_subscription_id: String },
    /// Every mapping, or one stamp's (--stamp).
    List {
        #[arg(long)]
        stamp: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// Quarantined rows, oldest window first per stamp: stamp, reported window, field and reason (with
    /// --json also the row as the stamp sent it).
    List {
        /// Only this stamp (id or name).
        #[arg(long)]
        stamp: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PriceBookCommand {
    /// Import price books from a JSON file (one book or a list) or a `.csv` file (one row per price,
    /// see `price-book export --csv`). Versions not stored yet are added; a stored version is never
    /// edited (the import is refused whole: add a new version instead).
    Import { file: PathBuf },
    /// Every book as JSON (a list `import` takes), or with --csv as CSV.
    Export {
        #[arg(long)]
        csv: bool,
    },
    /// Every book: currency, versions, when each took effect.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One book's versions and, with --version, that version's prices.
    Show {
        book: String,
        #[arg(long)]
        version: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// What changed from one version of a book to another, meter by meter.
    Diff { book: String, from: u32, to: u32 },
    /// Rate a billing subscription (or, without --subscription, everyone) with a book from a UTC hour.
    Assign {
        book: String,
        #[arg(long)]
        subscription: Option<String>,
        /// A whole UTC hour, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        from: DateTime<Utc>,
    },
}

#[derive(Subcommand)]
pub enum StatementCommand {
    /// Stored statements, of one month or all.
    List {
        #[arg(long)]
        month: Option<Month>,
        #[arg(long)]
        json: bool,
    },
    /// A billing subscription's statement for a month, brought up to date (a final one as it is).
    Show {
        billing_subscription_id: String,
        month: Month,
        #[arg(long)]
        json: bool,
        /// Also write it as an HTML page to send or print.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also write it as CSV (its lines, fees, tax and totals) for the customer's spreadsheet.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
        /// Show the operator's view instead: revenue, cost (the cost book `operator-cost`) and
        /// margin per meter and stamp. The HTML and CSV files never carry cost or margin.
        #[arg(long)]
        margin: bool,
    },
    /// Stored statements (of one month, or all) as FOCUS 1.2 CSV for FinOps tools: usage, late usage
    /// as Adjustment/Correction, fees as Purchase, tax.
    Focus {
        #[arg(long)]
        month: Option<Month>,
        /// Where to write the CSV.
        #[arg(long)]
        csv: PathBuf,
        /// FOCUS BillingAccountId: the operator's account the statements are issued from.
        #[arg(long, default_value = azs_core::rating::focus::DEFAULT_BILLING_ACCOUNT_ID)]
        billing_account_id: String,
        /// FOCUS BillingAccountName, ProviderName and InvoiceIssuerName: the operator.
        #[arg(long, default_value = azs_core::rating::focus::DEFAULT_ISSUER)]
        issuer: String,
    },
    /// What the price books as they are now would change on a final month: with `--dry-run` only
    /// shown; without, written as correction lines onto the next statement that is not final (the
    /// final statement never changes).
    Rerate {
        billing_subscription_id: String,
        month: Month,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Make the statement final if it is proven complete; otherwise say what blocks it (exit 1).
    Finalize {
        billing_subscription_id: String,
        month: Month,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Changes to stamps and mappings, oldest first: when, who, what, and each field's old and new
    /// value (a credential only as changed).
    List {
        /// Only this stamp (its id, which also finds a removed stamp, or a registered stamp's name).
        #[arg(long)]
        stamp: Option<String>,
        /// Only changes at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum DbCommand {
    /// Check the configured database: version, collations, row versioning, session options, schema
    /// version, permissions, and a trial commit that is rolled back. Exit 1 when an item fails.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Run each T-SQL construct the SQL Server store depends on once, inside a transaction that is
    /// rolled back (RCSI and compatibility level, sp_getapplock, CONVERT(binary(16), ..., 2), OPENJSON,
    /// MERGE_WINDOW on a scratch stamp): one line each, ok or the server's error number and text.
    /// Exit 1 when one fails. SQLite needs none.
    Smoke {
        #[arg(long)]
        json: bool,
    },
}

/// `--certificate-file`: PEM is text; anything else is taken as PFX and sent base64, as the webhook takes it.
fn certificate_file(path: Option<&std::path::Path>) -> Result<Option<Secret>> {
    let Some(path) = path else { return Ok(None) };
    let bytes =
        std::fs::read(path).with_context(|| format!("reading --certificate-file {}", path.display()))?;
    Ok(Some(Secret::new(match String::from_utf8(bytes.clone()) {
        Ok(text) if text.contains("-----BEGIN") => text,
        _ => base64::engine::general_purpose::STANDARD.encode(&bytes),
    })))
}

fn ca_file(path: Option<&std::path::Path>) -> Result<Option<String>> {
    path.map(|p| std::fs::read_to_string(p).with_context(|| format!("reading --ca-file {}", p.display())))
        .transpose()
}

impl UpdateStamp {
    /// The change this asks for: only what is given. Reads the files it names and, for secrets, the
    /// environment (never the command line).
    pub fn patch(self) -> Result<StampPatch> {
        let update = self;
        let application_secret = if update.application_secret_from_env {
            let secret = std::env::var("AZS_USAGE_APPLICATION_SECRET")
                .context("--application-secret-from-env: AZS_USAGE_APPLICATION_SECRET is not set")?;
            Some(Secret::new(secret))
        } else {
            None
        };
        let certificate = certificate_file(update.certificate_file.as_deref())?;
        let certificate_password = match certificate {
            Some(_) => std::env::var("AZS_USAGE_CERTIFICATE_PASSWORD").ok().map(Secret::new),
            None => None,
        };
        let ca_certificate =
            if update.no_ca { Some(String::new()) } else { ca_file(update.ca_file.as_deref())? };
        Ok(StampPatch {
            name: update.name,
            enabled: None,
            admin_subscription_id: update.admin_subscription_id,
            tenant_id: update.tenant_id,
            application_id: update.application_id,
            admin_arm_endpoint: update.admin_arm_endpoint,
            token_request_resource_url: update.token_request_resource_url,
            authority_endpoint_url: update.authority_endpoint_url,
            is_adfs: update.is_adfs,
            query_mode: update.query_mode.map(|m| match m {
                QueryMode::AllTenants => UsageQueryMode::AllTenants,
                QueryMode::PerSubscriber => UsageQueryMode::PerSubscriber,
            }),
            application_secret,
            certificate,
            certificate_password,
            certificate_thumbprint: update.certificate_thumbprint,
            credential_secret_name: update.credential_secret_name,
            ca_certificate,
        })
    }
}

impl AddStamp {
    /// The registration this asks for, the seed's `-` meaning "none" or "discover it". Reads the files
    /// it names.
    pub fn registration(self) -> Result<StampRegistration> {
        let add = self;
        let dash = |s: String| (s.trim() != "-").then_some(s);
        let certificate = certificate_file(add.certificate_file.as_deref())?;
        let ca_certificate = ca_file(add.ca_file.as_deref())?;
        Ok(StampRegistration {
            name: add.name,
            admin_subscription_id: Some(add.admin_subscription_id),
            tenant_id: Some(add.tenant_id),
            application_id: Some(add.application_id),
            certificate_thumbprint: dash(add.certificate_thumbprint),
            admin_arm_endpoint: Some(add.admin_arm_endpoint),
            token_request_resource_url: dash(add.token_request_resource_url),
            authority_endpoint_url: dash(add.authority_endpoint_url),
            // Without --is-adfs: inferred from the tenant (`adfs`) and the authority (see the validation).
            is_adfs: add.is_adfs.then_some(true),
            application_secret: add.application_secret.map(Secret::new),
            certificate,
            certificate_password: add.certificate_password.map(Secret::new),
            credential_secret_name: add.credential_secret_name,
            ca_certificate,
            collect_from: add.collect_from,
            enabled: Some(!add.disabled),
            query_mode: Some(if add.per_subscriber {
                UsageQueryMode::PerSubscriber
            } else {
                UsageQueryMode::AllTenants
            }),
        })
    }
}

/// One `--from`/`--to` value: an RFC 3339 time on a whole UTC hour.
pub fn parse_hour(flag: &str, text: &str) -> Result<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text.trim())
        .with_context(|| format!("{flag}: {text:?} is not an RFC 3339 time (e.g. 2026-11-25T13:00:00Z)"))?
        .with_timezone(&Utc);
    if !azs_core::window::is_whole_hour(t) {
        bail!("{flag}: {text} is not a whole UTC hour");
    }
    Ok(t)
}

/// `--from`/`--to` as a reported range of whole UTC hours.
pub fn hour_range(from: &str, to: &str) -> Result<ReportedWindow> {
    let from = parse_hour("--from", from)?;
    let to = parse_hour("--to", to)?;
    ReportedWindow::new(from, to).context("--from must be before --to, both whole UTC hours")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and subcommand below `command`, with its path (`stamp list`).
    fn walk(command: &clap::Command, path: &str, out: &mut Vec<(String, Option<String>)>) {
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name()).trim().to_owned();
            out.push((path.clone(), sub.get_about().map(|a| a.to_string())));
            walk(sub, &path, out);
        }
    }

    #[test]
    fn the_command_line_model_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_and_subcommand_has_a_one_line_help() {
        // Given the whole command tree as clap builds it
        let mut commands = Vec::new();
        walk(&Cli::command(), "", &mut commands);
        assert!(commands.iter().any(|(path, _)| path == "stamp list"), "{commands:?}");

        // Then each has an about line that `azs-usage help` lists it with
        let missing: Vec<&str> = commands
            .iter()
            .filter(|(_, about)| about.as_deref().is_none_or(|a| a.trim().is_empty()))
            .map(|(path, _)| path.as_str())
            .collect();
        assert!(missing.is_empty(), "commands without a one-line help: {missing:?}");
    }

    #[test]
    fn a_reported_range_is_whole_utc_hours_from_before_to() {
        let range = hour_range("2026-11-25T13:00:00Z", "2026-11-25T15:00:00+00:00").unwrap();
        assert_eq!(range.hours(), 2);
        let half = hour_range("2026-11-25T13:30:00Z", "2026-11-25T15:00:00Z").unwrap_err();
        assert!(format!("{half:#}").contains("--from: 2026-11-25T13:30:00Z is not a whole UTC hour"));
        let backwards = hour_range("2026-11-25T15:00:00Z", "2026-11-25T13:00:00Z").unwrap_err();
        assert!(format!("{backwards:#}").contains("--from must be before --to"));
    }
}
