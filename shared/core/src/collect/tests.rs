//! The collector's rooms driven through its ports, with the in-memory doubles of `doubles`: each test
//! states one behaviour of one room (named in its section), given a store, a secret store and
//! scripted stamps.

use super::doubles::{MemorySecrets, MemoryStore, ROOMY, Script, ScriptedSource, stamp};
use super::{
    CollectErrorKind, CollectSettings, Collector, ReprocessRequest, RunRequest, RunSummary, Silent,
    StampSummary,
};
use crate::ports::{SecretStore, StampRegistry, StoreError};
use crate::quarantine::RowLimits;
use crate::secret::Secret;
use crate::stamp::{Credential, Stamp};
use crate::status::RunOutcome;
use crate::usage::Quantity;
use crate::window::{self, ReportedWindow};
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

struct World {
    store: Arc<MemoryStore>,
    secrets: Arc<MemorySecrets>,
    script: Arc<Script>,
    collector: Collector,
}

impl World {
    async fn new(settings: CollectSettings, stamps: &[&Stamp]) -> World {
        World::with_limits(settings, ROOMY, stamps).await
    }

    async fn with_limits(settings: CollectSettings, limits: RowLimits, stamps: &[&Stamp]) -> World {
        let store = Arc::new(MemoryStore::new(limits));
        let secrets = Arc::new(MemorySecrets::default());
        let script = Arc::new(Script::default());
        for stamp in stamps {
            store.insert_stamp(stamp).await.unwrap();
            let credential = Credential::ApplicationSecret(Secret::new("client-secret"));
            let document = credential.to_secret_for(&stamp.connection.admin_arm_endpoint);
            secrets.put_secret(&stamp.credential_secret_name, &document).await.unwrap();
        }
        let source = Arc::new(ScriptedSource(script.clone()));
        let collector = Collector::new(store.clone(), secrets.clone(), source, settings);
        World { store, secrets, script, collector }
    }

    async fn run(&self, deadline: Option<Instant>) -> RunSummary {
        self.collector.run(RunRequest { stamps: Vec::new(), deadline }, Arc::new(Silent)).await.unwrap()
    }

    /// The one stamp of a one-stamp run.
    async fn run_one(&self, deadline: Option<Instant>) -> StampSummary {
        let mut summary = self.run(deadline).await;
        assert_eq!(summary.stamps.len(), 1, "{summary:?}");
        summary.stamps.pop().unwrap()
    }
}

fn hour(stamp: &Stamp, n: i64) -> ReportedWindow {
    ReportedWindow::hour(stamp.collect_from + chrono::Duration::hours(n))
}

fn hours(stamp: &Stamp, from: i64, to: i64) -> ReportedWindow {
    ReportedWindow { start: hour(stamp, from).start, end: hour(stamp, to).start }
}

fn horizon() -> chrono::DateTime<Utc> {
    window::horizon(Utc::now(), CollectSettings::default().settle_delay)
}

fn request(reason: &str) -> ReprocessRequest {
    ReprocessRequest { reason: reason.into(), requested_by: "ops-anna".into(), ..ReprocessRequest::default() }
}

// --- run: the fan-out over stamps --------------------------------------------------------------------

#[tokio::test]
async fn every_enabled_stamp_is_collected_to_the_horizon_and_a_disabled_one_is_left_alone() {
    // Given two enabled stamps three hours behind and a disabled one
    let (a, b) = (stamp("a", 3), stamp("b", 3));
    let disabled = Stamp { enabled: false, ..stamp("c", 3) };
    let world = World::new(CollectSettings::default(), &[&a, &b, &disabled]).await;

    // When the timer's run collects
    let summary = world.run(None).await;

    // Then both enabled stamps are collected hour by hour up to the horizon, with their leases freed
    assert_eq!(summary.stamps.len(), 2, "{summary:?}");
    for (s, stamp) in summary.stamps.iter().zip([&a, &b]) {
        assert_eq!((s.outcome, s.windows_committed, s.rows_written), (RunOutcome::Succeeded, 3, 9), "{s:?}");
        assert_eq!(s.watermark, Some(horizon()));
        let status = world.store.status(&stamp.id);
        assert_eq!(
            (status.outcome, status.watermark, status.rows_written),
            (RunOutcome::Succeeded, horizon(), 9)
        );
        assert_eq!(world.store.windows(&stamp.id).len(), 3);
        assert_eq!(world.store.lease_holder(&stamp.id), None);
    }
    // And the disabled one is not touched
    assert_eq!(world.store.status(&disabled.id).outcome, RunOutcome::Pending);
    assert_eq!(world.store.row_count(&disabled.id), 0);
}

