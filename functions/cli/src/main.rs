//! `azs-usage`: the operator CLI. Every command runs the same code the serverless functions run
//! (`azs_app::wiring::Services`); this file only turns arguments into calls and results into text.

mod db;
mod drift;
mod mapping_import;
mod quarantine;
mod rating;

// say!, say_inline!, say_error!: println!/print!/eprintln! through the terminal filter (src/terminal.rs).
#[macro_use]
extern crate azs_usage;

use azs_usage::progress;
use azs_usage::render::{print_status, print_summary};

use anyhow::{Context, Result, bail};
use azs_app::config::{self, AppConfig};
use azs_app::registrar::{RegisterOptions, RegistrationError, StampPatch, StampView};
use azs_app::wiring::Services;
use azs_core::Secret;
use azs_core::collect::{ReprocessRequest, RunRequest};
use azs_core::ports::ExportFilter;
use azs_core::registration::StampRegistration;
use azs_core::stamp::{StampId, UsageQueryMode};
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
struct Cli {
    /// Database: a SQLite path (default azs-usage.db), `sqlite:PATH`, a SQL Server connection string,
    /// or a `postgres://` URL.
    /// (Its value is never shown here: a SQL Server connection string may carry a password.)
    #[arg(long, global = true, env = config::DATABASE, hide_env_values = true)]
    database: Option<String>,
    /// Secret store: `file:PATH` (default, mode 0600), `aws-secrets-manager`, `azure-key-vault:URL`.
    #[arg(long, global = true, env = config::SECRETS, hide_env_values = true)]
    secrets: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register and manage stamps.
    #[command(subcommand)]
    Stamp(StampCommand),
    /// Price books and who rates with which (kept in the SQLite store).
    #[command(subcommand)]
    PriceBook(rating::PriceBookCommand),
    /// Monthly statements per billing subscription: show, list, finalize when proven complete.
    #[command(subcommand)]
    Statement(rating::StatementCommand),
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
    Quarantine(quarantine::QuarantineCommand),
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
    Db(db::DbCommand),
}

