//! End to end: a stamp that loops, floods or stalls ends its own run in bounded time with nothing of
//! the offending window stored, its later windows waiting, and the other stamps collected exactly.

use crate::common::*;
use stamp_sim::{Fault, RequestKind};
use std::process::Output;
use std::time::{Duration, Instant};

/// `collect --json` with extra environment; the run and how long it took.
async fn collect_with(world: &World, env: &[(&str, &str)]) -> (Output, serde_json::Value, Duration) {
    let mut c = world.cli();
    c.args(["collect", "--json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || c.output().expect("azs-usage runs")).await.unwrap();
    let took = started.elapsed();
    let summary = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!("collect --json printed no summary ({e}): {}\n{}", stdout(&out), stderr(&out))
    });
    (out, summary, took)
}

/// Stamp `i`'s entry of a run summary.
fn stamp_of<'a>(summary: &'a serde_json::Value, world: &World, i: usize) -> &'a serde_json::Value {
    summary["stamps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stampId"] == world.stamp_ids[i].as_str())
        .unwrap_or_else(|| panic!("stamp {i} is not in the summary: {summary}"))
}

/// Stamp 0 failed in its first window naming `cause`, stored nothing and kept its watermark; stamp
/// 1 is complete.
async fn assert_first_stamp_stopped_cleanly(world: &World, summary: &serde_json::Value, cause: &str) {
    let failed = stamp_of(summary, world, 0);
    assert_eq!(failed["outcome"], "failed", "{summary}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("stamp {}", world.stamp_ids[0])), "names the stamp: {error}");
    assert!(error.contains("window ["), "names the window: {error}");
    assert!(error.contains(cause), "names the limit ({cause}): {error}");
    assert_eq!(failed["windowsCommitted"], 0, "{summary}");
    assert_eq!(world.watermark(0).await, world.collect_from, "the stamp's later windows wait");
    assert!(world.stored(0).await.is_empty(), "nothing of the failed window is stored");
    assert_eq!(stamp_of(summary, world, 1)["outcome"], "succeeded", "{summary}");
    world.assert_complete(1).await;
}

fn two_stamps(_: &stamp_sim::TestCertificate) -> Vec<stamp_sim::StampSpec> {
    vec![spec(0, aad(), 4), spec(1, aad(), 3)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_chain_that_loops_back_fails_its_window_in_bounded_time() {
    // Given a stamp whose second page links back to the first (and would forever)
    let world = World::start(two_stamps, 4, 7).await;
    world.sim.stamp(0).inject(Fault::LoopingNextLink { count: 10_000 });

    // When a collection runs
    let (out, summary, took) = collect_with(&world, &[]).await;

    // Then the run ends promptly, the looping stamp's window fails naming the cycle, nothing of it is
    // stored, and the other stamp is exact
    assert_eq!(out.status.code(), Some(2), "{summary}");
    assert!(took < Duration::from_secs(30), "the run took {took:?}");
    assert_first_stamp_stopped_cleanly(&world, &summary, "leads back to a page already read").await;
    assert!(world.sim.stamp(0).stats().usage_requests < 10, "stopped at the first repeated page");

    // And once the stamp behaves, the next run collects it exactly
    world.sim.stamp(0).clear_faults();
    let (out, summary, _) = collect_with(&world, &[]).await;
    assert!(out.status.success(), "{summary}");
    world.assert_complete(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_the_size_cap_is_not_read_past_the_cap() {
    // Given a stamp that sends one page of 256 MiB (whitespace before valid JSON) and a 1 MiB cap
    let world = World::start(two_stamps, 4, 50).await;
    world.sim.stamp(0).inject(Fault::OversizedPage { count: 1, padding_bytes: 256 << 20 });

    let (out, summary, took) = collect_with(&world, &[("AZS_USAGE_MAX_PAGE_BYTES", "1MiB")]).await;

    assert_eq!(out.status.code(), Some(2), "{summary}");
    assert!(took < Duration::from_secs(30), "the run took {took:?}");
    assert_first_stamp_stopped_cleanly(&world, &summary, "larger than 1048576 bytes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_over_the_row_limit_fails_whole() {
    // Given a stamp whose hours all have more rows than the limit, and one whose hours all fit
    let world = World::start(|_| vec![spec(0, aad(), 12), spec(1, aad(), 1)], 4, 1000).await;
    let per_hour = |i: usize| {
        let mut counts = std::collections::BTreeMap::new();
        for r in world.truth(i, world.horizon()) {
            *counts.entry(r.reported_start).or_insert(0u64) += 1;
        }
        counts.into_values().collect::<Vec<_>>()
    };
    let (big, small) = (per_hour(0), per_hour(1));
    let limit = *small.iter().max().unwrap();
    assert!(
        big.iter().all(|n| *n > limit),
        "the test needs every big hour over the limit: {big:?} vs {limit}"
    );

    let (out, summary, _) =
        collect_with(&world, &[("AZS_USAGE_MAX_ROWS_PER_WINDOW", &limit.to_string())]).await;

    assert_eq!(out.status.code(), Some(2), "{summary}");
    assert_first_stamp_stopped_cleanly(&world, &summary, &format!("more than {limit} rows")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_budget_that_runs_out_mid_window_abandons_the_window() {
    // Given a stamp whose first usage page takes a minute, and a run budget of 20 s (10 s of which
    // are kept for the last writes)
    let world = World::start(two_stamps, 3, 50).await;
    world.sim.stamp(0).inject(Fault::Slow {
        kind: RequestKind::Usage,
        count: 1,
        delay: Duration::from_secs(55),
    });

    let (out, summary, took) = collect_with(&world, &[("AZS_USAGE_TIME_BUDGET", "20s")]).await;

    // Then the run stops at the budget, not when the page arrives
    assert_eq!(out.status.code(), Some(2), "{summary}");
    assert!(took < Duration::from_secs(25), "the run took {took:?}");
    assert_first_stamp_stopped_cleanly(&world, &summary, "time budget ran out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pull_keeps_its_lease_so_an_overlapping_run_skips_the_stamp() {
    // Given a 1 s lease and a first usage page that takes 4 s
    let world = World::start(|_| vec![spec(0, aad(), 3)], 2, 50).await;
    world.sim.stamp(0).inject(Fault::Slow {
        kind: RequestKind::Usage,
        count: 1,
        delay: Duration::from_secs(4),
    });
    let mut first = world.cli();
    first.args(["collect", "--json"]).env("AZS_USAGE_LEASE_TTL", "1s");
    let first = tokio::task::spawn_blocking(move || first.output().unwrap());

    // When a second run starts while the first is still waiting for that page (its lease would have
    // lapsed twice over without renewal)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (second, summary, _) = collect_with(&world, &[("AZS_USAGE_LEASE_TTL", "1s")]).await;

    // Then the second run skips the stamp, and the first completes it exactly
    assert!(second.status.success(), "{summary}");
    assert_eq!(stamp_of(&summary, &world, 0)["outcome"], "skipped", "{summary}");
    let first = first.await.unwrap();
    assert!(first.status.success(), "{}\n{}", stdout(&first), stderr(&first));
    world.assert_complete(0).await;
}
