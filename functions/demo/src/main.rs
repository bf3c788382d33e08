//! `azs-usage-demo`: the whole job on one machine, against simulated stamps started in-process.
//! Three stamps (Azure AD + secret, AD FS + certificate, and one that throttles) are registered
//! through the normal registration path (with verification), most tenant subscriptions are mapped,
//! one collection runs, and the result is compared with the simulator's ground truth.
//!
//! A binary of its own so that the operator's `azs-usage` does not link the simulator (test code).

#[macro_use]
extern crate azs_usage;

use anyhow::{Context, Result, bail};
use azs_app::config::{self, AppConfig};
use azs_app::wiring::Services;
use azs_core::Secret;
use azs_core::collect::RunRequest;
use azs_core::ports::ExportFilter;
use azs_core::registration::StampRegistration;
use azs_core::window::floor_hour;
use azs_usage::progress::TerminalProgress;
use azs_usage::render::print_summary;
use chrono::{Duration, Utc};
use clap::Parser;
use rust_decimal::Decimal;
use stamp_sim::{Fault, RequestKind, SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;

const SEED: u64 = 2026;

/// Start simulated stamps in-process, register, map, collect and export: the whole job in one go.
#[derive(Parser)]
#[command(name = "azs-usage-demo", version)]
struct Demo {
    /// Folder for the demo's database, secrets and CSV.
    #[arg(long, default_value = "azs-usage-demo")]
    dir: PathBuf,
    /// Hours of usage to collect.
    #[arg(long, default_value_t = 24)]
    hours: u32,
    /// Database instead of DIR/azs-usage.db (any that `azs-usage --database` takes).
    #[arg(long, env = config::DATABASE, hide_env_values = true)]
    database: Option<String>,
    /// Secret store instead of DIR/secrets.json (any that `azs-usage --secrets` takes).
    #[arg(long, env = config::SECRETS, hide_env_values = true)]
    secrets: Option<String>,
}

fn main() -> ExitCode {
    let demo = Demo::parse();
    let runtime = azs_process::runtime().expect("tokio runtime");
    let database =
        demo.database.unwrap_or_else(|| format!("sqlite:{}", demo.dir.join("azs-usage.db").display()));
    let secrets = demo.secrets.unwrap_or_else(|| format!("file:{}", demo.dir.join("secrets.json").display()));
    match runtime.block_on(run(&(database, secrets), &demo.dir, demo.hours)) {
        Ok(code) => code,
        Err(e) => {
            say_error!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run((database, secrets): &(String, String), dir: &Path, hours: u32) -> Result<ExitCode> {
    if !(1..=24 * 31).contains(&hours) {
        bail!("--hours must be between 1 and 744");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The demo starts from nothing each time, but only ever deletes its own default files.
    for own in ["azs-usage.db", "azs-usage.db-wal", "azs-usage.db-shm", "secrets.json", "usage.csv"] {
        let _ = std::fs::remove_file(dir.join(own));
    }
    let config = AppConfig::from_lookup(|name| match name {
        config::DATABASE => Some(database.clone()),
        config::SECRETS => Some(secrets.clone()),
        config::LOG_FORMAT => Some("text".into()),
        // The demo tells its own story and counts retries instead of logging each.
        config::LOG => std::env::var(name).ok().or(Some("error".into())),
        // The simulated stamps listen on loopback, which the outbound policy admits only when named.
        config::ALLOWED_STAMP_HOSTS => Some("127.0.0.1".into()),
        _ => std::env::var(name).ok(),
    })?;
    azs_app::telemetry::init(&config, azs_app::telemetry::Target::Cli);
    let services = Services::build(&config).await?;

    say!("Starting 3 simulated Azure Stack Hub stamps on 127.0.0.1 (HTTPS, their own CA)...");
    let certificate = stamp_sim::generate_test_certificate("azs-usage-demo-collector")?;
    let secret = "demo-client-secret-3f9a";
    let spec = |index, auth, tenants| StampSpec {
        tenants,
        meters_per_tenant: 6,
        late_rows_per_window: 4,
        duplicate_across_pages: true,
        variants: true,
        ..StampSpec::generated(SEED, index, auth)
    };
    let sim = Simulator::start(SimulatorConfig {
        seed: SEED,
        page_size: 100,
        stamps: vec![
            spec(0, SimAuth::AzureAd { secret: Some(secret.into()), certificate_pem: None }, 12),
            spec(
                1,
                SimAuth::Adfs { secret: None, certificate_pem: Some(certificate.certificate_pem.clone()) },
                8,
            ),
            spec(2, SimAuth::AzureAd { secret: Some(secret.into()), certificate_pem: None }, 10),
        ],
    })
    .await?;

    let collect_from = floor_hour(Utc::now()) - Duration::hours(i64::from(hours) + 1);
    let names = ["demo-aad-secret", "demo-adfs-certificate", "demo-throttling"];
    let mut stamps = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let handle = sim.stamp(i);
        let adfs = i == 1;
        let registration = StampRegistration {
            name: Some((*name).into()),
            admin_subscription_id: Some(handle.admin_subscription_id()),
            tenant_id: Some(handle.tenant_id()),
            application_id: Some(handle.application_id()),
            certificate_thumbprint: adfs.then(|| certificate.thumbprint_hex.clone()),
            admin_arm_endpoint: Some(handle.admin_arm_endpoint()),
            is_adfs: Some(adfs),
            application_secret: (!adfs).then(|| Secret::new(secret)),
            certificate: adfs.then(|| {
                Secret::new(format!("{}\n{}", certificate.certificate_pem, certificate.private_key_pem))
            }),
            ca_certificate: Some(sim.ca_pem()),
            collect_from: Some(collect_from.to_rfc3339()),
            ..Default::default()
        };
        let view = services
            .registrar
            .register(registration, true, &azs_core::audit::Actor::new("demo"))
            .await
            .map_err(|e| anyhow::anyhow!("registering {name}: {e}"))?;
        say!(
            "  registered {:<22} {} ({})",
            name,
            view.stamp.id,
            if adfs { "AD FS, certificate" } else { "Azure AD, secret" }
        );
        stamps.push(view.stamp);
    }

    // Map every tenant subscription but the last two of each stamp: those show up as unmapped.
    let mut mapped = 0;
    for (i, stamp) in stamps.iter().enumerate() {
        let tenants = sim.stamp(i).tenant_subscriptions();
        for (n, tenant) in tenants.iter().enumerate().take(tenants.len().saturating_sub(2)) {
            let billing = format!("billing-{}-{n:03}", stamp.name);
            services
                .mapper
                .set_mapping(&stamp.id, tenant, &billing, &azs_core::audit::Actor::new("demo"))
                .await?;
            mapped += 1;
        }
    }
    say!("  mapped {mapped} tenant subscriptions to billing subscriptions (2 per stamp left unmapped)");

    // The third stamp is busy: it throttles with Retry-After and answers 503 now and then.
    let throttling = sim.stamp(2);
    throttling.inject(Fault::Throttle429 { kind: RequestKind::Usage, count: 2, retry_after_secs: 1 });
    throttling.inject(Fault::Status503 { kind: RequestKind::Usage, count: 3 });
    let faults_before = throttling.stats().faults_served;

    say!("\nCollecting {hours} reported hours from each stamp...");
    let progress = TerminalProgress::new();
    let summary = services.collector.run(RunRequest::default(), progress.clone()).await?;
    progress.finish();
    print_summary(&summary);
    say!(
        "({} answered 429/503 {} times during the run; each was retried with backoff)",
        names[2],
        throttling.stats().faults_served - faults_before
    );

    say!("\nUnmapped tenant subscriptions (stored, counted, waiting for a mapping):");
    for u in services.mapper.unmapped(None).await? {
        let name = stamps.iter().find(|s| s.id == u.stamp_id).map(|s| s.name.as_str()).unwrap_or("?");
        say!("  {name:<22} {}  {} rows", u.external_subscription_id, u.rows);
    }

    say!("\nChecking the database against the simulator's ground truth:");
    let mut all_equal = true;
    for (i, stamp) in stamps.iter().enumerate() {
        let watermark =
            services.store.get_status(&stamp.id).await?.map(|s| s.watermark).unwrap_or(collect_from);
        let truth = sim.stamp(i).ground_truth(collect_from, watermark);
        let truth_total: Decimal =
            truth.iter().map(|r| Decimal::from_str(&r.quantity).unwrap_or_default()).sum();
        let (mut rows, mut total) = (0u64, Decimal::ZERO);
        let mut per_meter: HashMap<String, u64> = HashMap::new();
        let filter = ExportFilter { stamps: vec![stamp.id.clone()], ..Default::default() };
        services
            .store
            .export_rows(&filter, &mut |stored| {
                rows += 1;
                total += stored.row.quantity;
                *per_meter.entry(stored.row.meter_id).or_default() += 1;
                Ok(())
            })
            .await?;
        let equal = rows == truth.len() as u64 && total == truth_total;
        all_equal &= equal;
        say!(
            "  {:<22} stored {rows:>6} rows, total quantity {total}; ground truth {} rows, {truth_total} -> {}",
            stamp.name,
            truth.len(),
            if equal { "equal" } else { "DIFFERENT" }
        );
    }

    let csv_path = dir.join("usage.csv");
    let file = std::fs::File::create(&csv_path)?;
    let exported = azs_app::export::export_csv(
        services.store.as_ref(),
        &ExportFilter::default(),
        std::io::BufWriter::new(file),
    )
    .await?;
    say!("\nExported {exported} rows to {}", csv_path.display());
    say!("Database: {database}\nSecrets:  {secrets}");
    say!("Try: azs-usage --database {database} --secrets {secrets} status");

    Ok(if summary.any_failed() || !all_equal { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
