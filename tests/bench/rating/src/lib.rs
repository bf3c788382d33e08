//! `azs-rating-bench`: fixed workloads for rating and statements, measured, never asserted on speed.
//!
//! - [`rate_rows`]: rows rated per second on one core by `azs_core::rating::rate`, over a mix of
//!   meters priced by property (the VM size in `additionalInfo`), by unit with a multiplier, tiered
//!   and zero-rated, against a card with a parent markup.
//! - [`month_of_statements`]: a month's statements for many billing subscriptions, each with usage
//!   on one stamp every hour (a VM, an IP address and block blob storage), built by
//!   `azs_core::rating::Statements` and finalised; rows are made per subscription as they are
//!   needed (as a store would stream them), so peak memory is the statements', not the rows'.
//!
//! - [`pass`]: the product's statement pass (`azs_app::job::keep_statements`, what the timer runs)
//!   over a real database holding that month, SQLite or PostgreSQL.
//!
//! Figures and the command that produces them: `tests/bench/README.md`.

use azs_core::StampId;
use azs_core::rating::{
    Assignment, Assignments, Month, PriceBook, PriceBooks, RatableRow, StampEvidence, Statement,
    StatementRequest, StatementSettings, Statements, SubscriptionTerm, VerifyRecord, finalize, rate,
};
use azs_core::status::DriftCounts;
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::time::{Duration as Elapsed, Instant};

pub mod pass;

pub const VM: &str = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5";
pub const IP: &str = "F271A8A3-88C4-4D93-956A-063E1D2FA80B";
pub const BLOCK_BLOB: &str = "09F8879E-87E9-4305-A572-4B7BE209F857";
pub const TABLE_TX: &str = "B9FF3CD0-28AA-4762-84BB-FF8FBAEA6A90";

const SIZES: [&str; 4] = ["Standard_D2_v2", "Standard_A1", "Standard_F4s", "Basic_Z9"];

/// The month the workloads cover.
pub fn month() -> Month {
    "2026-11".parse().expect("a month")
}

/// A base book (property, unit with multiplier, graduated tiers, zero-rated, fees, tax) and a child
/// with a 12 % markup that overrides one meter.
pub fn books() -> PriceBooks {
    PriceBooks::new(book_list())
}

/// [`books`] as documents, validated: what a store keeps.
pub fn book_list() -> Vec<PriceBook> {
    let json = serde_json::json!([
        {"id": "base", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
            {"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z", "monthlyFee": "25", "taxPercent": "20", "meters": [
                {"meterId": VM, "price": {"kind": "byProperty", "property": "ServiceType", "rules": [
                    {"equals": "Standard_D2_v2", "unitPrice": "0.0513"}, {"equals": "Standard_A1", "unitPrice": "0.0217"},
                    {"equals": "Standard_F4s", "unitPrice": "0.0688"}], "defaultUnitPrice": "0.0333"}},
                {"meterId": IP, "unitMultiplier": "0.0013698630", "price": {"kind": "unit", "unitPrice": "3.65"}},
                {"meterId": BLOCK_BLOB, "price": {"kind": "tiered", "mode": "graduated", "tiers": [
                    {"upTo": "5000", "unitPrice": "0.00011"}, {"unitPrice": "0.00005"}]}},
                {"meterId": TABLE_TX, "price": {"kind": "zero", "reason": "included"}}]}]},
        {"id": "reseller", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
            {"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z",
             "parent": {"bookId": "base", "adjustmentPercent": "12"},
             "meters": [{"meterId": IP, "price": {"kind": "unit", "unitPrice": "0.004"}}]}]}
    ]);
    let books: Vec<PriceBook> = serde_json::from_value(json).expect("the benchmark's books parse");
    books.into_iter().map(|b| b.validated().expect("the benchmark's books are valid")).collect()
}

/// Everyone on `base`, every third subscription on `reseller`.
pub fn assignments(subscriptions: usize) -> Assignments {
    Assignments::new(assignment_list(subscriptions))
}

/// [`assignments`] one by one: the default first.
pub fn assignment_list(subscriptions: usize) -> Vec<Assignment> {
    let from: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("a time");
    let default = Assignment { billing_subscription_id: None, book_id: "base".into(), effective_from: from };
    let overrides = (0..subscriptions).step_by(3).map(move |i| Assignment {
        billing_subscription_id: Some(subscription(i)),
        book_id: "reseller".into(),
        effective_from: from,
    });
    std::iter::once(default).chain(overrides).collect()
}

