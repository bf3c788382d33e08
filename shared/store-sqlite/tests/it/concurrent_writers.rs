//! Several runs collecting the same stamps into ONE database file at once — separate stores in one
//! process, and separate processes — never store a window twice and never lose one: leases keep runs
//! apart, and the watermark check inside each commit fences the stragglers.
//!
//! Every run tags the rows it writes with its own name, so a window committed by two runs would show up
//! as twice the rows (the row key alone would hide an identical second copy).

use azs_core::ports::{
    ExportFilter, LeaseStore, StampRegistry, StatusReader, StoreError, UsageLedger, WindowCommit, WindowWrite,
};
use azs_core::stamp::{Stamp, StampConnection, StampId, UsageQueryMode};
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use azs_store_sqlite::SqliteStore;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration as StdDuration;

const STAMPS: usize = 3;
const HOURS: i64 = 24;
const ROWS_PER_WINDOW: usize = 200;
const CHILD_DB: &str = "AZS_SQLITE_TEST_CHILD_DB";
const CHILD_OWNER: &str = "AZS_SQLITE_TEST_CHILD_OWNER";

fn collect_from() -> DateTime<Utc> {
    "2026-11-01T00:00:00Z".parse().unwrap()
}

fn horizon() -> DateTime<Utc> {
    collect_from() + Duration::hours(HOURS)
}

fn stamp(n: usize) -> Stamp {
    Stamp {
        id: StampId(format!("00000000-0000-4000-8000-{n:012}")),
        name: format!("stamp-{n}"),
        connection: StampConnection {
            admin_subscription_id: "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f".into(),
            tenant_id: "4de154de-f8a8-4017-af41-df619da68155".into(),
            application_id: "11111111-2222-3333-4444-555555555555".into(),
            certificate_thumbprint: None,
            admin_arm_endpoint: format!("https://adminmanagement.region{n}.azs.example"),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: false,
            ca_certificate_pem: None,
        },
        credential_secret_name: format!("stamp-{n}"),
        enabled: true,
        collect_from: collect_from(),
        query_mode: UsageQueryMode::AllTenants,
        created_at: collect_from(),
    }
}