#[derive(Subcommand)]
enum StampCommand {
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
struct AddStamp {
    admin_subscription_id: String,
    tenant_id: String,
    application_id: String,
    /// `-` when an application secret is used.
    certificate_thumbprint: String,
    admin_arm_endpoint: String,
    /// `-` to discover it.
    token_request_resource_url: String,
    /// `-` to discover it.
    authority_endpoint_url: String,
    /// Prefer the environment variable: command lines are visible to other users of the machine.
    #[arg(long, env = "AZS_USAGE_APPLICATION_SECRET", hide_env_values = true)]
    application_secret: Option<String>,
    /// PEM (certificate and private key) or PFX file.
    #[arg(long)]
    certificate_file: Option<PathBuf>,
    #[arg(long, env = "AZS_USAGE_CERTIFICATE_PASSWORD", hide_env_values = true)]
    certificate_password: Option<String>,
    /// A secret already in the secret store that holds the credential.
    #[arg(long)]
    credential_secret_name: Option<String>,
    /// The stamp signs in with AD FS. Without it: AD FS when the tenant is `adfs` or the authority
    /// ends with `/adfs`, else Azure AD (verification says when that is wrong).
    #[arg(long)]
    is_adfs: bool,
    #[arg(long)]
    name: Option<String>,
    /// PEM bundle of the stamp's own CA (trusted in addition to the system roots).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// First reported hour to collect (default: start of this UTC month).
    #[arg(long)]
    collect_from: Option<String>,
    /// Query one tenant subscription at a time (large stamps whose all-tenant query times out).
    #[arg(long)]
    per_subscriber: bool,
    #[arg(long)]
    disabled: bool,
    /// Register without contacting the stamp.
    #[arg(long)]
    no_verify: bool,
    /// A stamp removed before resumes where it stopped; with a --collect-from before that point,
    /// re-collect (reprocess) those hours instead of refusing.
    #[arg(long)]
    recollect: bool,
    /// Also write the registered connection (without secrets) to this CSV file.
    #[arg(long)]
    export_csv: Option<PathBuf>,
}

/// Only what is given changes.
#[derive(Args)]
struct UpdateStamp {
    /// Stamp id or name.
    stamp: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    admin_subscription_id: Option<String>,
    #[arg(long)]
    tenant_id: Option<String>,
    #[arg(long)]
    application_id: Option<String>,
    #[arg(long)]
    admin_arm_endpoint: Option<String>,
    /// `-` to discover it again.
    #[arg(long)]
    token_request_resource_url: Option<String>,
    /// `-` to discover it again.
    #[arg(long)]
    authority_endpoint_url: Option<String>,
    /// `true` for an AD FS stamp, `false` for Azure AD.
    #[arg(long, value_name = "true|false")]
    is_adfs: Option<bool>,
    #[arg(long, value_enum)]
    query_mode: Option<QueryMode>,
    /// Take the new application secret from AZS_USAGE_APPLICATION_SECRET (never from the command
    /// line, which other users of the machine can see).
    #[arg(long)]
    application_secret_from_env: bool,
    /// New credential: PEM (certificate and private key) or PFX file; its password is taken from
    /// AZS_USAGE_CERTIFICATE_PASSWORD when set.
    #[arg(long)]
    certificate_file: Option<PathBuf>,
    /// `-` for none.
    #[arg(long)]
    certificate_thumbprint: Option<String>,
    /// New credential: a secret already in the secret store that holds it.
    #[arg(long)]
    credential_secret_name: Option<String>,
    /// PEM bundle of the stamp's own CA.
    #[arg(long, conflicts_with = "no_ca")]
    ca_file: Option<PathBuf>,
    /// Stop trusting a stamp-specific CA (system roots only).
    #[arg(long)]
    no_ca: bool,
    /// Change without contacting the stamp.
    #[arg(long)]
    no_verify: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueryMode {
    AllTenants,
    PerSubscriber,
}

#[derive(Subcommand)]
enum MappingCommand {
    Set {
        stamp: String,
        external_subscription_id: String,
        billing_subscription_id: String,
    },
    /// CSV with columns externalSubscriptionId,billingSubscriptionId (header optional).
    Import {
        stamp: String,
        file: PathBuf,
    },
    Remove {
        stamp: String,
        external_subscription_id: String,
    },
    List {
        #[arg(long)]
        stamp: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = azs_process::runtime().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            say_error!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn app_config(cli: &Cli) -> Result<AppConfig> {
    let database = cli.database.clone();
    let secrets = cli.secrets.clone();
    let config = AppConfig::from_lookup(|name| match name {
        config::DATABASE => database.clone(),
        config::SECRETS => secrets.clone(),
        config::LOG_FORMAT => std::env::var(name).ok().or(Some("text".into())),
        // Operators reading a terminal want results, not every window's log line.
        config::LOG => std::env::var(name).ok().or(Some("warn".into())),
        _ => std::env::var(name).ok(),
    })?;
    Ok(config)
}

async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let config = app_config(&cli)?;
    azs_app::telemetry::init(&config, azs_app::telemetry::Target::Cli);
    if let Command::Db(command) = cli.command {
        // Before the services: opening the store would create or migrate the database being checked.
        return db::run(&config, command).await;
    }
    if let Command::PriceBook(command) = cli.command {
        // Books need no stamp client or secret store.
        return rating::price_book(&config, command).await;
    }
    let services = Services::build(&config).await?;
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Stamp(cmd) => stamp_command(&services, cmd).await?,
        Command::Mapping(cmd) => mapping_command(&services, cmd).await?,
        Command::Unmapped { stamp, json } => {
            let stamp = stamp.map(StampId);
            let list = services.mapper.unmapped(stamp.as_ref()).await.map_err(explain)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                say!("every subscription with usage is mapped");
            } else {
                say!("{:<38} {:<38} {:>8}  last usage", "stamp", "subscription", "rows");
                for u in list {
                    let last = u.last_usage.map(|t| t.to_rfc3339()).unwrap_or_default();
                    say!("{:<38} {:<38} {:>8}  {last}", u.stamp_id, u.external_subscription_id, u.rows);
                }
            }
        }
        Command::Quarantine(command) => quarantine::run(&services, command).await?,
        Command::Collect { stamps, json } => {
            let progress = progress::TerminalProgress::new();
            // The CLI runs until done unless the operator set a fixed budget.
            let deadline = match services.config.time_budget {
                config::TimeBudget::Fixed(budget) => Some(tokio::time::Instant::now() + budget),
                config::TimeBudget::Platform => None,
            };
            let request = RunRequest { stamps: resolve_stamps(&services, stamps).await?, deadline };
            let summary = services.collector.run(request, progress.clone()).await?;
            progress.finish();
            if json {
                say!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print_summary(&summary);
            }
            if summary.any_failed() {
                return Ok(std::process::ExitCode::from(2));
            }
        }
        Command::Reprocess { stamp, from, to, reason, by, dry_run, allow_shrink, remap, json } => {
            let window = hour_range(&from, &to)?;
            let reason = reason.map(|r| r.trim().to_owned()).unwrap_or_default();
            if reason.is_empty() && !dry_run {
                bail!("--reason must say why the range is reprocessed");
            }
            let requested_by = by
                .or_else(|| std::env::var("USER").ok())
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| "unknown".into());
            let stamp = resolve_stamp(&services, &stamp).await?;
            let request = ReprocessRequest { reason, requested_by, dry_run, allow_shrink, remap };
            let report = services.collector.reprocess(&stamp, window, &request).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                drift::print_hours(&report.hours);
                if dry_run {
                    let (added, removed, changed) = report.totals();
                    say!("dry run: nothing written (+{added} -{removed} ~{changed} rows over the range)");
                } else {
                    let summary = &report.summary;
                    say!(
                        "reprocessed {} hour(s) of {}: {} rows now stored for the range ({} unmapped)",
                        summary.windows_committed,
                        summary.name,
                        summary.rows_written,
                        summary.unmapped_rows
                    );
                }
            }
        }
        Command::Verify { stamp, from, to, json } => {
            let window = hour_range(&from, &to)?;
            let stamp = resolve_stamp(&services, &stamp).await?;
            let hours = services.collector.verify(&stamp, window).await?;
            let differs = hours.iter().any(|h| !h.is_equal());
            if json {
                say!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "equal": !differs, "hours": hours }))?
                );
            } else {
                drift::print_hours(&hours);
                say!(
                    "{}",
                    if differs {
                        "stored rows differ from what the stamp reports"
                    } else {
                        "stored rows equal what the stamp reports"
                    }
                );
            }
            if differs {
                return Ok(std::process::ExitCode::from(3));
            }
        }
        Command::Status { json } => {
            let views = services.registrar.list().await.map_err(explain)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                print_status(&views);
            }
        }
        Command::Export { csv, stamps, from, to } => {
            let filter = ExportFilter {
                stamps: resolve_stamps(&services, stamps).await?,
                from: from.map(|t| parse_hour("--from", &t)).transpose()?,
                to: to.map(|t| parse_hour("--to", &t)).transpose()?,
            };
            let file = std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?;
            let n =
                azs_app::export::export_csv(services.store.as_ref(), &filter, std::io::BufWriter::new(file))
                    .await?;
            say!("wrote {n} rows to {}", csv.display());
        }
        Command::Serve { listen, insecure_loopback, tls_cert, tls_key } => {
            let tls = tls_cert.zip(tls_key).map(|(certificate_chain, private_key)| {
                azs_app::serve::TlsFiles { certificate_chain, private_key }
            });
            let options = azs_app::serve::ServeOptions {
                listen,
                insecure_loopback,
                tls,
                limits: azs_app::serve::ServeLimits::default(),
            };
            azs_app::serve::serve(&services, options).await?;
        }
        Command::Statement(command) => return rating::statement(&services, command).await,
        Command::Db(_) | Command::PriceBook(_) => unreachable!("handled above"),
    }
    Ok(ok)
}

