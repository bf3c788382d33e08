//! Transient failures (Azure SQL moving a database, throttling, deadlocks) and the back-off between
//! attempts.
//!
//! An operation is tried again when the server answered with one of [`TRANSIENT_ERRORS`] (the attempt
//! failed and its transaction was rolled back: `XACT_ABORT` is on) or when no connection could be
//! opened. A connection that breaks in the middle of an operation is not retried: whether its
//! transaction committed is unknown, so the caller hears `Unavailable` and the next run decides (a
//! window commit is safe to repeat: its rows are keyed and its watermark fenced).

use std::time::Duration;

/// Server error numbers after which the same request may succeed. The list Microsoft.Data.SqlClient's
/// retry providers start from (`SqlConfigurableRetryFactory`):
/// <https://learn.microsoft.com/en-us/dotnet/api/microsoft.data.sqlclient.sqlconfigurableretryfactory>;
/// see also Azure SQL's "transient fault error messages":
/// <https://learn.microsoft.com/en-us/azure/azure-sql/database/troubleshoot-common-errors-issues>.
pub const TRANSIENT_ERRORS: &[u32] = &[
    1204,  // the engine cannot obtain a LOCK resource at this time
    1205,  // chosen as deadlock victim
    1222,  // lock request time-out period exceeded
    4060,  // cannot open the database requested by the login (e.g. serverless resuming)
    4221,  // login to a readable secondary failed while waiting for row versioning
    10928, // resource limit reached (workers, sessions)
    10929, // server too busy for this database's requests
    40143, // the service encountered an error processing the request
    40197, // the service encountered an error processing the request (reconfiguration, failover)
    40501, // the service is currently busy
    40540, // the service encountered an error processing the request
    40613, // database not currently available (moving, failing over, resuming)
    49918, // not enough resources to process the request
    49919, // too many create or update operations in progress
    49920, // too many operations in progress
];

pub(crate) fn is_transient_server_error(e: &tiberius::error::Error) -> bool {
    e.code().is_some_and(|code| TRANSIENT_ERRORS.contains(&code))
}

/// Whether the connection itself failed (as opposed to the server refusing a statement): the session
/// must not be reused.
pub(crate) fn breaks_connection(e: &tiberius::error::Error) -> bool {
    use tiberius::error::Error::*;
    matches!(e, Io { .. } | Tls(_) | Protocol(_) | Routing { .. } | Encoding(_) | Utf8 | Utf16)
}

/// How often and how patiently to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// About 30 s in all: long enough for a failover or a serverless database to resume (Microsoft
    /// suggests waiting at least 5 s before retrying 40613), short enough for a 5-minute function.
    fn default() -> Self {
        Self { attempts: 5, first_delay: Duration::from_secs(2), max_delay: Duration::from_secs(16) }
    }
}

impl RetryPolicy {
    /// No retries (tests).
    pub fn none() -> Self {
        Self { attempts: 1, first_delay: Duration::ZERO, max_delay: Duration::ZERO }
    }

    /// The wait before attempt `next` (2 is the first retry): doubling from `first_delay`, capped.
    pub fn delay_before(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(16);
        self.first_delay.saturating_mul(1 << doublings).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_azure_sql_transient_errors_are_listed() {
        for code in [40613, 40501, 49918, 4060, 40197, 10928, 10929, 4221, 1205] {
            assert!(TRANSIENT_ERRORS.contains(&code), "{code}");
        }
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (2..=6).map(|n| p.delay_before(n).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 16]);
        assert_eq!(p.delay_before(1000), p.max_delay);
    }

    #[test]
    fn io_failures_break_the_connection_server_refusals_do_not() {
        let io =
            tiberius::error::Error::Io { kind: std::io::ErrorKind::ConnectionReset, message: "reset".into() };
        assert!(breaks_connection(&io));
        assert!(!is_transient_server_error(&io));
        let conversion = tiberius::error::Error::Conversion("x".into());
        assert!(!breaks_connection(&conversion));
    }
}
