//! The product's statement pass measured over a real database: [`fill`] stores the month of
//! [`crate::month_of_statements`] (the same subscriptions, rows, books and assignments) through
//! the store's own ports, as collection and the operator would; [`keep`] runs the timer's statement
//! step (`azs_app::job::keep_statements`) over it and counts what it did.
//!
//! Each subscription's tenant subscription is on stamp `i % 16` (of fewer, for fewer than 16); each stamp commits one reported
//! hour per usage hour (the rows of hour `h` in window `h`), then one empty span to 2 December
//! 06:00, and its verify covers the month's last hours clean: November is proven complete.

use crate::{month, subscription};
use azs_app::job::{StatementsReport, keep_statements};
use azs_app::rating::StatementService;
use azs_core::SubscriptionMapping;
use azs_core::ports::{Store, WindowCommit, WindowWrite};
use azs_core::rating::StatementSettings;
use azs_core::rating::ports::RatingStore;
use azs_core::stamp::{Stamp, StampConnection, StampId, UsageQueryMode};
use azs_core::status::{DriftCounts, LastVerified};
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use std::time::Duration as Elapsed;

/// Stamps the subscriptions are spread over.
pub const STAMPS: usize = 16;
const OWNER: &str = "azs-rating-bench";

/// Where the stamps are collected to: past November's end plus the settle delay.
fn collected_to() -> DateTime<Utc> {
    month().end() + Duration::hours(30)
}

fn bench_stamp(s: usize) -> Stamp {
    Stamp {
        id: StampId(format!("00000000-0000-4000-8000-{s:012}")),
        name: format!("stamp-{s:02}"),
        connection: StampConnection {
            admin_subscription_id: format!("0b9d6e1c-2f4e-4b8a-9c3d-{s:012}"),
            tenant_id: "4de154de-f8a8-4017-af41-df619da68155".into(),
            application_id: "11111111-2222-3333-4444-555555555555".into(),
            certificate_thumbprint: None,
            admin_arm_endpoint: format!("https://adminmanagement.s{s}.bench.example"),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: false,
            ca_certificate_pem: None,
        },
        credential_secret_name: format!("azs-usage-bench-{s}"),
        enabled: true,
        collect_from: month().start(),
        query_mode: UsageQueryMode::AllTenants,
        created_at: month().start(),
    }
}

/// Stores the workload of `subscriptions` billing subscriptions: stamps, mappings, the books and
/// assignments, every usage row (one reported hour per usage hour and stamp), the watermarks past
/// the month and the verifies that prove it. Answers the rows written.
pub async fn fill(store: &dyn Store, rating: &dyn RatingStore, subscriptions: usize) -> u64 {
    for book in crate::book_list() {
        rating.add_book_versions(&book).await.expect("the bench's books are stored");
    }
    for a in crate::assignment_list(subscriptions) {
        rating.set_assignment(&a).await.expect("the assignment is stored");
    }
    // A small workload has fewer stamps (one per subscription at most): no stamp without usage.
    let stamps: Vec<Stamp> = (0..STAMPS.min(subscriptions.max(1))).map(bench_stamp).collect();
    for s in &stamps {
        store.insert_stamp(s).await.expect("the stamp registers");
        assert!(store.try_acquire(&s.id, OWNER, std::time::Duration::from_secs(86_400)).await.unwrap());
    }
    let mappings: Vec<SubscriptionMapping> = (0..subscriptions)
        .map(|i| SubscriptionMapping {
            stamp_id: stamps[i % stamps.len()].id.clone(),
            external_subscription_id: tenant(i),
            billing_subscription_id: subscription(i),
            updated_at: month().start(),
        })
        .collect();
    store.set_mappings(&mappings).await.expect("the mappings are stored");
    // Every subscription's month at once would be the whole month in memory: rows are made per
    // stamp and hour instead, the window that would have been pulled.
    let mut written = 0;
    for (s, stamp) in stamps.iter().enumerate() {
        let subs: Vec<usize> = (s..subscriptions).step_by(stamps.len()).collect();
        for h in 0..month().hours() {
            let hour = month().start() + Duration::hours(h);
            let rows: Vec<UsageRow> = subs.iter().flat_map(|i| hour_rows(*i, hour)).collect();
            written += commit(store, &stamp.id, ReportedWindow::hour(hour), rows).await;
        }
        let rest = ReportedWindow::new(month().end(), collected_to()).expect("whole hours");
        commit(store, &stamp.id, rest, Vec::new()).await;
        let verified = LastVerified {
            at: collected_to(),
            range: ReportedWindow::new(month().end() - Duration::hours(24), collected_to())
                .expect("whole hours"),
        };
        store.record_verified(&stamp.id, &verified, &DriftCounts::default()).await.unwrap();
        store.release(&stamp.id, OWNER).await.unwrap();
    }
    written
}

fn tenant(i: usize) -> String {
    format!("5c1f3a2e-0000-4000-8000-{i:012}")
}

/// Subscription `i`'s rows of one usage hour, as [`crate::subscription_rows`] makes them.
fn hour_rows(i: usize, hour: DateTime<Utc>) -> impl Iterator<Item = UsageRow> {
    crate::hour_rows(i, hour).into_iter()
}

async fn commit(store: &dyn Store, stamp: &StampId, window: ReportedWindow, rows: Vec<UsageRow>) -> u64 {
    let commit = WindowCommit {
        stamp,
        window,
        lease_owner: OWNER,
        write: WindowWrite::Advance,
        rows,
        quarantined: Vec::new(),
    };
    store.commit_window(commit).await.unwrap_or_else(|e| panic!("committing {window}: {e}")).rows_written
}

/// What [`keep`] measured.
#[derive(Debug)]
pub struct PassFigures {
    pub elapsed: Elapsed,
    pub report: StatementsReport,
    /// Usage rows counted by November's statements (every row of the month, once).
    pub rows: u64,
}

/// Runs the timer's statement step at `now` over the filled store, and counts November's rows.
pub async fn keep(store: Arc<dyn Store>, rating: Arc<dyn RatingStore>, now: DateTime<Utc>) -> PassFigures {
    let service = StatementService { store, rating: rating.clone(), settings: StatementSettings::default() };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3_600);
    let started = std::time::Instant::now();
    let report = keep_statements(&service, now, deadline).await;
    let elapsed = started.elapsed();
    let november = rating.statements(Some(month())).await.expect("the statements read back");
    let rows = november.iter().flat_map(|s| &s.lines).filter(|l| l.corrects.is_none()).map(|l| l.rows).sum();
    PassFigures { elapsed, report, rows }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::rating::ports::StatementStore;
    use azs_store_sqlite::SqliteStore;
    use rust_decimal::Decimal;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_stored_month_is_finalised_by_the_pass_at_the_core_builders_totals() {
        // Given two subscriptions' month stored in SQLite
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        assert_eq!(fill(store.as_ref(), store.as_ref(), 2).await, 2 * 3 * 720);

        // When the timer's pass runs on 3 December
        let figures = keep(store.clone(), store.clone(), "2026-12-03T00:00:00Z".parse().unwrap()).await;

        // Then November is final for both, every row counted, at the totals the core builder gives
        let r = &figures.report;
        assert_eq!((r.finalised, r.drafts, r.blocked, r.failed), (2, 2, 0, 0), "{:?}", r.lines);
        assert_eq!(figures.rows, 2 * 3 * 720);
        let november = store.statements(Some(month())).await.unwrap();
        let stored: Decimal = november.iter().map(|s| s.total).sum();
        let (core, _) = crate::month_of_statements(2);
        assert_eq!(stored, core.total);
    }
}
