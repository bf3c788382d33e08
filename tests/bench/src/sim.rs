//! The simulated stamps, in a process of their own so that the collector's memory and CPU are measured
//! without them. The child prints one line describing its stamps, then answers ground-truth requests
//! (one JSON line each) on standard input until standard input closes.

use crate::workload::{Span, Workload, stamp_secret};
use anyhow::{Context, bail};
use azs_core::usage::UsageRow;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use stamp_sim::{SimStampHandle, Simulator, SimulatorConfig, TruthRow};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// What a collector needs to register the simulated stamps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimDescriptor {
    /// The CA that signed every stamp's certificate: the only one to trust.
    pub ca_pem: String,
    pub stamps: Vec<SimStamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimStamp {
    pub admin_arm_endpoint: String,
    pub admin_subscription_id: String,
    pub tenant_id: String,
    pub application_id: String,
    pub secret: String,
    /// Only for a mapped workload (empty otherwise).
    pub tenant_subscriptions: Vec<String>,
}

/// The rows a stamp serves for a span: how many, and the sum of their fingerprints (equal sums over
/// equal counts mean the same rows, whatever their order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDigest {
    pub rows: u64,
    pub fingerprint_sum: u64,
}

impl RowDigest {
    pub fn add(&mut self, row: &UsageRow) {
        self.rows += 1;
        self.fingerprint_sum = self.fingerprint_sum.wrapping_add(row.key().halves().0 as u64);
    }
}

/// A ground-truth row as the collector stores it: the served text parsed the way the stamp client
/// parses it.
pub fn usage_row(truth: TruthRow) -> UsageRow {
    UsageRow {
        quantity: azs_azure_stack::usage::parse_quantity(&truth.quantity)
            .unwrap_or_else(|| panic!("the simulator serves decimal quantities, not {:?}", truth.quantity)),
        subscription_id: truth.subscription_id,
        meter_id: truth.meter_id,
        usage_start: truth.usage_start,
        usage_end: truth.usage_end,
        resource_uri: truth.resource_uri,
        location: truth.location,
        tags: truth.tags,
        additional_info: truth.additional_info,
    }
}

/// The ground truth of one stamp over `span`, generated hour by hour (never all rows at once).
pub fn stamp_truth(stamp: &SimStampHandle, span: Span) -> RowDigest {
    let mut digest = RowDigest::default();
    let mut hour = span.from;
    while hour < span.to {
        for truth in stamp.ground_truth(hour, hour + Duration::hours(1)) {
            digest.add(&usage_row(truth));
        }
        hour += Duration::hours(1);
    }
    digest
}

/// Starts the simulator in this process for `workload`.
pub async fn start_in_process(workload: &Workload) -> anyhow::Result<Simulator> {
    Simulator::start(SimulatorConfig {
        seed: workload.seed,
        page_size: workload.page_size,
        stamps: workload.stamp_specs(),
    })
    .await
}

/// The child's side: serve until standard input closes.
pub async fn serve(workload: &Workload) -> anyhow::Result<()> {
    let sim = start_in_process(workload).await?;
    let descriptor = SimDescriptor {
        ca_pem: sim.ca_pem(),
        stamps: sim
            .stamps()
            .iter()
            .enumerate()
            .map(|(i, s)| SimStamp {
                admin_arm_endpoint: s.admin_arm_endpoint(),
                admin_subscription_id: s.admin_subscription_id(),
                tenant_id: s.tenant_id(),
                application_id: s.application_id(),
                secret: stamp_secret(workload.seed, i),
                tenant_subscriptions: if workload.mapped { s.tenant_subscriptions() } else { Vec::new() },
            })
            .collect(),
    };
    println!("{}", serde_json::to_string(&descriptor)?);
    let mut requests = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = requests.next_line().await? {
        let span: Span = serde_json::from_str(&line).context("a ground-truth request")?;
        let stamps = sim.stamps().to_vec();
        let truth: Vec<RowDigest> =
            tokio::task::spawn_blocking(move || stamps.iter().map(|s| stamp_truth(s, span)).collect())
                .await?;
        println!("{}", serde_json::to_string(&truth)?);
    }
    Ok(())
}

/// The parent's side: a running simulator child.
pub struct SimProcess {
    child: Child,
    requests: Option<ChildStdin>,
    answers: Lines<BufReader<ChildStdout>>,
    pub descriptor: SimDescriptor,
}

impl SimProcess {
    pub async fn start(workload: &Workload) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("sim")
            .args(workload_args(workload))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the simulator process")?;
        let requests = child.stdin.take();
        let mut answers = BufReader::new(child.stdout.take().context("the simulator's stdout")?).lines();
        let Some(first) = answers.next_line().await? else {
            bail!("the simulator process ended before describing its stamps");
        };
        let descriptor = serde_json::from_str(&first).context("the simulator's stamp description")?;
        Ok(Self { child, requests, answers, descriptor })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Ground truth of every stamp over `span`, in stamp order.
    pub async fn truth(&mut self, span: Span) -> anyhow::Result<Vec<RowDigest>> {
        let requests = self.requests.as_mut().context("the simulator is stopping")?;
        requests.write_all(format!("{}\n", serde_json::to_string(&span)?).as_bytes()).await?;
        requests.flush().await?;
        let answer = self.answers.next_line().await?.context("the simulator process ended")?;
        Ok(serde_json::from_str(&answer)?)
    }

    /// Closes its standard input and waits for it to end.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        drop(self.requests.take());
        let status = self.child.wait().await?;
        if !status.success() {
            bail!("the simulator process ended with {status}");
        }
        Ok(())
    }
}

/// The command-line flags that describe `workload` (see [`Workload`]'s `clap::Args`).
pub fn workload_args(w: &Workload) -> Vec<String> {
    [
        ("--stamps", w.stamps.to_string()),
        ("--tenants", w.tenants.to_string()),
        ("--meters", w.meters.to_string()),
        ("--hours", w.hours.to_string()),
        ("--page-size", w.page_size.to_string()),
        ("--page-delay-ms", w.page_delay_ms.to_string()),
        ("--concurrency", w.concurrency.to_string()),
        ("--seed", w.seed.to_string()),
        ("--subscriber-concurrency", w.subscriber_concurrency.to_string()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .chain(w.mapped.then(|| "--mapped".to_owned()))
    .collect()
}
