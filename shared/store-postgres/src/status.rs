//! Per-stamp processing status (`processing_status`). The watermark column is moved only by
//! `commit_window`.

use crate::{Failure, PostgresStore};
use async_trait::async_trait;
use azs_core::ports::{StatusReader, StatusStore, StoreError};
use azs_core::stamp::StampId;
use azs_core::status::{DriftCounts, LastVerified, ProcessingStatus, RunOutcome, RunRecord};
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

/// The quarantine count is read, not kept: the quarantine's primary key starts with the stamp id.
const COLUMNS: &str = "stamp_id, watermark, last_run_started, last_run_finished, outcome, rows_written,
    unmapped_rows, last_error,
    (SELECT count(*) FROM quarantined_rows q WHERE q.stamp_id = processing_status.stamp_id), duplicate_rows,
    last_verified_at, verified_from, verified_to, drift_missing, drift_extra, drift_changed";

#[async_trait]
impl StatusReader for PostgresStore {
    async fn get_status(&self, stamp: &StampId) -> Result<Option<ProcessingStatus>, StoreError> {
        self.run("get_status", |client| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM processing_status WHERE stamp_id = $1");
                client.query_opt(&sql, &[&stamp.as_str()]).await?.map(|r| status_from_row(&r)).transpose()
            })
        })
        .await
    }

    async fn list_statuses(&self) -> Result<Vec<ProcessingStatus>, StoreError> {
        self.run("list_statuses", |client| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM processing_status ORDER BY stamp_id");
                client.query(&sql, &[]).await?.iter().map(status_from_row).collect()
            })
        })
        .await
    }
}

#[async_trait]
impl StatusStore for PostgresStore {
    async fn record_run_started(&self, stamp: &StampId, started: DateTime<Utc>) -> Result<(), StoreError> {
        self.run("record_run_started", |client| {
            Box::pin(async move {
                let changed = client
                    .execute(
                        "UPDATE processing_status SET last_run_started = $2, outcome = $3 WHERE stamp_id = $1",
                        &[&stamp.as_str(), &started, &RunOutcome::Running.as_str()],
                    )
                    .await?;
                known(changed, stamp)
            })
        })
        .await
    }

    async fn record_run_finished(&self, stamp: &StampId, record: &RunRecord) -> Result<(), StoreError> {
        let counts = [count(record.rows_written)?, count(record.unmapped_rows)?, count(record.duplicates)?];
        let last_error = record.last_error.as_deref().map(crate::storable);
        let last_error = last_error.as_deref();
        self.run("record_run_finished", |client| {
            Box::pin(async move {
                let changed = client
                    .execute(
                        "UPDATE processing_status SET last_run_finished = $2, outcome = $3, rows_written = $4,
                             unmapped_rows = $5, last_error = $6, duplicate_rows = duplicate_rows + $7
                         WHERE stamp_id = $1",
                        &[
                            &stamp.as_str(),
                            &record.finished,
                            &record.outcome.as_str(),
                            &counts[0],
                            &counts[1],
                            &last_error,
                            &counts[2],
                        ],
                    )
                    .await?;
                known(changed, stamp)
            })
        })
        .await
    }

    async fn record_verified(
        &self,
        stamp: &StampId,
        verified: &LastVerified,
        drift: &DriftCounts,
    ) -> Result<(), StoreError> {
        let counts = [count(drift.missing)?, count(drift.extra)?, count(drift.changed)?];
        self.run("record_verified", |client| {
            Box::pin(async move {
                let changed = client
                    .execute(
                        "UPDATE processing_status SET last_verified_at = $2, verified_from = $3,
                             verified_to = $4, drift_missing = $5, drift_extra = $6, drift_changed = $7
                         WHERE stamp_id = $1",
                        &[
                            &stamp.as_str(),
                            &verified.at,
                            &verified.range.start,
                            &verified.range.end,
                            &counts[0],
                            &counts[1],
                            &counts[2],
                        ],
                    )
                    .await?;
                known(changed, stamp)
            })
        })
        .await
    }
}

fn count(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Other(format!("the count {n} does not fit a bigint")))
}

fn known(changed: u64, stamp: &StampId) -> Result<(), Failure> {
    if changed == 0 { Err(StoreError::UnknownStamp(stamp.clone()).into()) } else { Ok(()) }
}

pub(crate) fn get_u64(r: &Row, idx: usize) -> Result<u64, Failure> {
    let n: i64 = r.try_get(idx)?;
    u64::try_from(n).map_err(|_| StoreError::Other(format!("column {idx}: {n} is negative")).into())
}

fn status_from_row(r: &Row) -> Result<ProcessingStatus, Failure> {
    let outcome: String = r.try_get(4)?;
    Ok(ProcessingStatus {
        stamp_id: StampId(r.try_get(0)?),
        watermark: r.try_get(1)?,
        last_run_started: r.try_get(2)?,
        last_run_finished: r.try_get(3)?,
        outcome: RunOutcome::parse(&outcome)
            .ok_or_else(|| StoreError::Other(format!("status row: unknown outcome {outcome:?}")))?,
        rows_written: get_u64(r, 5)?,
        unmapped_rows: get_u64(r, 6)?,
        quarantined_rows: get_u64(r, 8)?,
        duplicate_rows: get_u64(r, 9)?,
        last_verified: match r.try_get::<_, Option<DateTime<Utc>>>(10)? {
            Some(at) => Some(LastVerified {
                at,
                range: ReportedWindow { start: r.try_get(11)?, end: r.try_get(12)? },
            }),
            None => None,
        },
        drift: match r.try_get::<_, Option<i64>>(13)? {
            Some(_) => Some(DriftCounts {
                missing: get_u64(r, 13)?,
                extra: get_u64(r, 14)?,
                changed: get_u64(r, 15)?,
            }),
            None => None,
        },
        last_error: r.try_get(7)?,
    })
}
