//! `fleet`: many simulated stamps of mixed sizes brought current through the queue path.
//!
//! The timer's side (`StampFanOut::enqueue_enabled`) puts one message per stamp on an in-memory queue
//! that behaves like SQS for this purpose (delayed visibility, at-least-once redelivery of a message
//! the worker leaves, a dead-letter list); a pool of workers bounded like the event source mapping's
//! `maximum_concurrency` takes messages and runs the worker's side (`StampFanOut::work`, the entry
//! point the Lambda and Azure queue workers call) with a time budget per invocation. Each stamp's
//! stored rows are then checked against the simulator's ground truth.
//!
//! Everything runs in this one process: the simulator, the workers and SQLite. So "peak RSS" is the
//! whole process (an upper bound for one worker, which on the platforms holds one stamp at a time), and
//! the workers share one store and one stamp client, as warm invocations of one instance would.

use crate::process::own_peak_rss_kib;
use crate::sim::{RowDigest, stamp_truth};
use crate::workload::{Span, settle_delay_until, stamp_secret};
use anyhow::{Context, bail};
use async_trait::async_trait;
use azs_app::config::AppConfig;
use azs_app::wiring::Services;
use azs_core::Secret;
use azs_core::fan_out::{DeadLetter, Delivery, StampWork, WorkResult};
use azs_core::ports::{ExportFilter, QueueError, StampQueue, StatusReader, UsageLedger};
use azs_core::registration::StampRegistration;
use azs_core::stamp::{StampId, UsageQueryMode};
use azs_secrets::FileSecretStore;
use azs_store_sqlite::SqliteStore;
use chrono::Utc;
use serde_json::json;
use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fleet to bring current, and the platform limits it is brought current under.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
pub struct Fleet {
    /// Simulated stamps in all.
    #[arg(long, default_value_t = 500)]
    pub stamps: usize,
    /// Of them, large per-subscriber stamps (the first ones).
    #[arg(long, default_value_t = 10)]
    pub large: usize,
    /// Every n-th of the other stamps is slow (`--slow-page-ms` before every usage page).
    #[arg(long, default_value_t = 25)]
    pub slow_every: usize,
    #[arg(long, default_value_t = 100)]
    pub slow_page_ms: u64,
    /// Reported hours every stamp is behind.
    #[arg(long, default_value_t = 24)]
    pub hours: i64,
    /// Small stamps: tenant subscriptions x meters each.
    #[arg(long, default_value_t = 5)]
    pub small_tenants: usize,
    #[arg(long, default_value_t = 4)]
    pub small_meters: usize,
    /// Large stamps: tenant subscriptions (one query each per window) x meters each.
    #[arg(long, default_value_t = 200)]
    pub large_tenants: usize,
    #[arg(long, default_value_t = 2)]
    pub large_meters: usize,
    /// Delay before every usage page of a large stamp (each subscriberId query pays it).
    #[arg(long, default_value_t = 20)]
    pub large_page_ms: u64,
    /// Workers at once: Terraform's `stamp_worker_max_concurrency` (the mapping's maximum_concurrency).
    #[arg(long, default_value_t = 20)]
    pub workers: usize,
    /// One invocation's time budget: Terraform's stamp-worker timeout (900 s) less 60 s.
    #[arg(long, default_value_t = 840)]
    pub budget_secs: u64,
    /// AZS_USAGE_MAX_SPAN_HOURS.
    #[arg(long, default_value_t = 6)]
    pub max_span_hours: u32,
    /// AZS_USAGE_SUBSCRIBER_CONCURRENCY.
    #[arg(long, default_value_t = 8)]
    pub subscriber_concurrency: usize,
    /// AZS_USAGE_CONTINUATION_DELAY in seconds (the queue's delay of a continuation).
    #[arg(long, default_value_t = 1)]
    pub continuation_delay_secs: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl Fleet {
    fn specs(&self) -> Vec<StampSpec> {
        (0..self.stamps)
            .map(|i| {
                let auth =
                    SimAuth::AzureAd { secret: Some(stamp_secret(self.seed, i)), certificate_pem: None };
                let (tenants, meters, delay) = if i < self.large {
                    (self.large_tenants, self.large_meters, self.large_page_ms)
                } else if self.slow_every > 0 && (i - self.large) % self.slow_every == self.slow_every - 1 {
                    (self.small_tenants, self.small_meters, self.slow_page_ms)
                } else {
                    (self.small_tenants, self.small_meters, 0)
                };
                StampSpec {
                    tenants,
                    meters_per_tenant: meters,
                    late_rows_per_window: 0,
                    duplicate_across_pages: false,
                    variants: false,
                    page_delay: Duration::from_millis(delay),
                    ..StampSpec::generated(self.seed, i, auth)
                }
            })
            .collect()
    }

    fn slow(&self) -> usize {
        (self.large..self.stamps)
            .filter(|i| self.slow_every > 0 && (i - self.large) % self.slow_every == self.slow_every - 1)
            .count()
    }
}

/// Public on-demand prices (USD), 2026: AWS Lambda x86 in us-east-1 ($0.0000166667 per GB-second,
/// $0.20 per million requests); Azure Functions Flex Consumption on demand ($0.000026 per GB-second,
/// $0.40 per million executions). Free monthly grants are left out.
const LAMBDA_GB_SECOND: f64 = 0.000_016_666_7;
const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
const FLEX_GB_SECOND: f64 = 0.000_026;
const FLEX_PER_MILLION_EXECUTIONS: f64 = 0.40;
/// Memory Terraform gives the stamp worker: AWS `stamp_worker_memory_mb`, Azure `flex_instance_memory_mb`.
const LAMBDA_MEMORY_GB: f64 = 256.0 / 1024.0;
const FLEX_MEMORY_GB: f64 = 2048.0 / 1024.0;
/// Azure's budget: `function_timeout_minutes` (30) less one minute.
const AZURE_BUDGET_SECS: f64 = 29.0 * 60.0;

/// A message on the in-memory queue.
struct Message {
    body: String,
    visible_at: Instant,
    attempt: u32,
}

/// SQS as far as the worker can tell: delayed visibility, and dead letters kept aside.
#[derive(Default)]
struct MemoryQueue {
    messages: Mutex<VecDeque<Message>>,
    dead: Mutex<Vec<DeadLetter>>,
}

impl MemoryQueue {
    fn push(&self, body: String, delay: Duration, attempt: u32) {
        let message = Message { body, visible_at: Instant::now() + delay, attempt };
        self.messages.lock().expect("queue lock").push_back(message);
    }

