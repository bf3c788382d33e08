//! Statements: what one billing subscription owes for one calendar month (UTC), built from its rated
//! rows, and the proof that the month is complete before it may become final.
//!
//! A statement is a draft until [`finalize`] finds no [`Blocker`]: every stamp with usage for the
//! subscription has its watermark at or past the month's end plus the settle delay, and the latest
//! verifies covering the month's last reported hours found no drift; every row is priced (or
//! zero-rated on purpose). A final statement records each stamp's watermark and the verifies it
//! rested on, and never changes again ([`Statements::current`] hands it back untouched).
//!
//! Late usage: a row whose usage hour lies in a finalised month is one that month's statement did
//! not count (it was reported at or after the watermark recorded for its stamp). It goes into the
//! next statement that is still open, as a correction line naming the month it corrects, priced by
//! the book in force at its own usage hour. A tiered meter's correction is priced from where that
//! month's counted quantity left off; the invoiced quantity is not re-priced.

use super::assign::Assignments;
use super::book::{Lineage, MAX_QUANTITY, Price, PriceBooks, RateCard, TierMode};
use super::money::{Currency, Month, round_to_minor_unit};
use super::rate::{Applied, Charge, Component, MeterKey, Unrated, rate_with};
use crate::stamp::StampId;
use crate::status::DriftCounts;
use crate::usage::UsageRow;
use crate::window::{ReportedWindow, floor_hour};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// How sure a month must be before its statements may become final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementSettings {
    /// Each stamp's watermark must reach the month's end plus this (usage is reported late).
    pub settle_delay: Duration,
    /// The verifies must cover the reported hours from this long before the month's end up to the
    /// month's end plus the settle delay: where the month's last usage hours are reported.
    pub verify_lead: Duration,
}

impl Default for StatementSettings {
    fn default() -> Self {
        Self { settle_delay: Duration::hours(24), verify_lead: Duration::hours(24) }
    }
}

/// A stored usage row with what rating needs around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatableRow {
    pub stamp_id: StampId,
    /// The start of the reported window the row was committed in: tells a row a final statement
    /// counted (before the watermark it recorded) from a late one.
    pub reported_start: DateTime<Utc>,
    pub billing_subscription_id: String,
    pub row: UsageRow,
}

/// A scheduled verify's outcome, as evidence for a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRecord {
    pub at: DateTime<Utc>,
    pub range: ReportedWindow,
    pub drift: DriftCounts,
}

/// What a stamp shows about its progress when a statement is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampEvidence {
    pub stamp_id: StampId,
    pub watermark: DateTime<Utc>,
    pub verifies: Vec<VerifyRecord>,
}

/// When a billing subscription was active: what its fees are prorated by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionTerm {
    pub active_from: DateTime<Utc>,
    pub active_until: Option<DateTime<Utc>>,
}

/// Everything one statement is built from, read in one snapshot.
pub struct StatementRequest<'a> {
    pub billing_subscription_id: &'a str,
    pub month: Month,
    pub term: SubscriptionTerm,
    /// The subscription's rows with usage in `month`, and any with usage in an earlier month (the
    /// builder keeps the late ones no final statement counted); rows with usage after the month are
    /// ignored, so one read can serve several months.
    pub rows: &'a [RatableRow],
    /// The subscription's final statements (others' are ignored).
    pub finals: &'a [Statement],
    /// The stamps a tenant subscription of this billing subscription is mapped on: each must prove
    /// the month even when it has no rows for it (a stamp far behind has not reported them yet).
    pub mapped_stamps: &'a [StampId],
    /// Progress of every stamp in `mapped_stamps` or with rows for the subscription.
    pub evidence: &'a [StampEvidence],
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum StatementState {
    Draft,
    Final { finalized_at: DateTime<Utc> },
}

/// One line: a meter's usage on one stamp under one book lineage and one of its prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementLine {
    /// The finalised month a correction line adds late usage to; `None` for this month's usage.
    pub corrects: Option<Month>,
    pub meter_id: String,
    pub stamp_id: StampId,
    /// The rows' `location` (the stamp's region), from the first row.
    pub location: String,
    pub book: String,
    pub component: Component,
    pub pricing_unit: Option<String>,
    pub zero_reason: Option<String>,
    pub rows: u64,
    /// The first usage hour and the end of the last.
    pub usage_from: DateTime<Utc>,
    pub usage_to: DateTime<Utc>,
    pub consumed_quantity: Decimal,
    pub pricing_quantity: Decimal,
    pub unit_price: Decimal,
    pub list_unit_price: Decimal,
    /// Exact.
    pub exact_amount: Decimal,
    pub exact_list_amount: Decimal,
    /// `exact_amount` rounded to the currency's minor unit.
    pub amount: Decimal,
    pub list_amount: Decimal,
    /// A price correction's line (`statement rerate`, confirmed): `pricing_quantity` re-priced by
    /// the difference `amount`, no usage of its own (`rows` 0, no consumed quantity).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub price_correction: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FeeKind {
    Monthly,
    OneTime,
}

