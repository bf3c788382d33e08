//! The measured processes, each run as a child of the orchestrator:
//! - [`collect`]: the real `Collector`, wired like every entry point wires it, over the registered
//!   stamps (end to end: HTTPS, paging, parsing, mapping, writing, watermarks, statuses);
//! - [`pull_only`]: the stamp client alone, pulling the same windows and discarding the rows;
//! - [`write_only`]: the store alone, committing the same number of rows from memory.
//!
//! Each prints one JSON result with its own peak resident memory and CPU time.

use crate::process::{cpu_seconds, own_peak_rss_kib};
use crate::sim::{start_in_process, usage_row};
use crate::timing::{CommitTimer, StageTime, TimedSource, Timeline};
use crate::workload::{Span, Workload, billing_subscription, settle_delay_until};
use anyhow::{Context, bail};
use azs_app::config::AppConfig;
use azs_app::wiring::Services;
use azs_azure_stack::{AzureStackClient, ClientSettings};
use azs_core::SubscriptionMapping;
use azs_core::collect::{RunRequest, Silent};
use azs_core::observed::ObservedStore;
use azs_core::ports::{
    LeaseStore, MappingStore, SecretStore, StampRegistry, StampSession, Store, UsageLedger, UsageSource,
    WindowCommit, WindowWrite,
};
use azs_core::stamp::{Credential, Stamp, StampConnection, StampId, UsageQueryMode};
use azs_core::window::ReportedWindow;
use azs_secrets::FileSecretStore;
use azs_store_sqlite::SqliteStore;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Where a measurement keeps its database and secrets.
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct Files {
    /// The SQLite database file.
    #[arg(long)]
    pub db: PathBuf,
    /// The secret file (AZS_USAGE_SECRETS=file:PATH).
    #[arg(long)]
    pub secrets: PathBuf,
}

/// `AZS_USAGE_VERIFY_TRAILING_HOURS` for a workload: 0 unless set. The workloads measure collection;
/// the daily verify (on by default: the first run of a day re-pulls the last 24 collected hours
/// without writing) doubles a first run of the day's requests. Measure it by setting the variable
/// (e.g. 24) for the benchmark.
pub fn verify_trailing_hours() -> String {
    std::env::var(azs_app::config::VERIFY_TRAILING_HOURS).unwrap_or_else(|_| "0".into())
}

impl Files {
    /// The configuration an operator would set for these files, with `concurrency` (and
    /// `subscriber_concurrency` when not 0).
    pub fn config(&self, concurrency: usize, subscriber_concurrency: usize) -> anyhow::Result<AppConfig> {
        let (db, secrets) =
            (format!("sqlite:{}", self.db.display()), format!("file:{}", self.secrets.display()));
        AppConfig::from_lookup(|name| match name {
            azs_app::config::DATABASE => Some(db.clone()),
            azs_app::config::SECRETS => Some(secrets.clone()),
            azs_app::config::CONCURRENCY => Some(concurrency.to_string()),
            azs_app::config::SUBSCRIBER_CONCURRENCY if subscriber_concurrency > 0 => {
                Some(subscriber_concurrency.to_string())
            }
            azs_app::config::VERIFY_TRAILING_HOURS => Some(verify_trailing_hours()),
            _ => None,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// The production adapters over these files: SQLite store, file secrets, the stamp client.
    pub async fn adapters(
        &self,
        config: &AppConfig,
    ) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn SecretStore>, Arc<dyn UsageSource>)> {
        let db = self.db.clone();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(db)).await??;
        let secrets = FileSecretStore::new(&self.secrets, config.secret_prefix.clone());
        let source = AzureStackClient::new(ClientSettings {
            subscriber_concurrency: config.subscriber_concurrency,
            ..ClientSettings::default()
        })
        .with_allowed_hosts(Some(azs_azure_stack::hosts::StampHosts::parse("127.0.0.1").unwrap()));
        Ok((Arc::new(store), Arc::new(secrets), Arc::new(source)))
    }
}

/// What one collection run did and cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectResult {
    pub rows_written: u64,
    pub windows: usize,
    pub seconds: f64,
    pub pulling: StageTime,
    pub writing: StageTime,
    pub peak_rss_kib: u64,
    pub cpu_seconds: f64,
    /// One line per stamp that did not succeed.
    pub failures: Vec<String>,
}

/// One collection run of every registered stamp up to `until`, timed around `Collector::run`.
pub async fn collect(
    files: &Files,
    until: DateTime<Utc>,
    concurrency: usize,
    subscriber_concurrency: usize,
) -> anyhow::Result<CollectResult> {
    let mut config = files.config(concurrency, subscriber_concurrency)?;
    let (store, secrets, source) = files.adapters(&config).await?;
    let timeline = Timeline::start();
    let store: Arc<dyn Store> = Arc::new(ObservedStore::new(store, CommitTimer(timeline.clone())));
    let source: Arc<dyn UsageSource> = Arc::new(TimedSource { inner: source, timeline: timeline.clone() });
    config.settle_delay = settle_delay_until(until, Utc::now());
    let services = Services::assemble(config, store, secrets, source);

    let cpu_before = cpu_seconds(None).unwrap_or(0.0);
    let started = Instant::now();
    let summary = services.collector.run(RunRequest::default(), Arc::new(Silent)).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(None).unwrap_or(0.0) - cpu_before;

    let failures = summary
        .stamps
        .iter()
        .filter(|s| s.outcome != azs_core::RunOutcome::Succeeded)
        .map(|s| format!("{} {}: {}", s.name, s.outcome, s.error.as_deref().unwrap_or("-")))
        .collect();
    Ok(CollectResult {
        rows_written: summary.rows_written(),
        windows: summary.stamps.iter().map(|s| s.windows_committed).sum(),
        seconds,
        pulling: timeline.pulling(),
        writing: timeline.writing(),
        peak_rss_kib: own_peak_rss_kib(),
        cpu_seconds: cpu,
        failures,
    })
}

