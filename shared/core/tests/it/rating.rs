//! Rating and statements against a simulated month whose money is worked out here, independently of
//! the rating code: a price table written out by hand, the same month's rows, sums in plain decimals.

use azs_core::StampId;
use azs_core::rating::statement::{FeeKind, StatementState};
use azs_core::rating::{
    Assignment, Assignments, Blocker, Component, Month, PriceBook, PriceBooks, RatableRow, StampEvidence,
    Statement, StatementRequest, StatementSettings, Statements, SubscriptionTerm, VerifyRecord, finalize,
};
use azs_core::status::DriftCounts;
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;
use std::str::FromStr;

pub(crate) const VM: &str = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5";
pub(crate) const IP: &str = "f271a8a3-88c4-4d93-956a-063e1d2fa80b";
pub(crate) const BLOCK_BLOB: &str = "09F8879E-87E9-4305-A572-4B7BE209F857";
pub(crate) const PAGE_BLOB: &str = "B5C15376-6C94-4FDD-B655-1A69D138ACA3";
pub(crate) const TABLE_TX: &str = "B9FF3CD0-28AA-4762-84BB-FF8FBAEA6A90";
const QUEUE: &str = "B03C6AE7-B080-4BFA-84A3-22C800F315C6";

const SUBS: [&str; 4] = ["cust-a", "cust-b", "cust-c", "cust-d"];
const STAMPS: [&str; 3] = ["stamp-east", "stamp-west", "stamp-edge"];
const SIZES: [&str; 3] = ["Standard_D2_v2", "Standard_A1", "Basic_Z9"];

pub(crate) fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

pub(crate) fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

pub(crate) fn november() -> Month {
    "2026-11".parse().unwrap()
}

/// The price change of the base book: its version 2 from this hour.
fn base_v2_from() -> DateTime<Utc> {
    t("2026-11-16T13:00:00Z")
}

/// When cust-c moves from the base book to gold.
fn gold_from() -> DateTime<Utc> {
    t("2026-11-10T00:00:00Z")
}

/// Every feature a book has: property prices with a default, a unit multiplier, graduated and
/// volume tiers, a zero-rated meter, fees, tax, a mid-month version, and two levels of parents.
pub(crate) fn books() -> PriceBooks {
    let json = serde_json::json!([
        {"id": "base", "currency": {"code": "USD", "minorUnits": 2}, "versions": [
            {"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z", "monthlyFee": "50", "oneTimeFee": "100",
             "taxPercent": "19", "meters": [
                {"meterId": VM, "price": {"kind": "byProperty", "property": "ServiceType", "rules": [
                    {"equals": "Standard_D2_v2", "unitPrice": "0.0513"},
                    {"equals": "Standard_A1", "unitPrice": "0.0217"}], "defaultUnitPrice": "0.0333"}},
                {"meterId": IP, "unitMultiplier": "0.0013698630", "pricingUnit": "IP address-months",
                 "price": {"kind": "unit", "unitPrice": "3.65"}},
                {"meterId": BLOCK_BLOB, "price": {"kind": "tiered", "mode": "graduated", "tiers": [
                    {"upTo": "5000", "unitPrice": "0.00011"}, {"upTo": "20000", "unitPrice": "0.00008"},
                    {"unitPrice": "0.00005"}]}},
                {"meterId": PAGE_BLOB, "price": {"kind": "tiered", "mode": "volume", "tiers": [
                    {"upTo": "8000", "unitPrice": "0.0002"}, {"unitPrice": "0.00015"}]}},
                {"meterId": TABLE_TX, "price": {"kind": "zero", "reason": "included in the platform fee"}}
             ]},
            {"version": 2, "effectiveFrom": "2026-11-16T13:00:00Z", "monthlyFee": "50", "oneTimeFee": "100",
             "taxPercent": "19", "meters": [
                {"meterId": VM, "price": {"kind": "byProperty", "property": "ServiceType", "rules": [
                    {"equals": "Standard_D2_v2", "unitPrice": "0.0471"},
                    {"equals": "Standard_A1", "unitPrice": "0.0199"}], "defaultUnitPrice": "0.0301"}},
                {"meterId": IP, "unitMultiplier": "0.0013698630", "pricingUnit": "IP address-months",
                 "price": {"kind": "unit", "unitPrice": "3.65"}},
                {"meterId": BLOCK_BLOB, "price": {"kind": "tiered", "mode": "graduated", "tiers": [
                    {"upTo": "5000", "unitPrice": "0.00011"}, {"upTo": "20000", "unitPrice": "0.00008"},
                    {"unitPrice": "0.00005"}]}},
                {"meterId": PAGE_BLOB, "price": {"kind": "tiered", "mode": "volume", "tiers": [
                    {"upTo": "8000", "unitPrice": "0.0002"}, {"unitPrice": "0.00015"}]}},
                {"meterId": TABLE_TX, "price": {"kind": "zero", "reason": "included in the platform fee"}}
             ]}
        ]},
        {"id": "gold", "currency": {"code": "USD", "minorUnits": 2}, "versions": [
            {"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z", "monthlyFee": "40",
             "parent": {"bookId": "base", "adjustmentPercent": "-10"},
             "meters": [{"meterId": IP, "unitMultiplier": "0.0013698630", "price": {"kind": "unit", "unitPrice": "3.10"}}]}
        ]},
        {"id": "premium", "currency": {"code": "USD", "minorUnits": 2}, "versions": [
            {"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z",
             "parent": {"bookId": "gold", "adjustmentPercent": "25"}}
        ]}
    ]);
    let books: Vec<PriceBook> = serde_json::from_value(json).unwrap();
    PriceBooks::new(books.into_iter().map(|b| b.validated().unwrap()))
}

