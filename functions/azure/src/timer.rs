//! `POST /collect-usage`: the host's timer invocation. The payload only says when and why the timer
//! fired, so it is parsed leniently (the timer value as an object or as JSON inside a string,
//! `ScheduleStatus` null on the first run, malformed timestamps, unknown keys) and a payload that cannot
//! be read at all still runs the collection: the timer did fire.
//!
//! The answer is `{"Outputs": {}, "Logs": [one line per stamp], "ReturnValue": <run summary>}`, with
//! 200, or 500 (same shape) when a stamp failed, so that the invocation fails and alerts fire.

use crate::invocation::InvocationResponse;
use crate::lazy::LazyServices;
use crate::queue::{BindingQueue, TIMER_OUTPUT};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use azs_app::job::{self, TimerOutcome};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// The run's budget when `AZS_USAGE_TIME_BUDGET=platform`: host.json's `functionTimeout` of 5 min, less
/// 30 s for the last commit, the status writes and the answer. A deployment by the Terraform module
/// never relies on it: the module sets `functionTimeout` and `AZS_USAGE_TIME_BUDGET` (one minute less)
/// from one variable, `function_timeout_minutes`.
pub const PLATFORM_BUDGET: Duration = Duration::from_secs(4 * 60 + 30);

/// What the host told us about this firing; every field is optional in practice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerFiring {
    pub is_past_due: bool,
    /// `ScheduleStatus` is null on the first run after deployment (and without `useMonitor`).
    pub has_schedule_status: bool,
    pub last: Option<DateTime<Utc>>,
    pub next: Option<DateTime<Utc>>,
}

impl TimerFiring {
    /// Reads `Data.timer` from the host's `{Data, Metadata}` body; never fails.
    pub fn from_body(body: &[u8]) -> Result<Self, String> {
        let payload: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let timer = match payload.pointer("/Data/timer") {
            // Older hosts send the value as JSON text.
            Some(Value::String(text)) => {
                serde_json::from_str(text).map_err(|e| format!("Data.timer is a string but not JSON: {e}"))?
            }
            Some(value) => value.clone(),
            None => return Err("no Data.timer in the payload".to_owned()),
        };
        let status = timer.get("ScheduleStatus").filter(|s| s.is_object());
        let time = |key: &str| {
            status
                .and_then(|s| s.get(key))
                .and_then(Value::as_str)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        Ok(Self {
            is_past_due: timer.get("IsPastDue").and_then(Value::as_bool).unwrap_or(false),
            has_schedule_status: status.is_some(),
            last: time("Last"),
            next: time("Next"),
        })
    }
}

pub async fn collect_usage(State(services): State<Arc<LazyServices>>, body: Bytes) -> Response {
    match TimerFiring::from_body(&body) {
        Ok(firing) => info!(
            is_past_due = firing.is_past_due,
            first_run = !firing.has_schedule_status,
            last = ?firing.last.map(|t| t.to_rfc3339()),
            next = ?firing.next.map(|t| t.to_rfc3339()),
            "timer fired"
        ),
        Err(reason) => warn!(%reason, "timer payload not understood; collecting anyway"),
    }
    let ready = match services.get().await {
        Ok(ready) => ready,
        Err(e) => return failed(format!("cannot start: {e:#}")),
    };
    let services = &ready.services;
    let budget = job::budget(services.config.time_budget, PLATFORM_BUDGET);
    // Queue fan-out writes the stamps' messages to the invocation's `stampWork` output binding.
    let queue = BindingQueue::default();
    let summary = match job::timer(services, Some(&queue), budget).await {
        Ok(TimerOutcome::Enqueued(stamps)) => {
            return InvocationResponse {
                outputs: queue.outputs(TIMER_OUTPUT),
                logs: vec![format!("{} stamps enqueued", stamps.len())],
                return_value: Value::Null,
            }
            .into_response_with(StatusCode::OK);
        }
        Ok(TimerOutcome::Collected(summary)) => summary,
        Err(e) => return failed(e.to_string()),
    };
    let mut logs = job::outcome_lines(&summary);
    // The host writes `Logs` to Application Insights `traces`, where the module's alert queries read them.
    logs.extend(azs_app::metrics::app_insights_lines(&summary, Utc::now()));
    let return_value = serde_json::to_value(&summary).unwrap_or(Value::Null);
    let status = match job::failure_message(&summary) {
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
        None => StatusCode::OK,
    };
    InvocationResponse { logs, return_value, ..Default::default() }.into_response_with(status)
}

/// An invocation that could not run (the timer's or a queue worker's): the reason is its one log line.
pub(crate) fn failed(message: String) -> Response {
    error!(%message, "invocation failed");
    InvocationResponse { logs: vec![message], ..Default::default() }
        .into_response_with(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    use azs_testkit::fixtures::bytes as fixture;

    #[test]
    fn a_timer_value_sent_as_an_object_is_read() {
        let firing = TimerFiring::from_body(&fixture("azure-functions-timer-request.json")).unwrap();
        assert!(!firing.is_past_due);
        assert!(firing.has_schedule_status);
        assert_eq!(firing.next.unwrap().to_rfc3339(), "2026-11-26T09:00:00+00:00");
    }

    #[test]
    fn a_timer_value_sent_as_json_text_with_no_schedule_status_is_a_first_run() {
        let firing =
            TimerFiring::from_body(&fixture("azure-functions-timer-request-first-run.json")).unwrap();
        assert_eq!(firing, TimerFiring { is_past_due: true, ..Default::default() });
    }

    #[test]
    fn malformed_timestamps_and_unknown_keys_are_tolerated() {
        let body = br#"{"Data":{"timer":{"ScheduleStatus":{"Last":"yesterday","Next":42},"IsPastDue":false,
            "Extra":1}},"Metadata":{"sys":{"UtcNow":"not a time"}},"More":[]}"#;
        let firing = TimerFiring::from_body(body).unwrap();
        assert_eq!(firing, TimerFiring { has_schedule_status: true, ..Default::default() });
    }

    #[test]
    fn an_unreadable_payload_is_reported_not_fatal() {
        assert!(TimerFiring::from_body(b"not json").is_err());
        assert!(TimerFiring::from_body(b"{}").is_err());
    }
}
