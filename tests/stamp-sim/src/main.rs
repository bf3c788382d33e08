//! `stamp-sim`: runs simulated stamps until Ctrl-C, for the demo and manual runs.
//!
//! Writes the CA PEM to `--ca-out` and prints one JSON line per stamp with what a collector's
//! registration needs (endpoints, ids and the test client secret).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use serde::Serialize;
use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec};

/// Identity provider flavour of the simulated stamps.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Flavour {
    /// Every stamp uses Azure AD.
    Aad,
    /// Every stamp uses AD FS.
    Adfs,
    /// Even stamps Azure AD, odd stamps AD FS.
    Alternate,
}

/// Simulated Azure Stack Hub stamps (admin ARM, Azure AD / AD FS, provider usage API) over HTTPS.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of stamps.
    #[arg(long, default_value_t = 1)]
    stamps: usize,
    /// Tenant subscriptions per stamp.
    #[arg(long, default_value_t = 50)]
    tenants: usize,
    /// Meters per tenant subscription.
    #[arg(long, default_value_t = 10)]
    meters: usize,
    /// Seed of all generated ids and usage.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to write the CA certificate (PEM) clients must trust.
    #[arg(long, default_value = "stamp-sim-ca.pem")]
    ca_out: PathBuf,
    /// Identity provider of the stamps.
    #[arg(long, value_enum, default_value_t = Flavour::Alternate)]
    auth: Flavour,
    /// Late rows (usage 1-6 h before the reported hour) per reported hour.
    #[arg(long, default_value_t = 5)]
    late_rows: usize,
    /// Rows per usage page.
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    /// Repeat the last row of each page at the start of the next.
    #[arg(long)]
    duplicates: bool,
    /// Serve casing/format variants of meter ids, resource URIs, types, tags and quantities.
    #[arg(long)]
    variants: bool,
    /// Delay before every usage page, in milliseconds.
    #[arg(long, default_value_t = 0)]
    page_delay_ms: u64,
    /// Every stamp answers every page after a chain's first with a `nextLink` back to the first
    /// (a looping chain), for measuring a collector against it.
    #[arg(long)]
    looping_next_link: bool,
    /// Every stamp pads every usage page with this many bytes of whitespace (a page over any cap).
    #[arg(long)]
    oversized_page_bytes: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StampLine {
    admin_arm_endpoint: String,
    login_endpoint: String,
    audience: String,
    admin_subscription_id: String,
    tenant_id: String,
    application_id: String,
    secret: String,
    is_adfs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stamps = (0..args.stamps)
        .map(|index| {
            let secret = Some(format!("stamp-sim-secret-{}-{index}", args.seed));
            let adfs = match args.auth {
                Flavour::Aad => false,
                Flavour::Adfs => true,
                Flavour::Alternate => index % 2 == 1,
            };
            let auth = if adfs {
                SimAuth::Adfs { secret, certificate_pem: None }
            } else {
                SimAuth::AzureAd { secret, certificate_pem: None }
            };
            StampSpec {
                tenants: args.tenants,
                meters_per_tenant: args.meters,
                late_rows_per_window: args.late_rows,
                duplicate_across_pages: args.duplicates,
                variants: args.variants,
                page_delay: Duration::from_millis(args.page_delay_ms),
                ..StampSpec::generated(args.seed, index, auth)
            }
        })
        .collect();
    let simulator =
        Simulator::start(SimulatorConfig { seed: args.seed, page_size: args.page_size, stamps }).await?;
    for stamp in simulator.stamps() {
        if args.looping_next_link {
            stamp.inject(stamp_sim::Fault::LoopingNextLink { count: u32::MAX });
        }
        if let Some(padding_bytes) = args.oversized_page_bytes {
            stamp.inject(stamp_sim::Fault::OversizedPage { count: u32::MAX, padding_bytes });
        }
    }
    std::fs::write(&args.ca_out, simulator.ca_pem())
        .with_context(|| format!("writing {}", args.ca_out.display()))?;
    for stamp in simulator.stamps() {
        let line = StampLine {
            admin_arm_endpoint: stamp.admin_arm_endpoint(),
            login_endpoint: stamp.login_endpoint(),
            audience: stamp.audience(),
            admin_subscription_id: stamp.admin_subscription_id(),
            tenant_id: stamp.tenant_id(),
            application_id: stamp.application_id(),
            secret: stamp.spec().auth.secret().unwrap_or_default().to_owned(),
            is_adfs: stamp.is_adfs(),
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    eprintln!("stamp-sim: CA written to {}; Ctrl-C to stop", args.ca_out.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
