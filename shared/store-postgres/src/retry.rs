//! Which failures are worth another attempt on a fresh connection, and the back-off between attempts.
//!
//! Tried again: serialization failures (40001) and deadlocks (40P01), where the server rolled the
//! transaction back and the same work may succeed next time; a server shutting down or still starting
//! (57P01-57P03, a failover); any connection exception (class 08) or a connection that closed under
//! the call; and a pool that could not open a connection. After connection loss in the middle of a
//! commit the first attempt may have committed: a repeated window commit is then fenced (the watermark
//! moved) and writes nothing twice, since rows are keyed and the watermark checked.

use deadpool_postgres::PoolError;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// SQLSTATEs after which the same transaction may succeed.
const TRANSIENT_STATES: &[&SqlState] = &[
    &SqlState::T_R_SERIALIZATION_FAILURE,
    &SqlState::T_R_DEADLOCK_DETECTED,
    &SqlState::ADMIN_SHUTDOWN,
    &SqlState::CRASH_SHUTDOWN,
    &SqlState::CANNOT_CONNECT_NOW,
    &SqlState::TOO_MANY_CONNECTIONS,
];

pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => TRANSIENT_STATES.contains(&code) || code.code().starts_with("08"),
        // No SQLSTATE: the failure was the connection's (I/O, TLS, a closed socket), not the server's.
        None => true,
    }
}

pub(crate) fn is_transient_pool(e: &PoolError) -> bool {
    match e {
        PoolError::Backend(e) => is_transient(e),
        PoolError::Timeout(_) => true,
        PoolError::Closed | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => false,
    }
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
    /// About 30 s in all: long enough for a managed server's failover, short enough for a function.
    fn default() -> Self {
        Self { attempts: 6, first_delay: Duration::from_millis(200), max_delay: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// No retries (tests of failure reporting).
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
    fn back_off_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        let waits: Vec<u128> = (2..=8).map(|n| p.delay_before(n).as_millis()).collect();
        assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 6400, 8000]);
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_transient() {
        assert!(TRANSIENT_STATES.contains(&&SqlState::T_R_SERIALIZATION_FAILURE));
        assert!(TRANSIENT_STATES.contains(&&SqlState::T_R_DEADLOCK_DETECTED));
    }
}
