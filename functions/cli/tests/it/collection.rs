//! End to end: simulated stamps -> `azs-usage` processes -> SQLite, compared with the simulator's
//! ground truth after clean runs, faults, kills, overlapping runs and reprocessing.

use crate::common::*;
use stamp_sim::{Fault, RequestKind};
use std::time::Duration;

fn three_stamps(cert: &stamp_sim::TestCertificate) -> Vec<stamp_sim::StampSpec> {
    vec![spec(0, aad(), 6), spec(1, adfs(cert), 4), spec(2, aad(), 5)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_stores_exactly_the_ground_truth_of_every_stamp_over_two_days() {
    // Given three stamps (Azure AD + secret, AD FS + certificate) with late rows, page-boundary
    // duplicates and casing variants, 48 reported hours each
    let world = World::start(three_stamps, 48, 17).await;

    // When one collection runs
    let out = world.run(&["collect"]).await;

    // Then it succeeds and every stamp holds exactly its ground truth, window by window
    assert!(out.status.success(), "collect failed: {}\n{}", stdout(&out), stderr(&out));
    for i in 0..3 {
        world.assert_complete(i).await;
    }
    // And running again adds nothing
    let again = world.run(&["collect"]).await;
    assert!(again.status.success());
    for i in 0..3 {
        world.assert_complete(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_every_request_type_are_survived_without_losing_or_doubling_a_row() {
    let world = World::start(three_stamps, 12, 11).await;
    for i in 0..3 {
        let s = world.sim.stamp(i);
        s.inject(Fault::Status503 { kind: RequestKind::Metadata, count: 1 });
        s.inject(Fault::ConnectionReset { kind: RequestKind::OpenId, count: 1 });
        s.inject(Fault::Throttle429 { kind: RequestKind::Token, count: 1, retry_after_secs: 1 });
        // Five failures in a row on one usage page: within the client's six attempts.
        s.inject(Fault::Status503 { kind: RequestKind::Usage, count: 1 });
        s.inject(Fault::ConnectionReset { kind: RequestKind::Usage, count: 1 });
        s.inject(Fault::Throttle429 { kind: RequestKind::Usage, count: 1, retry_after_secs: 1 });
        s.inject(Fault::MalformedPage { count: 1 });
        s.inject(Fault::GatewayTimeout { count: 1 });
        s.inject(Fault::Slow { kind: RequestKind::Usage, count: 1, delay: Duration::from_millis(1500) });
        s.inject(Fault::ExpireTokensAfter { usage_requests: 5 });
    }

    let out = world.run(&["collect"]).await;

    assert!(out.status.success(), "collect failed: {}\n{}", stdout(&out), stderr(&out));
    for i in 0..3 {
        world.assert_complete(i).await;
        assert!(world.sim.stamp(i).stats().faults_served >= 8, "stamp {i}: the faults were not all served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_keeps_failing_stops_its_stamp_there_and_the_next_run_resumes_from_it() {
    let world = World::start(|_| vec![spec(0, aad(), 4)], 8, 50).await;
    // More consecutive 503s than the client retries: the run gives up on one window.
    world.sim.stamp(0).inject(Fault::Slow { kind: RequestKind::Usage, count: 3, delay: Duration::ZERO });
    world.sim.stamp(0).inject(Fault::Status503 { kind: RequestKind::Usage, count: 10 });

    let first = world.run(&["collect"]).await;

    assert_eq!(first.status.code(), Some(2), "{}", stdout(&first));
    assert!(stdout(&first).contains("window ["), "the error names the window: {}", stdout(&first));
    let watermark = world.watermark(0).await;
    assert!(watermark < world.horizon());
    // Everything before the failed window is complete, nothing after it is stored.
    let stored = world.stored(0).await;
    assert_same_rows(0, &stored, &world.truth(0, watermark));

    let second = world.run(&["collect"]).await;

    assert!(second.status.success(), "{}", stdout(&second));
    world.assert_complete(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_killed_at_random_points_and_run_again_ends_with_exactly_the_ground_truth() {
    let world = World::start(three_stamps, 24, 13).await;
    // Slow pages make the run long enough to be killed in the middle of pulls and commits.
    for i in 0..3 {
        world.sim.stamp(i).inject(Fault::Slow {
            kind: RequestKind::Usage,
            count: 400,
            delay: Duration::from_millis(15),
        });
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut interrupted = 0;
    for _ in 0..8 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = Duration::from_millis(50 + seed % 700);
        let mut child = world
            .cli()
            .arg("collect")
            .env("AZS_USAGE_LEASE_TTL", "2s")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(after).await;
        let _ = child.kill(); // SIGKILL: no chance to clean up
        let _ = child.wait();
        let mut watermarks = Vec::new();
        for i in 0..3 {
            watermarks.push(world.watermark(i).await);
        }
        if watermarks.iter().any(|w| *w < world.horizon()) {
            interrupted += 1;
        }
        // Whatever a killed run committed is complete and exact up to its watermark.
        for (i, w) in watermarks.into_iter().enumerate() {
            assert_same_rows(i, &world.stored(i).await, &world.truth(i, w));
        }
    }
    assert!(interrupted >= 2, "only {interrupted} kills interrupted a run: the test did not test crashes");
    // After the kills, a run that is allowed to finish. The killed runs' leases expire after their
    // 2 s lifetime; until then they would (rightly) make this run skip the stamps.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = world.run(&["collect"]).await;
    let summary = stdout(&out);
    if !out.status.success() || summary.contains("skipped") {
        panic!("the run after the kills did not complete: {summary}\n{}", stderr(&out));
    }
    for i in 0..3 {
        world.assert_complete(i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_and_four_runs_started_at_once_on_one_database_store_each_row_once() {
    let world = World::start(three_stamps, 12, 19).await;
    for parallel in [2usize, 4] {
        let children: Vec<_> = (0..parallel)
            .map(|_| world.cli().arg("collect").stdout(std::process::Stdio::piped()).spawn().unwrap())
            .collect();
        for child in children {
            let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
            // A run that found a stamp leased by another run skips it: that is success, not failure.
            assert!(out.status.success(), "a parallel run failed: {}", stdout(&out));
        }
        for i in 0..3 {
            world.assert_complete(i).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocessing_a_range_replaces_it_and_leaves_the_totals_unchanged() {
    let world = World::start(three_stamps, 10, 23).await;
    assert!(world.run(&["collect"]).await.status.success());
    let from = world.collect_from + chrono::Duration::hours(2);
    let to = from + chrono::Duration::hours(4);

    let out = world
        .run(&[
            "reprocess",
            "--stamp",
            &world.stamp_ids[1],
            "--from",
            &from.to_rfc3339(),
            "--to",
            &to.to_rfc3339(),
            "--reason",
            "test",
        ])
        .await;

    assert!(out.status.success(), "reprocess failed: {}\n{}", stdout(&out), stderr(&out));
    world.assert_complete(1).await;
    // A range that is not collected yet is refused with a reason.
    let future = world.horizon();
    let out = world
        .run(&[
            "reprocess",
            "--stamp",
            &world.stamp_ids[1],
            "--from",
            &future.to_rfc3339(),
            "--to",
            &(future + chrono::Duration::hours(1)).to_rfc3339(),
            "--reason",
            "x",
        ])
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("watermark"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stamp_failing_hard_leaves_the_others_complete_and_is_reported() {
    let world = World::start(|cert| vec![spec(0, aad(), 4), spec(1, adfs(cert), 3)], 6, 50).await;
    // A third stamp whose secret is wrong: registered without verification, so collection meets it.
    let auth = stamp_sim::SimAuth::AzureAd { secret: Some("another-secret".into()), certificate_pem: None };
    let broken = stamp_sim::Simulator::start(stamp_sim::SimulatorConfig {
        seed: 9,
        page_size: 50,
        stamps: vec![spec(5, auth, 2)],
    })
    .await
    .unwrap();
    std::fs::write(world.path("ca2.pem"), broken.ca_pem()).unwrap();
    let mut args = stamp_add_args(&broken.stamp(0), "-", "broken", &world.path("ca2.pem"));
    args.extend(["--collect-from".into(), world.collect_from.to_rfc3339(), "--no-verify".into()]);
    let mut c = world.cli();
    c.args(&args).env("AZS_USAGE_APPLICATION_SECRET", SECRET);
    assert!(c.output().unwrap().status.success());

    let out = world.run(&["collect"]).await;

    assert_eq!(out.status.code(), Some(2), "a failed stamp must fail the run: {}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("broken") && text.contains("failed"), "{text}");
    assert!(text.contains("invalid_client") || text.contains("token"), "the error names the cause: {text}");
    assert!(!text.contains(SECRET), "the secret leaked into the summary");
    for i in 0..2 {
        world.assert_complete(i).await;
    }
    let status = stdout(&world.run(&["status", "--json"]).await);
    assert!(status.contains("\"outcome\": \"failed\"") && status.contains("lastError"), "{status}");

    // The text status shows each stamp's watermark lag, as the functions publish it for the alarms:
    // the healthy stamps are an hour or two behind (settle delay), the broken one still at its start.
    let text = stdout(&world.run(&["status"]).await);
    let header = text.lines().next().unwrap();
    assert!(header.contains(" lag "), "{text}");
    let lag_of = |name: &str| -> i64 {
        let line = text.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name}: {text}"));
        let lag = line.split_whitespace().find(|w| w.ends_with('m') && w.contains('h')).unwrap();
        let (h, m) = lag.trim_end_matches('m').split_once('h').unwrap();
        h.parse::<i64>().unwrap() * 60 + m.parse::<i64>().unwrap()
    };
    assert!(lag_of("broken") > lag_of(&world.stamp_ids[0]), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_subscriptions_are_stored_listed_and_resolved_by_a_later_mapping() {
    let world = World::start(|_| vec![spec(0, aad(), 4)], 6, 50).await;
    let tenants = world.sim.stamp(0).tenant_subscriptions();
    let id = world.stamp_ids[0].clone();
    for (n, t) in tenants.iter().enumerate().skip(1) {
        let out = world.run(&["mapping", "set", &id, t, &format!("billing-{n}")]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(world.run(&["collect"]).await.status.success());

    let unmapped: serde_json::Value =
        serde_json::from_str(&stdout(&world.run(&["unmapped", "--json"]).await)).unwrap();
    let list = unmapped.as_array().unwrap();
    assert_eq!(list.len(), 1, "{unmapped}");
    assert_eq!(list[0]["externalSubscriptionId"], tenants[0].to_lowercase());
    let truth_rows = world
        .truth(0, world.horizon())
        .iter()
        .filter(|r| r.subscription_id.eq_ignore_ascii_case(&tenants[0]))
        .count();
    assert_eq!(list[0]["rows"], truth_rows as u64);

    let out = world.run(&["mapping", "set", &id, &tenants[0].to_uppercase(), "billing-0"]).await;
    assert!(stdout(&out).contains(&format!("({truth_rows} earlier rows mapped)")), "{}", stdout(&out));
    let unmapped: serde_json::Value =
        serde_json::from_str(&stdout(&world.run(&["unmapped", "--json"]).await)).unwrap();
    assert_eq!(unmapped.as_array().unwrap().len(), 0);

    // The export carries the billing subscription on every row, with the documented header.
    let csv = world.path("out.csv");
    assert!(world.run(&["export", "--csv", csv.to_str().unwrap()]).await.status.success());
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), azs_app::export::HEADER);
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), world.truth(0, world.horizon()).len());
    assert!(rows.iter().all(|l| l.contains(",billing-")), "every row is mapped after the back-fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_a_stamp_repeats_across_pages_are_stored_once_and_counted_as_duplicates_in_the_status() {
    // Given a stamp whose every page after the first repeats the previous page's last row
    let world = World::start(|_| vec![spec(0, aad(), 4)], 3, 20).await;
    assert!(world.sim.stamp(0).spec().duplicate_across_pages);

    // When it is collected
    let out = world.run(&["collect", "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let dropped = summary["stamps"][0]["duplicates"].as_u64().unwrap();

    // Then every row is stored once (the database equals the ground truth), and the status counts the
    // dropped copies, in JSON and in the table
    world.assert_complete(0).await;
    assert!(dropped > 0, "{summary}");
    let status_json = || async {
        let out = world.run(&["status", "--json"]).await;
        let status: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        status[0]["status"]["duplicateRows"].as_u64().unwrap()
    };
    assert_eq!(status_json().await, dropped);
    let table = stdout(&world.run(&["status"]).await);
    assert!(table.lines().next().unwrap().contains("duplicates"), "{table}");
    assert!(table.lines().nth(1).unwrap().split_whitespace().any(|w| w == dropped.to_string()), "{table}");

    // And a run with nothing new to collect adds none
    assert!(world.run(&["collect"]).await.status.success());
    assert_eq!(status_json().await, dropped);
}
