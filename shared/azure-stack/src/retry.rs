//! When and how long to wait before asking a stamp again.
//!
//! Azure Stack Hub documents no rate limits and no 429 contract; what it does send is 503
//! `ServiceUnavailable` when busy, and its gateways time out on large all-tenant queries. So every
//! retryable answer (429, 500, 502, 503, 504, a dropped or timed-out connection, a page we could not
//! read) is retried with exponential backoff and *full jitter* (a random wait between zero and the
//! exponential ceiling, so that many collectors hitting one stamp spread out), and a `Retry-After` the
//! stamp sends wins over our own guess. The policy is a plain struct so tests can shrink every delay to
//! milliseconds.

use chrono::{DateTime, Utc};
use rand::Rng;
use std::time::Duration;

/// How many times, and how patiently, one request is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first one included (so `max_attempts - 1` retries).
    pub max_attempts: u32,
    /// The ceiling of the first backoff; it doubles with every retry.
    pub base_delay: Duration,
    /// The ceiling no backoff exceeds.
    pub max_delay: Duration,
    /// The longest `Retry-After` we honour; a longer one is shortened to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy for tests: the same number of attempts, delays of a few milliseconds.
    pub fn fast_for_tests() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(2),
            max_delay: Duration::from_millis(20),
            max_retry_after: Duration::from_secs(2),
        }
    }

    /// The wait before retry number `retry` (1 for the first retry), given the stamp's `Retry-After`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_retry_after);
        }
        let ceiling = self.backoff_ceiling(retry);
        if ceiling.is_zero() {
            return ceiling;
        }
        let nanos = rand::rng().random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64);
        Duration::from_nanos(nanos)
    }

    /// `min(max_delay, base_delay * 2^(retry-1))`: the upper bound full jitter draws below.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base_delay.saturating_mul(1u32 << doublings).min(self.max_delay)
    }
}

/// Reads a `Retry-After` header: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). A date in the past
/// means "now"; anything unreadable is ignored (our own backoff applies).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) is a valid RFC 2822 date.
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(500));
        assert_eq!(p.backoff_ceiling(2), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(4), Duration::from_secs(4));
        assert_eq!(p.backoff_ceiling(10), Duration::from_secs(30));
        assert_eq!(p.backoff_ceiling(200), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_stays_below_the_ceiling() {
        let p = RetryPolicy::default();
        for retry in 1..8 {
            for _ in 0..50 {
                assert!(p.delay(retry, None) <= p.backoff_ceiling(retry));
            }
        }
    }

    #[test]
    fn retry_after_wins_over_backoff_but_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(p.delay(1, Some(Duration::from_secs(3600))), p.max_retry_after);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now: DateTime<Utc> = "2026-11-25T13:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 13:00:10 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 12:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