pub(crate) fn assignments() -> Assignments {
    let a = |sub: Option<&str>, book: &str, from: DateTime<Utc>| Assignment {
        billing_subscription_id: sub.map(str::to_owned),
        book_id: book.into(),
        effective_from: from,
    };
    Assignments::new([
        a(None, "base", t("2026-01-01T00:00:00Z")),
        a(Some("cust-c"), "gold", gold_from()),
        a(Some("cust-d"), "premium", t("2026-01-01T00:00:00Z")),
    ])
}

fn term(sub: &str) -> SubscriptionTerm {
    match sub {
        // cust-b became active mid-month: its one-time fee, and a monthly fee for its hours only.
        "cust-b" => SubscriptionTerm { active_from: t("2026-11-05T12:00:00Z"), active_until: None },
        _ => SubscriptionTerm { active_from: t("2026-01-01T00:00:00Z"), active_until: None },
    }
}

/// A small deterministic generator (SplitMix64), so the month is the same on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) fn usage(
    stamp: &str,
    sub: &str,
    meter: &str,
    hour: DateTime<Utc>,
    quantity: Decimal,
    info: Option<String>,
) -> RatableRow {
    let lag = Duration::hours(1 + (hour.timestamp() / 3600 % 3));
    RatableRow {
        stamp_id: StampId(stamp.into()),
        reported_start: hour + lag,
        billing_subscription_id: sub.into(),
        row: UsageRow {
            subscription_id: format!("tenant-{sub}-{stamp}"),
            meter_id: meter.into(),
            usage_start: hour,
            usage_end: hour + Duration::hours(1),
            quantity,
            resource_uri: format!("/subscriptions/{sub}/resourceGroups/rg/providers/x/{meter}"),
            location: "local".into(),
            tags: None,
            additional_info: info,
        },
    }
}

/// The month's rows: every subscription on two or three stamps, every hour it was active.
pub(crate) fn simulated_month(seed: u64) -> Vec<RatableRow> {
    let mut rng = Seeded(seed);
    let mut rows = Vec::new();
    for (s, sub) in SUBS.iter().enumerate() {
        let from = term(sub).active_from.max(november().start());
        let mut hour = from;
        while hour < november().end() {
            for stamp in STAMPS.iter().take(2 + s % 2) {
                let size = SIZES[rng.below(3) as usize];
                let vcores = Decimal::new([1, 2, 4][rng.below(3) as usize] * 10_000_000_000, 10);
                let info = format!(r#"{{"ServiceType":"{size}","ImageType":"Windows Server"}}"#);
                rows.push(usage(stamp, sub, VM, hour, vcores, Some(info)));
                rows.push(usage(stamp, sub, IP, hour, Decimal::from(1 + rng.below(2)), None));
                let gb = Decimal::new(rng.below(20_000_000_000) as i64, 10) + Decimal::from(5);
                rows.push(usage(stamp, sub, BLOCK_BLOB, hour, gb, None));
                let pages = Decimal::new(rng.below(90_000_000) as i64, 8);
                rows.push(usage(stamp, sub, PAGE_BLOB, hour, pages, None));
                rows.push(usage(stamp, sub, TABLE_TX, hour, Decimal::new(rng.below(1000) as i64, 2), None));
            }
            hour += Duration::hours(1);
        }
    }
    rows
}

/// What each stamp shows once the month has settled: watermark past the end plus a day, and a
/// clean verify over the month's last reported hours.
pub(crate) fn settled_evidence() -> Vec<StampEvidence> {
    STAMPS
        .iter()
        .map(|stamp| StampEvidence {
            stamp_id: StampId((*stamp).into()),
            watermark: t("2026-12-02T05:00:00Z"),
            verifies: vec![VerifyRecord {
                at: t("2026-12-02T06:10:00Z"),
                range: ReportedWindow::new(t("2026-11-29T00:00:00Z"), t("2026-12-02T05:00:00Z")).unwrap(),
                drift: DriftCounts::default(),
            }],
        })
        .collect()
}

pub(crate) fn request<'a>(
    sub: &'a str,
    month: Month,
    rows: &'a [RatableRow],
    finals: &'a [Statement],
    evidence: &'a [StampEvidence],
    now: &str,
) -> StatementRequest<'a> {
    StatementRequest {
        billing_subscription_id: sub,
        month,
        term: term(sub),
        rows,
        finals,
        mapped_stamps: &[],
        evidence,
        now: t(now),
    }
}