pub fn subscription(i: usize) -> String {
    format!("billing-{i:05}")
}

fn row(meter: &str, hour: DateTime<Utc>, quantity: Decimal, info: Option<String>, n: usize) -> UsageRow {
    UsageRow {
        subscription_id: format!("5c1f3a2e-0000-4000-8000-{n:012}"),
        meter_id: meter.to_owned(),
        usage_start: hour,
        usage_end: hour + Duration::hours(1),
        quantity,
        resource_uri: format!(
            "/subscriptions/5c1f3a2e/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-{n}"
        ),
        location: "local".to_owned(),
        tags: None,
        additional_info: info,
    }
}

/// The `i`th row of the rating mix: half VM rows priced by size, then IP, tiered blob, zero-rated.
pub fn mixed_row(i: usize) -> UsageRow {
    let hour = month().start() + Duration::hours((i % 720) as i64);
    match i % 8 {
        0..4 => {
            let info = format!(r#"{{"ServiceType":"{}","ImageType":"Windows Server"}}"#, SIZES[i / 8 % 4]);
            row(VM, hour, Decimal::new(2 * 10_000_000_000, 10), Some(info), i)
        }
        4 | 5 => row(IP, hour, Decimal::from(1 + i % 3), None, i),
        6 => row(BLOCK_BLOB, hour, Decimal::new((i % 100_000) as i64 + 1, 4), None, i),
        _ => row(TABLE_TX, hour, Decimal::new((i % 997) as i64, 2), None, i),
    }
}

/// What [`rate_rows`] measured.
#[derive(Debug, Clone, Copy)]
pub struct RatingFigures {
    pub rows: usize,
    pub elapsed: Elapsed,
    /// The sum of the rated amounts, so the work cannot be optimised away (and a check).
    pub priced_rows: usize,
}

impl RatingFigures {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Rates `rows` on this thread, against the reseller card (markup over base), `passes` times over.
pub fn rate_rows(rows: &[UsageRow], passes: usize) -> RatingFigures {
    let books = books();
    let card = books.card_at("reseller", month().start()).expect("a card");
    let started = Instant::now();
    let mut priced_rows = 0;
    for _ in 0..passes {
        for r in rows {
            if rate(r, &card).is_ok() {
                priced_rows += 1;
            }
        }
    }
    RatingFigures { rows: rows.len() * passes, elapsed: started.elapsed(), priced_rows }
}

/// The rows of subscription `i` for the month: one stamp, every hour a VM (its size by `i`), an IP
/// address and block blob storage.
pub fn subscription_rows(i: usize) -> Vec<RatableRow> {
    let sub = subscription(i);
    let stamp = StampId(format!("stamp-{:02}", i % 16));
    let mut rows = Vec::with_capacity(3 * 720);
    let mut hour = month().start();
    while hour < month().end() {
        let reported = hour + Duration::hours(2);
        rows.extend(hour_rows(i, hour).into_iter().map(|row| RatableRow {
            stamp_id: stamp.clone(),
            reported_start: reported,
            billing_subscription_id: sub.clone(),
            row,
        }));
        hour += Duration::hours(1);
    }
    rows
}

/// Subscription `i`'s usage in one hour: a VM (its size by `i`), an IP address, block blob storage.
pub fn hour_rows(i: usize, hour: DateTime<Utc>) -> [UsageRow; 3] {
    let info = format!(r#"{{"ServiceType":"{}"}}"#, SIZES[i % 4]);
    [
        row(VM, hour, Decimal::new(4 * 10_000_000_000, 10), Some(info), i),
        row(IP, hour, Decimal::ONE, None, i),
        row(BLOCK_BLOB, hour, Decimal::new(12_345_678 + i as i64, 4), None, i),
    ]
}

/// Evidence that settles the month on every stamp.
pub fn evidence() -> Vec<StampEvidence> {
    let end = month().end();
    (0..16)
        .map(|s| StampEvidence {
            stamp_id: StampId(format!("stamp-{s:02}")),
            watermark: end + Duration::hours(30),
            verifies: vec![VerifyRecord {
                at: end + Duration::hours(31),
                range: ReportedWindow::new(end - Duration::hours(24), end + Duration::hours(30))
                    .expect("whole hours"),
                drift: DriftCounts::default(),
            }],
        })
        .collect()
}

/// What [`month_of_statements`] measured.
#[derive(Debug, Clone)]
pub struct StatementFigures {
    pub subscriptions: usize,
    pub rows: usize,
    /// Making the rows (what reading them from a store would cost instead).
    pub generating: Elapsed,
    /// Building and finalising the statements.
    pub building: Elapsed,
    pub finalised: usize,
    pub total: Decimal,
    pub lines: usize,
}

/// Builds and finalises the month's statement of `subscriptions` billing subscriptions.
pub fn month_of_statements(subscriptions: usize) -> (StatementFigures, Vec<Statement>) {
    let books = books();
    let assignments = assignments(subscriptions);
    let mut builder = Statements::new(&books, &assignments, StatementSettings::default());
    let evidence = evidence();
    let now = month().end() + Duration::hours(48);
    let term =
        SubscriptionTerm { active_from: "2026-01-01T00:00:00Z".parse().expect("a time"), active_until: None };
    let mut figures = StatementFigures {
        subscriptions,
        rows: 0,
        generating: Elapsed::ZERO,
        building: Elapsed::ZERO,
        finalised: 0,
        total: Decimal::ZERO,
        lines: 0,
    };
    let mut statements = Vec::with_capacity(subscriptions);
    for i in 0..subscriptions {
        let started = Instant::now();
        let rows = subscription_rows(i);
        figures.generating += started.elapsed();
        figures.rows += rows.len();
        let started = Instant::now();
        let sub = subscription(i);
        let request = StatementRequest {
            billing_subscription_id: &sub,
            month: month(),
            term,
            rows: &rows,
            finals: &[],
            mapped_stamps: &[],
            evidence: &evidence,
            now,
        };
        let statement = builder.build(&request);
        let statement = match finalize(statement, now) {
            Ok(final_) => {
                figures.finalised += 1;
                final_
            }
            Err(not_complete) => panic!("{not_complete}"),
        };
        figures.building += started.elapsed();
        figures.total += statement.total;
        figures.lines += statement.lines.len();
        statements.push(statement);
    }
    (figures, statements)
}

/// CPU time this process has used so far (user + system, from `/proc/self/stat`, in clock ticks of
/// 1/100 s): the figure that stays put when other builds share the cores, where wall time does not.
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start after the last ')'.
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
            Some((ticks(11)? + ticks(12)?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// Peak resident set size of this process so far, in MiB (`VmHWM`). Mapped file pages count in it
/// (the executable's, or a database file's if SQLite maps it: reclaimable page cache, not heap): see
/// [`AnonPeak`].
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:").map_or(0.0, |kib| kib / 1024.0)
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
}

/// The highest anonymous resident memory (`RssAnon`: heap and stacks, without mapped file pages)
/// seen while it runs, sampled every 50 ms: the kernel keeps a peak of the whole RSS only.
pub struct AnonPeak {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<f64>,
}

impl AnonPeak {
    pub fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0.0_f64;
            loop {
                peak = peak.max(status_kib("RssAnon:").unwrap_or(0.0));
                if seen.load(std::sync::atomic::Ordering::Relaxed) {
                    return peak / 1024.0;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        Self { stop, sampler }
    }

    /// The peak in MiB.
    pub fn finish(self) -> f64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rating_mix_prices_every_row() {
        let rows: Vec<UsageRow> = (0..800).map(mixed_row).collect();
        let figures = rate_rows(&rows, 1);
        assert_eq!((figures.rows, figures.priced_rows), (800, 800));
    }

    #[test]
    fn a_small_month_of_statements_is_final_and_adds_up() {
        let (figures, statements) = month_of_statements(6);
        assert_eq!((figures.finalised, figures.rows), (6, 6 * 3 * 720));
        for s in &statements {
            let lines: Decimal = s.lines.iter().map(|l| l.amount).sum();
            let fees: Decimal = s.fees.iter().map(|f| f.amount).sum();
            assert_eq!(s.subtotal, lines + fees);
            assert_eq!(s.total, s.subtotal + s.tax);
            assert_eq!(s.lines.iter().map(|l| l.rows).sum::<u64>(), 3 * 720);
        }
        assert_eq!(statements[0].lines[0].book, "reseller@1 < base@1", "every third on the reseller book");
    }
}
