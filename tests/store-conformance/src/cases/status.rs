//! `StatusStore`: the seed's processing status, born with the stamp, updated by each run.

use crate::fixtures::*;
use azs_core::ports::{Store, StoreError};
use azs_core::status::{ProcessingStatus, RunOutcome, RunRecord};
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