// ---- the independent computation -------------------------------------------------------------

/// The hand-written price table: which book and version a subscription rates with at an hour, as
/// the label statements print, and the factor its parents' markups and discounts multiply into.
fn book_at(sub: &str, hour: DateTime<Utc>) -> (String, Decimal) {
    let base = if hour < base_v2_from() { "base@1" } else { "base@2" };
    match sub {
        "cust-c" if hour >= gold_from() => (format!("gold@1 < {base}"), d("0.9")),
        "cust-d" => (format!("premium@1 < gold@1 < {base}"), d("0.9") * d("1.25")),
        _ => (base.to_owned(), Decimal::ONE),
    }
}

fn vm_price(hour: DateTime<Utc>, size: &str) -> (Decimal, String) {
    let v1 = hour < base_v2_from();
    let (price, label) = match size {
        "Standard_D2_v2" => (if v1 { "0.0513" } else { "0.0471" }, "ServiceType=Standard_D2_v2"),
        "Standard_A1" => (if v1 { "0.0217" } else { "0.0199" }, "ServiceType=Standard_A1"),
        _ => (if v1 { "0.0333" } else { "0.0301" }, "ServiceType=(default)"),
    };
    (d(price), label.to_owned())
}

/// The IP price: gold overrides it (so premium, gold's child, marks up gold's own price).
fn ip_price(sub: &str, hour: DateTime<Utc>) -> Decimal {
    match sub {
        "cust-c" if hour >= gold_from() => d("3.10"),
        "cust-d" => d("3.10") * d("1.25"),
        _ => d("3.65"),
    }
}

const BLOCK_TIERS: [(Option<&str>, &str); 3] =
    [(Some("5000"), "0.00011"), (Some("20000"), "0.00008"), (None, "0.00005")];
const PAGE_TIERS: [(Option<&str>, &str); 2] = [(Some("8000"), "0.0002"), (None, "0.00015")];

fn bounds(tiers: &[(Option<&str>, &str)]) -> Vec<(Decimal, Decimal)> {
    tiers.iter().map(|(up_to, price)| (up_to.map_or(Decimal::MAX, d), d(price))).collect()
}

type Groups = BTreeMap<(String, String, String, String), Decimal>;

/// The month's exact amounts per (meter, stamp, book, price), the grouping statements round by.
fn expected_groups(sub: &str, rows: &[RatableRow], tier_start: &BTreeMap<&str, Decimal>) -> Groups {
    let mut groups = Groups::new();
    let mut add = |meter: &str, stamp: &StampId, book: &str, price: String, amount: Decimal| {
        let key = (meter.to_uppercase().replace('-', ""), stamp.0.clone(), book.to_owned(), price);
        *groups.entry(key).or_default() += amount;
    };
    let mut mine: Vec<&RatableRow> = rows.iter().filter(|r| r.billing_subscription_id == sub).collect();
    mine.sort_by_key(|r| r.row.usage_start);
    let block_total: Decimal = tier_start.get(BLOCK_BLOB).copied().unwrap_or_default();
    let page_total: Decimal = tier_start.get(PAGE_BLOB).copied().unwrap_or_default()
        + mine.iter().filter(|r| r.row.meter_id == PAGE_BLOB).map(|r| r.row.quantity).sum::<Decimal>();
    let mut block_used = block_total;
    for r in mine {
        let hour = r.row.usage_start;
        let (book, factor) = book_at(sub, hour);
        let q = r.row.quantity;
        match r.row.meter_id.as_str() {
            VM => {
                let info = r.row.additional_info.as_deref().unwrap();
                let size = info.split('"').nth(3).unwrap();
                let (price, label) = vm_price(hour, size);
                add(VM, &r.stamp_id, &book, label, q * price * factor);
            }
            IP => add(IP, &r.stamp_id, &book, "unit".into(), q * d("0.0013698630") * ip_price(sub, hour)),
            BLOCK_BLOB => {
                let mut lower = Decimal::ZERO;
                for (i, (upper, price)) in bounds(&BLOCK_TIERS).into_iter().enumerate() {
                    let take = (block_used + q).min(upper) - block_used.max(lower);
                    if take > Decimal::ZERO {
                        add(BLOCK_BLOB, &r.stamp_id, &book, format!("tier {}", i + 1), take * price * factor);
                    }
                    lower = upper;
                }
                block_used += q;
            }
            PAGE_BLOB => {
                let tiers = bounds(&PAGE_TIERS);
                let i = tiers.iter().position(|(upper, _)| page_total <= *upper).unwrap();
                add(PAGE_BLOB, &r.stamp_id, &book, format!("tier {}", i + 1), q * tiers[i].1 * factor);
            }
            TABLE_TX => add(TABLE_TX, &r.stamp_id, &book, "zero-rated".into(), Decimal::ZERO),
            other => panic!("no price written for {other}"),
        }
    }
    groups
}

