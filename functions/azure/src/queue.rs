//! Queue fan-out on Azure (`AZS_USAGE_FAN_OUT=queue`), through the Functions host's Storage Queue
//! bindings rather than the Storage REST API: the host already holds the storage connection (managed
//! identity or `AzureWebJobsStorage`), scales queue-triggered instances (`functionAppScaleLimit`,
//! `host.json` `queues.batchSize`), retries a failed message (`visibilityTimeout`) and moves it to
//! `<queue>-poison` after `maxDequeueCount`. The handler only reads and writes JSON.
//!
//! - The timer (`collect-usage`) answers with `Outputs.stampWork`: one message per enabled stamp.
//! - The worker (`stamp-work`, `queueTrigger`) gets `{"Data": {"work": <message>}, "Metadata":
//!   {"DequeueCount": n, ...}}`, collects that stamp within its budget, and answers with
//!   `Outputs.continuation` (the stamp is still behind) and/or `Outputs.deadLetter` (our named letter,
//!   written to the same `-poison` queue the host uses). A 500 answer fails the invocation: the host
//!   makes the message visible again and counts the dequeue.
//!
//! Limit, accepted: an output binding cannot delay a message (`AZS_USAGE_CONTINUATION_DELAY` applies to
//! SQS only), so a continuation is visible at once. That is harmless: the host writes output messages
//! only after the invocation has answered, when the worker has already released the stamp's lease, so
//! the next worker carries on from the watermark straight away, which is what a stamp that is behind
//! needs; a stamp whose window does not fit in one budget is re-run at most `AZS_USAGE_MAX_ATTEMPTS`
//! times in a row before it is dead-lettered (see `azs_core::fan_out`). Delaying it would need the
//! Storage Queue REST API (`visibilitytimeout` on Put Message) and a second storage credential in the
//! handler; the bindings keep the handler free of any storage credential.
//!
//! The queue bindings are not built into the host like HTTP and timer: host.json names the extension
//! bundle (Microsoft.Azure.Functions.ExtensionBundle 4.x, which Azure keeps cached on its workers).

