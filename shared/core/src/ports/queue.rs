//! The queue port: where per-stamp work goes when collection fans out through the platform's queue
//! (`AZS_USAGE_FAN_OUT=queue`), and the messages it carries. What a worker does with a message is
//! [`crate::fan_out`].

use crate::stamp::StampId;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One message: collect this stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StampWork {
    pub stamp_id: StampId,
    pub reason: WorkReason,
    pub enqueued_at: DateTime<Utc>,
    /// Invocations in a row whose budget ran out before a single window of this stamp committed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stalled: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkReason {
    /// The hourly timer.
    Timer,
    /// A worker ran out of budget with the stamp still behind.
    Continuation,
}

impl StampWork {
    pub fn new(stamp_id: StampId, reason: WorkReason) -> Self {
        Self { stamp_id, reason, enqueued_at: Utc::now(), stalled: 0 }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a StampWork always serializes")
    }
}

/// A message moved aside: which stamp (when the message named one), what went wrong, after how many
/// attempts. Never the message body itself when it was unreadable (it is not ours to echo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub stamp_id: Option<StampId>,
    pub error: String,
    pub attempts: u32,
    pub dead_lettered_at: DateTime<Utc>,
}

impl DeadLetter {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a DeadLetter always serializes")
    }
}

/// The queue could not take a message; nothing about the stamp's data is affected.
#[derive(Debug, Clone, thiserror::Error)]
#[error("queue {queue}: {message}")]
pub struct QueueError {
    /// Which queue (its URL or name), never a credential.
    pub queue: String,
    pub message: String,
}

/// Where per-stamp work goes: SQS on AWS, a Storage Queue output binding on Azure. The platform
/// delivers the messages to workers (at least once) and moves those that keep failing aside.
#[async_trait]
pub trait StampQueue: Send + Sync {
    /// Adds `work`, each message becoming visible to workers after `delay`.
    async fn enqueue(&self, work: &[StampWork], delay: Duration) -> Result<(), QueueError>;
    /// Moves a message that cannot be done aside, naming its stamp and the error.
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), QueueError>;
}