#[tokio::test]
async fn a_run_asked_for_an_unknown_stamp_fails_naming_it() {
    let world = World::new(CollectSettings::default(), &[]).await;
    let unknown = stamp("gone", 1).id;
    let request = RunRequest { stamps: vec![unknown.clone()], deadline: None };
    match world.collector.run(request, Arc::new(Silent)).await {
        Err(StoreError::UnknownStamp(id)) => assert_eq!(id, unknown),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_stamp_whose_task_panics_is_reported_failed_with_its_lease_freed_and_the_others_collected() {
    // Given a stamp whose client panics, beside a healthy one
    let (healthy, broken) = (stamp("healthy", 2), stamp("broken", 2));
    let world = World::new(CollectSettings::default(), &[&healthy, &broken]).await;
    *world.script.panics_for.lock().unwrap() = Some(broken.id.clone());

    let summary = world.run(None).await;

    // Then the broken stamp is failed, says why, and its lease is free for the next run
    let failed: Vec<_> = summary.failed().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].stamp_id, broken.id);
    assert!(failed[0].error.as_deref().unwrap().contains("ended abnormally"), "{failed:?}");
    let status = world.store.status(&broken.id);
    assert_eq!(status.outcome, RunOutcome::Failed);
    assert!(status.last_error.unwrap().contains("ended abnormally"));
    assert_eq!(world.store.lease_holder(&broken.id), None);
    // And the healthy one is collected in full
    assert_eq!(world.store.status(&healthy.id).watermark, horizon());
}

// --- stamp: one stamp's run and its session ----------------------------------------------------------

