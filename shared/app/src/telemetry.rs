//! Logging: JSON lines for the functions (one object per event, with the span fields: invocation id,
//! stamp id, window), readable text for the CLI. Secrets never reach a log line because they travel
//! as `Secret`, whose Debug and Display are redacted, and no request or response body is logged.

use crate::config::{AppConfig, LogFormat};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Lambda and Azure: JSON lines on stdout, which both platforms collect.
    Function,
    /// The CLI: logs on stderr so stdout stays for results; text unless JSON was asked for.
    Cli,
}

/// Installs the global subscriber once; later calls are ignored (tests call it repeatedly).
pub fn init(config: &AppConfig, target: Target) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE);
    let json = target == Target::Function || config.log_format == LogFormat::Json;
    // `try_init` fails only when a subscriber is already installed, which is fine.
    let _ = match (json, target) {
        (true, Target::Function) => {
            builder.json().flatten_event(true).with_span_list(true).with_writer(std::io::stdout).try_init()
        }
        (true, Target::Cli) => {
            builder.json().flatten_event(true).with_span_list(true).with_writer(std::io::stderr).try_init()
        }
        (false, _) => builder.with_writer(std::io::stderr).with_target(false).try_init(),
    };
}
