//! The SQS-triggered worker (`AZS_USAGE_FAN_OUT=queue` on AWS): the documented Lambda SQS event in,
//! one stamp collected per record within the invocation's budget, and a partial batch response out
//! (`ReportBatchItemFailures`), so that only the records that must come back are redelivered.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use azs_app::job;
use azs_app::metrics;
use azs_core::collect::RunSummary;
use azs_core::fan_out::{Delivery, StampFanOut, WorkResult};
use azs_core::ports::StampQueue;
use serde_json::Value;
use std::time::Duration;
use tracing::warn;

/// `{"batchItemFailures": [{"itemIdentifier": messageId}]}`: the records SQS must deliver again.
pub type BatchResponse = SqsBatchResponse;

/// One record as the worker needs it. `aws_lambda_events` makes every field optional; SQS always
/// sends an id and a body, so a record without them is a malformed event, refused as before.
struct Record {
    message_id: String,
    body: String,
    /// "1" on the first delivery; a record without it counts as the first.
    attempt: u32,
}

impl TryFrom<SqsMessage> for Record {
    type Error = String;

    fn try_from(message: SqsMessage) -> Result<Self, String> {
        let attempt =
            message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
        Ok(Record {
            message_id: message.message_id.ok_or("a record has no messageId")?,
            body: message.body.ok_or("a record has no body")?,
            attempt,
        })
    }
}

/// Whether an invocation's payload is an SQS event (rather than the timer's).
pub fn is_sqs_event(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// Works every record of the batch at once, each with the whole `budget` (one stamp per record; the
/// event source mapping's batch size is 1 in our Terraform, so a batch is normally one stamp).
pub async fn work_batch(
    fan_out: &StampFanOut,
    queue: &dyn StampQueue,
    payload: Value,
    budget: Duration,
) -> Result<BatchResponse, String> {
    let event: SqsEvent =
        serde_json::from_value(payload).map_err(|e| format!("the SQS event cannot be read: {e}"))?;
    let records = event
        .records
        .into_iter()
        .map(Record::try_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the SQS event cannot be read: {e}"))?;
    let results = futures::future::join_all(records.iter().map(|record| async move {
        let delivery = Delivery { body: &record.body, attempt: record.attempt };
        let span = tracing::info_span!("record", message_id = %record.message_id);
        (
            record.message_id.clone(),
            tracing::Instrument::instrument(job::work(fan_out, queue, delivery, budget), span).await,
        )
    }))
    .await;
    let mut response = BatchResponse::default();
    let mut collected = RunSummary::default();
    for (message_id, result) in results {
        match result {
            WorkResult::Done(report) => collected.stamps.extend(report.summary),
            WorkResult::Retry { .. } => {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    // The same per-stamp lag and outcome metrics as the in-process timer: the alarms watch them.
    if let Err(e) = metrics::write_emf(&mut std::io::stdout().lock(), &collected, chrono::Utc::now()) {
        warn!(error = %e, "the stamps' metrics could not be written");
    }
    Ok(response)
}