/// A fee: a monthly fee for the hours it was active under one book lineage, or a one-time fee; or
/// a price correction of a final month's fee (`corrects`, see [`super::rerate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeLine {
    /// The final month whose fee this line corrects (its `from`..`to` is that month); `None` for
    /// this month's fee. A correction counts in the statement's `corrections`, not `fees_total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<Month>,
    pub kind: FeeKind,
    pub book: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub active_hours: i64,
    pub month_hours: i64,
    pub fee: Decimal,
    pub exact_amount: Decimal,
    pub amount: Decimal,
}

/// A meter no book prices: listed, never rated at zero, and it blocks finalising.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnpricedMeter {
    pub corrects: Option<Month>,
    pub meter_id: String,
    pub book: String,
    pub rows: u64,
    pub quantity: Decimal,
}

/// What a final statement rests on for one stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StampProof {
    pub stamp_id: StampId,
    pub watermark: DateTime<Utc>,
    pub needed_watermark: DateTime<Utc>,
    /// The verifies that decided the month's last reported hours.
    pub verifies: Vec<VerifyRecord>,
}

/// Why a statement cannot be final yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Blocker {
    #[error("the month is open until {until} (its end plus the settle delay)")]
    MonthOpen { until: DateTime<Utc> },
    #[error("stamp {stamp_id} is collected to {watermark}, the month needs {needed}")]
    StampBehind { stamp_id: StampId, watermark: DateTime<Utc>, needed: DateTime<Utc> },
    #[error("stamp {stamp_id} has usage for the subscription but no progress was read for it")]
    NoEvidence { stamp_id: StampId },
    #[error("stamp {stamp_id}: no verify covers reported hours {hours}")]
    NotVerified { stamp_id: StampId, hours: ReportedWindow },
    #[error(
        "stamp {stamp_id}: the verify of {range} at {at} found drift ({missing} missing, {extra} extra, {changed} changed)"
    )]
    Drift {
        stamp_id: StampId,
        range: ReportedWindow,
        at: DateTime<Utc>,
        missing: u64,
        extra: u64,
        changed: u64,
    },
    #[error("meter {meter_id} has no price in {book} ({rows} rows)")]
    Unpriced { meter_id: String, book: String, rows: u64 },
    #[error("usage at {hour} cannot be rated: {reason}")]
    NoBook { hour: DateTime<Utc>, reason: String },
    #[error("meter {meter_id} cannot be rated: {reason}")]
    NotRated { meter_id: String, reason: String },
    #[error("usage at {hour} is priced in {found}, the statement is in {currency}")]
    CurrencyMismatch { hour: DateTime<Utc>, found: String, currency: String },
}

/// One billing subscription's statement for one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    pub billing_subscription_id: String,
    pub month: Month,
    /// `None` only when no book applies to the subscription at all (then `blockers` says so).
    pub currency: Option<Currency>,
    #[serde(flatten)]
    pub state: StatementState,
    pub built_at: DateTime<Utc>,
    pub lines: Vec<StatementLine>,
    pub fees: Vec<FeeLine>,
    /// Rounded lines of this month's usage, summed.
    pub usage: Decimal,
    /// Rounded correction lines (late usage, and re-rated usage and fees of final months), summed.
    pub corrections: Decimal,
    /// This month's fees (a fee correction counts in `corrections`).
    pub fees_total: Decimal,
    /// What the books' discounts took off list prices, already inside the lines (information).
    pub discount: Decimal,
    pub subtotal: Decimal,
    pub tax_percent: Decimal,
    /// `subtotal * tax_percent / 100`, rounded; with rerates confirmed onto the statement, the
    /// re-rated amounts are left out of that base and each rerate's tax difference (worked out
    /// at the corrected month's rate) is added instead: see [`super::rerate`].
    pub tax: Decimal,
    pub total: Decimal,
    pub unpriced: Vec<UnpricedMeter>,
    pub stamps: Vec<StampProof>,
    pub blockers: Vec<Blocker>,
    /// Price corrections of final months confirmed onto this statement (their lines are in
    /// `lines`); kept so a rebuilt draft carries them again ([`super::rerate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rerates: Vec<super::rerate::Rerate>,
}

