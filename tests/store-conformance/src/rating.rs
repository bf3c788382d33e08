//! The behaviour every store that keeps price books and statements must show
//! ([`PriceBookStore`], [`StatementStore`]). Apart from [`crate::cases`]: those ports are not part of
//! the composite `Store`; every store runs these cases too (the parity check sees to it).
//!
//! Every case makes its own book and billing subscription ids, so cases sharing one database never
//! see each other's data.

use crate::{CaseFuture, Outcome, run_named};
use azs_core::ports::Store;
use azs_core::rating::ports::{RatingStore, RatingStoreError, StatementStore};
use azs_core::rating::statement::StatementState;
use azs_core::rating::{
    Assignment, Assignments, Month, PriceBook, PriceBooks, RatableRow, StampEvidence, Statement,
    StatementRequest, StatementSettings, Statements, SubscriptionTerm, VerifyRecord, finalize,
};
use azs_core::stamp::StampId;
use azs_core::status::DriftCounts;
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

/// What a rating case is given: the rating ports, and the store's own (a verify is recorded through
/// the status port, as the collector records it, and read back through `verify_history`).
pub trait RatingUnderTest: RatingStore + Store {}

impl<T: RatingStore + Store> RatingUnderTest for T {}

/// One specified behaviour of a rating store.
pub struct RatingCase {
    pub name: &'static str,
    pub run: fn(Arc<dyn RatingUnderTest>) -> CaseFuture,
}

macro_rules! rating_cases {
    ($($name:ident),* $(,)?) => {
        vec![$(RatingCase { name: stringify!($name), run: |store| Box::pin($name(store)) }),*]
    };
}

pub fn rating_cases() -> Vec<RatingCase> {
    rating_cases![
        a_book_reads_back_exactly_and_importing_it_again_adds_nothing,
        a_changed_version_or_currency_is_refused_whole_and_a_new_version_is_added,
        assignments_read_back_and_one_for_the_same_subscription_and_hour_is_replaced,
        a_draft_is_replaced_by_the_next_and_a_final_statement_never_changes,
        a_months_statements_are_read_a_page_at_a_time_in_binary_billing_subscription_order,
        every_scheduled_verify_is_kept_and_found_by_the_hours_it_covered,
    ]
}

/// Runs every rating case against a store from `make` (called once per case) and reports each.
pub async fn run_rating<S, F, Fut>(make: F) -> Vec<Outcome>
where
    S: RatingUnderTest + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<S>>,
{
    let mut outcomes = Vec::new();
    for case in rating_cases() {
        let store: Arc<dyn RatingUnderTest> = make().await;
        outcomes.push(run_named(case.name, (case.run)(store)).await);
    }
    outcomes
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", StampId::new_random().as_str().split('-').next().unwrap_or("0"))
}

fn book(id: &str, currency: &str, versions: &[(u32, &str, &str)]) -> PriceBook {
    let versions: Vec<_> = versions
        .iter()
        .map(|(version, from, price)| {
            serde_json::json!({"version": version, "effectiveFrom": from, "monthlyFee": "10", "taxPercent": "7.5",
                "meters": [
                    {"meterId": "F271A8A3-88C4-4D93-956A-063E1D2FA80B", "unitMultiplier": "0.5",
                     "price": {"kind": "unit", "unitPrice": price}},
                    {"meterId": "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", "price": {"kind": "byProperty",
                     "property": "ServiceType", "rules": [{"equals": "Standard_A1", "unitPrice": "0.0217"}],
                     "defaultUnitPrice": "0.03"}},
                    {"meterId": "09F8879E-87E9-4305-A572-4B7BE209F857", "price": {"kind": "tiered", "mode": "graduated",
                     "tiers": [{"upTo": "100", "unitPrice": "0.1"}, {"unitPrice": "0.05"}]}},
                    {"meterId": "B9FF3CD0-28AA-4762-84BB-FF8FBAEA6A90", "price": {"kind": "zero", "reason": "included"}}]})
        })
        .collect();
    let json =
        serde_json::json!({"id": id, "currency": {"code": currency, "minorUnits": 2}, "versions": versions});
    serde_json::from_value::<PriceBook>(json).unwrap().validated().unwrap()
}