fn cents(amount: Decimal) -> Decimal {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The statement's total, from the groups, the fees and the tax, each rounded once.
fn expected_total(sub: &str, groups: &Groups) -> (Decimal, Decimal) {
    let usage: Decimal = groups.values().map(|a| cents(*a)).sum();
    // A monthly fee line per stretch under one book version, prorated over November's 720 hours:
    // base changes version at 16 Nov 13:00 (373 hours in), cust-c moves to gold on 10 Nov (216 in).
    let fee = |monthly: &str, hours: i64| cents(d(monthly) * Decimal::from(hours) / Decimal::from(720));
    let fees = match sub {
        // Active from 5 Nov 12:00: 265 hours under base@1, 347 under base@2, and base's one-time 100.
        "cust-b" => fee("50", 265) + fee("50", 347) + d("100"),
        "cust-c" => fee("50", 216) + fee("40", 157) + fee("40", 347),
        // premium inherits gold's fee.
        "cust-d" => fee("40", 373) + fee("40", 347),
        _ => fee("50", 373) + fee("50", 347),
    };
    let subtotal = usage + fees;
    (subtotal, subtotal + cents(subtotal * d("0.19")))
}

pub(crate) fn build_november(rows: &[RatableRow], now: &str) -> Vec<Statement> {
    let (books, assignments) = (books(), assignments());
    let mut statements = Statements::new(&books, &assignments, StatementSettings::default());
    let evidence = settled_evidence();
    SUBS.iter().map(|sub| statements.build(&request(sub, november(), rows, &[], &evidence, now))).collect()
}

fn label(c: &Component) -> String {
    c.to_string()
}

#[test]
fn a_month_over_three_stamps_and_four_subscriptions_totals_to_the_cent_of_an_independent_computation() {
    let rows = simulated_month(0x28);
    assert!(rows.len() > 30_000, "{}", rows.len());
    let statements = build_november(&rows, "2026-12-03T00:00:00Z");
    for statement in &statements {
        let sub = statement.billing_subscription_id.as_str();
        let groups = expected_groups(sub, &rows, &BTreeMap::new());
        let (subtotal, total) = expected_total(sub, &groups);
        assert!(statement.blockers.is_empty(), "{sub}: {:?}", statement.blockers);
        assert_eq!((statement.subtotal, statement.total), (subtotal, total), "{sub}");
        let lines: Groups = statement
            .lines
            .iter()
            .map(|l| {
                (
                    (l.meter_id.clone(), l.stamp_id.0.clone(), l.book.clone(), label(&l.component)),
                    l.exact_amount,
                )
            })
            .collect();
        assert_eq!(lines, groups, "{sub}: every line, exact");
        assert!(statement.lines.iter().all(|l| l.amount == cents(l.exact_amount) && l.amount.scale() == 2));
    }
    let total: Decimal = statements.iter().map(|s| s.total).sum();
    assert!(total > d("1000"), "a month of real money: {total}");
}

#[test]
fn a_price_change_mid_month_splits_the_lines_at_its_hour() {
    let rows = simulated_month(0x28);
    let statements = build_november(&rows, "2026-12-03T00:00:00Z");
    let a = &statements[0];
    let vm: Vec<_> = a.lines.iter().filter(|l| l.meter_id == VM.replace('-', "")).collect();
    let before: Vec<_> = vm.iter().filter(|l| l.book == "base@1").collect();
    let after: Vec<_> = vm.iter().filter(|l| l.book == "base@2").collect();
    assert_eq!((before.len(), after.len()), (6, 6), "one line per VM size and stamp on each side");
    assert!(
        before.iter().all(|l| l.usage_to <= base_v2_from())
            && before.iter().any(|l| l.usage_to == base_v2_from())
    );
    assert!(
        after.iter().all(|l| l.usage_from >= base_v2_from())
            && after.iter().any(|l| l.usage_from == base_v2_from())
    );
    let d2 = |lines: &[&&azs_core::rating::statement::StatementLine]| {
        lines.iter().find(|l| label(&l.component) == "ServiceType=Standard_D2_v2").unwrap().unit_price
    };
    assert_eq!((d2(&before), d2(&after)), (d("0.0513"), d("0.0471")));
}

#[test]
fn fees_are_prorated_by_active_hours_and_the_one_time_fee_falls_in_the_month_of_activation() {
    let rows = simulated_month(0x28);
    let statements = build_november(&rows, "2026-12-03T00:00:00Z");
    let b = &statements[1];
    let fees: Vec<_> = b.fees.iter().map(|f| (f.kind, f.active_hours, f.amount)).collect();
    assert_eq!(
        fees,
        [
            (FeeKind::Monthly, 265, d("18.40")),
            (FeeKind::Monthly, 347, d("24.10")),
            (FeeKind::OneTime, 0, d("100.00"))
        ]
    );
    let c = &statements[2];
    let books: Vec<_> = c.fees.iter().map(|f| (f.book.as_str(), f.active_hours)).collect();
    assert_eq!(books, [("base@1", 216), ("gold@1 < base@1", 157), ("gold@1 < base@2", 347)]);
}

#[test]
fn a_discounted_book_shows_its_discount_against_the_parents_list_price() {
    let rows = simulated_month(0x28);
    let statements = build_november(&rows, "2026-12-03T00:00:00Z");
    let (a, c) = (&statements[0], &statements[2]);
    assert_eq!(a.discount, d("0.00"));
    assert!(c.discount > d("1"), "{}", c.discount);
    let gold_vm =
        c.lines.iter().find(|l| l.book.starts_with("gold") && l.meter_id == VM.replace('-', "")).unwrap();
    assert_eq!(gold_vm.unit_price, gold_vm.list_unit_price * d("0.9"));
}

#[test]
fn usage_reported_after_finalising_is_a_correction_on_the_next_statement_and_the_final_never_changes() {
    let mut rows = simulated_month(0x28);
    let finals: Vec<Statement> = build_november(&rows, "2026-12-03T00:00:00Z")
        .into_iter()
        .map(|s| finalize(s, t("2026-12-03T00:05:00Z")).unwrap())
        .collect();
    let bytes: Vec<String> = finals.iter().map(|s| serde_json::to_string(s).unwrap()).collect();
    assert!(finals.iter().all(|s| s.stamps.len() >= 2 && s.stamps.iter().all(|p| p.verifies.len() == 1)));

    // Late rows: November usage of cust-a reported on 5 December, after the recorded watermarks.
    let late_hour = t("2026-11-30T22:00:00Z");
    let mut late = vec![
        usage(
            "stamp-west",
            "cust-a",
            VM,
            late_hour,
            d("4.0000000000"),
            Some(r#"{"ServiceType":"Standard_D2_v2"}"#.into()),
        ),
        usage("stamp-west", "cust-a", IP, late_hour, d("3"), None),
        usage("stamp-west", "cust-a", BLOCK_BLOB, late_hour, d("123.4567890123"), None),
    ];
    for r in &mut late {
        r.reported_start = t("2026-12-05T07:00:00Z");
    }
    rows.extend(late.iter().cloned());
    let december_usage = usage("stamp-east", "cust-a", IP, t("2026-12-01T03:00:00Z"), d("1"), None);
    rows.push(december_usage.clone());

    let (books, assignments) = (books(), assignments());
    let mut statements = Statements::new(&books, &assignments, StatementSettings::default());
    let mut evidence = settled_evidence();
    evidence.iter_mut().for_each(|e| e.watermark = t("2026-12-06T00:00:00Z"));
    let december: Month = "2026-12".parse().unwrap();
    for (final_, bytes) in finals.iter().zip(&bytes) {
        let sub = final_.billing_subscription_id.as_str();
        let again = statements.current(
            Some(final_),
            &request(sub, november(), &rows, &finals, &evidence, "2026-12-06T00:00:00Z"),
        );
        assert_eq!(
            &serde_json::to_string(&again).unwrap(),
            bytes,
            "{sub}: the final statement, byte for byte"
        );
    }
    let next =
        statements.build(&request("cust-a", december, &rows, &finals, &evidence, "2026-12-06T00:00:00Z"));
    let corrections: Vec<_> = next.lines.iter().filter(|l| l.corrects.is_some()).collect();
    assert!(corrections.iter().all(|l| l.corrects == Some(november())));
    assert_eq!(corrections.iter().map(|l| l.rows).sum::<u64>(), 3);

    // The late rows' value, worked out here: the VM and IP at base@2, the block blob from where
    // November's counted quantity left off in the graduated tiers (well past the first band).
    let counted: Decimal = rows
        .iter()
        .filter(|r| {
            r.billing_subscription_id == "cust-a"
                && r.row.meter_id == BLOCK_BLOB
                && r.reported_start < t("2026-12-02T00:00:00Z")
        })
        .map(|r| r.row.quantity)
        .sum();
    let start = BTreeMap::from([(BLOCK_BLOB, counted)]);
    let late_groups = expected_groups("cust-a", &late, &start);
    let expected: Decimal = late_groups.values().map(|a| cents(*a)).sum();
    assert_eq!(next.corrections, expected);
    assert_eq!(
        corrections.iter().map(|l| l.exact_amount).sum::<Decimal>(),
        late_groups.values().copied().sum::<Decimal>()
    );
    assert!(expected > Decimal::ZERO);
    let december_lines: Vec<_> = next.lines.iter().filter(|l| l.corrects.is_none()).collect();
    assert_eq!(december_lines.len(), 1, "December's own usage stays apart from the corrections");
    assert_eq!(december_lines[0].consumed_quantity, december_usage.row.quantity);

    // Once December is final too, the same late rows are not counted a second time in January.
    let december_final = finalize(
        statements.build(&request(
            "cust-a",
            december,
            &rows,
            &finals,
            &evidence_for(december),
            "2027-01-03T00:00:00Z",
        )),
        t("2027-01-03T00:00:00Z"),
    )
    .unwrap();
    let mut all_finals = finals.clone();
    all_finals.push(december_final);
    let january = statements.build(&request(
        "cust-a",
        "2027-01".parse().unwrap(),
        &rows,
        &all_finals,
        &evidence_for(december),
        "2027-01-03T00:00:00Z",
    ));
    assert_eq!(january.corrections, d("0.00"));
}

/// Evidence that settles `month`.
pub(crate) fn evidence_for(month: Month) -> Vec<StampEvidence> {
    STAMPS
        .iter()
        .map(|stamp| StampEvidence {
            stamp_id: StampId((*stamp).into()),
            watermark: month.end() + Duration::hours(30),
            verifies: vec![VerifyRecord {
                at: month.end() + Duration::hours(31),
                range: ReportedWindow::new(
                    month.end() - Duration::hours(48),
                    month.end() + Duration::hours(30),
                )
                .unwrap(),
                drift: DriftCounts::default(),
            }],
        })
        .collect()
}

#[test]
fn an_unpriced_meter_blocks_finalising_is_listed_and_is_never_rated_at_zero() {
    let mut rows = simulated_month(0x28);
    rows.push(usage("stamp-east", "cust-a", QUEUE, t("2026-11-20T10:00:00Z"), d("7.5"), None));
    let a = &build_november(&rows, "2026-12-03T00:00:00Z")[0];
    let queue = QUEUE.replace('-', "");
    assert_eq!(a.unpriced.len(), 1);
    assert_eq!(
        (a.unpriced[0].meter_id.as_str(), a.unpriced[0].rows, a.unpriced[0].quantity),
        (queue.as_str(), 1, d("7.5"))
    );
    assert!(a.lines.iter().all(|l| l.meter_id != queue), "no zero line for an unpriced meter");
    let err = finalize(a.clone(), t("2026-12-03T00:00:00Z")).unwrap_err();
    assert_eq!(err.blockers, [Blocker::Unpriced { meter_id: queue.clone(), book: "base@2".into(), rows: 1 }]);
    assert!(err.to_string().contains(&queue) && err.to_string().contains("no price"), "{err}");
}

#[test]
fn a_stamp_behind_or_unverified_or_drifting_blocks_finalising_and_says_which_and_why() {
    let rows = simulated_month(0x28);
    let (books, assignments) = (books(), assignments());
    let mut statements = Statements::new(&books, &assignments, StatementSettings::default());
    let mut evidence = settled_evidence();
    evidence[1].watermark = t("2026-12-01T20:00:00Z");
    evidence[2].verifies[0].drift = DriftCounts { missing: 2, extra: 0, changed: 1 };
    evidence[0].verifies[0].range =
        ReportedWindow::new(t("2026-11-29T00:00:00Z"), t("2026-12-01T12:00:00Z")).unwrap();
    let d_ = statements.build(&request("cust-d", november(), &rows, &[], &evidence, "2026-12-03T00:00:00Z"));
    let stamp = |s: &str| StampId(s.into());
    assert_eq!(
        d_.blockers,
        [
            Blocker::NotVerified {
                stamp_id: stamp("stamp-east"),
                hours: ReportedWindow::new(t("2026-12-01T12:00:00Z"), t("2026-12-02T00:00:00Z")).unwrap()
            },
            Blocker::Drift {
                stamp_id: stamp("stamp-edge"),
                range: evidence[2].verifies[0].range,
                at: evidence[2].verifies[0].at,
                missing: 2,
                extra: 0,
                changed: 1
            },
            Blocker::StampBehind {
                stamp_id: stamp("stamp-west"),
                watermark: t("2026-12-01T20:00:00Z"),
                needed: t("2026-12-02T00:00:00Z")
            },
        ]
    );
    let message = finalize(d_.clone(), t("2026-12-03T00:00:00Z")).unwrap_err().to_string();
    assert!(message.contains("stamp-west is collected to 2026-12-01 20:00:00 UTC"), "{message}");

    // A later clean verify of the same hours settles the drift; a month not yet over is open.
    let mut fixed = settled_evidence();
    fixed[2].verifies.push(VerifyRecord { at: t("2026-12-02T09:00:00Z"), ..evidence[2].verifies[0] });
    fixed[2].verifies[1].drift = DriftCounts::default();
    fixed[2].verifies[0].drift = DriftCounts { missing: 2, extra: 0, changed: 1 };
    let d_ = statements.build(&request("cust-d", november(), &rows, &[], &fixed, "2026-12-03T00:00:00Z"));
    assert!(d_.blockers.is_empty(), "{:?}", d_.blockers);
    assert_eq!(d_.stamps[1].verifies.len(), 1, "the newest verify decided");
    let early = statements.build(&request("cust-d", november(), &rows, &[], &fixed, "2026-12-01T10:00:00Z"));
    assert_eq!(early.blockers, [Blocker::MonthOpen { until: t("2026-12-02T00:00:00Z") }]);
    assert_eq!(early.state, StatementState::Draft);
}

#[test]
fn a_stamp_mapped_to_the_subscription_blocks_finalising_while_behind_even_without_rows() {
    // Given cust-a's settled month, and a fourth stamp it is mapped on that has reported nothing yet
    let rows = simulated_month(0x28);
    let (books, assignments) = (books(), assignments());
    let mut statements = Statements::new(&books, &assignments, StatementSettings::default());
    let far_behind = StampId("stamp-far".into());
    let mut evidence = settled_evidence();
    evidence.push(StampEvidence {
        stamp_id: far_behind.clone(),
        watermark: t("2026-11-03T00:00:00Z"),
        verifies: vec![],
    });
    let mapped = [far_behind.clone()];
    let request = StatementRequest {
        mapped_stamps: &mapped,
        ..request("cust-a", november(), &rows, &[], &evidence, "2026-12-03T00:00:00Z")
    };

    // When the statement is built
    let a = statements.build(&request);

    // Then that stamp is in the proof and blocks: behind, and unverified
    assert!(a.stamps.iter().any(|p| p.stamp_id == far_behind));
    assert!(a.blockers.contains(&Blocker::StampBehind {
        stamp_id: far_behind.clone(),
        watermark: t("2026-11-03T00:00:00Z"),
        needed: t("2026-12-02T00:00:00Z"),
    }));
    assert!(
        a.blockers
            .iter()
            .any(|b| matches!(b, Blocker::NotVerified { stamp_id, .. } if *stamp_id == far_behind))
    );
}

#[test]
fn a_quantity_no_statement_can_total_blocks_finalising_instead_of_overflowing() {
    // Given cust-a's month and one row with the largest quantity an exact decimal holds
    let mut rows = simulated_month(0x28);
    let huge = Decimal::from_str("79228162514264337593543950335").unwrap();
    rows.push(usage("stamp-east", "cust-a", IP, t("2026-11-20T10:00:00Z"), huge, None));
    rows.push(usage("stamp-east", "cust-a", IP, t("2026-11-20T11:00:00Z"), huge, None));

    // When the statement is built: no panic, the row is not rated, and finalising is blocked by name
    let a = &build_november(&rows, "2026-12-03T00:00:00Z")[0];
    assert!(
        a.blockers.iter().any(|b| matches!(b, Blocker::NotRated { meter_id, reason }
            if *meter_id == IP.to_uppercase().replace('-', "") && reason.contains("beyond"))),
        "{:?}",
        a.blockers
    );
    let (expected_subtotal, _) =
        expected_total("cust-a", &expected_groups("cust-a", &simulated_month(0x28), &BTreeMap::new()));
    assert_eq!(a.subtotal, expected_subtotal, "the rest is rated as before");
}

#[test]
fn price_books_written_as_csv_read_back_as_the_same_books() {
    use azs_core::rating::book_csv::{books_from_csv, books_to_csv};
    let books = books();
    let all: Vec<PriceBook> =
        ["base", "gold", "premium"].iter().map(|id| books.get(id).unwrap().clone()).collect();
    let csv = books_to_csv(&all);
    assert_eq!(books_from_csv(&csv).unwrap(), all);
    assert!(csv.lines().count() > 12, "{csv}");
}

#[test]
fn a_csv_price_book_names_the_line_and_column_of_each_problem() {
    use azs_core::rating::book_csv::{HEADER, books_from_csv};
    let csv = format!(
        "{HEADER}\n\
         base,USD,1,2026-01-01T00:00:00Z,,,,,,{VM},,,property,ServiceType,Standard_A1,,0.02,\n\
         base,USD,1,2026-01-01T00:00:00Z,,,,,,{IP},,,flat,,,,0.01,\n\
         base,USD,1,2026-01-01T00:00:00Z,,,,,,{BLOCK_BLOB},,,unit,,,,lots,\n"
    );
    let err = books_from_csv(&csv).unwrap_err();
    let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["line 3: kind", "line 4: unit_price", &format!("book base version 1 meter {VM}")[..]]
    );
    assert!(books_from_csv("not,a,header").unwrap_err().to_string().contains("line 1"));
}

#[test]
fn a_book_names_every_broken_rule_by_its_field() {
    let json = serde_json::json!({"id": "-bad", "currency": {"code": "XYZ", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "2026-01-01T00:30:00Z", "meters": [
            {"meterId": "not-a-guid", "price": {"kind": "unit", "unitPrice": "1000000.01"}},
            {"meterId": VM, "unitMultiplier": "0", "price": {"kind": "tiered", "mode": "volume", "tiers": [
                {"upTo": "10", "unitPrice": "1"}, {"upTo": "5", "unitPrice": "1"}]}},
            {"meterId": IP, "price": {"kind": "zero", "reason": " "}}]}]});
    let book: PriceBook = serde_json::from_value(json).unwrap();
    let err = book.validated().unwrap_err();
    let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "id",
            "currency.code",
            "versions[0].effectiveFrom",
            "versions[0].meters[0].meterId",
            "versions[0].meters[0].price.unitPrice",
            "versions[0].meters[1].unitMultiplier",
            "versions[0].meters[1].price.tiers[1].upTo",
            "versions[0].meters[2].price.reason",
        ]
    );
}

