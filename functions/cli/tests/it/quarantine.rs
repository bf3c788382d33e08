//! End to end: a stamp that sends rows no store can hold exactly (quantities past what an exact
//! decimal holds) does not stop at that hour any more: the rows are quarantined verbatim with the
//! window, the stamp advances, everything else is exactly the ground truth, and pulling the window
//! again doubles nothing.

use crate::common::*;
use stamp_sim::Fault;

fn two_stamps(_: &stamp_sim::TestCertificate) -> Vec<stamp_sim::StampSpec> {
    vec![spec(0, aad(), 3), spec(1, aad(), 2)]
}

/// One `value` entry of a usage page in the reference's shape, with `quantity` as given (JSON text).
fn entry(vm: &str, quantity: &str) -> String {
    format!(
        r#"{{"id":"/subscriptions/8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10/providers/Microsoft.Commerce/UsageAggregate/q-{vm}","name":"q-{vm}","type":"Microsoft.Commerce/UsageAggregate","properties":{{"subscriptionId":"8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10","usageStartTime":"2026-11-25T13:00:00+00:00","usageEndTime":"2026-11-25T14:00:00+00:00","instanceData":"{{\"Microsoft.Resources\":{{\"resourceUri\":\"/subscriptions/8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10/resourceGroups/q/providers/Microsoft.Compute/virtualMachines/{vm}\",\"location\":\"local\",\"tags\":null,\"additionalInfo\":null}}}}","quantity":{quantity},"meterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5"}}}}"#
    )
}

/// Rows no 96-bit decimal holds exactly: 30 significant digits (would be rounded), beyond 7.9e28,
/// and "NaN" sent as text.
fn unholdable() -> Vec<String> {
    vec![
        entry("precise", "1.00000000000000000000000000001"),
        entry("huge", "1e400"),
        entry("nan", r#""NaN""#),
    ]
}

async fn json_of(world: &World, args: &[&str]) -> serde_json::Value {
    let out = world.run(args).await;
    assert!(out.status.success(), "{args:?}: {}\n{}", stdout(&out), stderr(&out));
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_no_store_can_hold_are_quarantined_verbatim_and_the_stamp_advances() {
    // Given a stamp whose first usage page also carries three rows no exact decimal holds
    let world = World::start(two_stamps, 4, 50).await;
    world.sim.stamp(0).inject(Fault::ExtraEntries { count: 1, entries: unholdable() });

    // When a collection runs
    let summary = json_of(&world, &["collect", "--json"]).await;

    // Then both stamps succeed, the first with three rows quarantined
    let first = summary["stamps"].as_array().unwrap().iter().find(|s| s["name"] == "stamp-0").unwrap();
    assert_eq!(first["outcome"], "succeeded", "{summary}");
    assert_eq!(first["quarantined"], 3, "{summary}");
    assert_eq!(world.sim.stamp(0).stats().faults_served, 1, "the rows were sent");

    // And every other row is exactly the ground truth, up to the horizon, on both stamps
    world.assert_complete(0).await;
    world.assert_complete(1).await;

    // And the quarantine holds each row as the stamp sent it, with its window, field and rule
    let listed = json_of(&world, &["quarantine", "list", "--stamp", "stamp-0", "--json"]).await;
    let listed = listed.as_array().unwrap();
    let mut raw: Vec<&str> = listed.iter().map(|e| e["raw"].as_str().unwrap()).collect();
    raw.sort_unstable();
    let mut sent = unholdable();
    sent.sort_unstable();
    assert_eq!(raw, sent, "kept verbatim, to the byte");
    for e in listed {
        assert_eq!(e["stampId"], world.stamp_ids[0].as_str());
        assert_eq!(
            e["window"]["start"],
            world.collect_from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        assert_eq!(e["field"], "properties.quantity");
        assert!(e["reason"].as_str().unwrap().contains("not rounded"), "{e}");
    }
    assert!(
        json_of(&world, &["quarantine", "list", "--stamp", "stamp-1", "--json"])
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );

    // And the stamp's status counts them, in JSON and in the table
    let status = json_of(&world, &["status", "--json"]).await;
    let status_of =
        |name: &str| status.as_array().unwrap().iter().find(|v| v["name"] == name).unwrap()["status"].clone();
    assert_eq!(status_of("stamp-0")["quarantinedRows"], 3, "{status}");
    assert_eq!(status_of("stamp-1")["quarantinedRows"], 0, "{status}");
    let text = stdout(&world.run(&["quarantine", "list"]).await);
    assert!(text.contains("3 quarantined row(s)") && text.contains("properties.quantity"), "{text}");

    // When the same hour is pulled again, twice (a reprocess, and a verify), with the same rows
    let from = world.collect_from.to_rfc3339();
    let to = (world.collect_from + chrono::Duration::hours(1)).to_rfc3339();
    world.sim.stamp(0).inject(Fault::ExtraEntries { count: 1, entries: unholdable() });
    let out = world
        .run(&["reprocess", "--stamp", "stamp-0", "--from", &from, "--to", &to, "--reason", "re-pull"])
        .await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    world.sim.stamp(0).inject(Fault::ExtraEntries { count: 1, entries: unholdable() });
    let out = world.run(&["verify", "--stamp", "stamp-0", "--from", &from, "--to", &to]).await;

    // Then nothing is doubled, and verify counts quarantined rows as no drift
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(json_of(&world, &["quarantine", "list", "--json"]).await.as_array().unwrap().len(), 3);
    world.assert_complete(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_with_more_quarantined_rows_than_the_cap_fails_alone_and_the_stamp_keeps_the_rest() {
    // Given two stamps four hours behind, collected up to two hours short of the horizon
    let world = World::start(two_stamps, 4, 50).await;
    let first = world.run_with(&["collect"], &[("AZS_USAGE_SETTLE_DELAY", "3h")]).await;
    assert!(first.status.success(), "{}", stderr(&first));
    let watermark = world.watermark(0).await;
    assert!(watermark < world.horizon());

    // When stamp 0's next page carries three rows no store can hold, and a window may quarantine two
    world.sim.stamp(0).inject(Fault::ExtraEntries { count: 1, entries: unholdable() });
    let capped = [("AZS_USAGE_MAX_QUARANTINED_PER_WINDOW", "2")];
    let summary = world.run_with(&["collect", "--json"], &capped).await;

    // Then that window is not stored: stamp 0 stays at its watermark with what it had, exactly, its
    // status naming the limit, its quarantine empty; stamp 1 is collected to the horizon
    let summary: serde_json::Value = serde_json::from_str(&stdout(&summary)).unwrap();
    let stamp0 = summary["stamps"].as_array().unwrap().iter().find(|s| s["name"] == "stamp-0").unwrap();
    assert_eq!(stamp0["outcome"], "failed", "{summary}");
    assert_eq!(world.watermark(0).await, watermark);
    world.assert_exact_to_watermark(0).await;
    world.assert_complete(1).await;
    let status = json_of(&world, &["status", "--json"]).await;
    let status0 = status.as_array().unwrap().iter().find(|s| s["name"] == "stamp-0").unwrap();
    let last_error = status0["status"]["lastError"].as_str().unwrap_or_default();
    assert!(last_error.contains("quarantined rows per window"), "{status0}");
    let listed = json_of(&world, &["quarantine", "list", "--stamp", "stamp-0", "--json"]).await;
    assert!(listed.as_array().unwrap().is_empty(), "{listed}");

    // And once the stamp sends what it should, the next run collects the rest exactly
    let again = world.run(&["collect"]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    world.assert_complete(0).await;
}