async fn a_book_reads_back_exactly_and_importing_it_again_adds_nothing(store: Arc<dyn RatingUnderTest>) {
    let id = unique("book");
    let imported =
        book(&id, "EUR", &[(2, "2026-06-01T00:00:00Z", "0.005"), (1, "2026-01-01T00:00:00Z", "0.004")]);
    assert_eq!(store.add_book_versions(&imported).await.unwrap(), 2);
    let stored = store.price_books().await.unwrap().into_iter().find(|b| b.id == id).unwrap();
    assert_eq!(stored, imported, "every field, versions by effectiveFrom, decimals with their scale");
    assert_eq!(store.add_book_versions(&imported).await.unwrap(), 0);
}

async fn a_changed_version_or_currency_is_refused_whole_and_a_new_version_is_added(
    store: Arc<dyn RatingUnderTest>,
) {
    let id = unique("book");
    store.add_book_versions(&book(&id, "USD", &[(1, "2026-01-01T00:00:00Z", "0.004")])).await.unwrap();
    let edited =
        book(&id, "USD", &[(1, "2026-01-01T00:00:00Z", "0.0041"), (2, "2026-03-01T00:00:00Z", "0.005")]);
    let err = store.add_book_versions(&edited).await.unwrap_err();
    assert!(matches!(&err, RatingStoreError::VersionChanged { version: 1, .. }), "{err:?}");
    let stored = store.price_books().await.unwrap().into_iter().find(|b| b.id == id).unwrap();
    assert_eq!(stored.versions.len(), 1, "version 2 of the refused import was not written either");
    let err =
        store.add_book_versions(&book(&id, "EUR", &[(3, "2026-05-01T00:00:00Z", "1")])).await.unwrap_err();
    assert!(matches!(err, RatingStoreError::CurrencyChanged { .. }), "{err:?}");
    let superseding =
        book(&id, "USD", &[(1, "2026-01-01T00:00:00Z", "0.004"), (2, "2026-03-01T00:00:00Z", "0.005")]);
    assert_eq!(store.add_book_versions(&superseding).await.unwrap(), 1);
}

async fn assignments_read_back_and_one_for_the_same_subscription_and_hour_is_replaced(
    store: Arc<dyn RatingUnderTest>,
) {
    let sub = unique("cust");
    let at = |book: &str, from: &str| Assignment {
        billing_subscription_id: Some(sub.clone()),
        book_id: book.into(),
        effective_from: t(from),
    };
    store.set_assignment(&at("gold", "2026-03-01T00:00:00Z")).await.unwrap();
    store.set_assignment(&at("silver", "2026-05-01T00:00:00Z")).await.unwrap();
    store.set_assignment(&at("platinum", "2026-03-01T00:00:00Z")).await.unwrap();
    let default = Assignment {
        billing_subscription_id: None,
        book_id: "base".into(),
        effective_from: t("2026-01-01T00:00:00Z"),
    };
    store.set_assignment(&default).await.unwrap();
    let all = store.assignments().await.unwrap();
    let mine: Vec<_> =
        all.iter().filter(|a| a.billing_subscription_id.as_deref() == Some(sub.as_str())).collect();
    assert_eq!(mine, [&at("platinum", "2026-03-01T00:00:00Z"), &at("silver", "2026-05-01T00:00:00Z")]);
    assert!(all.contains(&default), "the default reads back as the default");
}

