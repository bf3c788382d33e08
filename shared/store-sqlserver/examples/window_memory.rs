//! Peak memory of sending one window to SQL Server, measured without a server: the store's own
//! preparation of a commit (row checks, chunks, the JSON text of each MERGE_WINDOW) and tiberius 0.13's
//! encoding of each request into one buffer (see `src/window_memory.rs`), for a window sent in one
//! piece (as before chunking) and in chunks of `WINDOW_CHUNK_ROWS` (as now).
//!
//! ```text
//! cargo run --release -p azs-store-sqlserver --example window_memory [-- ROWS [PADDING_BYTES [QUARANTINED]]]
//! ```
//!
//! Defaults: 40,000 rows of about 560 bytes of JSON each; PADDING_BYTES adds that much to each row's
//! additionalInfo (1000 gives the README's "1.5 KB per row" worst case). QUARANTINED (default 1,000,
//! the default `AZS_USAGE_MAX_QUARANTINED_PER_WINDOW`) more rows are quarantined, each one whose
//! resourceUri (5,000 characters) is longer than the column, kept verbatim. Each way is measured in a
//! child process of its own (Linux: peak RSS from /proc/self/status, reset after the rows are built),
//! with glibc's mmap threshold fixed at 128 KiB as every azs-usage executable sets it, so freed
//! buffers leave the RSS. The figures go in the store's README, "Window memory".

use azs_core::quarantine::{QuarantinedRow, Unrepresentable};
use azs_core::stamp::StampId;
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use azs_store_sqlserver::window_memory::{BEFORE, NOW, encode_window};
use chrono::{DateTime, Duration, Utc};

const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1..]);
    }
    let rows: usize = args.first().map_or(40_000, |a| a.parse().expect("ROWS is a number"));
    let padding: usize = args.get(1).map_or(0, |a| a.parse().expect("PADDING_BYTES is a number"));
    let quarantined: usize = args.get(2).map_or(1_000, |a| a.parse().expect("QUARANTINED is a number"));
    println!("window of {rows} rows, {padding} bytes of padding per row, {quarantined} rows quarantined");
    println!(
        "{:<28} {:>9} {:>11} {:>14} {:>16} {:>18}",
        "sent as", "requests", "quarantine", "largest JSON", "largest request", "peak RSS growth"
    );
    for (name, way) in [("one piece each (before)", "before"), ("chunks (now)", "now")] {
        let output = std::process::Command::new(std::env::current_exe().expect("this executable"))
            .args(["--child", &rows.to_string(), &padding.to_string(), &quarantined.to_string(), way])
            .env("MALLOC_MMAP_THRESHOLD_", "131072")
            .env("MALLOC_ARENA_MAX", "2")
            .output()
            .expect("the child runs");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let line = String::from_utf8(output.stdout).expect("text");
        println!("{name:<28} {}", line.trim());
    }
}

fn child(args: &[String]) {
    let [rows, padding, quarantined] = [0, 1, 2].map(|i| args[i].parse::<usize>().expect("a number"));
    let sending = if args[3] == "before" { BEFORE } else { NOW };
    let start: DateTime<Utc> = "2026-11-25T13:00:00Z".parse().expect("a time");
    let window = ReportedWindow { start, end: start + Duration::hours(1) };
    let usage = window_rows(rows, padding, start);
    let quarantine = quarantined_rows(quarantined, start);
    // Reset the peak to what is resident now: the rows are the caller's, not the encoding's.
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS (Linux)");
    let before = status_kib("VmRSS");
    let stamp = StampId("5f0c6f0e-8c1a-4d8e-9a51-0d6c1f1e2a3b".into());
    let encoded = encode_window(&stamp, window, usage, quarantine, sending);
    let peak = status_kib("VmHWM");
    println!(
        "{:>9} {:>11} {:>10.1} MiB {:>12.1} MiB {:>14.1} MiB",
        encoded.requests,
        encoded.quarantine_requests,
        encoded.largest_json as f64 / MIB,
        encoded.largest_request as f64 / MIB,
        (peak.saturating_sub(before) * 1024) as f64 / MIB
    );
}

/// `key` of /proc/self/status, in KiB.
fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:"))).expect("the key");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

/// A window as a large stamp reports it: 40 tenant subscriptions, four meters, one VM per row.
fn window_rows(rows: usize, padding: usize, hour: DateTime<Utc>) -> Vec<UsageRow> {
    const METERS: [&str; 4] = [
        "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5",
        "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A",
        "6DAB500F-A4FD-49C4-956D-229BB9C8C793",
        "09F8879E-87E9-4305-A572-4B7BE209F857",
    ];
    let pad = "x".repeat(padding);
    (0..rows)
        .map(|i| {
            let tenant = format!("8e8cd5a6-05b6-4b9d-9b5a-{:012x}", i % 40);
            UsageRow {
                resource_uri: format!(
                    "/subscriptions/{tenant}/resourceGroups/rg-{:02}/providers/Microsoft.Compute/virtualMachines/vm-{i:06}",
                    i % 50
                ),
                subscription_id: tenant,
                meter_id: METERS[i % METERS.len()].into(),
                usage_start: hour,
                usage_end: hour + Duration::hours(1),
                quantity: format!("{}.{:010}", i % 7, i).parse().expect("a quantity"),
                location: "local".into(),
                tags: Some(r#"{"owner":"team-7","costCenter":"cc-1234"}"#.into()),
                additional_info: Some(format!(
                    r#"{{"ServiceType":"Standard_D2_v2","ImageType":"Windows_Server","VCPUs":"2","pad":"{pad}"}}"#
                )),
            }
        })
        .collect()
}

/// Rows the collector held back: each one's resourceUri is longer than the column's 4,000 units, so it
/// travels verbatim (its JSON as the stamp sent it) with the reason.
fn quarantined_rows(count: usize, hour: DateTime<Utc>) -> Vec<QuarantinedRow> {
    let why = Unrepresentable {
        field: "properties.instanceData",
        rule: "resourceUri is 5000 UTF-16 units, the column holds 4000".into(),
    };
    (0..count)
        .map(|i| {
            let raw = serde_json::json!({
                "id": format!("/subscriptions/a/providers/Microsoft.Commerce.Admin/locations/local/usageAggregates/q{i}"),
                "properties": {
                    "subscriptionId": "8e8cd5a6-05b6-4b9d-9b5a-000000000001",
                    "usageStartTime": hour.to_rfc3339(),
                    "usageEndTime": (hour + Duration::hours(1)).to_rfc3339(),
                    "instanceData": serde_json::json!({
                        "Microsoft.Resources": { "resourceUri": format!("/subscriptions/a/{}{i}", "r".repeat(5_000)) }
                    }).to_string(),
                    "quantity": 1.0,
                    "meterId": "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5"
                }
            });
            QuarantinedRow::new(raw.to_string(), &why)
        })
        .collect()
}
