//! `StatusStore`: the seed's processing status, born with the stamp, updated by each run.

use crate::fixtures::*;
use azs_core::ports::{Store, StoreError};
use azs_core::status::{DriftCounts, LastVerified, ProcessingStatus, RunOutcome, RunRecord};
use std::sync::Arc;

pub async fn registering_a_stamp_creates_its_status_with_the_watermark_at_collect_from(
    store: Arc<dyn Store>,
) {
    // Given a stamp that collects from the start of November
    let s = stamp("new");

    // When it is registered
    store.insert_stamp(&s).await.unwrap();

    // Then its status exists: nothing run yet, the watermark at collect_from
    let expected = ProcessingStatus {
        stamp_id: s.id.clone(),
        watermark: s.collect_from,
        last_run_started: None,
        last_run_finished: None,
        outcome: RunOutcome::Pending,
        rows_written: 0,
        unmapped_rows: 0,
        quarantined_rows: 0,
        duplicate_rows: 0,
        last_verified: None,
        drift: None,
        last_error: None,
    };
    assert_eq!(store.get_status(&s.id).await.unwrap(), Some(expected.clone()));
    let listed: Vec<_> =
        store.list_statuses().await.unwrap().into_iter().filter(|x| x.stamp_id == s.id).collect();
    assert_eq!(listed, vec![expected]);
}

pub async fn a_run_records_its_start_and_its_finish(store: Arc<dyn Store>) {
    // Given a registered stamp
    let s = stamp("runs");
    store.insert_stamp(&s).await.unwrap();

    // When a run starts
    let started = t("2026-11-26T12:05:00Z");
    store.record_run_started(&s.id, started).await.unwrap();

    // Then the status says it is running since then
    let running = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!(running.outcome, RunOutcome::Running);
    assert_eq!(running.last_run_started, Some(started));

    // When it finishes with a failure
    let record = RunRecord {
        outcome: RunOutcome::Failed,
        finished: t("2026-11-26T12:06:30Z"),
        rows_written: 20_000,
        unmapped_rows: 17,
        duplicates: 3,
        last_error: Some("usage: HTTP 500 (upstream InternalServerError)".into()),
    };
    store.record_run_finished(&s.id, &record).await.unwrap();

    // Then the status carries the record, and the watermark has not moved
    let done = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!(
        done,
        ProcessingStatus {
            stamp_id: s.id.clone(),
            watermark: s.collect_from,
            last_run_started: Some(started),
            last_run_finished: Some(record.finished),
            outcome: RunOutcome::Failed,
            rows_written: 20_000,
            unmapped_rows: 17,
            quarantined_rows: 0,
            duplicate_rows: 3,
            last_verified: None,
            drift: None,
            last_error: record.last_error.clone(),
        }
    );

    // And a later success clears the error, and the duplicates dropped add up over runs
    let ok = RunRecord { outcome: RunOutcome::Succeeded, last_error: None, duplicates: 2, ..record };
    store.record_run_finished(&s.id, &ok).await.unwrap();
    let done = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!((done.last_error, done.duplicate_rows), (None, 5));

    // And an unknown stamp has no status to record into
    let unknown = stamp("unknown");
    assert!(matches!(
        store.record_run_started(&unknown.id, started).await,
        Err(StoreError::UnknownStamp(id)) if id == unknown.id
    ));
    assert!(matches!(
        store.record_run_finished(&unknown.id, &ok).await,
        Err(StoreError::UnknownStamp(id)) if id == unknown.id
    ));
}

pub async fn a_verify_outcome_is_recorded_in_the_status_and_replaced_by_the_next(store: Arc<dyn Store>) {
    // Given a registered stamp, never verified
    let s = stamp("verified");
    store.insert_stamp(&s).await.unwrap();
    let never = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!((never.last_verified, never.drift), (None, None));

    // When a verify that found drift is recorded
    let first = LastVerified { at: t("2026-11-26T00:05:00.250Z"), range: hour(COLLECT_FROM) };
    let drift = DriftCounts { missing: 1, extra: 2, changed: 3 };
    store.record_verified(&s.id, &first, &drift).await.unwrap();

    // Then the status carries when, which range and what differed, in both reads
    let status = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!((status.last_verified, status.drift), (Some(first), Some(drift)));
    let listed = store.list_statuses().await.unwrap().into_iter().find(|x| x.stamp_id == s.id).unwrap();
    assert_eq!(listed, status);

    // And the next verify replaces it, a run's record leaves it alone
    let next = LastVerified { at: t("2026-11-27T00:05:00Z"), range: hour("2026-11-01T01:00:00Z") };
    store.record_verified(&s.id, &next, &DriftCounts::default()).await.unwrap();
    let ok = RunRecord {
        outcome: RunOutcome::Succeeded,
        finished: t("2026-11-27T00:06:00Z"),
        rows_written: 1,
        unmapped_rows: 0,
        duplicates: 0,
        last_error: None,
    };
    store.record_run_finished(&s.id, &ok).await.unwrap();
    let status = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!((status.last_verified, status.drift), (Some(next), Some(DriftCounts::default())));

    // And an unknown stamp has no status to record into
    let unknown = stamp("unknown-verify");
    assert!(matches!(
        store.record_verified(&unknown.id, &next, &drift).await,
        Err(StoreError::UnknownStamp(id)) if id == unknown.id
    ));
}