/// A statement of `sub` for March 2026, complete or not as `settled` says.
fn statement(book_id: &str, sub: &str, settled: bool, quantity: &str) -> Statement {
    let books = PriceBooks::new([book(book_id, "USD", &[(1, "2026-01-01T00:00:00Z", "0.004")])]);
    let assignments = Assignments::new([Assignment {
        billing_subscription_id: Some(sub.to_owned()),
        book_id: book_id.into(),
        effective_from: t("2026-01-01T00:00:00Z"),
    }]);
    let month: Month = "2026-03".parse().unwrap();
    let stamp = StampId::new_random();
    let rows: Vec<RatableRow> = (0..48)
        .map(|h| {
            let hour = month.start() + Duration::hours(h * 15);
            RatableRow {
                stamp_id: stamp.clone(),
                reported_start: hour + Duration::hours(1),
                billing_subscription_id: sub.to_owned(),
                row: UsageRow {
                    subscription_id: "tenant".into(),
                    meter_id: [
                        "f271a8a3-88c4-4d93-956a-063e1d2fa80b",
                        "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5",
                        "09F8879E87E94305A5724B7BE209F857",
                    ][h as usize % 3]
                        .into(),
                    usage_start: hour,
                    usage_end: hour + Duration::hours(1),
                    quantity: Decimal::from_str(quantity).unwrap(),
                    resource_uri: format!("/r/{h}"),
                    location: "local".into(),
                    tags: None,
                    additional_info: Some(r#"{"ServiceType":"Standard_A1"}"#.into()),
                },
            }
        })
        .collect();
    let end = month.end();
    let evidence = [StampEvidence {
        stamp_id: stamp,
        watermark: end + Duration::hours(if settled { 30 } else { 2 }),
        verifies: vec![VerifyRecord {
            at: end + Duration::hours(31),
            range: ReportedWindow::new(end - Duration::hours(24), end + Duration::hours(30)).unwrap(),
            drift: DriftCounts::default(),
        }],
    }];
    let request = StatementRequest {
        billing_subscription_id: sub,
        month,
        term: SubscriptionTerm { active_from: t("2026-01-01T00:00:00Z"), active_until: None },
        rows: &rows,
        finals: &[],
        mapped_stamps: &[],
        evidence: &evidence,
        now: end + Duration::hours(40),
    };
    Statements::new(&books, &assignments, StatementSettings::default()).build(&request)
}

async fn a_draft_is_replaced_by_the_next_and_a_final_statement_never_changes(
    store: Arc<dyn RatingUnderTest>,
) {
    let (book_id, sub) = (unique("book"), unique("cust"));
    let month: Month = "2026-03".parse().unwrap();
    let first = statement(&book_id, &sub, false, "1.5000000000");
    assert_eq!(first.state, StatementState::Draft);
    store.save_statement(&first).await.unwrap();
    let second = statement(&book_id, &sub, true, "2.2500000000");
    store.save_statement(&second).await.unwrap();
    assert_eq!(store.statement(&sub, month).await.unwrap().as_ref(), Some(&second));
    assert!(store.final_statements(&sub).await.unwrap().is_empty());

    let final_ = finalize(second, t("2026-04-03T00:00:00Z")).unwrap();
    store.save_statement(&final_).await.unwrap();
    let stored = store.statement(&sub, month).await.unwrap().unwrap();
    assert_eq!(stored.to_json(), final_.to_json(), "byte for byte");
    let err = store.save_statement(&statement(&book_id, &sub, true, "9")).await.unwrap_err();
    assert!(matches!(&err, RatingStoreError::StatementFinal { .. }), "{err:?}");
    assert!(err.to_string().contains(&sub) && err.to_string().contains("2026-03"), "{err}");
    assert_eq!(store.statement(&sub, month).await.unwrap().unwrap().to_json(), final_.to_json());
    assert_eq!(store.final_statements(&sub).await.unwrap(), std::slice::from_ref(&final_));
    let march = store.statements(Some(month)).await.unwrap();
    assert!(march.contains(&final_));
    assert!(
        store
            .statements(Some("2026-02".parse().unwrap()))
            .await
            .unwrap()
            .iter()
            .all(|s| s.billing_subscription_id != sub)
    );
}

async fn a_months_statements_are_read_a_page_at_a_time_in_binary_billing_subscription_order(
    store: Arc<dyn RatingUnderTest>,
) {
    // Given March statements of four billing subscriptions, two differing only in case, and an
    // April one of the third (ids of this case alone sort between `prefix` and `prefix-~`)
    let (book_id, prefix) = (unique("book"), unique("paged"));
    let march: Month = "2026-03".parse().unwrap();
    let ids = [format!("{prefix}-b"), format!("{prefix}-B"), format!("{prefix}-c"), format!("{prefix}-a")];
    for id in &ids {
        store.save_statement(&statement(&book_id, id, false, "1.5000000000")).await.unwrap();
    }
    let mut april = statement(&book_id, &ids[0], false, "2");
    april.month = "2026-04".parse().unwrap();
    store.save_statement(&april).await.unwrap();
    let mine = |suffix: &str| (format!("{prefix}-{suffix}"), "2026-03".to_owned());

    // When the month is read two at a time from before the first of them
    let first = page_of(store.as_ref(), march, &prefix, &prefix, 2).await;
    let second = page_of(store.as_ref(), march, &prefix, &format!("{prefix}-a"), 2).await;
    let past = page_of(store.as_ref(), march, &prefix, &format!("{prefix}-c"), 2).await;

    // Then the pages hold them in byte order (upper case first), each once, April's never, and a
    // page after the last holds none of them
    assert_eq!(first, [mine("B"), mine("a")]);
    assert_eq!(second, [mine("b"), mine("c")]);
    assert!(past.is_empty(), "{past:?}");

    // And every page is what the whole month's read holds, in its order
    let whole: Vec<String> = store
        .statements(Some(march))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.billing_subscription_id)
        .filter(|id| id.starts_with(&prefix))
        .collect();
    let paged: Vec<String> = first.into_iter().chain(second).map(|(id, _)| id).collect();
    assert_eq!(paged, whole);
    let from_the_start = store.statements_page(march, None, 1).await.unwrap();
    assert_eq!(from_the_start.len(), 1, "a page from the start holds the month's first statement");
}