impl Statement {
    /// The statement as stored: its JSON document (money as exact decimal strings).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a statement serialises")
    }

    /// A statement from [`Statement::to_json`]'s document.
    pub fn from_json(json: &str) -> Result<Statement, String> {
        serde_json::from_str(json).map_err(|e| format!("a stored statement does not read back: {e}"))
    }

    pub fn is_final(&self) -> bool {
        matches!(self.state, StatementState::Final { .. })
    }

    fn proof(&self, stamp_id: &StampId) -> Option<&StampProof> {
        self.stamps.iter().find(|p| &p.stamp_id == stamp_id)
    }
}

/// A draft that cannot be finalised, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the statement of {billing_subscription_id} for {month} is not complete: {}", list(.blockers))]
pub struct NotComplete {
    pub billing_subscription_id: String,
    pub month: Month,
    pub blockers: Vec<Blocker>,
}

fn list(blockers: &[Blocker]) -> String {
    blockers.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// `draft` made final, when it is complete.
pub fn finalize(draft: Statement, at: DateTime<Utc>) -> Result<Statement, NotComplete> {
    if !draft.blockers.is_empty() {
        return Err(NotComplete {
            billing_subscription_id: draft.billing_subscription_id,
            month: draft.month,
            blockers: draft.blockers,
        });
    }
    Ok(Statement { state: StatementState::Final { finalized_at: at }, ..draft })
}

/// Builds statements from books and assignments; caches flattened cards across statements.
pub struct Statements<'a> {
    books: &'a PriceBooks,
    assignments: &'a Assignments,
    settings: StatementSettings,
    cards: HashMap<Lineage, Arc<RateCard>>,
    /// Every hour at which some subscription's card may change, sorted.
    change_points: Vec<DateTime<Utc>>,
}

/// The card a subscription rates with at an hour, or why there is none.
type CardAt = Result<Arc<RateCard>, String>;

/// Lines accumulate under this key: correction month, meter, stamp, lineage, price component.
type LineKey = (Option<Month>, String, StampId, Lineage, Component);

impl<'a> Statements<'a> {
    pub fn new(books: &'a PriceBooks, assignments: &'a Assignments, settings: StatementSettings) -> Self {
        let mut change_points: Vec<_> = books.change_points().chain(assignments.change_points()).collect();
        change_points.sort();
        change_points.dedup();
        Self { books, assignments, settings, cards: HashMap::new(), change_points }
    }

    /// The statement as it stands: `existing` when it is final (a final statement never changes),
    /// else a fresh draft.
    pub fn current(&mut self, existing: Option<&Statement>, request: &StatementRequest<'_>) -> Statement {
        match existing {
            Some(s) if s.is_final() => s.clone(),
            _ => self.build(request),
        }
    }

    fn card(&mut self, billing_subscription_id: &str, hour: DateTime<Utc>) -> CardAt {
        let book = self
            .assignments
            .book_at(billing_subscription_id, hour)
            .ok_or_else(|| format!("no price book is assigned to {billing_subscription_id} at {hour}"))?;
        let lineage = self.books.lineage_at(book, hour).map_err(|e| e.to_string())?;
        if let Some(card) = self.cards.get(&lineage) {
            return Ok(card.clone());
        }
        let card = Arc::new(self.books.card_of(&lineage).map_err(|e| e.to_string())?);
        self.cards.insert(lineage, card.clone());
        Ok(card)
    }

