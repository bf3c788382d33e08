//! The Lambda invocation of the timer job. EventBridge invokes it: a rule sends a "Scheduled Event",
//! Scheduler sends whatever input its target was given (often `{}`), so any JSON is accepted and only
//! logged. A failed stamp fails the invocation, which Scheduler retries (every run is safe to repeat).
//!
//! With `AZS_USAGE_FAN_OUT=queue` the same executable is two functions: the timer enqueues one message
//! per enabled stamp (and collects nothing), and the worker, invoked by the SQS event source mapping
//! with the documented SQS event, collects one stamp per record (`sqs.rs`).

use azs_app::job::{self, TimerError, TimerOutcome};
use azs_app::metrics;
use azs_app::wiring::Services;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{Instrument, error, info, info_span};

/// Kept back from the Lambda deadline for the last commit, the status writes and the response.
pub const DEADLINE_RESERVE: Duration = Duration::from_secs(60);

/// Why an invocation failed; Lambda records `errorType` and `errorMessage`.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("{0}")]
    StampsFailed(String),
    #[error("{0}")]
    Timer(#[from] TimerError),
    #[error("{0}")]
    BadEvent(String),
}

impl From<InvocationError> for Diagnostic {
    fn from(e: InvocationError) -> Self {
        let error_type = match e {
            InvocationError::StampsFailed(_) => "StampsFailed",
            InvocationError::Timer(TimerError::Store(_)) => "StoreUnavailable",
            InvocationError::Timer(TimerError::FanOut(_)) => "FanOutFailed",
            InvocationError::Timer(TimerError::NoQueue) => "Configuration",
            InvocationError::BadEvent(_) => "BadEvent",
        };
        Diagnostic { error_type: error_type.to_owned(), error_message: e.to_string() }
    }
}

/// Handles one invocation with the process's services: an SQS batch (the worker), or the timer.
pub async fn handle(services: &Services, event: LambdaEvent<Value>) -> Result<Value, InvocationError> {
    let span = info_span!("invocation", request_id = %event.context.request_id);
    let budget = job::budget(services.config.time_budget, platform_budget(&event.context));
    async move {
        if crate::sqs::is_sqs_event(&event.payload) {
            let queue = services.queue.as_deref().ok_or(TimerError::NoQueue)?;
            let response = crate::sqs::work_batch(&services.fan_out, queue, event.payload, budget)
                .await
                .map_err(InvocationError::BadEvent)?;
            return Ok(to_json(&response));
        }
        info!(trigger = %describe(&event.payload), "timer fired");
        match job::timer(services, services.queue.as_deref(), budget).await? {
            TimerOutcome::Enqueued(stamps) => Ok(serde_json::json!({ "enqueued": stamps })),
            TimerOutcome::Collected(summary) => {
                // CloudWatch turns these lines into the metrics the module's alarms watch.
                if let Err(e) =
                    metrics::write_emf(&mut std::io::stdout().lock(), &summary, chrono::Utc::now())
                {
                    error!(error = %e, "the run's metrics could not be written");
                }
                match job::failure_message(&summary) {
                    Some(message) => Err(InvocationError::StampsFailed(message)),
                    None => Ok(to_json(&summary)),
                }
            }
        }
    }
    .instrument(span)
    .await
}

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The time left before Lambda ends the invocation, less [`DEADLINE_RESERVE`]; functions configured
/// with less than two minutes keep half of their time instead.
pub fn platform_budget(context: &Context) -> Duration {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
    let remaining = Duration::from_millis(context.deadline.saturating_sub(now_ms));
    remaining.saturating_sub(DEADLINE_RESERVE).max(remaining / 2)
}

/// A short description of what fired the run: the EventBridge rule's source and time, or "input".
fn describe(event: &Value) -> String {
    match (event.get("detail-type"), event.get("time")) {
        (Some(kind), Some(time)) => {
            format!("{} at {}", kind.as_str().unwrap_or("?"), time.as_str().unwrap_or("?"))
        }
        _ => "scheduler input".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_with_deadline_in(left: Duration) -> Context {
        let mut context = Context::default();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        context.deadline = (now + left).as_millis() as u64;
        context
    }

    #[test]
    fn the_budget_keeps_a_minute_back_from_the_lambda_deadline() {
        let budget = platform_budget(&context_with_deadline_in(Duration::from_secs(900)));
        assert!(budget <= Duration::from_secs(840) && budget > Duration::from_secs(835), "{budget:?}");
    }

    #[test]
    fn a_short_function_timeout_keeps_half_of_its_time() {
        let budget = platform_budget(&context_with_deadline_in(Duration::from_secs(60)));
        assert!(budget <= Duration::from_secs(30) && budget > Duration::from_secs(25), "{budget:?}");
    }

    #[test]
    fn an_eventbridge_rule_event_is_described_by_its_kind_and_time() {
        let event = azs_testkit::fixtures::json("aws-eventbridge-scheduled-event.json");
        assert_eq!(describe(&event), "Scheduled Event at 2026-11-26T09:00:00Z");
        assert_eq!(describe(&serde_json::json!({})), "scheduler input");
    }
}