/// `--from`/`--to` as a reported range of whole UTC hours.
fn hour_range(from: &str, to: &str) -> Result<ReportedWindow> {
    let from = parse_hour("--from", from)?;
    let to = parse_hour("--to", to)?;
    ReportedWindow::new(from, to).context("--from must be before --to, both whole UTC hours")
}

async fn stamp_command(services: &Services, cmd: StampCommand) -> Result<()> {
    let registrar = &services.registrar;
    match cmd {
        StampCommand::Add(add) => {
            let export = add.export_csv.clone();
            let options = RegisterOptions { verify: !add.no_verify, recollect: add.recollect };
            let registration = registration_from(*add)?;
            let registered = registrar.register_with(registration, options).await.map_err(explain)?;
            let view = registered.view;
            say!("registered stamp {} ({})", view.stamp.id, view.stamp.name);
            if let Some(range) = registered.recollect {
                // Never allowed to shrink: a re-collect that would remove billed rows stops and says so.
                let request = ReprocessRequest {
                    reason: "re-collected at re-registration".into(),
                    requested_by: std::env::var("USER").unwrap_or_else(|_| "azs-usage stamp add".into()),
                    dry_run: false,
                    allow_shrink: false,
                    remap: false,
                };
                let report = services.collector.reprocess(&view.stamp.id, range, &request).await?;
                say!("re-collected {range}: {} rows now stored for the range", report.summary.rows_written);
            }
            say!("collects from {}", view.stamp.collect_from.to_rfc3339());
            if let Some(path) = export {
                write_connection_csv(&path, &view)?;
                say!("connection written to {}", path.display());
            }
        }
        StampCommand::List { json } => {
            let views = registrar.list().await.map_err(explain)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                for v in views {
                    let state = if v.stamp.enabled { "enabled" } else { "disabled" };
                    say!(
                        "{}  {:<24} {:<8} {}",
                        v.stamp.id,
                        v.stamp.name,
                        state,
                        v.stamp.connection.admin_arm_endpoint
                    );
                }
            }
        }
        StampCommand::Show { stamp, json } => {
            let view = registrar.get(&StampId(stamp)).await.map_err(explain)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_status(std::slice::from_ref(&view));
                let c = &view.stamp.connection;
                say!("admin ARM endpoint   {}", c.admin_arm_endpoint);
                say!("admin subscription   {}", c.admin_subscription_id);
                say!("tenant               {}", c.tenant_id);
                say!("application          {}", c.application_id);
                say!("AD FS                {}", c.is_adfs);
                say!(
                    "audience             {}",
                    c.token_request_resource_url.as_deref().unwrap_or("(discovered at run time)")
                );
                say!(
                    "authority            {}",
                    c.authority_endpoint_url.as_deref().unwrap_or("(discovered at run time)")
                );
                say!("credential secret    {}", view.stamp.credential_secret_name);
            }
        }
        StampCommand::Enable { stamp } => {
            let patch = StampPatch { enabled: Some(true), ..Default::default() };
            let v = registrar.update(&StampId(stamp), patch, false).await.map_err(explain)?;
            say!("stamp {} enabled", v.stamp.id);
        }
        StampCommand::Disable { stamp } => {
            let patch = StampPatch { enabled: Some(false), ..Default::default() };
            let v = registrar.update(&StampId(stamp), patch, false).await.map_err(explain)?;
            say!("stamp {} disabled", v.stamp.id);
        }
        StampCommand::Update(update) => {
            let (stamp, verify) = (StampId(update.stamp.clone()), !update.no_verify);
            let v = registrar.update(&stamp, patch_from(*update)?, verify).await.map_err(explain)?;
            let watermark = v.status.as_ref().map(|s| s.watermark.to_rfc3339()).unwrap_or_default();
            say!("updated stamp {} ({}); collection resumes at {watermark}", v.stamp.id, v.stamp.name);
        }
        StampCommand::Test { stamp } => {
            let report = registrar.test(&StampId(stamp)).await.map_err(explain)?;
            say!(
                "discovery ok: {} ({})",
                report.endpoints.login_endpoint,
                if report.endpoints.is_adfs { "AD FS" } else { "Azure AD" }
            );
            say!("token ok: audience {}", report.endpoints.audience);
            say!("usage ok: {} rows in {} page(s) for {}", report.rows, report.pages, report.window);
            for w in report.warnings {
                say!("warning: {w}");
            }
        }
        StampCommand::Remove { stamp } => {
            registrar.remove(&StampId(stamp.clone())).await.map_err(explain)?;
            say!("stamp {stamp} removed; its collected rows stay in the database");
        }
    }
    Ok(())
}

