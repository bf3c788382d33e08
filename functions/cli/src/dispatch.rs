//! From a parsed command line to the services and back: each command resolves its stamp handles,
//! calls the service every platform calls, and hands the result to `render` (or prints it as JSON).
//! The exit code is decided here: 2 when a collected stamp failed, 3 when `verify` found a difference.

use crate::{audit, mapping_import, rating};
use anyhow::{Context, Result, bail};
use azs_app::config::{self, AppConfig};
use azs_app::registrar::{RegisterOptions, RegistrationError, StampPatch};
use azs_app::wiring::Services;
use azs_core::collect::{ReprocessRequest, RunRequest};
use azs_core::ports::ExportFilter;
use azs_core::stamp::StampId;
use azs_usage::model::{
    Cli, Command, DbCommand, MappingCommand, QuarantineCommand, StampCommand, hour_range, parse_hour,
};
use azs_usage::progress;
use azs_usage::render::{self, print_json};
use std::process::ExitCode;

/// Runs one command line to its exit code.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let config = app_config(&cli)?;
    azs_app::telemetry::init(&config, azs_app::telemetry::Target::Cli);
    if let Command::Db(command) = cli.command {
        // Before the services: opening the store would create or migrate the database being checked.
        return db(&config, command).await;
    }
    if let Command::PriceBook(command) = cli.command {
        // Books need no stamp client or secret store.
        return rating::price_book(&config, command).await;
    }
    let services = Services::build(&config).await?;
    let ok = ExitCode::SUCCESS;
    match cli.command {
        Command::Stamp(cmd) => stamp(&services, cmd).await?,
        Command::Mapping(cmd) => mapping(&services, cmd).await?,
        Command::Unmapped { stamp, json } => {
            let stamp = resolve_optional(&services, stamp).await?;
            let list = services.mapper.unmapped(stamp.as_ref()).await.map_err(explain)?;
            if json { print_json(&list)? } else { render::print_unmapped(&list) }
        }
        Command::Quarantine(QuarantineCommand::List { stamp, json }) => {
            let stamp = resolve_optional(&services, stamp).await?;
            let entries = services.administration().quarantine.list(stamp.as_ref()).await.map_err(explain)?;
            if json { print_json(&entries)? } else { render::print_quarantine(&entries) }
        }
        Command::Audit(command) => audit::run(&services, command).await?,
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
                print_json(&summary)?
            } else {
                render::print_summary(&summary)
            }
            if summary.any_failed() {
                return Ok(ExitCode::from(2));
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
            if json { print_json(&report)? } else { render::print_reprocess(&report) }
        }
        Command::Verify { stamp, from, to, json } => {
            let window = hour_range(&from, &to)?;
            let stamp = resolve_stamp(&services, &stamp).await?;
            let hours = services.collector.verify(&stamp, window).await?;
            let differs = hours.iter().any(|h| !h.is_equal());
            if json {
                print_json(&serde_json::json!({ "equal": !differs, "hours": hours }))?;
            } else {
                render::print_verify(&hours);
            }
            if differs {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Status { json } => {
            let views = services.registrar.list().await.map_err(explain)?;
            if json { print_json(&views)? } else { render::print_status(&views) }
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
        Command::Margin { month, json } => return rating::margin(&services, month, json).await,
        Command::Db(_) | Command::PriceBook(_) => unreachable!("handled above"),
    }
    Ok(ok)
}

/// The configuration the functions read from the environment, with `--database` and `--secrets`
/// taking the place of their variables, and quieter logs for a terminal.
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

async fn stamp(services: &Services, cmd: StampCommand) -> Result<()> {
    let registrar = &services.registrar;
    match cmd {
        StampCommand::Add(add) => {
            let export = add.export_csv.clone();
            let options = RegisterOptions { verify: !add.no_verify, recollect: add.recollect };
            let registered = registrar
                .register_with(add.registration()?, options, &audit::operator())
                .await
                .map_err(explain)?;
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
                render::write_connection_csv(&path, &view)?;
                say!("connection written to {}", path.display());
            }
        }
        StampCommand::List { json } => {
            let views = registrar.list().await.map_err(explain)?;
            if json { print_json(&views)? } else { render::print_stamps(&views) }
        }
        StampCommand::Show { stamp, json } => {
            let view = registrar.get(&resolve_stamp(services, &stamp).await?).await.map_err(explain)?;
            if json { print_json(&view)? } else { render::print_stamp(&view) }
        }
        StampCommand::Enable { stamp } => {
            let patch = StampPatch { enabled: Some(true), ..Default::default() };
            let v = registrar
                .update(&resolve_stamp(services, &stamp).await?, patch, false, &audit::operator())
                .await
                .map_err(explain)?;
            say!("stamp {} enabled", v.stamp.id);
        }
        StampCommand::Disable { stamp } => {
            let patch = StampPatch { enabled: Some(false), ..Default::default() };
            let v = registrar
                .update(&resolve_stamp(services, &stamp).await?, patch, false, &audit::operator())
                .await
                .map_err(explain)?;
            say!("stamp {} disabled", v.stamp.id);
        }
        StampCommand::Update(update) => {
            let (stamp, verify) = (resolve_stamp(services, &update.stamp).await?, !update.no_verify);
            let v = registrar
                .update(&stamp, update.patch()?, verify, &audit::operator())
                .await
                .map_err(explain)?;
            let watermark = v.status.as_ref().map(|s| s.watermark.to_rfc3339()).unwrap_or_default();
            say!("updated stamp {} ({}); collection resumes at {watermark}", v.stamp.id, v.stamp.name);
        }
        StampCommand::Test { stamp } => {
            let report = registrar
                .test(&resolve_stamp(services, &stamp).await?, &audit::operator())
                .await
                .map_err(explain)?;
            render::print_connection_report(&report);
        }
        StampCommand::Remove { stamp } => {
            registrar
                .remove(&resolve_stamp(services, &stamp).await?, &audit::operator())
                .await
                .map_err(explain)?;
            say!("stamp {stamp} removed; its collected rows stay in the database");
        }
    }
    Ok(())
}

