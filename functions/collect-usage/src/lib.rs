//! The Lambda entry point of the timer job and of the queue fan-out's worker: the invocation's payload
//! in (an EventBridge event or any scheduler input, or an SQS event), the answer out. What the timer and
//! the worker decide lives in `azs_app::job`, shared with the Azure custom handler.

pub mod lambda;
pub mod sqs;