async fn mapping_command(services: &Services, cmd: MappingCommand) -> Result<()> {
    let mapper = &services.mapper;
    match cmd {
        MappingCommand::Set { stamp, external_subscription_id, billing_subscription_id } => {
            let (m, backfilled) = mapper
                .set_mapping(&StampId(stamp), &external_subscription_id, &billing_subscription_id)
                .await
                .map_err(explain)?;
            say!(
                "{} -> {} ({backfilled} earlier rows mapped)",
                m.external_subscription_id,
                m.billing_subscription_id
            );
        }
        MappingCommand::Import { stamp, file } => {
            let (count, backfilled) =
                mapping_import::import(mapper, &StampId(stamp), &file).await.map_err(explain)?;
            say!("imported {count} mappings ({backfilled} earlier rows mapped)");
        }
        MappingCommand::Remove { stamp, external_subscription_id } => {
            mapper.remove_mapping(&StampId(stamp), &external_subscription_id).await.map_err(explain)?;
            say!("mapping removed");
        }
        MappingCommand::List { stamp, json } => {
            let stamp = stamp.map(StampId);
            let list = mapper.mappings(stamp.as_ref()).await.map_err(explain)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for m in list {
                    say!("{}  {} -> {}", m.stamp_id, m.external_subscription_id, m.billing_subscription_id);
                }
            }
        }
    }
    Ok(())
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

