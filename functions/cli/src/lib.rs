//! What the operator CLI (`src/main.rs`) and the demo (`functions/demo`) share: printing to an
//! operator's terminal, progress bars and tables.

pub mod progress;
pub mod render;
pub mod terminal;
