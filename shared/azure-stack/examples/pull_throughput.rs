//! How fast usage rows come out of a stamp: an end-to-end pull from `stamp-sim` (HTTPS, paging,
//! parsing, on one machine with the simulator), and the parser alone over the same pages in memory.
//!
//! ```sh
//! cargo run --release -p azs-azure-stack --example pull_throughput [hours] [tenants] [meters]
//! ```
//! Prints figures; asserts nothing about speed.

use azs_azure_stack::usage::{parse_usage_page, usage_url};
use azs_azure_stack::{AzureStackClient, ClientSettings};
use azs_core::ports::UsageSource;
use azs_core::stamp::UsageQueryMode;
use azs_core::window::{ReportedWindow, floor_hour};
use azs_core::{Credential, Secret, Stamp, StampConnection, StampId};
use chrono::{Duration, Utc};
use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::time::Instant;

const SECRET: &str = "throughput-secret";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arg =
        |i: usize, default: usize| std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (hours, tenants, meters) = (arg(1, 24) as i64, arg(2, 100), arg(3, 40));

    let mut spec =
        StampSpec::generated(1, 0, SimAuth::Adfs { secret: Some(SECRET.into()), certificate_pem: None });
    spec.tenants = tenants;
    spec.meters_per_tenant = meters;
    spec.late_rows_per_window = 50;
    let sim = Simulator::start(SimulatorConfig { seed: 1, page_size: 1000, stamps: vec![spec] }).await?;
    let s = sim.stamp(0);
    let stamp = Stamp {
        id: StampId("throughput".into()),
        name: "throughput".into(),
        connection: StampConnection {
            admin_subscription_id: s.admin_subscription_id(),
            tenant_id: "adfs".into(),
            application_id: s.application_id(),
            certificate_thumbprint: None,
            admin_arm_endpoint: s.admin_arm_endpoint(),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: true,
            ca_certificate_pem: Some(sim.ca_pem()),
        },
        credential_secret_name: "-".into(),
        enabled: true,
        collect_from: Utc::now(),
        query_mode: UsageQueryMode::AllTenants,
        created_at: Utc::now(),
    };
    let end = floor_hour(Utc::now()) - Duration::hours(2);
    let window = ReportedWindow::new(end - Duration::hours(hours), end).expect("whole hours");

    // End to end: HTTPS from the simulator (sharing this machine's cores), paging, parsing.
    let client = AzureStackClient::new(ClientSettings::default())
        .with_allowed_hosts(Some(azs_azure_stack::hosts::StampHosts::parse("127.0.0.1").unwrap()));
    let session = client.connect(&stamp, &Credential::ApplicationSecret(Secret::new(SECRET))).await?;
    let started = Instant::now();
    let mut rows = 0usize;
    let summary = session.pull_pages(window, &[], &mut |page| rows += page.rows.len()).await?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "end to end: {rows} rows in {} pages over {hours} h in {took:.2} s = {:.0} rows/s",
        summary.pages,
        rows as f64 / took
    );

    // The parser alone: fetch the same pages raw, then parse them from memory.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes())?])
        .build()?;
    let token: serde_json::Value = http
        .post(s.token_endpoint())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &s.application_id()),
            ("resource", &s.audience()),
            ("client_secret", SECRET),
        ])
        .send()
        .await?
        .json()
        .await?;
    let bearer = token["access_token"].as_str().unwrap_or_default().to_owned();
    let mut bodies = Vec::new();
    let mut next = Some(usage_url(&s.admin_arm_endpoint(), &s.admin_subscription_id(), window, None)?);
    while let Some(url) = next.take() {
        let body = http.get(url).bearer_auth(&bearer).send().await?.error_for_status()?.bytes().await?;
        next = parse_usage_page(&body)?.next_link.map(|l| reqwest::Url::parse(&l)).transpose()?;
        bodies.push(body);
    }
    let bytes: usize = bodies.iter().map(|b| b.len()).sum();
    let rounds = 5;
    let (started, cpu_started) = (Instant::now(), thread_cpu_seconds());
    let mut parsed = 0usize;
    for _ in 0..rounds {
        for body in &bodies {
            parsed += parse_usage_page(body)?.rows.len();
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "parser alone (one core): {parsed} rows ({} bytes/row) in {took:.2} s = {:.0} rows/s",
        bytes / (parsed / rounds).max(1),
        parsed as f64 / took
    );
    if let (Some(a), Some(b)) = (cpu_started, thread_cpu_seconds()) {
        // On a busy machine wall time overstates the parser's cost; its own CPU time does not.
        println!("parser alone, per CPU-second of the parsing thread: {:.0} rows/s", parsed as f64 / (b - a));
    }
    Ok(())
}

/// CPU time this thread has run, from Linux's `/proc/thread-self/schedstat` (nanoseconds on CPU).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}