fn patch_from(update: UpdateStamp) -> Result<StampPatch> {
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
    let ca_certificate = if update.no_ca { Some(String::new()) } else { ca_file(update.ca_file.as_deref())? };
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

fn registration_from(add: AddStamp) -> Result<StampRegistration> {
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

/// The seed's `/ExportToCsv`: the registered connection, without secrets.
fn write_connection_csv(path: &std::path::Path, view: &StampView) -> Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    let c = &view.stamp.connection;
    w.write_record([
        "id",
        "name",
        "adminSubscriptionId",
        "tenantId",
        "applicationId",
        "certificateThumbprint",
        "adminArmEndpoint",
        "tokenRequestResourceUrl",
        "authorityEndpointUrl",
        "isAdfs",
        "enabled",
        "collectFrom",
        "credentialSecretName",
    ])?;
    // The name and the URLs are a webhook caller's text: escaped like the export's cells.
    let cells = [
        view.stamp.id.as_str(),
        &view.stamp.name,
        &c.admin_subscription_id,
        &c.tenant_id,
        &c.application_id,
        c.certificate_thumbprint.as_deref().unwrap_or(""),
        &c.admin_arm_endpoint,
        c.token_request_resource_url.as_deref().unwrap_or(""),
        c.authority_endpoint_url.as_deref().unwrap_or(""),
        &c.is_adfs.to_string(),
        &view.stamp.enabled.to_string(),
        &view.stamp.collect_from.to_rfc3339(),
        &view.stamp.credential_secret_name,
    ];
    w.write_record(cells.map(azs_app::display::spreadsheet_safe).iter().map(|c| c.as_ref()))?;
    w.flush()?;
    Ok(())
}

fn parse_hour(flag: &str, text: &str) -> Result<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text.trim())
        .with_context(|| format!("{flag}: {text:?} is not an RFC 3339 time (e.g. 2026-11-25T13:00:00Z)"))?
        .with_timezone(&Utc);
    if !azs_core::window::is_whole_hour(t) {
        bail!("{flag}: {text} is not a whole UTC hour");
    }
    Ok(t)
}

/// Stamp ids for the `--stamp` handles given (each an id or a name).
async fn resolve_stamps(services: &Services, handles: Vec<String>) -> Result<Vec<StampId>> {
    let mut ids = Vec::with_capacity(handles.len());
    for handle in handles {
        ids.push(resolve_stamp(services, &handle).await?);
    }
    Ok(ids)
}

/// The one stamp-handle resolver of every command: an id (any GUID spelling) or a name (compared
/// case-insensitively), as the registrar resolves it.
async fn resolve_stamp(services: &Services, handle: &str) -> Result<StampId> {
    services.registrar.resolve(handle).await.map_err(explain)
}

/// Turns a registration error into an operator-readable one, listing every invalid field.
pub(crate) fn explain(e: RegistrationError) -> anyhow::Error {
    match e {
        RegistrationError::Invalid(errors) | RegistrationError::Unusable(errors) => {
            let lines: Vec<String> = errors.0.iter().map(|f| format!("  {}: {}", f.field, f.rule)).collect();
            anyhow::anyhow!("invalid input:\n{}", lines.join("\n"))
        }
        other => anyhow::anyhow!(other),
    }
}