use crate::invocation::InvocationResponse;
use crate::lazy::LazyServices;
use crate::timer::{PLATFORM_BUDGET, failed};
use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use azs_app::job;
use azs_core::collect::RunSummary;
use azs_core::fan_out::{DeadLetter, Delivery, StampWork, WorkResult};
use azs_core::ports::{QueueError, StampQueue};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Output binding names (functions/azure/app/*/function.json).
pub const TIMER_OUTPUT: &str = "stampWork";
pub const CONTINUATION_OUTPUT: &str = "continuation";
pub const DEAD_LETTER_OUTPUT: &str = "deadLetter";
/// The trigger binding's name: the key of the message in `Data`.
pub const TRIGGER: &str = "work";

/// A [`StampQueue`] that collects messages into the invocation's output bindings.
#[derive(Default)]
pub struct BindingQueue {
    work: Mutex<Vec<Value>>,
    dead_letters: Mutex<Vec<Value>>,
}

#[async_trait]
impl StampQueue for BindingQueue {
    async fn enqueue(&self, work: &[StampWork], _delay: Duration) -> Result<(), QueueError> {
        // Message text is JSON; the host writes each array element as one message.
        self.work.lock().expect("not poisoned").extend(work.iter().map(|w| Value::String(w.to_json())));
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        self.dead_letters.lock().expect("not poisoned").push(Value::String(letter.to_json()));
        Ok(())
    }
}

impl BindingQueue {
    /// The `Outputs` object: only bindings that have messages (an absent output writes nothing).
    pub fn outputs(self, work_binding: &str) -> Map<String, Value> {
        let mut outputs = Map::new();
        let work = self.work.into_inner().expect("not poisoned");
        if !work.is_empty() {
            outputs.insert(work_binding.to_owned(), Value::Array(work));
        }
        let letters = self.dead_letters.into_inner().expect("not poisoned");
        if !letters.is_empty() {
            outputs.insert(DEAD_LETTER_OUTPUT.to_owned(), Value::Array(letters));
        }
        outputs
    }
}

/// The message and its dequeue count from the host's queue trigger payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDelivery {
    pub body: String,
    pub dequeue_count: u32,
}

impl QueueDelivery {
    pub fn from_body(body: &[u8]) -> Result<Self, String> {
        let payload: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let body = match payload.pointer(&format!("/Data/{TRIGGER}")) {
            Some(Value::String(text)) => text.clone(),
            // A host that parsed the JSON message hands over the object.
            Some(value @ Value::Object(_)) => value.to_string(),
            _ => return Err(format!("no Data.{TRIGGER} message in the payload")),
        };
        // A number in the documented payload; some hosts send metadata values as strings.
        let dequeue_count = match payload.pointer("/Metadata/DequeueCount") {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as u32),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .unwrap_or(1);
        Ok(Self { body, dequeue_count })
    }
}

/// `POST /stamp-work`: one stamp's collection, triggered by its queue message.
pub async fn stamp_work(State(services): State<Arc<LazyServices>>, body: Bytes) -> Response {
    let delivery = match QueueDelivery::from_body(&body) {
        Ok(delivery) => delivery,
        // Not our message shape at all: failing lets the host count it and move it to -poison.
        Err(reason) => return failed(reason),
    };
    let ready = match services.get().await {
        Ok(ready) => ready,
        Err(e) => return failed(format!("cannot start: {e:#}")),
    };
    let services = &ready.services;
    let budget = job::budget(services.config.time_budget, PLATFORM_BUDGET);
    let queue = BindingQueue::default();
    let delivery = Delivery { body: &delivery.body, attempt: delivery.dequeue_count };
    match job::work(&services.fan_out, &queue, delivery, budget).await {
        WorkResult::Done(report) => {
            let return_value =
                report.summary.as_ref().and_then(|s| serde_json::to_value(s).ok()).unwrap_or(Value::Null);
            let mut logs = vec![job::work_line(&report)];
            let collected = RunSummary { stamps: report.summary.into_iter().collect() };
            logs.extend(azs_app::metrics::app_insights_lines(&collected, chrono::Utc::now()));
            InvocationResponse { outputs: queue.outputs(CONTINUATION_OUTPUT), logs, return_value }
                .into_response_with(StatusCode::OK)
        }
        // Failing the invocation leaves the message for the host's redelivery (then -poison).
        WorkResult::Retry { error, .. } => failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_queue_trigger_payload_gives_the_message_and_its_dequeue_count() {
        let body = azs_testkit::fixtures::bytes("azure-functions-queue-request.json");
        let delivery = QueueDelivery::from_body(&body).unwrap();
        assert_eq!(delivery.dequeue_count, 2);
        let work: StampWork = serde_json::from_str(&delivery.body).unwrap();
        assert_eq!(work.stamp_id.0, "3f2a9c4e-0d51-4f61-9a57-1f0c6a0b7e21");
    }

    #[test]
    fn a_parsed_message_object_and_a_string_dequeue_count_are_accepted() {
        let body =
            br#"{"Data":{"work":{"stampId":"s-1","reason":"timer","enqueuedAt":"2026-11-30T04:05:00Z"}},
            "Metadata":{"DequeueCount":"3"}}"#;
        let delivery = QueueDelivery::from_body(body).unwrap();
        assert_eq!(delivery.dequeue_count, 3);
        assert!(serde_json::from_str::<StampWork>(&delivery.body).is_ok());
        assert!(QueueDelivery::from_body(br#"{"Data":{}}"#).is_err());
    }

    #[tokio::test]
    async fn outputs_hold_one_message_per_stamp_and_only_bindings_with_messages() {
        let queue = BindingQueue::default();
        let work: Vec<StampWork> = ["a", "b"]
            .iter()
            .map(|id| StampWork::new(azs_core::StampId((*id).into()), azs_core::fan_out::WorkReason::Timer))
            .collect();
        queue.enqueue(&work, Duration::ZERO).await.unwrap();
        let outputs = queue.outputs(TIMER_OUTPUT);
        assert_eq!(outputs.keys().collect::<Vec<_>>(), [TIMER_OUTPUT]);
        let messages = outputs[TIMER_OUTPUT].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        let first: StampWork = serde_json::from_str(messages[0].as_str().unwrap()).unwrap();
        assert_eq!(first.stamp_id.0, "a");
    }
}