    /// The first visible message; `Err(())` when the queue is empty, `Ok(None)` when none is visible yet.
    fn take(&self) -> Result<Option<Message>, ()> {
        let mut messages = self.messages.lock().expect("queue lock");
        if messages.is_empty() {
            return Err(());
        }
        let now = Instant::now();
        Ok(messages.iter().position(|m| m.visible_at <= now).and_then(|i| messages.remove(i)))
    }
}

#[async_trait]
impl StampQueue for MemoryQueue {
    async fn enqueue(&self, work: &[StampWork], delay: Duration) -> Result<(), QueueError> {
        for w in work {
            self.push(w.to_json(), delay, 1);
        }
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        self.dead.lock().expect("queue lock").push(letter.clone());
        Ok(())
    }
}

/// What the workers did.
#[derive(Default)]
struct Invocations {
    durations: Vec<Duration>,
    continued: u64,
    retried: u64,
}

/// Brings the fleet current and prints one JSON line per figure.
pub async fn run(fleet: &Fleet) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sim =
        Simulator::start(SimulatorConfig { seed: fleet.seed, page_size: 100, stamps: fleet.specs() }).await?;
    let span = Span::ending_now(fleet.hours);
    let (db, secrets) = (dir.path().join("fleet.db"), dir.path().join("secrets.json"));
    let lookup = |name: &str| -> Option<String> {
        use azs_app::config as c;
        match name {
            c::DATABASE => Some(format!("sqlite:{}", db.display())),
            c::SECRETS => Some(format!("file:{}", secrets.display())),
            c::SUBSCRIBER_CONCURRENCY => Some(fleet.subscriber_concurrency.to_string()),
            c::MAX_SPAN_HOURS => Some(fleet.max_span_hours.to_string()),
            c::CONTINUATION_DELAY => Some(format!("{}s", fleet.continuation_delay_secs)),
            c::VERIFY_TRAILING_HOURS => Some(crate::stages::verify_trailing_hours()),
            _ => None,
        }
    };
    let mut config = AppConfig::from_lookup(lookup).map_err(|e| anyhow::anyhow!("{e}"))?;
    config.settle_delay = settle_delay_until(span.to, Utc::now());
    let store = {
        let db = db.clone();
        Arc::new(tokio::task::spawn_blocking(move || SqliteStore::open(db)).await??)
    };
    let source = azs_azure_stack::AzureStackClient::new(azs_azure_stack::ClientSettings {
        subscriber_concurrency: config.subscriber_concurrency,
        ..Default::default()
    })
    .with_allowed_hosts(Some(azs_azure_stack::hosts::StampHosts::parse("127.0.0.1").unwrap()));
    let file_secrets = FileSecretStore::new(&secrets, config.secret_prefix.clone());
    let services = Services::assemble(config, store.clone(), Arc::new(file_secrets), Arc::new(source));