#[test]
fn a_book_or_assignment_effective_outside_the_years_every_store_holds_is_refused_naming_the_field() {
    // chrono reads both; SQL Server's datetime2 holds neither, so the import failed there with a
    // server error (a 500) where the other stores kept it.
    for from in ["+10000-01-01T00:00:00Z", "0000-01-01T00:00:00Z"] {
        let json = serde_json::json!({"id": "far", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
            {"version": 1, "effectiveFrom": from, "meters": [
                {"meterId": VM, "price": {"kind": "unit", "unitPrice": "1"}}]}]});
        let err = serde_json::from_value::<PriceBook>(json).unwrap().validated().unwrap_err();
        assert_eq!(
            err.to_string(),
            "versions[0].effectiveFrom: must be a whole UTC hour in the years 1970 to 9998"
        );
        let assignment = Assignment {
            billing_subscription_id: None,
            book_id: "far".into(),
            effective_from: from.parse().unwrap(),
        };
        let err = assignment.validated().unwrap_err().to_string();
        assert_eq!(err, "effectiveFrom: must be a whole UTC hour in the years 1970 to 9998");
    }
    let last = serde_json::json!({"id": "far", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "9998-12-31T23:00:00Z", "meters": [
            {"meterId": VM, "price": {"kind": "unit", "unitPrice": "1"}}]}]});
    assert!(serde_json::from_value::<PriceBook>(last).unwrap().validated().is_ok());
}
