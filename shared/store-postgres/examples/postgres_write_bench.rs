//! Write throughput of the PostgreSQL store: hourly windows of synthetic usage rows committed one
//! after another into a fresh database, the way a collection run catches up on a stamp. The same
//! workload as `azs-store-sqlite`'s `write_bench`, so the two are side by side (named apart, as a
//! workspace's examples share one output folder).
//!
//! ```text
//! AZS_USAGE_TEST_POSTGRES="$(scripts/postgres.sh start)" \
//!     cargo run --release -p azs-store-postgres --example postgres_write_bench [-- WINDOWS ROWS_PER_WINDOW]
//! ```
//!
//! Defaults: 96 windows of 10,000 rows. Times only `commit_window` (keying, mapping, sending the
//! batches, inserting, moving the watermark, committing), not generating the rows. Reports the
//! database's size on disk (`pg_database_size`) per row. The database is dropped afterwards.
//! (scripts/postgres.sh runs its server with fsync off; a production server's commits cost more.)

use azs_core::SubscriptionMapping;
use azs_core::ports::{LeaseStore, MappingStore, StampRegistry, UsageLedger, WindowCommit, WindowWrite};
use azs_core::stamp::{Stamp, StampConnection, StampId, UsageQueryMode};
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use azs_store_postgres::{PostgresConfig, PostgresStore};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::time::{Duration as StdDuration, Instant};

const TENANTS: usize = 40;
/// Tenants 0..MAPPED have a billing subscription; the rest are written unmapped.
const MAPPED: usize = 36;
const METERS: [&str; 4] = [
    "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5",
    "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A",
    "6DAB500F-A4FD-49C4-956D-229BB9C8C793",
    "09F8879E-87E9-4305-A572-4B7BE209F857",
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("arguments are counts"));
    let windows = args.next().unwrap_or(96);
    let per_window = args.next().unwrap_or(10_000);

    let url = std::env::var("AZS_USAGE_TEST_POSTGRES")
        .expect("AZS_USAGE_TEST_POSTGRES names the server (scripts/postgres.sh start prints one)");
    let config = PostgresConfig::parse(&url).expect("a postgres:// URL");
    let admin = PostgresStore::lazy(config.clone()).expect("the pool builds");
    let name = format!("azs_usage_write_bench_{}", std::process::id());
    admin.create_database(&name).await.expect("the bench database is created");
    let store = PostgresStore::connect(config.with_database(&name)).await.expect("the database opens");
    let stamp = bench_stamp();
    store.insert_stamp(&stamp).await.unwrap();
    for tenant in 0..MAPPED {
        store
            .set_mapping(&SubscriptionMapping {
                stamp_id: stamp.id.clone(),
                external_subscription_id: tenant_id(tenant),
                billing_subscription_id: format!("billing-{tenant:04}"),
                updated_at: Utc::now(),
            })
            .await
            .unwrap();
    }
    let owner = "write-bench";
    assert!(store.try_acquire(&stamp.id, owner, StdDuration::from_secs(3600)).await.unwrap());

    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut committing = StdDuration::ZERO;
    let mut slowest = StdDuration::ZERO;
    let mut cpu_ticks = 0u64;
    let mut written = 0u64;
    for w in 0..windows {
        let window = ReportedWindow::hour(stamp.collect_from + Duration::hours(w as i64));
        let rows = synthetic_window(window, per_window, &mut seed);
        let began = Instant::now();
        let ticks_before = process_cpu_ticks();
        let receipt = store
            .commit_window(WindowCommit {
                stamp: &stamp.id,
                window,
                lease_owner: owner,
                write: WindowWrite::Advance,
                rows,
                quarantined: Vec::new(),
            })
            .await
            .expect("the window commits");
        let took = began.elapsed();
        cpu_ticks += process_cpu_ticks().saturating_sub(ticks_before);
        committing += took;
        slowest = slowest.max(took);
        written += receipt.rows_written;
        assert_eq!(receipt.rows_written, per_window as u64, "synthetic rows are all distinct");
    }

    let bytes = database_size(&url, &name).await;
    let secs = committing.as_secs_f64();
    println!("windows            {windows} x {per_window} rows");
    println!("rows written       {written}");
    println!(
        "commit time        {secs:.2} s (mean {:.1} ms, slowest {:.1} ms per window)",
        secs * 1000.0 / windows as f64,
        slowest.as_secs_f64() * 1000.0
    );
    println!("throughput         {:.0} rows/s", written as f64 / secs);
    if cpu_ticks > 0 {
        // The machine may be shared: CPU time says what the store costs whatever else runs.
        let cpu = cpu_ticks as f64 / TICKS_PER_SECOND;
        println!("cpu while commit   {cpu:.2} s ({:.0} rows per CPU-second)", written as f64 / cpu);
    }
    println!(
        "on disk            {:.1} MiB ({:.0} bytes per row)",
        bytes as f64 / 1048576.0,
        bytes as f64 / written as f64
    );
    drop(store);
    admin.drop_database(&name).await.expect("the bench database is dropped");
}

