//! End to end: catch-up spans (`AZS_USAGE_MAX_SPAN_HOURS`). A stamp far behind pulls several reported
//! hours in one request chain and commits them as one window with the watermark; faults, kills,
//! limits, reprocess and verify all keep the stored rows equal to the simulator's ground truth.

use crate::common::*;
use chrono::{DateTime, Duration, Utc};
use stamp_sim::{Fault, RequestKind, StampSpec};

const SPAN: (&str, &str) = ("AZS_USAGE_MAX_SPAN_HOURS", "12");

fn two_stamps(_: &stamp_sim::TestCertificate) -> Vec<StampSpec> {
    vec![no_repeats(0, 4), no_repeats(1, 3)]
}

fn sql(world: &World) -> rusqlite::Connection {
    rusqlite::Connection::open(world.database()).unwrap()
}

async fn collect(world: &World, env: &[(&str, &str)]) -> (std::process::Output, serde_json::Value) {
    let out = world.run_with(&["collect", "--json"], env).await;
    let summary = serde_json::from_str(&stdout(&out)).unwrap_or(serde_json::Value::Null);
    (out, summary)
}

fn committed(summary: &serde_json::Value, i: usize) -> u64 {
    summary["stamps"][i]["windowsCommitted"].as_u64().unwrap_or_default()
}

/// Pairs of reported hours of stamp `i`'s ground truth holding two rows alike in every field but the
/// hour that reported them (an on-time and a late row with equal quantities), earlier hour first.
fn alike_pairs(world: &World, i: usize) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut first_hour = std::collections::BTreeMap::new();
    let mut pairs = Vec::new();
    for row in world.truth(i, world.horizon()) {
        let hour = row.reported_start;
        let fields = Comparable { reported_start: DateTime::<Utc>::MIN_UTC, ..row };
        if let Some(earlier) = first_hour.insert(fields, hour) {
            pairs.push((earlier, hour));
        }
    }
    pairs
}

