//! What one measurement collects: how many stamps, tenants, meters and reported hours the simulator
//! serves, how it pages, and how many stamps the collector works on at once. Everything the simulator
//! serves derives from these values and the seed, so a workload is the same rows in every run.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use stamp_sim::{SimAuth, StampSpec};

/// A seeded, exactly countable workload (no late rows, no duplicates, no variants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Simulated stamps.
    #[arg(long, default_value_t = 4)]
    pub stamps: usize,
    /// Tenant subscriptions per stamp.
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    /// Meters per tenant subscription.
    #[arg(long, default_value_t = 10)]
    pub meters: usize,
    /// Reported hours (one window each) to collect.
    #[arg(long, default_value_t = 24)]
    pub hours: i64,
    /// Rows per usage page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: usize,
    /// Delay the simulator adds before every usage page, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub page_delay_ms: u64,
    /// Stamps the collector works on at once (AZS_USAGE_CONCURRENCY).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seed of every generated id and quantity.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Map every tenant subscription to a billing subscription before collecting (the steady state);
    /// without it every row is written unmapped, as on a fresh installation.
    #[arg(long)]
    #[serde(default)]
    pub mapped: bool,
    /// 0: the stamps are registered all-tenants; n > 0: per-subscriber, n subscriber queries of a
    /// window at once (`AZS_USAGE_SUBSCRIBER_CONCURRENCY`).
    #[arg(long, default_value_t = 0)]
    #[serde(default)]
    pub subscriber_concurrency: usize,
}

impl Workload {
    /// The standard workload: 4 stamps x 1,000 tenant subscriptions x 10 meters x 24 reported hours =
    /// 960,000 rows in pages of 1,000, with the default concurrency bound.
    pub fn standard() -> Self {
        Self {
            stamps: 4,
            tenants: 1000,
            meters: 10,
            hours: 24,
            page_size: 1000,
            page_delay_ms: 0,
            concurrency: 8,
            seed: 42,
            mapped: false,
            subscriber_concurrency: 0,
        }
    }

    /// Rows one reported hour of one stamp carries.
    pub fn rows_per_window(&self) -> u64 {
        (self.tenants * self.meters) as u64
    }

    /// Every row of the workload: with no late rows each row is one slot in one hour.
    pub fn rows(&self) -> u64 {
        self.stamps as u64 * self.rows_per_window() * self.hours as u64
    }

    /// `4 stamps x 1000 tenants x 10 meters x 24 h, pages of 1000`.
    pub fn describe(&self) -> String {
        let delay = if self.page_delay_ms > 0 {
            format!(", +{} ms per page", self.page_delay_ms)
        } else {
            String::new()
        };
        format!(
            "{} stamps x {} tenants x {} meters x {} h = {} rows, pages of {}{delay}, concurrency {}{}",
            self.stamps,
            self.tenants,
            self.meters,
            self.hours,
            self.rows(),
            self.page_size,
            self.concurrency,
            if self.mapped { ", all tenants mapped" } else { "" }
        ) + &match self.subscriber_concurrency {
            0 => String::new(),
            n => format!(", per-subscriber, {n} subscriber queries at once"),
        }
    }

    /// The simulator's stamps; their client secrets are [`stamp_secret`].
    pub fn stamp_specs(&self) -> Vec<StampSpec> {
        (0..self.stamps)
            .map(|i| StampSpec {
                tenants: self.tenants,
                meters_per_tenant: self.meters,
                late_rows_per_window: 0,
                duplicate_across_pages: false,
                variants: false,
                page_delay: std::time::Duration::from_millis(self.page_delay_ms),
                ..StampSpec::generated(
                    self.seed,
                    i,
                    SimAuth::AzureAd { secret: Some(stamp_secret(self.seed, i)), certificate_pem: None },
                )
            })
            .collect()
    }
}

/// The billing subscription a mapped workload maps tenant subscription `tenant` to.
pub fn billing_subscription(tenant: &str) -> String {
    format!("billing-{tenant}")
}

/// The client secret simulated stamp `index` accepts.
pub fn stamp_secret(seed: u64, index: usize) -> String {
    format!("azs-bench-secret-{seed}-{index}")
}

/// The reported hours a measurement collects: `hours` whole hours ending at the last settled hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Span {
    /// Ends where a run with the default 1 h settle delay would stop now.
    pub fn ending_now(hours: i64) -> Self {
        let to = azs_core::window::floor_hour(Utc::now() - Duration::hours(1));
        Self { from: to - Duration::hours(hours), to }
    }
}

/// The settle delay that makes a run planned `now` stop exactly at `until`, and keep stopping there for
/// the next half hour: the planning horizon then sits in the middle of the hour after `until`, so an
/// hour turning over during a measurement never adds a window.
pub fn settle_delay_until(until: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    (now - (until + Duration::minutes(30))).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::window::plan_windows;

    #[test]
    fn the_standard_workload_is_960000_rows_in_10000_row_windows() {
        let w = Workload::standard();
        assert_eq!(w.rows(), 960_000);
        assert_eq!(w.rows_per_window(), 10_000);
    }

    #[test]
    fn the_settle_delay_plans_exactly_the_span_for_half_an_hour() {
        let span = Span::ending_now(24);
        for later in [0, 10, 29] {
            let now = Utc::now() + Duration::minutes(later);
            let settle = Duration::from_std(settle_delay_until(span.to, Utc::now())).unwrap();
            let windows: Vec<_> = plan_windows(span.from, now, settle).collect();
            assert_eq!(windows.len(), 24, "{later} minutes later");
            assert_eq!(windows.last().unwrap().end, span.to);
        }
    }
}
