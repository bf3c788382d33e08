//! Test support written once for every crate's tests (issue 27, item 1). So far: the ground truth
//! comparison (`ground_truth`), which every test that compares stored rows with the simulator's ground
//! truth uses, so that none compares fewer fields than the stamp sent.

pub mod ground_truth;
