//! The operator CLI's library: its command line (`model`, parsed by `src/main.rs` and walked by the
//! tests) and what it prints (`render`), with what the demo (`functions/demo`) shares with it: terminal
//! output, progress bars and tables.

pub mod model;
pub mod progress;
pub mod render;
pub mod terminal;
