//! Statements from what the store holds: reads a billing subscription's rows, its stamps' progress
//! and its final statements, builds the draft with the core's `Statements`, and keeps it (or makes
//! it final when it is complete). What `azs-usage statement` calls; the timer job will too.
//!
//! Choices the issue leaves open, made here:
//! - a billing subscription is active (for its fees) from its first assignment: its own override,
//!   else the default in force (the store keeps no other start date for it yet);
//! - a stamp's verify evidence is every scheduled verify kept for it (`verify_history`, kept by
//!   the store as the collector records each one) that touches the month's proven hours; per hour
//!   the newest decides.

use crate::config::AppConfig;
use anyhow::{Context, Result, bail};
use azs_core::StampId;
use azs_core::ports::Store;
use azs_core::rating::ports::RatingStore;
use azs_core::rating::rerate::{Rerate, add_rerate, carry_rerates, counted_by_final, price_differences};
use azs_core::rating::statement::NotComplete;
use azs_core::rating::{
    Assignment, Assignments, BookVersion, Month, PriceBooks, RatableRow, StampEvidence, Statement,
    StatementRequest, StatementSettings, Statements, SubscriptionTerm, finalize,
};
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The published meter table (names, units, resource providers), for the FOCUS export.
pub fn meter_catalog() -> azs_core::rating::focus::MeterCatalog {
    azs_core::rating::focus::MeterCatalog::from_csv(include_str!("../data/meters.csv"))
}

/// The rating store for `config`'s database (see [`crate::wiring::open_rating_store`]).
pub async fn open_rating_store(config: &AppConfig) -> Result<Arc<dyn RatingStore>> {
    crate::wiring::open_rating_store(config).await
}

/// A price correction asked of a month whose statement is not final (the webhook answers it 422).
#[derive(Debug, thiserror::Error)]
#[error(
    "month: the statement of {billing_subscription_id} for {month} is not final; a draft is priced with the books as they are whenever it is shown"
)]
pub struct NotFinal {
    pub billing_subscription_id: String,
    pub month: Month,
}

/// Builds, keeps and finalises statements.
pub struct StatementService {
    pub store: Arc<dyn Store>,
    pub rating: Arc<dyn RatingStore>,
    pub settings: StatementSettings,
}

/// What finalising answered.
pub enum Finalised {
    /// It is final now, or was already.
    Final(Statement),
    /// The draft as kept, and why it cannot be final.
    Blocked(Statement, NotComplete),
}

impl StatementService {
    /// The statement as it stands now: the final one untouched, or a fresh draft, kept.
    pub async fn refresh(
        &self,
        billing_subscription_id: &str,
        month: Month,
        now: DateTime<Utc>,
    ) -> Result<Statement> {
        let existing = self.rating.statement(billing_subscription_id, month).await?;
        if let Some(existing) = &existing
            && existing.is_final()
        {
            return Ok(existing.clone());
        }
        let snapshot = Snapshot::read(self, &[month]).await?;
        snapshot.mapped_stamps(billing_subscription_id)?;
        let finals = self.rating.final_statements(billing_subscription_id).await?;
        let rows = self.rows(billing_subscription_id, rows_from(&finals, month)).await?;
        let mut builder = snapshot.builder();
        let draft = snapshot.build(&mut builder, billing_subscription_id, month, &rows, &finals, now)?;
        let draft = carry_rerates(draft, existing.as_ref());
        self.rating.save_statement(&draft).await?;
        Ok(draft)
    }

    /// The rows of `billing_subscription_id` reported from `from` on (see [`read_rows`]).
    async fn rows(&self, billing_subscription_id: &str, from: DateTime<Utc>) -> Result<Vec<RatableRow>> {
        read_rows(self.store.as_ref(), billing_subscription_id, from).await
    }

    /// What the books as they are now would change on the final statement of `month` (a what-if:
    /// nothing is written): usage, fees and tax (the month taxed by its own rule, see
    /// `azs_core::rating::rerate`). With `confirm`, the difference becomes correction lines on
    /// the next statement that is not final, which is answered too; the final statement never
    /// changes, and a rerate without differences writes nothing.
    pub async fn rerate(
        &self,
        billing_subscription_id: &str,
        month: Month,
        confirm: bool,
        now: DateTime<Utc>,
    ) -> Result<(Rerate, Option<Statement>)> {
        let final_ = match self.rating.statement(billing_subscription_id, month).await? {
            Some(s) if s.is_final() => s,
            _ => {
                return Err(
                    NotFinal { billing_subscription_id: billing_subscription_id.to_owned(), month }.into()
                );
            }
        };
        let snapshot = Snapshot::read(self, &[month]).await?;
        snapshot.mapped_stamps(billing_subscription_id)?;
        // The month rebuilt as it was counted: with the finals before it, and only the rows the
        // final counted.
        let mut finals = self.rating.final_statements(billing_subscription_id).await?;
        finals.retain(|s| s.month < final_.month);
        let mut rows = self.rows(billing_subscription_id, rows_from(&finals, month)).await?;
        rows.retain(|r| counted_by_final(&final_, r));
        let mut builder = snapshot.builder();
        let rebuilt = snapshot.build(&mut builder, billing_subscription_id, month, &rows, &finals, now)?;
        let statements = self.rating.statements(None).await?;
        let confirmed: Vec<&Rerate> = statements
            .iter()
            .filter(|s| s.billing_subscription_id == billing_subscription_id)
            .flat_map(|s| &s.rerates)
            .collect();
        let rerate = price_differences(&final_, &rebuilt, &confirmed, now);
        if !confirm || rerate.is_empty() {
            return Ok((rerate, None));
        }
        let mut open = month.next();
        while let Some(s) = self.rating.statement(billing_subscription_id, open).await?
            && s.is_final()
        {
            open = open.next();
        }
        let draft = add_rerate(self.refresh(billing_subscription_id, open, now).await?, rerate.clone());
        self.rating.save_statement(&draft).await?;
        Ok((rerate, Some(draft)))
    }

