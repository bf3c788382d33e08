//! The SQS-triggered worker (`AZS_USAGE_FAN_OUT=queue` on AWS): the documented Lambda SQS event in,
//! one stamp collected per record within the invocation's budget, and a partial batch response out
//! (`ReportBatchItemFailures`), so that only the records that must come back are redelivered.

use azs_app::job;
use azs_app::metrics;
use azs_core::collect::RunSummary;
use azs_core::fan_out::{Delivery, StampFanOut, WorkResult};
use azs_core::ports::StampQueue;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use tracing::warn;

#[derive(Debug, Deserialize)]
struct SqsEvent {
    #[serde(rename = "Records")]
    records: Vec<SqsRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SqsRecord {
    message_id: String,
    body: String,
    #[serde(default)]
    attributes: SqsAttributes,
}

#[derive(Debug, Default, Deserialize)]
struct SqsAttributes {
    /// A string in the event ("1" on the first delivery).
    #[serde(rename = "ApproximateReceiveCount")]
    approximate_receive_count: Option<String>,
}

/// `{"batchItemFailures": [{"itemIdentifier": messageId}]}`: the records SQS must deliver again.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    pub item_identifier: String,
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
    let results = futures::future::join_all(event.records.iter().map(|record| async move {
        let attempt =
            record.attributes.approximate_receive_count.as_deref().and_then(|n| n.parse().ok()).unwrap_or(1);
        let delivery = Delivery { body: &record.body, attempt };
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
                response.batch_item_failures.push(ItemFailure { item_identifier: message_id });
            }
        }
    }
    // The same per-stamp lag and outcome metrics as the in-process timer: the alarms watch them.
    if let Err(e) = metrics::write_emf(&mut std::io::stdout().lock(), &collected, chrono::Utc::now()) {
        warn!(error = %e, "the stamps' metrics could not be written");
    }
    Ok(response)
}