/// The database's size on disk, after a checkpoint (asked on a plain connection: the bench server
/// is local).
async fn database_size(url: &str, name: &str) -> u64 {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connects");
    tokio::spawn(connection);
    let _ = client.batch_execute("CHECKPOINT").await;
    let size: i64 = client.query_one("SELECT pg_database_size($1)", &[&name]).await.expect("a size").get(0);
    size as u64
}

/// Linux's USER_HZ, the unit of /proc/self/stat times.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU time of the whole process (all threads), in ticks; 0 where /proc is missing.
fn process_cpu_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

fn bench_stamp() -> Stamp {
    Stamp {
        id: StampId::new_random(),
        name: "bench".into(),
        connection: StampConnection {
            admin_subscription_id: "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f".into(),
            tenant_id: "4de154de-f8a8-4017-af41-df619da68155".into(),
            application_id: "11111111-2222-3333-4444-555555555555".into(),
            certificate_thumbprint: None,
            admin_arm_endpoint: "https://adminmanagement.bench.azs.example".into(),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: false,
            ca_certificate_pem: None,
        },
        credential_secret_name: "bench".into(),
        enabled: true,
        collect_from: "2026-10-01T00:00:00Z".parse().unwrap(),
        query_mode: UsageQueryMode::AllTenants,
        created_at: Utc::now(),
    }
}

fn tenant_id(n: usize) -> String {
    format!("{n:08x}-05b6-4b9d-9b5a-4e8f3c1d2a10")
}

/// One reported hour: every resource's usage for the hour before, in the API's field shapes and sizes.
fn synthetic_window(window: ReportedWindow, rows: usize, seed: &mut u64) -> Vec<UsageRow> {
    let usage_start: DateTime<Utc> = window.start - Duration::hours(1);
    (0..rows)
        .map(|i| {
            let tenant = i % TENANTS;
            let subscription = tenant_id(tenant).to_uppercase();
            let meter = METERS[i % METERS.len()];
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            UsageRow {
                resource_uri: format!(
                    "/subscriptions/{subscription}/resourceGroups/rg-app-{:03}/providers/Microsoft.Compute/virtualMachines/vm-{i:06}",
                    i / 100
                ),
                subscription_id: subscription,
                meter_id: meter.into(),
                usage_start,
                usage_end: window.start,
                quantity: Decimal::new((*seed % 100_000_000_000) as i64, 10),
                location: "local".into(),
                tags: Some(format!(r#"{{"costCenter":"CC-{:04}","owner":"team-{tenant}","env":"prod"}}"#, i % 977)),
                additional_info: Some(r#"{"ServiceType":"Standard_D2_v2","ImageType":"Windows","VCPUs":2}"#.into()),
            }
        })
        .collect()
}
