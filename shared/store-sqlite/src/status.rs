//! Per-stamp processing status (`processing_status`): the seed's
//! `AzsHubUsageRecordProcessingStatusData`. The watermark column is moved only by `commit_window`.

use crate::SqliteStore;
use crate::codec::{get_millis_opt, get_outcome, get_secs, get_u64, millis, secs};
use crate::db::Failure;
use async_trait::async_trait;
use azs_core::ports::{StatusReader, StatusStore, StoreError};
use azs_core::stamp::StampId;
use azs_core::status::{DriftCounts, LastVerified, ProcessingStatus, RunOutcome, RunRecord};
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row};

/// The quarantine count is read, not kept: the quarantine's primary key starts with the stamp id.
const COLUMNS: &str = "stamp_id, watermark, last_run_started, last_run_finished, outcome, rows_written, unmapped_rows, last_error,
    (SELECT count(*) FROM quarantined_rows q WHERE q.stamp_id = processing_status.stamp_id), duplicate_rows,
    last_verified_at, verified_from, verified_to, drift_missing, drift_extra, drift_changed";

#[async_trait]
impl StatusReader for SqliteStore {
    async fn get_status(&self, stamp: &StampId) -> Result<Option<ProcessingStatus>, StoreError> {
        let stamp = stamp.clone();
        self.run(move |db| {
            db.read(|conn| {
                let sql = format!("SELECT {COLUMNS} FROM processing_status WHERE stamp_id = ?1");
                Ok(conn.prepare_cached(&sql)?.query_row([stamp.as_str()], status_from_row).optional()?)
            })
        })
        .await
    }

    async fn list_statuses(&self) -> Result<Vec<ProcessingStatus>, StoreError> {
        self.run(|db| {
            db.read(|conn| {
                let sql = format!("SELECT {COLUMNS} FROM processing_status ORDER BY stamp_id");
                let mut stmt = conn.prepare_cached(&sql)?;
                let statuses = stmt.query_map([], status_from_row)?.collect::<Result<Vec<_>, _>>()?;
                Ok(statuses)
            })
        })
        .await
    }
}

#[async_trait]
impl StatusStore for SqliteStore {
    async fn record_run_started(&self, stamp: &StampId, started: DateTime<Utc>) -> Result<(), StoreError> {
        let stamp = stamp.clone();
        self.run(move |db| {
            db.write(|conn| {
                let changed = conn.execute(
                    "UPDATE processing_status SET last_run_started = ?2, outcome = ?3 WHERE stamp_id = ?1",
                    (stamp.as_str(), millis(started), RunOutcome::Running.as_str()),
                )?;
                known(changed, &stamp)
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
        let (stamp, verified, drift) = (stamp.clone(), *verified, *drift);
        self.run(move |db| {
            db.write(|conn| {
                let changed = conn.execute(
                    "UPDATE processing_status SET last_verified_at = ?2, verified_from = ?3, verified_to = ?4,
                         drift_missing = ?5, drift_extra = ?6, drift_changed = ?7
                     WHERE stamp_id = ?1",
                    (
                        stamp.as_str(),
                        millis(verified.at),
                        secs(verified.range.start),
                        secs(verified.range.end),
                        drift.missing as i64,
                        drift.extra as i64,
                        drift.changed as i64,
                    ),
                )?;
                known(changed, &stamp)
            })
        })
        .await
    }

    async fn record_run_finished(&self, stamp: &StampId, record: &RunRecord) -> Result<(), StoreError> {
        let stamp = stamp.clone();
        let record = record.clone();
        self.run(move |db| {
            db.write(|conn| {
                let changed = conn.execute(
                    "UPDATE processing_status SET last_run_finished = ?2, outcome = ?3, rows_written = ?4,
                         unmapped_rows = ?5, last_error = ?6, duplicate_rows = duplicate_rows + ?7
                     WHERE stamp_id = ?1",
                    (
                        stamp.as_str(),
                        millis(record.finished),
                        record.outcome.as_str(),
                        record.rows_written as i64,
                        record.unmapped_rows as i64,
                        record.last_error.as_deref(),
                        record.duplicates as i64,
                    ),
                )?;
                known(changed, &stamp)
            })
        })
        .await
    }
}

fn known(changed: usize, stamp: &StampId) -> Result<(), Failure> {
    if changed == 0 { Err(StoreError::UnknownStamp(stamp.clone()).into()) } else { Ok(()) }
}

fn status_from_row(r: &Row<'_>) -> rusqlite::Result<ProcessingStatus> {
    Ok(ProcessingStatus {
        stamp_id: StampId(r.get(0)?),
        watermark: get_secs(r, 1)?,
        last_run_started: get_millis_opt(r, 2)?,
        last_run_finished: get_millis_opt(r, 3)?,
        outcome: get_outcome(r, 4)?,
        rows_written: get_u64(r, 5)?,
        unmapped_rows: get_u64(r, 6)?,
        quarantined_rows: get_u64(r, 8)?,
        duplicate_rows: get_u64(r, 9)?,
        last_verified: match get_millis_opt(r, 10)? {
            Some(at) => Some(LastVerified {
                at,
                range: ReportedWindow { start: get_secs(r, 11)?, end: get_secs(r, 12)? },
            }),
            None => None,
        },
        drift: match r.get::<_, Option<i64>>(13)? {
            Some(_) => Some(DriftCounts {
                missing: get_u64(r, 13)?,
                extra: get_u64(r, 14)?,
                changed: get_u64(r, 15)?,
            }),
            None => None,
        },
        last_error: r.get(7)?,
    })
}
