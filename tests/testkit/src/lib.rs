//! Test support written once for every crate's tests (issue 27, item 1): the ground-truth comparison
//! (`ground_truth`), which every test that compares stored rows with the simulator's ground truth
//! uses, so that none compares fewer fields than the stamp sent; and the process launcher
//! (`process`): a scrubbed environment and a 0600 secrets file; the Lambda SQS event builder (`sqs`); the documented fixtures, once (`fixtures`).

pub mod fixtures;
pub mod ground_truth;
pub mod process;
pub mod sqs;