/// What the API reports for a window, tagged with the run that pulled it.
fn pulled(window: ReportedWindow, owner: &str) -> Vec<UsageRow> {
    (0..ROWS_PER_WINDOW)
        .map(|i| UsageRow {
            subscription_id: format!("{:08x}-05b6-4b9d-9b5a-4e8f3c1d2a10", i % 7),
            meter_id: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5".into(),
            usage_start: window.start - Duration::hours(1),
            usage_end: window.start,
            quantity: Decimal::new(i as i64 + 1, 2),
            resource_uri: format!(
                "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-{i}"
            ),
            location: "local".into(),
            tags: Some(format!(r#"{{"pulledBy":"{owner}"}}"#)),
            additional_info: None,
        })
        .collect()
}

/// What one run saw: windows it committed, and commits that were fenced off.
#[derive(Debug, Default)]
struct RunReport {
    committed: u64,
    fenced: u64,
}

/// A collection run over every stamp, as the collection loop does it — plus, every few windows, a
/// straggler's commit: it re-reads nothing and commits the window it planned before a pause, after its
/// short lease may have lapsed and another run may have moved on.
async fn collect_until_done(store: SqliteStore, owner: String) -> RunReport {
    let mut report = RunReport::default();
    let ttl = StdDuration::from_millis(300);
    let mut straggle = 0u32;
    loop {
        let mut done = 0;
        for n in 0..STAMPS {
            let id = stamp(n).id;
            if !store.try_acquire(&id, &owner, ttl).await.unwrap() {
                continue;
            }
            loop {
                let watermark = store.get_status(&id).await.unwrap().unwrap().watermark;
                if watermark >= horizon() {
                    done += 1;
                    break;
                }
                let window = ReportedWindow::hour(watermark);
                let rows = pulled(window, &owner);
                straggle += 1;
                if straggle.is_multiple_of(5) {
                    // Stall past the lease, then come back as if nothing happened.
                    tokio::time::sleep(ttl + StdDuration::from_millis(50)).await;
                    let _ = store.try_acquire(&id, &owner, ttl).await.unwrap();
                }
                let commit = WindowCommit {
                    stamp: &id,
                    window,
                    lease_owner: &owner,
                    write: WindowWrite::Advance,
                    rows: rows.to_vec(),
                    quarantined: Vec::new(),
                };
                match store.commit_window(commit).await {
                    Ok(receipt) => {
                        assert_eq!(receipt.rows_written, ROWS_PER_WINDOW as u64, "{owner}: {window}");
                        assert_eq!(receipt.duplicates, 0);
                        report.committed += 1;
                    }
                    Err(StoreError::Fenced { .. }) => {
                        report.fenced += 1;
                        break;
                    }
                    Err(e) => panic!("{owner}: {window}: {e}"),
                }
                if !store.renew(&id, &owner, ttl).await.unwrap() {
                    break;
                }
            }
            store.release(&id, &owner).await.unwrap();
        }
        if done == STAMPS {
            return report;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

async fn register_stamps(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).unwrap();
    for n in 0..STAMPS {
        store.insert_stamp(&stamp(n)).await.unwrap();
    }
    store
}

/// Every window of every stamp is stored exactly once, by exactly one run, and each watermark is at
/// the horizon.
async fn assert_each_window_stored_once(store: &SqliteStore) {
    for n in 0..STAMPS {
        let id = stamp(n).id;
        assert_eq!(store.get_status(&id).await.unwrap().unwrap().watermark, horizon());
        let mut windows: BTreeMap<DateTime<Utc>, (usize, Vec<String>)> = BTreeMap::new();
        store
            .export_rows(&ExportFilter { stamps: vec![id.clone()], ..Default::default() }, &mut |r| {
                let entry = windows.entry(r.window.start).or_default();
                entry.0 += 1;
                let by = r.row.tags.unwrap_or_default();
                if !entry.1.contains(&by) {
                    entry.1.push(by);
                }
                Ok(())
            })
            .await
            .unwrap();
        let expected: Vec<DateTime<Utc>> = (0..HOURS).map(|h| collect_from() + Duration::hours(h)).collect();
        assert_eq!(
            windows.keys().copied().collect::<Vec<_>>(),
            expected,
            "stamp {n}: every window, none lost"
        );
        for (start, (rows, writers)) in &windows {
            assert_eq!(*rows, ROWS_PER_WINDOW, "stamp {n} window {start}: stored once ({writers:?})");
            assert_eq!(writers.len(), 1, "stamp {n} window {start}: written by one run");
        }
    }
}

async fn runs_on_one_file(runs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let setup = register_stamps(&path).await;

    let mut tasks = tokio::task::JoinSet::new();
    for r in 0..runs {
        let store = SqliteStore::open(&path).unwrap();
        tasks.spawn(collect_until_done(store, format!("run-{r}")));
    }
    let (mut committed, mut fenced) = (0, 0);
    while let Some(report) = tasks.join_next().await {
        let report = report.unwrap();
        committed += report.committed;
        fenced += report.fenced;
    }
    println!("{runs} runs: {committed} windows committed, {fenced} stale commits fenced");
    assert!(fenced > 0, "stragglers came back after losing their lease, and were fenced");

    assert_eq!(committed, STAMPS as u64 * HOURS as u64, "commits that succeeded = windows");
    assert_each_window_stored_once(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_store_every_window_exactly_once() {
    runs_on_one_file(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_stores_on_one_file_store_every_window_exactly_once() {
    runs_on_one_file(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_one_file_store_every_window_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let setup = register_stamps(&path).await;

    // The same test binary, started again to run only the child below against this file.
    let children: Vec<_> = (0..4)
        .map(|r| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "concurrent_writers::child_process_collects_until_done",
                    "--include-ignored",
                    "--nocapture",
                ])
                .env(CHILD_DB, &path)
                .env(CHILD_OWNER, format!("process-{r}"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut committed, mut fenced) = (0u64, 0u64);
    for child in children {
        let out = tokio::task::block_in_place(|| child.wait_with_output().unwrap());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        committed += stdout
            .lines()
            .find_map(|l| l.strip_prefix("committed="))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .expect("the child reports its commits");
        fenced += stdout
            .lines()
            .find_map(|l| l.strip_prefix("fenced="))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    println!("4 processes: {committed} windows committed, {fenced} stale commits fenced");
    assert!(fenced > 0, "stragglers came back after losing their lease, and were fenced");

    assert_eq!(committed, STAMPS as u64 * HOURS as u64, "commits that succeeded = windows");
    assert_each_window_stored_once(&setup).await;
}

/// The child side of the test above; does nothing when run on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by four_processes_on_one_file_store_every_window_exactly_once"]
async fn child_process_collects_until_done() {
    let (Ok(path), Ok(owner)) = (std::env::var(CHILD_DB), std::env::var(CHILD_OWNER)) else {
        return;
    };
    let store = SqliteStore::open(&path).unwrap();
    let report = collect_until_done(store, owner).await;
    println!("committed={}", report.committed);
    println!("fenced={}", report.fenced);
}