    eprintln!("azs-usage-bench fleet: registering {} stamps", fleet.stamps);
    let ca = sim.ca_pem();
    let mut ids = Vec::with_capacity(fleet.stamps);
    for (i, stamp) in sim.stamps().iter().enumerate() {
        let registration = StampRegistration {
            name: Some(format!("fleet-{i}")),
            admin_subscription_id: Some(stamp.admin_subscription_id()),
            tenant_id: Some(stamp.tenant_id()),
            application_id: Some(stamp.application_id()),
            admin_arm_endpoint: Some(stamp.admin_arm_endpoint()),
            is_adfs: Some(false),
            application_secret: Some(Secret::new(stamp_secret(fleet.seed, i))),
            ca_certificate: Some(ca.clone()),
            collect_from: Some(span.from.to_rfc3339()),
            enabled: Some(true),
            query_mode: (i < fleet.large).then_some(UsageQueryMode::PerSubscriber),
            ..StampRegistration::default()
        };
        let view = services
            .registrar
            .register(registration, false, &azs_core::audit::Actor::new("bench"))
            .await
            .with_context(|| format!("stamp {i}"))?;
        ids.push(view.stamp.id);
    }

    eprintln!("azs-usage-bench fleet: the timer enqueues, {} workers collect", fleet.workers);
    let queue = Arc::new(MemoryQueue::default());
    let invocations = Arc::new(Mutex::new(Invocations::default()));
    let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    services.fan_out.enqueue_enabled(queue.as_ref()).await?;
    let budget = Duration::from_secs(fleet.budget_secs);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..fleet.workers.max(1) {
        let (queue, invocations, busy, fan_out) =
            (queue.clone(), invocations.clone(), busy.clone(), services.fan_out.clone());
        workers.spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            loop {
                busy.fetch_add(1, SeqCst);
                let message = match queue.take() {
                    Ok(Some(m)) => m,
                    other => {
                        busy.fetch_sub(1, SeqCst);
                        // Empty and nobody working who could add a continuation: all done.
                        if other.is_err() && busy.load(SeqCst) == 0 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let began = Instant::now();
                let deadline = tokio::time::Instant::now() + budget;
                let delivery = Delivery { body: &message.body, attempt: message.attempt };
                let result = fan_out.work(queue.as_ref(), delivery, Some(deadline)).await;
                let took = began.elapsed();
                let mut tally = invocations.lock().expect("tally lock");
                tally.durations.push(took);
                match result {
                    WorkResult::Done(report) => tally.continued += u64::from(report.continued),
                    WorkResult::Retry { .. } => {
                        tally.retried += 1;
                        queue.push(message.body.clone(), Duration::ZERO, message.attempt + 1);
                    }
                }
                drop(tally);
                busy.fetch_sub(1, SeqCst);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let wall = started.elapsed();
    let peak_rss_mib = own_peak_rss_kib() as f64 / 1024.0;

    eprintln!("azs-usage-bench fleet: checking every stamp against the ground truth");
    let (stored, rows) = stored_digests(&store, &ids).await?;
    let mut exact = 0usize;
    let mut current = 0usize;
    for (i, stamp) in sim.stamps().iter().enumerate() {
        let s = stamp.clone();
        let truth: RowDigest = tokio::task::spawn_blocking(move || stamp_truth(&s, span)).await?;
        exact += usize::from(stored[i] == truth);
        let status = store.get_status(&ids[i]).await?.context("a status")?;
        current += usize::from(status.watermark == span.to);
    }
    let dead = queue.dead.lock().expect("queue lock").len();

    let tally = invocations.lock().expect("tally lock");
    let busy_seconds: f64 = tally.durations.iter().map(Duration::as_secs_f64).sum();
    let longest = tally.durations.iter().max().copied().unwrap_or_default().as_secs_f64();
    let gb_seconds_per_million = |memory_gb: f64| busy_seconds * memory_gb / (rows as f64 / 1e6);
    // 1,000 stamps of this mix, every hour of a 730-hour month, one invocation per stamp and hour, each
    // taking this run's invocation seconds per stamp-hour. Run with `--hours 1` for the steady state:
    // then every invocation is one stamp's hourly invocation, its fixed cost (discovery, token,
    // status writes) included; a catch-up run spreads that cost over many hours and reads low.
    let seconds_per_stamp_hour = busy_seconds / (fleet.stamps as f64 * fleet.hours as f64);
    let month_invocations = 1000.0 * 730.0;
    let monthly = |memory_gb: f64, gb_second: f64, per_million: f64| {
        month_invocations * seconds_per_stamp_hour * memory_gb * gb_second
            + month_invocations / 1e6 * per_million
    };
    let lambda_gbs = gb_seconds_per_million(LAMBDA_MEMORY_GB);
    let flex_gbs = gb_seconds_per_million(FLEX_MEMORY_GB);
    let workload = json!({
        "stamps": fleet.stamps, "large": fleet.large, "slow": fleet.slow(), "hours": fleet.hours,
        "workers": fleet.workers, "budgetSeconds": fleet.budget_secs, "maxSpanHours": fleet.max_span_hours,
        "subscriberConcurrency": fleet.subscriber_concurrency, "seed": fleet.seed,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    });
    let figures = [
        ("wallSecondsToCurrent", json!(wall.as_secs_f64()), "s"),
        ("invocations", json!(tally.durations.len()), "count"),
        ("continuations", json!(tally.continued), "count"),
        ("redeliveries", json!(tally.retried), "count"),
        ("longestInvocationSeconds", json!(longest), "s"),
        ("longestInvocationShareOfAwsBudget", json!(longest / fleet.budget_secs as f64), "ratio"),
        ("longestInvocationShareOfAzureBudget", json!(longest / AZURE_BUDGET_SECS), "ratio"),
        ("rows", json!(rows), "rows"),
        ("rowsPerSecond", json!(rows as f64 / wall.as_secs_f64()), "rows/s"),
        ("peakRssMib", json!(peak_rss_mib), "MiB (whole process: simulator, workers and SQLite)"),
        ("invocationSecondsSum", json!(busy_seconds), "s"),
        ("invocationSecondsPerStampHour", json!(seconds_per_stamp_hour), "s"),
        ("lambdaGbSecondsPerMillionRows", json!(lambda_gbs), "GB-s at 256 MB"),
        ("flexGbSecondsPerMillionRows", json!(flex_gbs), "GB-s at 2048 MB"),
        (
            "lambdaUsdPerMonthFor1000Stamps",
            json!(monthly(LAMBDA_MEMORY_GB, LAMBDA_GB_SECOND, LAMBDA_PER_MILLION_REQUESTS)),
            "USD",
        ),
        (
            "flexUsdPerMonthFor1000Stamps",
            json!(monthly(FLEX_MEMORY_GB, FLEX_GB_SECOND, FLEX_PER_MILLION_EXECUTIONS)),
            "USD",
        ),
        ("stampsCurrent", json!(current), "count"),
        ("stampsEqualToGroundTruth", json!(exact), "count"),
        ("deadLetters", json!(dead), "count"),
    ];
    for (figure, value, unit) in figures {
        println!(
            "{}",
            json!({ "scenario": "fleet", "figure": figure, "value": value, "unit": unit, "workload": workload })
        );
    }
    drop(sim);
    if exact != fleet.stamps || current != fleet.stamps {
        bail!("{} of {} stamps current, {} equal to the ground truth", current, fleet.stamps, exact);
    }
    if longest > fleet.budget_secs as f64 {
        bail!("an invocation took {longest:.1} s, over its {} s budget", fleet.budget_secs);
    }
    Ok(())
}

/// Each stamp's stored rows as a digest (in `ids` order), and all stored rows.
async fn stored_digests(store: &SqliteStore, ids: &[StampId]) -> anyhow::Result<(Vec<RowDigest>, u64)> {
    let index: HashMap<&StampId, usize> = ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut digests = vec![RowDigest::default(); ids.len()];
    let rows = store
        .export_rows(&ExportFilter::default(), &mut |stored| {
            if let Some(&i) = index.get(&stored.stamp_id) {
                digests[i].add(&stored.row);
            }
            Ok(())
        })
        .await?;
    Ok((digests, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_fleet_is_brought_current_through_the_queue_path_exactly() {
        // Six stamps (one large per-subscriber, one slow), two hours behind, three workers: `run`
        // fails unless every stamp is current and equal to its ground truth within the budget.
        let fleet = Fleet {
            stamps: 6,
            large: 1,
            slow_every: 5,
            slow_page_ms: 20,
            hours: 2,
            small_tenants: 2,
            small_meters: 2,
            large_tenants: 10,
            large_meters: 1,
            large_page_ms: 0,
            workers: 3,
            budget_secs: 120,
            max_span_hours: 6,
            subscriber_concurrency: 4,
            continuation_delay_secs: 0,
            seed: 7,
        };
        assert_eq!(fleet.slow(), 1);
        run(&fleet).await.expect("the fleet is current and exact");
    }
}
