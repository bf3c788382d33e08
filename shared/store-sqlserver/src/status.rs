//! Per-stamp processing status (`processing_status`): the seed's
//! `AzsHubUsageRecordProcessingStatusData`. The watermark column is moved only by `commit_window`.

use crate::SqlServerStore;
use crate::bind;
use crate::session::Failure;
use crate::sql;
use crate::types::{self, guid_text, opt, opt_text, req, stamp_key, unsigned};
use async_trait::async_trait;
use azs_core::ports::{StatusReader, StatusStore, StoreError};
use azs_core::stamp::StampId;
use azs_core::status::{DriftCounts, LastVerified, ProcessingStatus, RunOutcome, RunRecord};
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use tiberius::Row;

#[async_trait]
impl StatusReader for SqlServerStore {
    async fn get_status(&self, stamp: &StampId) -> Result<Option<ProcessingStatus>, StoreError> {
        let Some(key) = stamp_key(stamp) else { return Ok(None) };
        self.run("get_status", |mut s| {
            Box::pin(async move {
                s.query_one(bind::get_status(key)).await?.as_ref().map(status_from_row).transpose()
            })
        })
        .await
    }

    async fn list_statuses(&self) -> Result<Vec<ProcessingStatus>, StoreError> {
        let mut statuses: Vec<ProcessingStatus> = self
            .run("list_statuses", |mut s| {
                Box::pin(async move {
                    s.query(bind::none(&sql::LIST_STATUSES)).await?.iter().map(status_from_row).collect()
                })
            })
            .await?;
        // By the id's text, as the SQLite store orders them (uniqueidentifier order differs).
        statuses.sort_by(|a: &ProcessingStatus, b: &ProcessingStatus| a.stamp_id.cmp(&b.stamp_id));
        Ok(statuses)
    }
}

#[async_trait]
impl StatusStore for SqlServerStore {
    async fn record_run_started(&self, stamp: &StampId, started: DateTime<Utc>) -> Result<(), StoreError> {
        let key = stamp_key(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        let started = types::millis(started);
        self.run("record_run_started", |mut s| {
            Box::pin(async move {
                let changed =
                    s.execute(bind::run_started(key, started, RunOutcome::Running.as_str())).await?;
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
        let key = stamp_key(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        self.run("record_verified", |mut s| {
            Box::pin(
                async move { known(s.execute(bind::record_verified(key, verified, drift)).await?, stamp) },
            )
        })
        .await
    }

    async fn record_run_finished(&self, stamp: &StampId, record: &RunRecord) -> Result<(), StoreError> {
        let key = stamp_key(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        let finished = types::millis(record.finished);
        self.run("record_run_finished", |mut s| {
            Box::pin(async move { known(s.execute(bind::run_finished(key, finished, record)).await?, stamp) })
        })
        .await
    }
}

fn known(changed: u64, stamp: &StampId) -> Result<(), Failure> {
    if changed == 0 { Err(StoreError::UnknownStamp(stamp.clone()).into()) } else { Ok(()) }
}

fn status_from_row(r: &Row) -> Result<ProcessingStatus, Failure> {
    Ok(ProcessingStatus {
        stamp_id: StampId(guid_text(req(r, 0)?)),
        watermark: req(r, 1)?,
        last_run_started: opt(r, 2)?,
        last_run_finished: opt(r, 3)?,
        outcome: types::outcome(req(r, 4)?)?,
        rows_written: unsigned(r, 5)?,
        unmapped_rows: unsigned(r, 6)?,
        quarantined_rows: unsigned(r, 8)?,
        duplicate_rows: unsigned(r, 9)?,
        last_verified: match opt::<DateTime<Utc>>(r, 10)? {
            Some(at) => {
                Some(LastVerified { at, range: ReportedWindow { start: req(r, 11)?, end: req(r, 12)? } })
            }
            None => None,
        },
        drift: match opt::<i64>(r, 13)? {
            Some(_) => Some(DriftCounts {
                missing: unsigned(r, 13)?,
                extra: unsigned(r, 14)?,
                changed: unsigned(r, 15)?,
            }),
            None => None,
        },
        last_error: opt_text(r, 7)?,
    })
}