    /// Makes the statement final when it is proven complete; else keeps the draft and says why.
    pub async fn finalize(
        &self,
        billing_subscription_id: &str,
        month: Month,
        now: DateTime<Utc>,
    ) -> Result<Finalised> {
        let draft = self.refresh(billing_subscription_id, month, now).await?;
        if draft.is_final() {
            return Ok(Finalised::Final(draft));
        }
        match finalize(draft.clone(), now) {
            Ok(final_) => {
                self.rating.save_statement(&final_).await?;
                Ok(Finalised::Final(final_))
            }
            Err(not_complete) => Ok(Finalised::Blocked(draft, not_complete)),
        }
    }
}

/// The rows mapped to `billing_subscription_id` reported from `from` on, in reported order (what
/// [`Snapshot::build`] slices): one indexed read of that subscription's rows.
pub(crate) async fn read_rows(
    store: &dyn Store,
    billing_subscription_id: &str,
    from: DateTime<Utc>,
) -> Result<Vec<RatableRow>> {
    read_rows_into(store, billing_subscription_id, from, Vec::new()).await
}

/// [`read_rows`] into `rows` (emptied first), whose memory is reused: a pass hands each
/// subscription the buffer of one it is done with, which is already large enough and mapped.
pub(crate) async fn read_rows_into(
    store: &dyn Store,
    billing_subscription_id: &str,
    from: DateTime<Utc>,
    mut rows: Vec<RatableRow>,
) -> Result<Vec<RatableRow>> {
    rows.clear();
    store
        .billing_rows(billing_subscription_id, from, None, &mut |stored| {
            rows.push(RatableRow {
                stamp_id: stored.stamp_id,
                reported_start: stored.window.start,
                // The store's copy (the read matched on it), rather than another one per row.
                billing_subscription_id: stored
                    .billing_subscription_id
                    .unwrap_or_else(|| billing_subscription_id.to_owned()),
                row: stored.row,
            });
            Ok(())
        })
        .await
        .with_context(|| format!("reading the usage rows of {billing_subscription_id}"))?;
    Ok(rows)
}

/// Where a statement of `month` starts reading rows: rows reported before every final statement's
/// recorded watermarks and before the month cannot matter (usage is reported after it happens, and
/// a final counted what came before).
pub(crate) fn rows_from(finals: &[Statement], month: Month) -> DateTime<Utc> {
    finals
        .iter()
        .flat_map(|s| s.stamps.iter().map(|p| p.watermark))
        .chain(std::iter::once(month.start()))
        .min()
        .unwrap_or(month.start())
}

/// What every statement is built from apart from its own rows and finals, read once for a pass
/// over many billing subscriptions (or once for one statement): the books and assignments, the
/// stamps each billing subscription is mapped on, and each stamp's progress with the verifies that
/// prove the months built.
pub(crate) struct Snapshot {
    books: PriceBooks,
    assignments: Assignments,
    /// Each billing subscription's first own assignment, and the first default: when it became
    /// active (for its fees).
    own_first: HashMap<String, DateTime<Utc>>,
    default_first: Option<DateTime<Utc>>,
    /// Billing subscription -> the stamps its tenant subscriptions are mapped on.
    pub(crate) mapped: BTreeMap<String, Vec<StampId>>,
    evidence: HashMap<Month, Vec<StampEvidence>>,
    settings: StatementSettings,
}