async fn mapping(services: &Services, cmd: MappingCommand) -> Result<()> {
    let mapper = &services.mapper;
    match cmd {
        MappingCommand::Set { stamp, external_subscription_id, billing_subscription_id } => {
            let stamp = resolve_stamp(services, &stamp).await?;
            let (m, backfilled) = mapper
                .set_mapping(&stamp, &external_subscription_id, &billing_subscription_id, &audit::operator())
                .await
                .map_err(explain)?;
            say!(
                "{} -> {} ({backfilled} earlier rows mapped)",
                m.external_subscription_id,
                m.billing_subscription_id
            );
        }
        MappingCommand::Import { stamp, file } => {
            let stamp = resolve_stamp(services, &stamp).await?;
            let (count, backfilled) = mapping_import::import(mapper, &stamp, &file).await.map_err(explain)?;
            say!("imported {count} mappings ({backfilled} earlier rows mapped)");
        }
        MappingCommand::Remove { stamp, external_subscription_id } => {
            let stamp = resolve_stamp(services, &stamp).await?;
            mapper
                .remove_mapping(&stamp, &external_subscription_id, &audit::operator())
                .await
                .map_err(explain)?;
            say!("mapping removed");
        }
        MappingCommand::List { stamp, json } => {
            let stamp = resolve_optional(services, stamp).await?;
            let list = mapper.mappings(stamp.as_ref()).await.map_err(explain)?;
            if json { print_json(&list)? } else { render::print_mappings(&list) }
        }
    }
    Ok(())
}

/// `db check` and `db smoke`: exit 1 when an item failed.
async fn db(config: &AppConfig, command: DbCommand) -> Result<ExitCode> {
    let (check, json, smoke) = match command {
        DbCommand::Check { json } => (azs_app::wiring::check_database(config).await?, json, false),
        DbCommand::Smoke { json } => (azs_app::wiring::smoke_database(config).await?, json, true),
    };
    if json {
        print_json(&check)?
    } else {
        render::print_check(&check, smoke)
    }
    Ok(if check.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The one stamp-handle resolver of every command: an id (any GUID spelling) or a name (compared
/// case-insensitively), as the registrar resolves it for the webhook.
async fn resolve_stamp(services: &Services, handle: &str) -> Result<StampId> {
    services.registrar.resolve(handle).await.map_err(explain)
}

/// [`resolve_stamp`] for each `--stamp` given.
async fn resolve_stamps(services: &Services, handles: Vec<String>) -> Result<Vec<StampId>> {
    let mut ids = Vec::with_capacity(handles.len());
    for handle in handles {
        ids.push(resolve_stamp(services, &handle).await?);
    }
    Ok(ids)
}

/// [`resolve_stamp`] for an optional `--stamp` (none: every stamp).
async fn resolve_optional(services: &Services, handle: Option<String>) -> Result<Option<StampId>> {
    match handle {
        Some(handle) => Ok(Some(resolve_stamp(services, &handle).await?)),
        None => Ok(None),
    }
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
