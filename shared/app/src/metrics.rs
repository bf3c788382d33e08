//! What a collection run publishes for alarms, per stamp: how far its watermark lags behind now, the
//! run's outcome, and (on a run that did the stamp's scheduled verify) how many rows drifted. The entry points call this after a run; the core knows nothing of it.
//!
//! - Lambda: one CloudWatch Embedded Metric Format (EMF) JSON object per stamp, each on its own stdout
//!   line. CloudWatch Logs extracts the metrics from the log group without any API call or permission
//!   (namespace [`NAMESPACE`]; infra/modules/aws alarms on them).
//! - Azure: one `azs-usage-metric {json}` line per stamp in the invocation's `Logs`, which the Functions
//!   host writes to Application Insights `traces`; the alert rules in infra/modules/azure parse exactly
//!   this shape (see [`APP_INSIGHTS_PREFIX`]).

use azs_core::collect::{RunSummary, StampSummary};
use azs_core::status::RunOutcome;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use std::io::Write;

/// CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "AzsUsage";
/// Seconds between the stamp's watermark and now (the end of the last committed hour).
pub const WATERMARK_LAG: &str = "WatermarkLagSeconds";
/// 1 when the stamp's run failed, else 0: an alarm can count failed stamps rather than invocations.
pub const STAMP_FAILED: &str = "StampFailed";
/// Rows that differ between the store and the stamp (missing + extra + changed) over the range the
/// scheduled verify compared; published only by a run that verified (once a day per stamp), so an alarm
/// on it treats missing data as not breaching.
pub const DRIFT_ROWS: &str = "DriftRows";
/// The EMF dimension that names the stamp (its name; names are unique in an installation).
pub const STAMP_DIMENSION: &str = "Stamp";
/// How an Azure metric line starts; the alert queries split the JSON off after it.
pub const APP_INSIGHTS_PREFIX: &str = "azs-usage-metric ";

/// One stamp's figures after a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampMetric {
    pub stamp_id: String,
    pub stamp_name: String,
    /// `None` when the run could not read the stamp's watermark (the store failed for that stamp).
    pub watermark_lag_seconds: Option<i64>,
    pub outcome: RunOutcome,
    /// Rows that drifted, when this run verified the stamp.
    pub drift_rows: Option<u64>,
}

impl StampMetric {
    pub fn of(stamp: &StampSummary, now: DateTime<Utc>) -> Self {
        Self {
            stamp_id: stamp.stamp_id.0.clone(),
            stamp_name: stamp.name.clone(),
            // A watermark in the future (clock skew) is no lag at all.
            watermark_lag_seconds: stamp.watermark.map(|w| (now - w).num_seconds().max(0)),
            outcome: stamp.outcome,
            drift_rows: stamp.drift.map(|d| d.total()),
        }
    }

    fn failed(&self) -> u8 {
        u8::from(self.outcome == RunOutcome::Failed)
    }

    /// The CloudWatch EMF object. Two dimension sets: per stamp (for dashboards and per-stamp alarms)
    /// and none (the `Maximum` over every stamp, which one alarm watches without knowing the stamps).
    pub fn emf(&self, now: DateTime<Utc>) -> Value {
        let mut metrics = vec![json!({"Name": STAMP_FAILED, "Unit": "Count"})];
        let mut root = Map::new();
        if let Some(lag) = self.watermark_lag_seconds {
            metrics.insert(0, json!({"Name": WATERMARK_LAG, "Unit": "Seconds"}));
            root.insert(WATERMARK_LAG.into(), json!(lag));
        }
        if let Some(drift) = self.drift_rows {
            metrics.push(json!({"Name": DRIFT_ROWS, "Unit": "Count"}));
            root.insert(DRIFT_ROWS.into(), json!(drift));
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[STAMP_DIMENSION], []],
                    "Metrics": metrics,
                }],
            }),
        );
        root.insert(STAMP_DIMENSION.into(), json!(self.stamp_name));
        root.insert(STAMP_FAILED.into(), json!(self.failed()));
        // Properties: searchable in Logs Insights, not metrics.
        root.insert("StampId".into(), json!(self.stamp_id));
        root.insert("Outcome".into(), json!(self.outcome.as_str()));
        Value::Object(root)
    }

    /// The Application Insights trace line: `azs-usage-metric {"stampId":…,"stampName":…,
    /// "watermarkLagSeconds":…,"outcome":…,"failed":0|1,"driftRows":…|null}`.
    pub fn app_insights_line(&self) -> String {
        let body = json!({
            "stampId": self.stamp_id,
            "stampName": self.stamp_name,
            "watermarkLagSeconds": self.watermark_lag_seconds,
            "outcome": self.outcome.as_str(),
            "failed": self.failed(),
            "driftRows": self.drift_rows,
        });
        format!("{APP_INSIGHTS_PREFIX}{body}")
    }
}