    /// A draft of the request's statement, with every blocker found.
    pub fn build(&mut self, request: &StatementRequest<'_>) -> Statement {
        let sub = request.billing_subscription_id;
        let month = request.month;
        let mut blockers = Vec::new();
        // Only this subscription's final statements count (a caller may hand over everyone's).
        let finals: Vec<&Statement> =
            request.finals.iter().filter(|s| s.is_final() && s.billing_subscription_id == sub).collect();

        let currency_hour = floor_hour(request.term.active_until.map_or(month.end(), |u| u.min(month.end())))
            - Duration::hours(1);
        let closing_card = self.card(sub, currency_hour.max(month.start())).ok();
        let mut cards_by_hour: HashMap<DateTime<Utc>, CardAt> = HashMap::new();
        let mut acc = Accumulator::default();
        let mut currency: Option<Currency> = closing_card.as_ref().map(|c| c.currency.clone());
        let mut stamps_seen: BTreeSet<StampId> = BTreeSet::new();

        for r in request.rows.iter().filter(|r| r.billing_subscription_id == sub) {
            let hour = floor_hour(r.row.usage_start);
            let corrects = if month.contains(hour) {
                None
            } else if hour < month.start() {
                match counted_by(&finals, r, hour, month) {
                    Counted::Late => Some(Month::of(hour)),
                    Counted::Already | Counted::NotFinal => continue,
                }
            } else {
                continue;
            };
            if !stamps_seen.contains(&r.stamp_id) {
                stamps_seen.insert(r.stamp_id.clone());
            }
            let card = match &*cards_by_hour.entry(hour).or_insert_with(|| self.card(sub, hour)) {
                Ok(card) => card,
                Err(reason) => {
                    push_once(&mut blockers, Blocker::NoBook { hour, reason: reason.clone() });
                    continue;
                }
            };
            match &currency {
                None => currency = Some(card.currency.clone()),
                Some(c) if *c != card.currency => {
                    push_once(
                        &mut blockers,
                        Blocker::CurrencyMismatch {
                            hour,
                            found: card.currency.code.clone(),
                            currency: c.code.clone(),
                        },
                    );
                    continue;
                }
                Some(_) => {}
            }
            acc.add(r, hour, corrects, card, &mut blockers);
        }

        let minor_units = currency.as_ref().map_or(2, |c| c.minor_units);
        acc.price_tiers(&finals, month);
        let lines = acc.lines(minor_units);
        let fees = self.fees(request, minor_units);

        let sum = |lines: &mut dyn Iterator<Item = Decimal>| lines.fold(zero(minor_units), |a, b| a + b);
        let usage = sum(&mut lines.iter().filter(|l| l.corrects.is_none()).map(|l| l.amount));
        let corrections = sum(&mut lines.iter().filter(|l| l.corrects.is_some()).map(|l| l.amount));
        let fees_total = sum(&mut fees.iter().map(|f| f.amount));
        let discount = sum(&mut lines.iter().map(|l| (l.list_amount - l.amount).max(Decimal::ZERO)));
        let subtotal = usage + corrections + fees_total;
        let tax_percent = closing_card.as_ref().and_then(|c| c.tax_percent).unwrap_or(Decimal::ZERO);
        let tax = round_to_minor_unit(subtotal * tax_percent / Decimal::ONE_HUNDRED, minor_units);

        for u in &acc.unpriced {
            blockers.push(Blocker::Unpriced {
                meter_id: u.meter_id.clone(),
                book: u.book.clone(),
                rows: u.rows,
            });
        }
        if currency.is_none() {
            push_once(
                &mut blockers,
                Blocker::NoBook {
                    hour: currency_hour,
                    reason: format!("no price book is assigned to {sub}"),
                },
            );
        }
        stamps_seen.extend(request.mapped_stamps.iter().cloned());
        let stamps = self.prove(request, &stamps_seen, &mut blockers);

        Statement {
            billing_subscription_id: sub.to_owned(),
            month,
            currency,
            state: StatementState::Draft,
            built_at: request.now,
            lines,
            fees,
            usage,
            corrections,
            fees_total,
            discount,
            subtotal,
            tax_percent,
            tax,
            total: subtotal + tax,
            unpriced: acc.unpriced,
            stamps,
            blockers,
            rerates: Vec::new(),
        }
    }

    /// The monthly fee per stretch of active hours under one card, and the one-time fee in the
    /// month the subscription became active.
    fn fees(&mut self, request: &StatementRequest<'_>, minor_units: u32) -> Vec<FeeLine> {
        let month = request.month;
        let sub = request.billing_subscription_id;
        let from = floor_hour(request.term.active_from).max(month.start());
        let to = request.term.active_until.map_or(month.end(), |u| floor_hour(u).min(month.end()));
        let mut fees = Vec::new();
        let mut start = from;
        while start < to {
            let next = self.change_points.iter().find(|p| **p > start).copied().unwrap_or(to).min(to);
            if let Ok(card) = self.card(sub, start)
                && let Some(fee) = card.monthly_fee
            {
                let active_hours = (next - start).num_hours();
                let exact = fee * Decimal::from(active_hours) / Decimal::from(month.hours());
                // Stretches under the same lineage (a change elsewhere split them) are one line.
                match fees.last_mut() {
                    Some(FeeLine {
                        kind: FeeKind::Monthly, book, to, active_hours: h, exact_amount, ..
                    }) if *book == card.lineage.to_string() && *to == start => {
                        *to = next;
                        *h += active_hours;
                        *exact_amount += exact;
                    }
                    _ => fees.push(FeeLine {
                        corrects: None,
                        kind: FeeKind::Monthly,
                        book: card.lineage.to_string(),
                        from: start,
                        to: next,
                        active_hours,
                        month_hours: month.hours(),
                        fee,
                        exact_amount: exact,
                        amount: Decimal::ZERO,
                    }),
                }
            }
            start = next;
        }
        let activation = floor_hour(request.term.active_from);
        if month.contains(activation)
            && let Ok(card) = self.card(sub, activation)
            && let Some(fee) = card.one_time_fee
        {
            fees.push(FeeLine {
                corrects: None,
                kind: FeeKind::OneTime,
                book: card.lineage.to_string(),
                from: activation,
                to: activation + Duration::hours(1),
                active_hours: 0,
                month_hours: month.hours(),
                fee,
                exact_amount: fee,
                amount: Decimal::ZERO,
            });
        }
        for f in &mut fees {
            f.amount = round_to_minor_unit(f.exact_amount, minor_units);
        }
        fees
    }

