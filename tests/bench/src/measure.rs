//! One measurement, start to finish: a simulator process, the stamps registered through the
//! `Registrar` the way operators register them, the collection in a process of its own, the database
//! checked against the simulator's ground truth, and (optionally) each stage alone.

use crate::process::{Load, cpu_seconds, run_child};
use crate::sim::{RowDigest, SimProcess, workload_args};
use crate::stages::{CollectResult, Files, StageResult};
use crate::workload::{Span, Workload, billing_subscription};
use anyhow::{Context, bail};
use azs_app::wiring::Services;
use azs_core::Secret;
use azs_core::ports::{ExportFilter, StatusReader, UsageLedger};
use azs_core::registration::StampRegistration;
use azs_core::stamp::StampId;
use azs_core::stamp::UsageQueryMode;
use azs_store_sqlite::SqliteStore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also measure pulling alone and writing alone.
    pub stages: bool,
    /// Where to create the measurement's directory (the system's temporary directory by default).
    pub work_dir: Option<PathBuf>,
    /// A profiler command line to run the collecting process under (e.g. `valgrind --tool=callgrind`).
    pub profile_collect: Option<String>,
}

/// Everything one measurement found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub workload: Workload,
    pub load_before: Load,
    pub load_after: Load,
    pub collect: CollectResult,
    /// CPU the simulator process used while the collector ran (it shares the machine's cores).
    pub simulator_cpu_seconds: f64,
    /// Rows the simulator serves for the collected span, all stamps.
    pub truth_rows: u64,
    /// Rows in the database afterwards, all stamps.
    pub stored_rows: u64,
    /// Every stamp's stored rows equal its ground truth (count and fingerprints), and every
    /// watermark reached the end of the span.
    pub verified: bool,
    pub pull_only: Option<StageResult>,
    pub write_only: Option<StageResult>,
}

impl Measurement {
    pub fn rows_per_second(&self) -> f64 {
        self.collect.rows_written as f64 / self.collect.seconds
    }

    pub fn peak_rss_mib(&self) -> f64 {
        self.collect.peak_rss_kib as f64 / 1024.0
    }

    /// The slower of the two stages alone, in rows per second.
    pub fn slower_stage_rows_per_second(&self) -> Option<f64> {
        Some(self.pull_only.as_ref()?.rows_per_second().min(self.write_only.as_ref()?.rows_per_second()))
    }
}

/// Measures `workload` once, in a fresh directory that is removed afterwards.
pub async fn measure(workload: &Workload, options: &Options) -> anyhow::Result<Measurement> {
    let dir = match &options.work_dir {
        Some(parent) => tempfile::Builder::new().prefix("azs-bench-").tempdir_in(parent)?,
        None => tempfile::Builder::new().prefix("azs-bench-").tempdir()?,
    };
    let files = Files { db: dir.path().join("usage.db"), secrets: dir.path().join("secrets.json") };
    let span = Span::ending_now(workload.hours);

    let mut sim = SimProcess::start(workload).await?;
    let stamp_ids = register(&files, &sim, workload, span).await?;

    let load_before = Load::now();
    let sim_cpu_before = cpu_seconds(sim.pid()).unwrap_or(0.0);
    let collect: CollectResult = child(
        [
            vec!["collect".to_owned(), "--to".into(), span.to.to_rfc3339()],
            files_args(&files),
            vec![
                "--concurrency".into(),
                workload.concurrency.to_string(),
                "--subscriber-concurrency".into(),
                workload.subscriber_concurrency.to_string(),
            ],
        ]
        .concat(),
        options.profile_collect.clone(),
    )
    .await?;
    let simulator_cpu_seconds = cpu_seconds(sim.pid()).unwrap_or(0.0) - sim_cpu_before;
    let load_after = Load::now();
    if !collect.failures.is_empty() {
        bail!("the collection failed: {}", collect.failures.join("; "));
    }

    let truth = sim.truth(span).await?;
    let (stored, watermarks_reached) = stored_digests(&files, &stamp_ids, span).await?;
    let verified = watermarks_reached && stored == truth;
    let (truth_rows, stored_rows) = (truth.iter().map(|d| d.rows).sum(), stored.iter().map(|d| d.rows).sum());

    let pull_only = if options.stages {
        let args = [
            vec![
                "pull".to_owned(),
                "--from".into(),
                span.from.to_rfc3339(),
                "--to".into(),
                span.to.to_rfc3339(),
            ],
            files_args(&files),
            vec!["--concurrency".into(), workload.concurrency.to_string()],
        ]
        .concat();
        Some(child::<StageResult>(args, None).await?)
    } else {
        None
    };
    sim.stop().await?;
    let write_only = if options.stages {
        let db = dir.path().join("write-only.db");
        let args =
            [vec!["write".to_owned(), "--db".into(), db.display().to_string()], workload_args(workload)]
                .concat();
        Some(child::<StageResult>(args, None).await?)
    } else {
        None
    };

    Ok(Measurement {
        workload: workload.clone(),
        load_before,
        load_after,
        collect,
        simulator_cpu_seconds,
        truth_rows,
        stored_rows,
        verified,
        pull_only,
        write_only,
    })
}