/// One metric per stamp of the run.
pub fn stamp_metrics(summary: &RunSummary, now: DateTime<Utc>) -> Vec<StampMetric> {
    summary.stamps.iter().map(|s| StampMetric::of(s, now)).collect()
}

/// Writes one EMF line per stamp. Each object is a whole line of its own, as EMF requires: it must not
/// be wrapped by the tracing JSON formatter.
pub fn write_emf(out: &mut impl Write, summary: &RunSummary, now: DateTime<Utc>) -> std::io::Result<()> {
    for metric in stamp_metrics(summary, now) {
        writeln!(out, "{}", metric.emf(now))?;
    }
    out.flush()
}

/// The Azure lines of a run, to append to the invocation's `Logs`.
pub fn app_insights_lines(summary: &RunSummary, now: DateTime<Utc>) -> Vec<String> {
    stamp_metrics(summary, now).iter().map(StampMetric::app_insights_line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::stamp::StampId;
    use chrono::TimeZone;

    fn summary(outcome: RunOutcome, watermark: Option<DateTime<Utc>>) -> StampSummary {
        StampSummary {
            stamp_id: StampId("3f2a".into()),
            name: "eu-1".into(),
            outcome,
            windows_planned: 1,
            windows_committed: 1,
            rows_written: 1,
            duplicates: 0,
            unmapped_rows: 0,
            quarantined: 0,
            watermark,
            drift: None,
            error: None,
            budget_ran_out: false,
        }
    }

    #[test]
    fn the_lag_is_now_minus_the_watermark_and_never_negative() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 5, 0).unwrap();
        let behind = summary(RunOutcome::Succeeded, Some(now - chrono::Duration::hours(3)));
        assert_eq!(StampMetric::of(&behind, now).watermark_lag_seconds, Some(10_800));
        let ahead = summary(RunOutcome::Succeeded, Some(now + chrono::Duration::hours(1)));
        assert_eq!(StampMetric::of(&ahead, now).watermark_lag_seconds, Some(0));
    }

    #[test]
    fn an_unknown_watermark_publishes_only_the_outcome() {
        let now = Utc::now();
        let metric = StampMetric::of(&summary(RunOutcome::Failed, None), now);
        let emf = metric.emf(now);
        let names = &emf["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert_eq!(names, &json!([{"Name": STAMP_FAILED, "Unit": "Count"}]));
        assert!(emf.get(WATERMARK_LAG).is_none());
        assert_eq!(emf[STAMP_FAILED], 1);
        assert!(metric.app_insights_line().contains(r#""watermarkLagSeconds":null"#));
    }

    #[test]
    fn a_run_that_verified_publishes_the_drift_next_to_the_lag_and_one_that_did_not_publishes_none() {
        let now = Utc::now();
        let verified = StampSummary {
            drift: Some(azs_core::status::DriftCounts { missing: 1, extra: 0, changed: 2 }),
            ..summary(RunOutcome::Succeeded, Some(now))
        };
        let metric = StampMetric::of(&verified, now);
        let emf = metric.emf(now);
        let names: Vec<&str> = emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec![WATERMARK_LAG, STAMP_FAILED, DRIFT_ROWS]);
        assert_eq!(emf[DRIFT_ROWS], 3);
        assert!(metric.app_insights_line().contains(r#""driftRows":3"#));

        let not_verified = StampMetric::of(&summary(RunOutcome::Succeeded, Some(now)), now);
        assert!(not_verified.emf(now).get(DRIFT_ROWS).is_none());
        assert!(not_verified.app_insights_line().contains(r#""driftRows":null"#));
    }
}