    /// Each stamp's proof of completeness, and what is missing.
    fn prove(
        &self,
        request: &StatementRequest<'_>,
        stamps: &BTreeSet<StampId>,
        blockers: &mut Vec<Blocker>,
    ) -> Vec<StampProof> {
        let needed = request.month.end() + self.settings.settle_delay;
        if request.now < needed {
            blockers.push(Blocker::MonthOpen { until: needed });
        }
        let hours = ReportedWindow::new(request.month.end() - self.settings.verify_lead, needed)
            .expect("whole hours, lead and delay positive");
        let mut proofs = Vec::new();
        for stamp_id in stamps {
            let Some(evidence) = request.evidence.iter().find(|e| &e.stamp_id == stamp_id) else {
                blockers.push(Blocker::NoEvidence { stamp_id: stamp_id.clone() });
                continue;
            };
            if evidence.watermark < needed {
                blockers.push(Blocker::StampBehind {
                    stamp_id: stamp_id.clone(),
                    watermark: evidence.watermark,
                    needed,
                });
            }
            // Per hour, the newest verify that covered it decides.
            let mut deciding: Vec<VerifyRecord> = Vec::new();
            let mut unverified: Option<ReportedWindow> = None;
            for hour in hours.split_hours() {
                let newest = evidence
                    .verifies
                    .iter()
                    .filter(|v| v.range.start <= hour.start && hour.end <= v.range.end)
                    .max_by_key(|v| v.at);
                match newest {
                    Some(v) => {
                        if !deciding.contains(v) {
                            deciding.push(*v);
                        }
                    }
                    None => {
                        let w = unverified.get_or_insert(hour);
                        w.end = hour.end;
                    }
                }
            }
            if let Some(hours) = unverified {
                blockers.push(Blocker::NotVerified { stamp_id: stamp_id.clone(), hours });
            }
            for v in deciding.iter().filter(|v| v.drift.total() > 0) {
                blockers.push(Blocker::Drift {
                    stamp_id: stamp_id.clone(),
                    range: v.range,
                    at: v.at,
                    missing: v.drift.missing,
                    extra: v.drift.extra,
                    changed: v.drift.changed,
                });
            }
            proofs.push(StampProof {
                stamp_id: stamp_id.clone(),
                watermark: evidence.watermark,
                needed_watermark: needed,
                verifies: deciding,
            });
        }
        proofs
    }
}

fn zero(minor_units: u32) -> Decimal {
    Decimal::new(0, minor_units)
}

fn push_once(blockers: &mut Vec<Blocker>, blocker: Blocker) {
    if !blockers.contains(&blocker) {
        blockers.push(blocker);
    }
}

enum Counted {
    /// A final statement counted it (as usage or as a correction).
    Already,
    /// Its month has no final statement: the row belongs to that month's own statement.
    NotFinal,
    /// Its month is final and no final statement counted it: a correction for `building`.
    Late,
}

/// Whether a row of an earlier month was counted by a final statement: by its month's statement if
/// reported before the watermark that statement recorded for the stamp, else by the first later final
/// statement before `building` that recorded a watermark past it.
fn counted_by(finals: &[&Statement], r: &RatableRow, hour: DateTime<Utc>, building: Month) -> Counted {
    let usage_month = Month::of(hour);
    let Some(own) = finals.iter().find(|s| s.month == usage_month) else {
        return Counted::NotFinal;
    };
    let before = |s: &Statement| s.proof(&r.stamp_id).is_some_and(|p| r.reported_start < p.watermark);
    if before(own) {
        return Counted::Already;
    }
    let mut later = finals.iter().filter(|s| s.month > usage_month && s.month < building);
    if later.any(|s| before(s)) { Counted::Already } else { Counted::Late }
}