/// `(billing subscription, month)` of the statements on the page of `month` after `after` whose
/// ids start with `prefix` (other cases' statements may share the database).
async fn page_of<S: StatementStore + ?Sized>(
    store: &S,
    month: Month,
    prefix: &str,
    after: &str,
    limit: usize,
) -> Vec<(String, String)> {
    let page = store.statements_page(month, Some(after), limit).await.unwrap();
    page.into_iter()
        .filter(|s| s.billing_subscription_id.starts_with(prefix))
        .map(|s| (s.billing_subscription_id, s.month.to_string()))
        .collect()
}

async fn every_scheduled_verify_is_kept_and_found_by_the_hours_it_covered(store: Arc<dyn RatingUnderTest>) {
    // Given a stamp verified on three days, the second with drift
    let s = crate::fixtures::stamp(&unique("verified"));
    store.insert_stamp(&s).await.unwrap();
    let range = |from: &str, to: &str| ReportedWindow::new(t(from), t(to)).unwrap();
    let days = [
        ("2026-11-30T06:00:00Z", range("2026-11-28T05:00:00Z", "2026-11-30T05:00:00Z"), 0),
        ("2026-12-01T06:00:00Z", range("2026-11-29T05:00:00Z", "2026-12-01T05:00:00Z"), 2),
        ("2026-12-02T06:00:00Z", range("2026-11-30T05:00:00Z", "2026-12-02T05:00:00Z"), 0),
    ];
    for (at, range, missing) in days {
        let drift = DriftCounts { missing, extra: 0, changed: 0 };
        let verified = azs_core::status::LastVerified { at: t(at), range };
        store.record_verified(&s.id, &verified, &drift).await.unwrap();
    }

    // When the verifies touching the last day of November and the first of December are asked for
    let found =
        store.verify_history(&s.id, range("2026-11-30T00:00:00Z", "2026-12-02T00:00:00Z")).await.unwrap();

    // Then all three are there, oldest first, with their drift (the status row keeps only the last);
    // a range none touched finds none
    let seen: Vec<_> = found.iter().map(|v| (v.at, v.range, v.drift.missing)).collect();
    assert_eq!(seen, days.iter().map(|(at, r, m)| (t(at), *r, *m)).collect::<Vec<_>>());
    let none =
        store.verify_history(&s.id, range("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z")).await.unwrap();
    assert!(none.is_empty(), "{none:?}");
}
