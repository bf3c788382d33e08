//! Composition root: reads the environment, builds the adapters, and serves the webhook app.

pub mod administration;
pub mod audit;
pub mod config;
pub mod display;
pub mod export;
pub mod job;
pub mod mapper;
pub mod margin;
pub mod metrics;
pub mod quarantine;
pub mod rating;
pub mod registrar;
pub mod serve;
pub mod statement_pass;
pub mod telemetry;
pub mod webhook;
pub mod wiring;