/// Exact sums per line, before rounding. Rows are summed under a key of small copies (stamps and
/// cards by their position in this statement, the price that applied by its position on the card):
/// building a statement allocates per line, not per row.
#[derive(Default)]
struct Accumulator {
    lines: HashMap<FastKey, Sums>,
    stamps: Vec<StampId>,
    /// Where each stamp's rows ran (its first rated row's location), by position: for tiered lines.
    /// Taken from the rows the statement counts, so rows it skips (another month's, or counted by a
    /// final already) cannot change it.
    locations: Vec<String>,
    cards: Vec<Arc<RateCard>>,
    /// Tiered rows, priced once the month's quantity per meter is known.
    tiered: Vec<TieredUsage>,
    unpriced: Vec<UnpricedMeter>,
}

/// Correction month, meter, stamp (position), card (position), price.
type FastKey = (Option<Month>, MeterKey, u32, u32, Part);

/// Which price of the meter's card price applied.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part {
    Applied(Applied),
    Tier(usize),
    Zero,
}

struct Sums {
    location: String,
    rows: u64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    consumed: Decimal,
    pricing: Decimal,
    unit_price: Decimal,
    list_unit_price: Decimal,
    amount: Decimal,
    list_amount: Decimal,
}

struct TieredUsage {
    corrects: Option<Month>,
    meter: MeterKey,
    stamp: u32,
    card: u32,
    hour: DateTime<Utc>,
    consumed: Decimal,
    pricing: Decimal,
}

/// One row's (or one tier part's) contribution to a line.
struct Usage<'a> {
    location: &'a str,
    hour: DateTime<Utc>,
    /// A row counts once, on the first band it reaches; later bands carry only priced quantity.
    first_part: bool,
    consumed: Decimal,
    pricing: Decimal,
    unit_price: Decimal,
    list_unit_price: Decimal,
    amount: Decimal,
    list_amount: Decimal,
}

impl Accumulator {
    fn stamp(&mut self, stamp_id: &StampId, location: &str) -> u32 {
        let at = match self.stamps.iter().position(|s| s == stamp_id) {
            Some(at) => at,
            None => {
                self.stamps.push(stamp_id.clone());
                self.locations.push(location.to_owned());
                self.stamps.len() - 1
            }
        };
        u32::try_from(at).expect("fewer than 2^32 stamps")
    }

    fn card(&mut self, card: &Arc<RateCard>) -> u32 {
        let at = match self.cards.iter().position(|c| Arc::ptr_eq(c, card)) {
            Some(at) => at,
            None => {
                self.cards.push(card.clone());
                self.cards.len() - 1
            }
        };
        u32::try_from(at).expect("fewer than 2^32 cards")
    }