#[tokio::test]
async fn a_stamp_leased_by_another_run_is_skipped_and_nothing_is_written() {
    let s = stamp("busy", 2);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    world.store.take_lease(&s.id, "other-process/run-1");

    let summary = world.run_one(None).await;

    assert_eq!(summary.outcome, RunOutcome::Skipped);
    assert_eq!(summary.watermark, Some(s.collect_from));
    assert_eq!(world.store.row_count(&s.id), 0);
    assert_eq!(world.store.lease_holder(&s.id).as_deref(), Some("other-process/run-1"));
    assert_eq!(world.script.connects.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_stamp_without_its_credential_fails_naming_the_secret_and_nothing_is_sent() {
    let s = stamp("nocred", 2);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    world.secrets.delete_secret(&s.credential_secret_name).await.unwrap();

    let summary = world.run_one(None).await;

    assert_eq!(summary.outcome, RunOutcome::Failed);
    let error = summary.error.unwrap();
    assert!(error.contains(&s.id.to_string()) && error.contains("credential-nocred"), "{error}");
    assert!(error.contains("is not in the secret store"), "{error}");
    assert_eq!(world.store.status(&s.id).last_error.as_deref(), Some(error.as_str()));
    assert_eq!(world.script.connects.load(Ordering::SeqCst), 0);
    assert_eq!(world.store.lease_holder(&s.id), None);
}

#[tokio::test]
async fn a_credential_provisioned_for_another_stamp_is_never_sent() {
    let s = stamp("bound", 2);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    let elsewhere = Credential::ApplicationSecret(Secret::new("client-secret"))
        .to_secret_for("https://adminmanagement.elsewhere.stamp.example");
    world.secrets.put_secret(&s.credential_secret_name, &elsewhere).await.unwrap();

    let summary = world.run_one(None).await;

    assert_eq!(summary.outcome, RunOutcome::Failed);
    assert!(summary.error.unwrap().contains("provisioned for another adminArmEndpoint"));
    assert_eq!(world.script.connects.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_unpinned_stamp_is_pinned_by_discovery_before_its_credential_is_used() {
    // Given a stamp stored before its login endpoint was known
    let mut s = stamp("unpinned", 1);
    s.connection.authority_endpoint_url = None;
    s.connection.token_request_resource_url = None;
    let world = World::new(CollectSettings::default(), &[&s]).await;

    let summary = world.run_one(None).await;

    // Then discovery pinned it (and the store keeps it), and collection went on
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    assert_eq!(world.script.discoveries.load(Ordering::SeqCst), 1);
    let stored = world.store.stamp(&s.id);
    assert_eq!(stored.connection.authority_endpoint_url.as_deref(), Some("https://login.stamp.example/"));
    assert_eq!(
        stored.connection.token_request_resource_url.as_deref(),
        Some("https://management.stamp.example/")
    );
    // and the pin is a change on record, under the collector's name
    assert_eq!(world.store.stamp_changes(), [(super::COLLECTOR.to_owned(), s.id.clone())]);
}

// --- windows: the loop from the watermark to the horizon ---------------------------------------------

#[tokio::test]
async fn a_stamp_behind_is_caught_up_in_spans_of_at_most_max_span_hours() {
    let s = stamp("behind", 10);
    let settings = CollectSettings { max_span_hours: 4, ..CollectSettings::default() };
    let world = World::new(settings, &[&s]).await;

    let summary = world.run_one(None).await;

    assert_eq!(
        (summary.outcome, summary.windows_planned, summary.windows_committed),
        (RunOutcome::Succeeded, 3, 3)
    );
    let stored: Vec<ReportedWindow> = world.store.windows(&s.id).into_iter().map(|(w, _)| w).collect();
    assert_eq!(stored, vec![hours(&s, 0, 4), hours(&s, 4, 8), hours(&s, 8, 10)]);
    assert_eq!(world.store.row_count(&s.id), 30);
    assert_eq!(world.store.status(&s.id).watermark, horizon());
}

#[tokio::test]
async fn a_span_whose_pages_repeat_rows_is_refused_and_its_hours_pulled_one_by_one() {
    // Given a stamp that starts each page with the previous page's last row
    let s = stamp("repeats", 4);
    let settings = CollectSettings { max_span_hours: 4, ..CollectSettings::default() };
    let world = World::new(settings, &[&s]).await;
    world.script.repeat_across_pages.store(true, Ordering::SeqCst);

    let summary = world.run_one(None).await;

    // Then the span is pulled once, refused, and the hours pulled one at a time and stored each
    assert_eq!(summary.outcome, RunOutcome::Succeeded);
    let hourly: Vec<ReportedWindow> = (0..4).map(|h| hour(&s, h)).collect();
    assert_eq!(world.script.pulls(), [vec![hours(&s, 0, 4)], hourly.clone()].concat());
    let stored: Vec<ReportedWindow> = world.store.windows(&s.id).into_iter().map(|(w, _)| w).collect();
    assert_eq!(stored, hourly);
    assert_eq!(world.store.row_count(&s.id), 12);
}

#[tokio::test]
async fn a_run_whose_budget_cannot_hold_another_window_stops_before_it_as_partial() {
    // Given a stamp whose hours take 300 ms, and a budget of about one hour's pull past the reserve
    let s = stamp("slow", 3);
    let settings =
        CollectSettings { commit_reserve: Duration::from_millis(200), ..CollectSettings::default() };
    let world = World::new(settings, &[&s]).await;
    *world.script.pull_delay.lock().unwrap() = Duration::from_millis(300);
    let deadline = Instant::now() + Duration::from_millis(800);

    let summary = world.run_one(Some(deadline)).await;

    // Then the first hour (which measures the stamp) is committed and no window is started that twice
    // its time would not fit
    assert_eq!((summary.outcome, summary.windows_committed), (RunOutcome::Partial, 1), "{summary:?}");
    assert_eq!(world.store.status(&s.id).watermark, hour(&s, 1).start);
    assert_eq!(world.store.status(&s.id).outcome, RunOutcome::Partial);
}

#[tokio::test]
async fn a_budget_that_runs_out_mid_window_commits_nothing_of_it() {
    let s = stamp("stuck", 2);
    let settings =
        CollectSettings { commit_reserve: Duration::from_millis(100), ..CollectSettings::default() };
    let world = World::new(settings, &[&s]).await;
    *world.script.pull_delay.lock().unwrap() = Duration::from_secs(5);
    let deadline = Instant::now() + Duration::from_millis(400);

    let summary = world.run_one(Some(deadline)).await;

    assert_eq!(summary.outcome, RunOutcome::Failed);
    assert!(summary.budget_ran_out);
    let error = summary.error.unwrap();
    assert!(error.contains(&hour(&s, 0).to_string()) && error.contains("time budget ran out"), "{error}");
    assert_eq!(world.store.row_count(&s.id), 0);
    assert_eq!(world.store.status(&s.id).watermark, s.collect_from);
}

// --- pull: one window under the lease, quarantined, committed fenced --------------------------------

#[tokio::test]
async fn a_run_that_loses_its_lease_mid_window_has_that_commit_fenced_and_writes_nothing_of_it() {
    // Given a stamp four hours behind whose lease another run takes while the third hour is pulled
    // (this run's lease expired unnoticed: the pull was quicker than a renewal)
    let s = stamp("contested", 4);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    let store = world.store.clone();
    let third = hour(&s, 2);
    world.script.set_on_pull(move |stamp, window| {
        if window == third {
            store.take_lease(stamp, "other-process/run-2");
        }
    });

    let summary = world.run_one(None).await;

    // Then the third hour's commit is refused by the store's fence and nothing of it is written
    assert_eq!((summary.outcome, summary.windows_committed), (RunOutcome::Failed, 2), "{summary:?}");
    let stored: Vec<ReportedWindow> = world.store.windows(&s.id).into_iter().map(|(w, _)| w).collect();
    assert_eq!(stored, vec![hour(&s, 0), hour(&s, 1)]);
    assert_eq!(world.store.status(&s.id).watermark, third.start);
    // And the stamp's outcome says why, naming the stamp and the window
    let error = summary.error.unwrap();
    assert!(error.contains(&s.id.to_string()) && error.contains(&third.to_string()), "{error}");
    assert!(error.contains("was not committed: another run holds the stamp's lease"), "{error}");
    let status = world.store.status(&s.id);
    assert_eq!((status.outcome, status.last_error.as_deref()), (RunOutcome::Failed, Some(error.as_str())));
    // And the other run keeps its lease: this one's release does not take it away
    assert_eq!(world.store.lease_holder(&s.id).as_deref(), Some("other-process/run-2"));
}

#[tokio::test]
async fn a_lease_taken_while_a_window_is_pulled_is_noticed_at_renewal_and_the_window_is_dropped() {
    // Given a lease renewed every 50 ms, and a pull of 300 ms during which another run takes it
    let s = stamp("renewal", 3);
    let settings = CollectSettings { lease_ttl: Duration::from_millis(150), ..CollectSettings::default() };
    let world = World::new(settings, &[&s]).await;
    *world.script.pull_delay.lock().unwrap() = Duration::from_millis(300);
    let store = world.store.clone();
    let second = hour(&s, 1);
    world.script.set_on_pull(move |stamp, window| {
        if window == second {
            store.take_lease(stamp, "other-process/run-3");
        }
    });

    let summary = world.run_one(None).await;

    assert_eq!((summary.outcome, summary.windows_committed), (RunOutcome::Failed, 1));
    let error = summary.error.unwrap();
    assert!(error.contains(&second.to_string()) && error.contains("lost the stamp's lease"), "{error}");
    assert_eq!(world.store.status(&s.id).watermark, second.start);
    assert_eq!(world.store.windows(&s.id).len(), 1);
}

#[tokio::test]
async fn rows_the_store_cannot_hold_are_quarantined_with_their_window_and_the_watermark_moves_on() {
    // Given a store that holds resource URIs of 40 bytes, and a stamp sending one longer row an hour
    let s = stamp("long", 2);
    let limits = RowLimits { resource_uri: 40, ..ROOMY };
    let world = World::with_limits(CollectSettings::default(), limits, &[&s]).await;
    world.script.long_uri_rows.store(1, Ordering::SeqCst);

    let summary = world.run_one(None).await;

    assert_eq!((summary.outcome, summary.rows_written, summary.quarantined), (RunOutcome::Succeeded, 6, 2));
    let quarantined = world.store.quarantined(&s.id);
    assert_eq!(quarantined.iter().map(|q| q.window).collect::<Vec<_>>(), vec![hour(&s, 0), hour(&s, 1)]);
    assert!(quarantined.iter().all(|q| q.field == "properties.instanceData.Microsoft.Resources.resourceUri"));
    assert!(quarantined[0].raw.contains(&"x".repeat(94)), "{}", quarantined[0].raw);
    assert_eq!(world.store.status(&s.id).watermark, horizon());
}

#[tokio::test]
async fn more_unholdable_rows_than_a_window_may_quarantine_fail_it_and_store_nothing_of_it() {
    let s = stamp("flood", 2);
    let settings = CollectSettings { max_quarantined_per_window: 2, ..CollectSettings::default() };
    let world = World::with_limits(settings, RowLimits { resource_uri: 40, ..ROOMY }, &[&s]).await;
    world.script.long_uri_rows.store(3, Ordering::SeqCst);

    let summary = world.run_one(None).await;

    assert_eq!((summary.outcome, summary.windows_committed), (RunOutcome::Failed, 0));
    let error = summary.error.unwrap();
    assert!(
        error.contains(&hour(&s, 0).to_string()) && error.contains("quarantined rows per window"),
        "{error}"
    );
    assert_eq!(world.store.row_count(&s.id), 0);
    assert!(world.store.quarantined(&s.id).is_empty());
}

// --- verify: re-pull and compare without writing -----------------------------------------------------

#[tokio::test]
async fn verify_finds_a_row_changed_behind_the_collectors_back_and_writes_nothing() {
    // Given three collected hours, one stored quantity of the second changed afterwards
    let s = stamp("verified", 3);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    world.run_one(None).await;
    world.store.tamper(&s.id, hour(&s, 1), |rows| rows[0].quantity = Quantity::TWO);
    let before = world.store.windows(&s.id);

    let drift = world.collector.verify(&s.id, hours(&s, 0, 3)).await.unwrap();

    assert_eq!(
        drift.iter().map(|h| h.window).collect::<Vec<_>>(),
        (0..3).map(|h| hour(&s, h)).collect::<Vec<_>>()
    );
    assert!(drift[0].is_equal() && drift[2].is_equal(), "{drift:?}");
    assert_eq!(drift[1].totals(), (0, 0, 1));
    assert_eq!(world.store.windows(&s.id), before);
}

#[tokio::test]
async fn verify_and_reprocess_refuse_a_range_not_yet_collected() {
    let s = stamp("fresh", 3);
    let world = World::new(CollectSettings::default(), &[&s]).await;

    let error = world.collector.verify(&s.id, hours(&s, 0, 1)).await.unwrap_err();
    assert!(matches!(error.kind, CollectErrorKind::Invalid(_)), "{error}");
    assert!(error.to_string().contains("only collected hours can be reprocessed or verified"), "{error}");
    let error = world.collector.reprocess(&s.id, hours(&s, 0, 1), &request("early")).await.unwrap_err();
    assert!(error.to_string().contains(&hours(&s, 0, 1).to_string()), "{error}");
    assert_eq!(world.script.connects.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_scheduled_verify_compares_the_trailing_hours_once_a_day() {
    // Given a collector that verifies the last two hours of a stamp it brought up to date
    let s = stamp("daily", 3);
    let settings = CollectSettings { verify_trailing_hours: 2, ..CollectSettings::default() };
    let world = World::new(settings, &[&s]).await;

    // When it runs, the trailing hours are compared and found equal, and the status says so
    let first = world.run_one(None).await;
    assert_eq!(first.drift.map(|d| d.total()), Some(0), "{first:?}");
    let status = world.store.status(&s.id);
    assert_eq!(status.last_verified.map(|v| v.range), Some(hours(&s, 1, 3)));

    // And a second run the same day does not verify again
    let pulls = world.script.pulls().len();
    let second = world.run_one(None).await;
    assert_eq!(second.drift, None);
    assert_eq!(world.script.pulls().len(), pulls);
}

// --- reprocess: re-pull and replace -------------------------------------------------------------------

#[tokio::test]
async fn reprocess_replaces_a_collected_hour_keeps_the_watermark_and_records_who_and_why() {
    // Given three collected hours, and a stamp that now reports a higher quantity
    let s = stamp("fixed", 3);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    world.run_one(None).await;
    *world.script.quantity.lock().unwrap() = Quantity::TWO;

    let report = world.collector.reprocess(&s.id, hours(&s, 1, 2), &request("meter fix")).await.unwrap();

    assert_eq!((report.summary.windows_committed, report.totals()), (1, (0, 0, 3)));
    let windows = world.store.windows(&s.id);
    assert!(windows[1].1.iter().all(|r| r.quantity == Quantity::TWO));
    assert!(windows[0].1.iter().chain(&windows[2].1).all(|r| r.quantity == Quantity::ONE));
    assert_eq!(world.store.status(&s.id).watermark, horizon());
    let log = world.store.reprocess_log();
    assert!(
        log.len() == 1 && log[0].contains("meter fix [by ops-anna") && log[0].contains("completed"),
        "{log:?}"
    );
    assert_eq!(world.store.lease_holder(&s.id), None);
}

#[tokio::test]
async fn reprocess_refuses_an_hour_that_would_lose_rows_unless_allowed_to_shrink() {
    // Given collected hours, and a stamp that now reports fewer rows
    let s = stamp("shrinking", 2);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    world.run_one(None).await;
    let before = world.store.windows(&s.id);
    world.script.rows_per_hour.store(1, Ordering::SeqCst);

    // When it is reprocessed, the hour is refused and nothing changes, and the refusal is logged
    let error = world.collector.reprocess(&s.id, hours(&s, 0, 1), &request("re-pull")).await.unwrap_err();
    assert!(error.to_string().contains("--allow-shrink"), "{error}");
    assert_eq!(world.store.windows(&s.id), before);
    assert!(world.store.reprocess_log()[0].contains("stopped"));

    // And with allow_shrink it is replaced
    let allowed = ReprocessRequest { allow_shrink: true, ..request("re-pull, shrink allowed") };
    world.collector.reprocess(&s.id, hours(&s, 0, 1), &allowed).await.unwrap();
    assert_eq!(world.store.windows(&s.id)[0].1.len(), 1);
}

#[tokio::test]
async fn a_dry_run_reprocess_compares_and_writes_nothing() {
    let s = stamp("dry", 2);
    let world = World::new(CollectSettings::default(), &[&s]).await;
    world.run_one(None).await;
    let before = world.store.windows(&s.id);
    world.script.rows_per_hour.store(5, Ordering::SeqCst);

    let dry = ReprocessRequest { dry_run: true, ..request("") };
    let report = world.collector.reprocess(&s.id, hours(&s, 0, 2), &dry).await.unwrap();

    assert!(report.dry_run);
    assert_eq!(report.totals(), (4, 0, 0));
    assert_eq!(world.store.windows(&s.id), before);
    assert!(world.store.reprocess_log().is_empty());
}

// --- summary ------------------------------------------------------------------------------------------

#[test]
fn a_run_summary_adds_up_its_stamps_and_names_the_failed_ones() {
    let s = |outcome, rows, quarantined| StampSummary {
        outcome,
        rows_written: rows,
        quarantined,
        ..StampSummary::starting(stamp("s", 1).id, "s".into())
    };
    let summary = RunSummary {
        stamps: vec![
            s(RunOutcome::Succeeded, 5, 1),
            s(RunOutcome::Failed, 2, 0),
            s(RunOutcome::Skipped, 0, 0),
        ],
    };
    assert_eq!((summary.rows_written(), summary.quarantined()), (7, 1));
    assert!(summary.any_failed());
    assert_eq!(summary.failed().count(), 1);
}