fn files_args(files: &Files) -> Vec<String> {
    vec![
        "--db".into(),
        files.db.display().to_string(),
        "--secrets".into(),
        files.secrets.display().to_string(),
    ]
}

async fn child<T: serde::de::DeserializeOwned + Send + 'static>(
    args: Vec<String>,
    wrapper: Option<String>,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(move || run_child(&args, wrapper.as_deref())).await?
}

/// Registers every simulated stamp as an operator would (`azs-usage stamp add`: validation,
/// verification against the stamp, the credential into the secret store), collecting from `span.from`.
async fn register(
    files: &Files,
    sim: &SimProcess,
    workload: &Workload,
    span: Span,
) -> anyhow::Result<Vec<StampId>> {
    let config = files.config(workload.concurrency, workload.subscriber_concurrency)?;
    let (store, secrets, source) = files.adapters(&config).await?;
    let services = Services::assemble(config, store, secrets, source);
    let query_mode = (workload.subscriber_concurrency > 0).then_some(UsageQueryMode::PerSubscriber);
    // Verifying a per-subscriber stamp asks every subscription for an hour: 2,000 of them at 200 ms
    // do not fit the connection test's 25 s budget, so the scale workload registers unverified
    // (`stamp add --no-verify`); the collection then proves the connection.
    let verify = query_mode.is_none();
    let mut ids = Vec::new();
    for (i, stamp) in sim.descriptor.stamps.iter().enumerate() {
        let registration = StampRegistration {
            name: Some(format!("bench-{i}")),
            admin_subscription_id: Some(stamp.admin_subscription_id.clone()),
            tenant_id: Some(stamp.tenant_id.clone()),
            application_id: Some(stamp.application_id.clone()),
            admin_arm_endpoint: Some(stamp.admin_arm_endpoint.clone()),
            is_adfs: Some(false),
            application_secret: Some(Secret::new(stamp.secret.clone())),
            ca_certificate: Some(sim.descriptor.ca_pem.clone()),
            collect_from: Some(span.from.to_rfc3339()),
            enabled: Some(true),
            query_mode,
            ..StampRegistration::default()
        };
        let view = services
            .registrar
            .register(registration, verify, &azs_core::audit::Actor::new("bench"))
            .await
            .with_context(|| format!("registering simulated stamp {i}"))?;
        for tenant in &stamp.tenant_subscriptions {
            services
                .mapper
                .set_mapping(
                    &view.stamp.id,
                    tenant,
                    &billing_subscription(tenant),
                    &azs_core::audit::Actor::new("bench"),
                )
                .await?;
        }
        ids.push(view.stamp.id);
    }
    Ok(ids)
}

/// The stored rows of each stamp (in `stamp_ids` order) as digests, and whether every watermark is at
/// the end of the span.
async fn stored_digests(
    files: &Files,
    stamp_ids: &[StampId],
    span: Span,
) -> anyhow::Result<(Vec<RowDigest>, bool)> {
    let db = files.db.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(db)).await??;
    let index: HashMap<&StampId, usize> = stamp_ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut digests = vec![RowDigest::default(); stamp_ids.len()];
    let mut strangers = 0u64;
    store
        .export_rows(&ExportFilter::default(), &mut |stored| {
            match index.get(&stored.stamp_id) {
                Some(&i) => digests[i].add(&stored.row),
                None => strangers += 1,
            }
            Ok(())
        })
        .await?;
    if strangers > 0 {
        bail!("{strangers} stored rows belong to no registered stamp");
    }
    let mut reached = true;
    for id in stamp_ids {
        let status = store.get_status(id).await?.with_context(|| format!("stamp {id} has no status"))?;
        reached &= status.watermark == span.to;
    }
    Ok((digests, reached))
}