/// The windows the README documents for a stamp that does not repeat pages, collected from `from`
/// to `until` in spans of up to `span` hours: each span as one window, except that a span holding
/// both rows of an alike pair is stored hour by hour (only the reported hour tells them apart).
fn documented_windows(
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    span: i64,
    alike: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut windows = Vec::new();
    let mut start = from;
    while start < until {
        let end = (start + Duration::hours(span)).min(until);
        if alike.iter().any(|(a, b)| start <= *a && *b < end) {
            let hours = (end - start).num_hours();
            windows.extend((0..hours).map(|h| (start + Duration::hours(h), start + Duration::hours(h + 1))));
        } else {
            windows.push((start, end));
        }
        start = end;
    }
    windows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamps_30_hours_behind_with_span_12_are_collected_in_the_documented_windows_equal_to_the_ground_truth()
 {
    // Given three stamps 30 reported hours behind, with late rows and casing variants: one queried
    // per subscriber and one for all tenants, neither repeating rows across pages, and one for all
    // tenants that repeats the last row of each page as the first of the next. Whether two rows
    // of a stamp are alike but for the hour that reported them depends on the hours the test runs
    // over: the expected windows are derived from the ground truth
    let world = World::start(|_| vec![no_repeats(0, 4), no_repeats(1, 3), spec(2, aad(), 3)], 30, 17).await;
    sql(&world)
        .execute("UPDATE stamps SET query_mode = 'per-subscriber' WHERE id = ?1", [&world.stamp_ids[0]])
        .unwrap();
    let (cf, horizon) = (world.collect_from, world.horizon());

    // When one collection runs with spans of up to 12 hours
    let (out, summary) = collect(&world, &[SPAN]).await;
    assert!(out.status.success(), "collect failed: {}\n{}", stdout(&out), stderr(&out));

    // Then the stamps without page repeats are stored in spans of 12, 12 and 6 hours, except the
    // spans that would hold both rows of an alike pair, which are stored hour by hour
    for i in 0..2 {
        let alike = alike_pairs(&world, i);
        let expected = documented_windows(cf, horizon, 12, &alike);
        assert_eq!(world.stored_windows(i), expected, "stamp {i}, alike pairs {alike:?}");
        assert_eq!(committed(&summary, i), expected.len() as u64, "{summary}");
    }
    // And the stamp that repeats pages is stored hour by hour: its first span held equal rows
    // (a repeat looks exactly like a late report of an alike row), so the rest of the run did not
    // try spans again
    let hourly = documented_windows(cf, horizon, 1, &[]);
    assert_eq!(world.stored_windows(2), hourly);
    assert_eq!(committed(&summary, 2), 30, "{summary}");

    // And every stamp holds exactly the ground truth (both rows of each alike pair kept), up to
    // the newest complete hour
    for i in 0..3 {
        world.assert_complete_in_windows(i).await;
    }
    // And a second run has nothing to do and adds nothing
    let before = [world.stored(0).await, world.stored(1).await, world.stored(2).await];
    let (again, summary) = collect(&world, &[SPAN]).await;
    assert!(again.status.success());
    assert!((0..3).all(|i| committed(&summary, i) == 0), "{summary}");
    assert_eq!([world.stored(0).await, world.stored(1).await, world.stored(2).await], before);
}

#[test]
fn the_documented_windows_store_a_span_hour_by_hour_only_when_it_holds_both_rows_of_a_pair() {
    let t = |h: i64| DateTime::<Utc>::UNIX_EPOCH + Duration::hours(h);
    // A pair across the boundary of two spans keeps both spans whole; a pair inside one splits it
    assert_eq!(
        documented_windows(t(0), t(30), 12, &[(t(11), t(12))]),
        vec![(t(0), t(12)), (t(12), t(24)), (t(24), t(30))]
    );
    let split = documented_windows(t(0), t(30), 12, &[(t(24), t(25))]);
    assert_eq!(split.len(), 2 + 6);
    assert_eq!(split[2], (t(24), t(25)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_that_fails_mid_pull_commits_nothing_and_the_next_run_completes_it_exactly() {
    // Given a stamp 30 hours behind whose fourth usage page keeps failing past the client's retries
    let world = World::start(|_| vec![no_repeats(0, 4)], 30, 20).await;
    world.sim.stamp(0).inject(Fault::Slow {
        kind: RequestKind::Usage,
        count: 3,
        delay: std::time::Duration::ZERO,
    });
    world.sim.stamp(0).inject(Fault::Status503 { kind: RequestKind::Usage, count: 10 });

    // When a collection with 12-hour spans runs
    let (first, _) = collect(&world, &[SPAN]).await;

    // Then the stamp fails in its first span, nothing of which is stored
    assert_eq!(first.status.code(), Some(2), "{}\n{}", stdout(&first), stderr(&first));
    assert_eq!(world.watermark(0).await, world.collect_from);
    assert!(world.stored(0).await.is_empty());

    // And the next run collects everything, exactly once
    let (second, _) = collect(&world, &[SPAN]).await;
    assert!(second.status.success(), "{}\n{}", stdout(&second), stderr(&second));
    world.assert_complete_in_windows(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_killed_in_the_middle_of_spans_and_run_again_ends_with_exactly_the_ground_truth() {
    // Given two stamps 30 hours behind whose pages are slow, so that kills land inside span pulls
    let world = World::start(two_stamps, 30, 7).await;
    for i in 0..2 {
        world.sim.stamp(i).inject(Fault::Slow {
            kind: RequestKind::Usage,
            count: 10_000,
            delay: std::time::Duration::from_millis(8),
        });
    }
    let mut interrupted = 0;
    let mut after = 150u64;
    for _ in 0..6 {
        // When a collection is SIGKILLed at some point
        let mut child = world
            .cli()
            .arg("collect")
            .env(SPAN.0, SPAN.1)
            .env("AZS_USAGE_LEASE_TTL", "1s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(after)).await;
        let _ = child.kill();
        let _ = child.wait();
        after += 97;
        // Then every stamp holds exactly its ground truth up to its watermark: no half span
        for i in 0..2 {
            if world.watermark(i).await < world.horizon() {
                interrupted += 1;
            }
            world.assert_exact_to_watermark(i).await;
        }
        // (The killed run's lease expires before the next run.)
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    assert!(interrupted > 0, "no kill landed inside a run");

    // And a run to the end completes both stamps exactly
    let (out, _) = collect(&world, &[SPAN]).await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    for i in 0..2 {
        world.assert_complete_in_windows(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_over_the_row_limit_is_pulled_again_hour_by_hour_instead_of_stopping_the_stamp() {
    // Given a stamp whose hours each fit the row limit but whose 12-hour spans do not
    let world = World::start(|_| vec![spec(0, aad(), 2)], 14, 50).await;
    let limit = [SPAN, ("AZS_USAGE_MAX_ROWS_PER_WINDOW", "40")];

    // When it is collected
    let (out, summary) = collect(&world, &limit).await;

    // Then the first 12-hour span is refused and its hours are pulled one by one (the 2 hours left
    // may fit as a span), no window holds more rows than the limit, and the stamp holds exactly its
    // ground truth
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(committed(&summary, 0) >= 13, "{summary}");
    let windows = world.stored_windows(0);
    assert!(windows[..12].iter().all(|(s, e)| (*e - *s).num_hours() == 1), "{windows:?}");
    let largest: i64 = sql(&world)
        .query_row(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM usage_rows GROUP BY reported_start)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(largest <= 40, "a window of {largest} rows was stored");
    world.assert_complete_in_windows(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_reprocess_of_hours_inside_a_span_work_on_the_whole_stored_span() {
    // Given a stamp collected in 12-hour spans
    let world = World::start(|_| vec![plain(0, 4)], 30, 50).await;
    let (out, _) = collect(&world, &[SPAN]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let cf = world.collect_from;
    let second_span = (cf + Duration::hours(12), cf + Duration::hours(24));
    let hour = |h: i64| (cf + Duration::hours(h)).to_rfc3339();

    // When one hour inside the second span is verified
    let (from, to) = (hour(13), hour(14));
    let verify = ["verify", "--stamp", "stamp-0", "--from", &from, "--to", &to, "--json"];
    let out = world.run(&verify).await;

    // Then the whole span is compared, and it is equal
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let hours = report["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 1, "{report}");
    assert_eq!(hours[0]["window"]["start"], serde_json::json!(second_span.0), "{report}");
    assert_eq!(hours[0]["window"]["end"], serde_json::json!(second_span.1), "{report}");

    // And a row deleted from the span behind the collector's back is found, and a reprocess of that
    // one hour re-pulls and replaces the whole span: the row is back, nothing doubled
    let db = sql(&world);
    db.execute(
        "DELETE FROM usage_rows WHERE rowid = (SELECT min(rowid) FROM usage_rows WHERE reported_start = ?1)",
        [second_span.0.timestamp()],
    )
    .unwrap();
    let out = world.run(&verify).await;
    assert_eq!(out.status.code(), Some(3), "{}\n{}", stdout(&out), stderr(&out));
    let out = world
        .run(&["reprocess", "--stamp", "stamp-0", "--from", &from, "--to", &to, "--reason", "lost row"])
        .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    world.assert_exact_to_watermark(0).await;
    let logged: (i64, i64) = db
        .query_row("SELECT range_start, range_end FROM reprocess_log ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(logged, (second_span.0.timestamp(), second_span.1.timestamp()), "the log names the span");

    // And a range cutting two spans reprocesses both whole and keeps the windows as they were
    let before = world.stored_windows(0);
    let out = world
        .run(&[
            "reprocess",
            "--stamp",
            "stamp-0",
            "--from",
            &hour(11),
            "--to",
            &hour(13),
            "--reason",
            "meter fix",
        ])
        .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(world.stored_windows(0), before);
    world.assert_exact_to_watermark(0).await;
    let out = world.run(&["verify", "--stamp", "stamp-0", "--from", &hour(0), "--to", &hour(30)]).await;
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_time_budget_the_first_window_measures_one_hour_and_no_span_outgrows_the_budget() {
    // Given a stamp 30 hours behind whose every usage page takes 250 ms, and a run budget of 20 s
    // (10 s of it kept for the last writes)
    let world = World::start(|_| vec![plain(0, 4)], 30, 20).await;
    world.sim.stamp(0).inject(Fault::Slow {
        kind: RequestKind::Usage,
        count: 10_000,
        delay: std::time::Duration::from_millis(250),
    });

    // When a collection with 12-hour spans runs under that budget
    let started = std::time::Instant::now();
    let (out, summary) = collect(&world, &[SPAN, ("AZS_USAGE_TIME_BUDGET", "20s")]).await;
    let took = started.elapsed();

    // Then it stops early (partial), within its budget, having started with one measured hour and
    // then spans that fit what was left, none of the 12 hours allowed
    assert_eq!(summary["stamps"][0]["outcome"], "partial", "{summary}\n{}", stderr(&out));
    assert!(took < std::time::Duration::from_secs(20), "the run took {took:?}");
    let windows = world.stored_windows(0);
    assert_eq!(windows.first().map(|(s, e)| (*e - *s).num_hours()), Some(1), "{windows:?}");
    assert!(windows.iter().all(|(s, e)| (*e - *s).num_hours() < 12), "{windows:?}");
    assert!(windows.iter().any(|(s, e)| (*e - *s).num_hours() > 1), "no span once measured: {windows:?}");
    assert!(world.watermark(0).await < world.horizon());
    // And what it committed is exact; the next run (no budget) completes the stamp exactly
    world.assert_exact_to_watermark(0).await;
    let (out, _) = collect(&world, &[SPAN]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    world.assert_complete_in_windows(0).await;
}