impl Snapshot {
    /// Reads the shared inputs of statements of `months`.
    pub(crate) async fn read(service: &StatementService, months: &[Month]) -> Result<Snapshot> {
        let books = PriceBooks::new(service.rating.price_books().await?);
        let assignment_list: Vec<Assignment> = service.rating.assignments().await?;
        let (mut own_first, mut default_first) = (HashMap::new(), None);
        for a in &assignment_list {
            match &a.billing_subscription_id {
                Some(sub) => {
                    own_first.entry(sub.clone()).or_insert(a.effective_from);
                }
                None => {
                    default_first.get_or_insert(a.effective_from);
                }
            }
        }
        let mut mapped: BTreeMap<String, Vec<StampId>> = BTreeMap::new();
        for m in service.store.list_mappings(None).await? {
            mapped.entry(m.billing_subscription_id).or_default().push(m.stamp_id);
        }
        let statuses = service.store.list_statuses().await?;
        let mut evidence = HashMap::new();
        for month in months {
            // The verifies that touch the hours a month is proven on, from the kept history.
            let proven_hours = ReportedWindow::new(
                month.end() - service.settings.verify_lead,
                month.end() + service.settings.settle_delay,
            )
            .context("the statement settings are whole hours")?;
            let mut of_month = Vec::with_capacity(statuses.len());
            for status in &statuses {
                let verifies = service.rating.verify_history(&status.stamp_id, proven_hours).await?;
                of_month.push(StampEvidence {
                    stamp_id: status.stamp_id.clone(),
                    watermark: status.watermark,
                    verifies,
                });
            }
            evidence.insert(*month, of_month);
        }
        Ok(Snapshot {
            books,
            assignments: Assignments::new(assignment_list),
            own_first,
            default_first,
            mapped,
            evidence,
            settings: service.settings,
        })
    }

    /// The statement builder over these books and assignments (it keeps the rate cards it builds,
    /// so one builder serves a whole pass).
    pub(crate) fn builder(&self) -> Statements<'_> {
        Statements::new(&self.books, &self.assignments, self.settings)
    }

    /// The stamps the billing subscription's tenant subscriptions are mapped on; refused when there
    /// are none, so a typo never becomes a statement (with fees) for a customer that does not exist.
    pub(crate) fn mapped_stamps(&self, billing_subscription_id: &str) -> Result<&[StampId]> {
        match self.mapped.get(billing_subscription_id) {
            Some(stamps) if !stamps.is_empty() => Ok(stamps),
            _ => bail!(
                "billingSubscriptionId: no tenant subscription is mapped to {billing_subscription_id:?}"
            ),
        }
    }

    /// A draft of `month`'s statement. `rows` are the subscription's in reported order from
    /// [`rows_from`] of these `finals` or earlier (those reported before it are skipped, so one read
    /// serves several months); `finals` are the subscription's final statements.
    pub(crate) fn build(
        &self,
        builder: &mut Statements<'_>,
        billing_subscription_id: &str,
        month: Month,
        rows: &[RatableRow],
        finals: &[Statement],
        now: DateTime<Utc>,
    ) -> Result<Statement> {
        let mapped_stamps = self.mapped_stamps(billing_subscription_id)?;
        let evidence = self.evidence.get(&month).context("the month's evidence was read")?;
        let term = SubscriptionTerm {
            // Active from its first assignment: its own override, else the default in force.
            active_from: self
                .own_first
                .get(billing_subscription_id)
                .copied()
                .or(self.default_first)
                .unwrap_or(month.start()),
            active_until: None,
        };
        let from = rows_from(finals, month);
        let rows = &rows[rows.partition_point(|r| r.reported_start < from)..];
        let request = StatementRequest {
            billing_subscription_id,
            month,
            term,
            rows,
            finals,
            mapped_stamps,
            evidence,
            now,
        };
        Ok(builder.build(&request))
    }
}

/// Lines of what differs between two versions of a book (`azs-usage price-book diff`, `GET
/// /price-books/{id}/diff`): the header line, then `+` added, `-` removed, `~` changed (meters, fees, tax, parent).
pub fn book_diff(old: &BookVersion, new: &BookVersion) -> Vec<String> {
    let mut lines = vec![format!(
        "version {} ({}) -> version {} ({})",
        old.version,
        old.effective_from.to_rfc3339(),
        new.version,
        new.effective_from.to_rfc3339()
    )];
    for (label, a, b) in [
        ("monthly fee", show(&old.monthly_fee), show(&new.monthly_fee)),
        ("one-time fee", show(&old.one_time_fee), show(&new.one_time_fee)),
        ("tax %", show(&old.tax_percent), show(&new.tax_percent)),
        ("parent", show(&old.parent), show(&new.parent)),
    ] {
        if a != b {
            lines.push(format!("~ {label}: {a} -> {b}"));
        }
    }
    let json = |m: &azs_core::rating::MeterPrice| serde_json::to_string(m).unwrap_or_default();
    for m in &old.meters {
        match new.meters.iter().find(|n| n.meter_id == m.meter_id) {
            None => lines.push(format!("- {} {}", m.meter_id, json(m))),
            Some(n) if n != m => lines.push(format!("~ {} {} -> {}", m.meter_id, json(m), json(n))),
            Some(_) => {}
        }
    }
    for n in new.meters.iter().filter(|n| !old.meters.iter().any(|m| m.meter_id == n.meter_id)) {
        lines.push(format!("+ {} {}", n.meter_id, json(n)));
    }
    if lines.len() == 1 {
        lines.push("no differences".into());
    }
    lines
}

/// An optional value as its JSON text, `none` when absent.
fn show<T: serde::Serialize>(value: &Option<T>) -> String {
    value.as_ref().map_or_else(|| "none".into(), |v| serde_json::to_string(v).unwrap_or_default())
}
