//! End to end: `reprocess` refuses to shrink billed hours by accident and `verify` finds exactly what
//! changed behind the collector's back.

use crate::common::*;
use stamp_sim::Fault;

fn one_stamp(_: &stamp_sim::TestCertificate) -> Vec<stamp_sim::StampSpec> {
    vec![spec(0, aad(), 4)]
}

fn sql(world: &World) -> rusqlite::Connection {
    rusqlite::Connection::open(world.database()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprocess_whose_re_pull_comes_back_empty_is_refused_without_allow_shrink() {
    // Given a collected stamp, and a stamp that now answers one hour with an empty page
    let world = World::start(one_stamp, 4, 50).await;
    assert!(world.run(&["collect"]).await.status.success());
    let before = world.stored(0).await;
    let from = world.collect_from;
    let to = from + chrono::Duration::hours(1);
    let range = ["--stamp", "stamp-0", "--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()];

    // When an operator reprocesses that hour
    world.sim.stamp(0).inject(Fault::EmptyPage { count: 1 });
    let mut args = vec!["reprocess", "--reason", "meter fix", "--by", "ops-anna"];
    args.extend(range);
    let out = world.run(&args).await;

    // Then it is refused naming the hour and the flag, and nothing changed
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("--allow-shrink") && stderr(&out).contains("window ["), "{}", stderr(&out));
    assert_eq!(world.stored(0).await, before);
    // And the refusal is logged with who, why and counts
    let logged: String = sql(&world)
        .query_row("SELECT reason FROM reprocess_log ORDER BY id DESC LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert!(
        logged.contains("meter fix") && logged.contains("by ops-anna") && logged.contains("stopped"),
        "{logged}"
    );

    // And a dry run shows the removal without writing, and --allow-shrink does replace
    world.sim.stamp(0).inject(Fault::EmptyPage { count: 1 });
    let mut args = vec!["reprocess", "--dry-run", "--json"];
    args.extend(range);
    let out = world.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let stored_in_hour = before.iter().filter(|r| r.reported_start == from).count() as u64;
    let removed: u64 =
        report["hours"][0]["lines"].as_array().unwrap().iter().map(|l| l["removed"].as_u64().unwrap()).sum();
    assert_eq!(removed, stored_in_hour, "{report}");
    assert_eq!(world.stored(0).await, before);

    world.sim.stamp(0).inject(Fault::EmptyPage { count: 1 });
    let mut args = vec!["reprocess", "--reason", "stamp lost the hour", "--allow-shrink"];
    args.extend(range);
    let out = world.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(world.stored(0).await.len() as u64, before.len() as u64 - stored_in_hour);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_exactly_the_rows_removed_and_changed_behind_its_back() {
    // Given a collected stamp that verifies equal
    let world = World::start(one_stamp, 3, 50).await;
    assert!(world.run(&["collect"]).await.status.success());
    let (from, to) = (world.collect_from.to_rfc3339(), world.horizon().to_rfc3339());
    let verify = ["verify", "--stamp", "stamp-0", "--from", &from, "--to", &to, "--json"];
    let out = world.run(&verify).await;
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));

    // When two rows are deleted and one quantity is changed in the database
    let db = sql(&world);
    let victims: Vec<(i64, String, i64)> = db
        .prepare("SELECT rowid, subscription_id, reported_start FROM usage_rows ORDER BY rowid LIMIT 3")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    db.execute("DELETE FROM usage_rows WHERE rowid IN (?1, ?2)", (victims[0].0, victims[1].0)).unwrap();
    db.execute("UPDATE usage_rows SET quantity = quantity || '1' WHERE rowid = ?1", [victims[2].0]).unwrap();

    // Then verify exits 3 and reports exactly two missing rows and one changed quantity
    let out = world.run(&verify).await;
    assert_eq!(out.status.code(), Some(3), "{}\n{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["equal"], false);
    let mut totals = (0, 0, 0);
    for hour in report["hours"].as_array().unwrap() {
        for line in hour["lines"].as_array().unwrap() {
            totals.0 += line["added"].as_u64().unwrap();
            totals.1 += line["removed"].as_u64().unwrap();
            totals.2 += line["changed"].as_u64().unwrap();
        }
    }
    assert_eq!(totals, (2, 0, 1), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprocess_keeps_the_billing_subscription_rows_were_billed_under_unless_remap_is_given() {
    // Given tenant A mapped to X and its usage collected
    let world = World::start(one_stamp, 3, 50).await;
    let tenant_a = world.sim.stamp(0).tenant_subscriptions()[0].clone();
    let id = world.stamp_ids[0].clone();
    assert!(world.run(&["mapping", "set", &id, &tenant_a, "billing-x"]).await.status.success());
    assert!(world.run(&["collect"]).await.status.success());
    let billed_a = || -> Vec<Option<String>> {
        let db = sql(&world);
        let mut stmt = db
            .prepare("SELECT DISTINCT billing_subscription_id FROM usage_rows WHERE subscription_key = ?1")
            .unwrap();
        stmt.query_map([tenant_a.to_lowercase()], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    assert_eq!(billed_a(), vec![Some("billing-x".to_owned())]);
    let rows_before = world.stored(0).await;
    let (from, to) = (world.collect_from.to_rfc3339(), world.horizon().to_rfc3339());
    let range = ["--stamp", "stamp-0", "--from", from.as_str(), "--to", to.as_str()];

    // When A's mapping changes to Y and the collected range is reprocessed
    assert!(world.run(&["mapping", "set", &id, &tenant_a, "billing-y"]).await.status.success());
    let mut args = vec!["reprocess", "--reason", "meter fix", "--by", "ops-anna"];
    args.extend(range);
    let out = world.run(&args).await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));

    // Then A's rows are still billed to X (invoiced rows are not moved by a re-pull), nothing else changed
    assert_eq!(billed_a(), vec![Some("billing-x".to_owned())]);
    assert_eq!(world.stored(0).await, rows_before);

    // And with --remap they move to Y, and the log says the reprocess re-mapped
    let mut args = vec!["reprocess", "--reason", "customer moved", "--remap"];
    args.extend(range);
    let out = world.run(&args).await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(billed_a(), vec![Some("billing-y".to_owned())]);
    assert_eq!(world.stored(0).await, rows_before);
    let logged: Vec<String> = sql(&world)
        .prepare("SELECT reason FROM reprocess_log ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !logged[0].contains("remap") && logged[1].contains("replaced with --remap (current mappings);"),
        "{logged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_jobs_daily_verify_records_last_verified_and_the_drift_of_rows_removed_behind_its_back() {
    // Given the scheduled verify on (24 trailing hours), as the functions run it by default
    let world = World::start(one_stamp, 4, 50).await;
    let on = [("AZS_USAGE_VERIFY_TRAILING_HOURS", "24")];
    let status = || async {
        let out = world.run(&["status", "--json"]).await;
        let all: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        all[0]["status"].clone()
    };
    let drift = |s: &serde_json::Value| {
        (s["drift"]["missing"].as_u64(), s["drift"]["extra"].as_u64(), s["drift"]["changed"].as_u64())
    };

    // When the first run collects the stamp up to date
    let out = world.run_with(&["collect", "--json"], &on).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Then it also verified the collected hours ending at the watermark: nothing differs
    let first = status().await;
    let watermark = world.watermark(0).await;
    assert_eq!(first["lastVerified"]["range"]["end"], serde_json::json!(watermark), "{first}");
    assert_eq!(first["lastVerified"]["range"]["start"], serde_json::json!(world.collect_from), "{first}");
    assert_eq!(drift(&first), (Some(0), Some(0), Some(0)), "{first}");
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(summary["stamps"][0]["drift"]["missing"], 0, "{summary}");
    world.assert_complete(0).await;

    // When a row is deleted behind the tool's back and the next run comes the same day
    sql(&world)
        .execute("DELETE FROM usage_rows WHERE rowid = (SELECT min(rowid) FROM usage_rows)", [])
        .unwrap();
    assert!(world.run_with(&["collect"], &on).await.status.success());

    // Then it is not due again: the status still holds the morning's check
    assert_eq!(status().await["lastVerified"], first["lastVerified"]);

    // When the day has turned (the last verify was yesterday) and the timer runs again
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).timestamp_millis();
    sql(&world).execute("UPDATE processing_status SET last_verified_at = ?1", [yesterday]).unwrap();
    let out = world.run_with(&["collect", "--json"], &on).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // Then the status says exactly one row is missing, checked now, and the table shows it
    let second = status().await;
    assert_eq!(drift(&second), (Some(1), Some(0), Some(0)), "{second}");
    let checked: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(second["lastVerified"]["at"].clone()).unwrap();
    assert!(chrono::Utc::now() - checked < chrono::Duration::minutes(5), "{second}");
    let table = stdout(&world.run(&["status"]).await);
    assert!(table.contains("drift m/e/c") && table.contains("1/0/0"), "{table}");

    // And with the schedule off (0), a due stamp is not verified
    sql(&world).execute("UPDATE processing_status SET last_verified_at = ?1", [yesterday]).unwrap();
    let before = status().await;
    assert!(world.run(&["collect"]).await.status.success());
    assert_eq!(status().await["lastVerified"], before["lastVerified"]);
}