/// What a stage alone did and cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageResult {
    pub rows: u64,
    /// The time the stage itself took (for writing: inside `commit_window` only).
    pub seconds: f64,
    pub peak_rss_kib: u64,
    pub cpu_seconds: f64,
}

impl StageResult {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

/// Pulls every registered stamp's windows in `span` through a `UsageSource` session, as the collector
/// does (stamps concurrently up to `concurrency`, window after window), and throws the rows away.
pub async fn pull_only(files: &Files, span: Span, concurrency: usize) -> anyhow::Result<StageResult> {
    // The stamps' query mode is in the store; the pull alone keeps the default subscriber bound.
    let config = files.config(concurrency, 0)?;
    let (store, secrets, source) = files.adapters(&config).await?;
    let stamps = store.list_stamps().await?;
    let windows: Vec<ReportedWindow> =
        ReportedWindow::new(span.from, span.to).context("a span of whole hours")?.split_hours().collect();

    let cpu_before = cpu_seconds(None).unwrap_or(0.0);
    let started = Instant::now();
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for stamp in stamps {
        let (permits, secrets, source, windows) =
            (permits.clone(), secrets.clone(), source.clone(), windows.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let secret = secrets
                .get_secret(&stamp.credential_secret_name)
                .await?
                .with_context(|| format!("no credential for stamp {}", stamp.name))?;
            let credential = Credential::from_secret(&stamp.credential_secret_name, &secret)?;
            let session: Box<dyn StampSession> = source.connect(&stamp, &credential).await?;
            let mut rows = 0u64;
            for window in windows {
                session.pull_pages(window, &[], &mut |page| rows += page.rows.len() as u64).await?;
            }
            anyhow::Ok(rows)
        });
    }
    let mut rows = 0;
    while let Some(done) = tasks.join_next().await {
        rows += done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(StageResult {
        rows,
        seconds,
        peak_rss_kib: own_peak_rss_kib(),
        cpu_seconds: cpu_seconds(None).unwrap_or(0.0) - cpu_before,
    })
}

/// Commits the workload's rows into a fresh database at `db` through `commit_window`, one window per
/// stamp and hour (stamps taking turns hour by hour, as concurrent stamps do), timing only the commits.
/// The rows are the simulator's own, generated in memory before each commit.
pub async fn write_only(workload: &Workload, db: &Path) -> anyhow::Result<StageResult> {
    let span = Span::ending_now(workload.hours);
    let sim = start_in_process(workload).await?;
    let path = db.to_owned();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(path)).await??;
    let owner = "azs-bench-write-only";
    let mut stamps = Vec::new();
    for (i, handle) in sim.stamps().iter().enumerate() {
        let stamp = Stamp {
            id: StampId::new_random(),
            name: format!("bench-{i}"),
            connection: StampConnection {
                admin_subscription_id: handle.admin_subscription_id(),
                tenant_id: handle.tenant_id(),
                application_id: handle.application_id(),
                certificate_thumbprint: None,
                admin_arm_endpoint: handle.admin_arm_endpoint(),
                token_request_resource_url: None,
                authority_endpoint_url: None,
                is_adfs: false,
                ca_certificate_pem: None,
            },
            credential_secret_name: format!("azs-usage/bench-{i}"),
            enabled: true,
            collect_from: span.from,
            query_mode: UsageQueryMode::AllTenants,
            created_at: Utc::now(),
        };
        store.insert_stamp(&stamp).await?;
        if workload.mapped {
            for tenant in handle.tenant_subscriptions() {
                store
                    .set_mapping(&SubscriptionMapping {
                        stamp_id: stamp.id.clone(),
                        billing_subscription_id: billing_subscription(&tenant),
                        external_subscription_id: tenant,
                        updated_at: Utc::now(),
                    })
                    .await?;
            }
        }
        if !store.try_acquire(&stamp.id, owner, std::time::Duration::from_secs(3600)).await? {
            bail!("the fresh database's lease is taken");
        }
        stamps.push((stamp.id, handle.clone()));
    }

    let cpu_before = cpu_seconds(None).unwrap_or(0.0);
    let (mut rows, mut committing) = (0u64, std::time::Duration::ZERO);
    for window in ReportedWindow::new(span.from, span.to).context("whole hours")?.split_hours() {
        for (id, handle) in &stamps {
            let batch: Vec<_> =
                handle.ground_truth(window.start, window.end).into_iter().map(usage_row).collect();
            let expected = batch.len() as u64;
            let began = Instant::now();
            let receipt = store
                .commit_window(WindowCommit {
                    stamp: id,
                    window,
                    lease_owner: owner,
                    write: WindowWrite::Advance,
                    rows: batch,
                    quarantined: Vec::new(),
                })
                .await?;
            committing += began.elapsed();
            if receipt.rows_written != expected {
                bail!("window {window}: {} of {expected} rows written", receipt.rows_written);
            }
            rows += receipt.rows_written;
        }
    }
    // Generating the rows costs CPU too; what the store alone costs is not separable here, so the CPU
    // figure covers both.
    Ok(StageResult {
        rows,
        seconds: committing.as_secs_f64(),
        peak_rss_kib: own_peak_rss_kib(),
        cpu_seconds: cpu_seconds(None).unwrap_or(0.0) - cpu_before,
    })
}