    fn add(
        &mut self,
        r: &RatableRow,
        hour: DateTime<Utc>,
        corrects: Option<Month>,
        card: &Arc<RateCard>,
        blockers: &mut Vec<Blocker>,
    ) {
        let price = MeterKey::of(&r.row.meter_id).and_then(|m| card.meters.get(m.as_str()).map(|p| (m, p)));
        let Some((meter, price)) = price else {
            self.unpriced(r, corrects, card);
            return;
        };
        if r.row.quantity.abs() > MAX_QUANTITY {
            let reason = format!(
                "a row's quantity {} is beyond what a statement totals ({MAX_QUANTITY})",
                r.row.quantity
            );
            push_once(blockers, Blocker::NotRated { meter_id: meter.to_string(), reason });
            return;
        }
        let rated = match rate_with(&r.row, meter, price) {
            Ok(rated) => rated,
            Err(e @ Unrated::Overflow { .. }) | Err(e @ Unrated::Unpriced { .. }) => {
                push_once(blockers, Blocker::NotRated { meter_id: meter.to_string(), reason: e.to_string() });
                return;
            }
        };
        let (stamp, card) = (self.stamp(&r.stamp_id, &r.row.location), self.card(card));
        let (part, unit_price, list_unit_price, amount) = match rated.charge {
            Charge::Priced { applied, unit_price, list_unit_price, amount } => {
                (Part::Applied(applied), unit_price, list_unit_price, amount)
            }
            Charge::Zero => (Part::Zero, Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
            Charge::Tiered { .. } => {
                self.tiered.push(TieredUsage {
                    corrects,
                    meter,
                    stamp,
                    card,
                    hour,
                    consumed: r.row.quantity,
                    pricing: rated.pricing_quantity,
                });
                return;
            }
        };
        let usage = Usage {
            location: &r.row.location,
            hour,
            first_part: true,
            consumed: r.row.quantity,
            pricing: rated.pricing_quantity,
            unit_price,
            list_unit_price,
            amount,
            list_amount: rated.pricing_quantity * list_unit_price,
        };
        self.sum((corrects, meter, stamp, card, part), usage);
    }

    fn unpriced(&mut self, r: &RatableRow, corrects: Option<Month>, card: &RateCard) {
        let meter_id =
            MeterKey::of(&r.row.meter_id).map_or_else(|| r.row.meter_id.clone(), |m| m.to_string());
        let book = card.lineage.to_string();
        match self
            .unpriced
            .iter_mut()
            .find(|u| u.corrects == corrects && u.meter_id == meter_id && u.book == book)
        {
            Some(u) => {
                u.rows += 1;
                u.quantity += r.row.quantity;
            }
            None => self.unpriced.push(UnpricedMeter {
                corrects,
                meter_id,
                book,
                rows: 1,
                quantity: r.row.quantity,
            }),
        }
    }

    fn sum(&mut self, key: FastKey, usage: Usage<'_>) {
        let to = usage.hour + Duration::hours(1);
        let sums = self.lines.entry(key).or_insert_with(|| Sums {
            location: usage.location.to_owned(),
            rows: 0,
            from: usage.hour,
            to,
            consumed: Decimal::ZERO,
            pricing: Decimal::ZERO,
            unit_price: usage.unit_price,
            list_unit_price: usage.list_unit_price,
            amount: Decimal::ZERO,
            list_amount: Decimal::ZERO,
        });
        sums.rows += u64::from(usage.first_part);
        sums.from = sums.from.min(usage.hour);
        sums.to = sums.to.max(to);
        sums.consumed += usage.consumed;
        sums.pricing += usage.pricing;
        sums.amount += usage.amount;
        sums.list_amount += usage.list_amount;
    }

    /// Prices the tiered rows: per correction month and meter, hour by hour, graduated bands from
    /// the quantity already counted, or the band the month's total reaches (volume).
    fn price_tiers(&mut self, finals: &[&Statement], building: Month) {
        let mut tiered = std::mem::take(&mut self.tiered);
        // Lent out while lines are summed into `self`, given back below.
        let locations = std::mem::take(&mut self.locations);
        tiered.sort_by_key(|t| (t.corrects, t.meter, t.hour));
        for group in tiered.chunk_by(|a, b| a.corrects == b.corrects && a.meter == b.meter) {
            let (corrects, meter) = (group[0].corrects, group[0].meter);
            let mut used = match corrects {
                None => Decimal::ZERO,
                Some(month) => counted_tier_quantity(finals, month, building, meter.as_str()),
            };
            let total = used + group.iter().map(|t| t.pricing).sum::<Decimal>();
            for t in group {
                let card = self.cards[t.card as usize].clone();
                let price = &card.meters[meter.as_str()];
                let (Price::Tiered { mode, tiers }, Price::Tiered { tiers: list_tiers, .. }) =
                    (&price.price, &price.list)
                else {
                    unreachable!("a tiered charge comes from a tiered price, its list price the same kind");
                };
                let parts: Vec<(usize, Decimal)> = match mode {
                    TierMode::Graduated => graduated(tiers, used, t.pricing),
                    TierMode::Volume => vec![(volume_band(tiers, total), t.pricing)],
                };
                used += t.pricing;
                for (n, (index, pricing)) in parts.iter().enumerate() {
                    let (unit_price, list_unit_price) =
                        (tiers[*index].unit_price, list_tiers[*index].unit_price);
                    let usage = Usage {
                        location: &locations[t.stamp as usize],
                        hour: t.hour,
                        first_part: n == 0,
                        consumed: if n == 0 { t.consumed } else { Decimal::ZERO },
                        pricing: *pricing,
                        unit_price,
                        list_unit_price,
                        amount: pricing * unit_price,
                        list_amount: pricing * list_unit_price,
                    };
                    self.sum((corrects, meter, t.stamp, t.card, Part::Tier(*index)), usage);
                }
            }
        }
        self.locations = locations;
    }

    /// The lines, in a stable order (correction month, meter, stamp, book, price), rounded.
    fn lines(&self, minor_units: u32) -> Vec<StatementLine> {
        let mut lines: BTreeMap<LineKey, StatementLine> = BTreeMap::new();
        for ((corrects, meter, stamp, card, part), s) in &self.lines {
            let card = &self.cards[*card as usize];
            let price = &card.meters[meter.as_str()];
            let (component, zero_reason) = match part {
                Part::Applied(applied) => (applied.component(&price.price), None),
                Part::Tier(index) => (Component::Tier { index: *index }, None),
                Part::Zero => match &price.price {
                    Price::Zero { reason } => (Component::Zero, Some(reason.clone())),
                    _ => (Component::Zero, None),
                },
            };
            let stamp_id = self.stamps[*stamp as usize].clone();
            let line = StatementLine {
                corrects: *corrects,
                meter_id: meter.to_string(),
                stamp_id: stamp_id.clone(),
                location: s.location.clone(),
                book: card.lineage.to_string(),
                component: component.clone(),
                pricing_unit: price.pricing_unit.clone(),
                zero_reason,
                rows: s.rows,
                usage_from: s.from,
                usage_to: s.to,
                consumed_quantity: s.consumed,
                pricing_quantity: s.pricing,
                unit_price: s.unit_price,
                list_unit_price: s.list_unit_price,
                exact_amount: s.amount,
                exact_list_amount: s.list_amount,
                amount: round_to_minor_unit(s.amount, minor_units),
                list_amount: round_to_minor_unit(s.list_amount, minor_units),
                price_correction: false,
            };
            lines.insert((*corrects, meter.to_string(), stamp_id, card.lineage.clone(), component), line);
        }
        lines.into_values().collect()
    }
}

/// The quantity of a tiered meter the final statements before `building` counted for `month`. A
/// price correction's line re-prices quantity already counted, so it adds none.
fn counted_tier_quantity(finals: &[&Statement], month: Month, building: Month, meter_id: &str) -> Decimal {
    finals
        .iter()
        .filter(|s| s.month >= month && s.month < building)
        .flat_map(|s| s.lines.iter().map(move |l| (s.month, l)))
        .filter(|(m, l)| {
            l.meter_id == meter_id
                && !l.price_correction
                && matches!(l.component, Component::Tier { .. })
                && (l.corrects == Some(month) || (*m == month && l.corrects.is_none()))
        })
        .map(|(_, l)| l.pricing_quantity)
        .sum()
}

/// `quantity` from position `used` split over graduated bands: (band, quantity in it).
fn graduated(tiers: &[super::book::Tier], used: Decimal, quantity: Decimal) -> Vec<(usize, Decimal)> {
    let mut parts = Vec::new();
    let mut position = used;
    let end = used + quantity;
    let mut lower = Decimal::ZERO;
    for (index, tier) in tiers.iter().enumerate() {
        let upper = tier.up_to.unwrap_or(Decimal::MAX);
        if position < upper && end > lower {
            let take = end.min(upper) - position.max(lower);
            if take > Decimal::ZERO {
                parts.push((index, take));
                position += take;
            }
        }
        lower = upper;
        if position >= end {
            break;
        }
    }
    if parts.is_empty() {
        // A zero quantity still shows in the band it sits in.
        parts.push((volume_band(tiers, used), quantity));
    }
    parts
}

/// The band a month's `total` falls in: the first whose `upTo` is at or above it.
fn volume_band(tiers: &[super::book::Tier], total: Decimal) -> usize {
    tiers.iter().position(|t| t.up_to.is_none_or(|up_to| total <= up_to)).unwrap_or(tiers.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::book::Tier;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn tiers() -> Vec<Tier> {
        vec![
            Tier { up_to: Some(d("100")), unit_price: d("1") },
            Tier { up_to: Some(d("500")), unit_price: d("0.5") },
            Tier { up_to: None, unit_price: d("0.25") },
        ]
    }

    #[test]
    fn graduated_bands_split_a_quantity_where_it_crosses_them() {
        assert_eq!(graduated(&tiers(), d("90"), d("20")), vec![(0, d("10")), (1, d("10"))]);
        assert_eq!(graduated(&tiers(), d("0"), d("700")), vec![(0, d("100")), (1, d("400")), (2, d("200"))]);
        assert_eq!(graduated(&tiers(), d("600"), d("1")), vec![(2, d("1"))]);
        assert_eq!(graduated(&tiers(), d("100"), d("0")), vec![(0, d("0"))]);
    }

    #[test]
    fn the_volume_band_is_the_first_that_holds_the_total() {
        assert_eq!(volume_band(&tiers(), d("100")), 0);
        assert_eq!(volume_band(&tiers(), d("100.0001")), 1);
        assert_eq!(volume_band(&tiers(), d("9999")), 2);
    }
}
