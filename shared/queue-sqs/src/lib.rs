//! The stamp work queue on Amazon SQS, through the AWS SDK. The timer and the workers send here; the
//! Lambda event source mapping delivers the messages (at least once, `maximum_concurrency` at a time)
//! and the queue's redrive policy moves a message whose workers kept dying to the dead-letter queue.
//! Our own named dead letters (stamp + error) go to that same dead-letter queue.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use azs_core::fan_out::{DeadLetter, StampWork};
use azs_core::ports::{QueueError, StampQueue};
use std::time::Duration;

/// SQS takes at most 10 messages per batch and delays of at most 15 minutes.
const BATCH: usize = 10;
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Clone, Debug)]
pub struct SqsStampQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsStampQueue {
    /// `config` is built once per process by the caller (region, credentials, endpoint, timeouts).
    pub fn new(
        config: &aws_config::SdkConfig,
        queue_url: impl Into<String>,
        dead_letter_url: impl Into<String>,
    ) -> Self {
        Self {
            client: Client::new(config),
            queue_url: queue_url.into(),
            dead_letter_url: dead_letter_url.into(),
        }
    }

    fn error(queue: &str, e: impl std::fmt::Display) -> QueueError {
        QueueError { queue: queue.to_owned(), message: e.to_string() }
    }
}

#[async_trait]
impl StampQueue for SqsStampQueue {
    async fn enqueue(&self, work: &[StampWork], delay: Duration) -> Result<(), QueueError> {
        let delay_seconds = delay.min(MAX_DELAY).as_secs() as i32;
        for chunk in work.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(w.to_json())
                        .delay_seconds(delay_seconds)
                        .build()
                        .map_err(|e| Self::error(&self.queue_url, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Self::error(&self.queue_url, aws_sdk_sqs::error::DisplayErrorContext(e)))?;
            // A batch call succeeds even when some entries fail: every stamp must be on the queue.
            if let Some(failed) = sent.failed().first() {
                let stamp = chunk
                    .get(failed.id().parse::<usize>().unwrap_or(usize::MAX))
                    .map(|w| w.stamp_id.to_string());
                return Err(Self::error(
                    &self.queue_url,
                    format!(
                        "{} of {} messages refused (first: stamp {}: {} {})",
                        sent.failed().len(),
                        chunk.len(),
                        stamp.unwrap_or_default(),
                        failed.code(),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(letter.to_json())
            .send()
            .await
            .map_err(|e| Self::error(&self.dead_letter_url, aws_sdk_sqs::error::DisplayErrorContext(e)))?;
        Ok(())
    }
}
