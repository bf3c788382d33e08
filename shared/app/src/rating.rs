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
use azs_core::ports::{ExportFilter, Store};
use azs_core::rating::ports::RatingStore;
use azs_core::rating::rerate::{Rerate, add_rerate, carry_rerates, counted_by_final, price_differences};
use azs_core::rating::statement::NotComplete;
use azs_core::rating::{
    Assignments, BookVersion, Month, PriceBooks, RatableRow, StampEvidence, Statement, StatementRequest,
    StatementSettings, Statements, SubscriptionTerm, finalize,
};
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// The published meter table (names, units, resource providers), for the FOCUS export.
pub fn meter_catalog() -> azs_core::rating::focus::MeterCatalog {
    azs_core::rating::focus::MeterCatalog::from_csv(include_str!("../data/meters.csv"))
}

/// The rating store for `config`'s database (see [`crate::wiring::open_rating_store`]).
pub async fn open_rating_store(config: &AppConfig) -> Result<Arc<dyn RatingStore>> {
    crate::wiring::open_rating_store(config).await
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
        let mapped_stamps = self.mapped_stamps(billing_subscription_id).await?;
        let draft = self.build(billing_subscription_id, month, &mapped_stamps, now, None).await?;
        let draft = carry_rerates(draft, existing.as_ref());
        self.rating.save_statement(&draft).await?;
        Ok(draft)
    }

    /// The stamps the billing subscription's tenant subscriptions are mapped on; refused when there
    /// are none, so a typo never becomes a statement (with fees) for a customer that does not exist.
    async fn mapped_stamps(&self, billing_subscription_id: &str) -> Result<Vec<StampId>> {
        let mapped_stamps: Vec<StampId> = self
            .store
            .list_mappings(None)
            .await?
            .into_iter()
            .filter(|m| m.billing_subscription_id == billing_subscription_id)
            .map(|m| m.stamp_id)
            .collect();
        if mapped_stamps.is_empty() {
            bail!("billingSubscriptionId: no tenant subscription is mapped to {billing_subscription_id:?}");
        }
        Ok(mapped_stamps)
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
            _ => bail!(
                "month: the statement of {billing_subscription_id} for {month} is not final; a draft is priced with the books as they are whenever it is shown"
            ),
        };
        let mapped_stamps = self.mapped_stamps(billing_subscription_id).await?;
        let rebuilt = self.build(billing_subscription_id, month, &mapped_stamps, now, Some(&final_)).await?;
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

    async fn build(
        &self,
        billing_subscription_id: &str,
        month: Month,
        mapped_stamps: &[StampId],
        now: DateTime<Utc>,
        what_if_of: Option<&Statement>,
    ) -> Result<Statement> {
        let books = PriceBooks::new(self.rating.price_books().await?);
        let assignments = self.rating.assignments().await?;
        let term = SubscriptionTerm {
            active_from: assignments
                .iter()
                .filter(|a| a.billing_subscription_id.as_deref() == Some(billing_subscription_id))
                .chain(assignments.iter().filter(|a| a.billing_subscription_id.is_none()))
                .map(|a| a.effective_from)
                .next()
                .unwrap_or(month.start()),
            active_until: None,
        };
        let assignments = Assignments::new(assignments);
        let mut finals = self.rating.final_statements(billing_subscription_id).await?;
        // A what-if rebuilds a final month as it was counted: with the finals before it, and only
        // the rows the final counted.
        if let Some(final_) = what_if_of {
            finals.retain(|s| s.month < final_.month);
        }
        // Rows reported before every final statement's recorded watermarks and before the month
        // cannot matter: usage is reported after it happens, and a final counted what came before.
        let from = finals
            .iter()
            .flat_map(|s| s.stamps.iter().map(|p| p.watermark))
            .chain(std::iter::once(month.start()))
            .min()
            .unwrap_or(month.start());
        let mut rows = Vec::new();
        let filter = ExportFilter { stamps: Vec::new(), from: Some(from), to: None };
        self.store
            .export_rows(&filter, &mut |stored| {
                if stored.billing_subscription_id.as_deref() == Some(billing_subscription_id)
                    && stored.row.usage_start < month.end()
                {
                    let row = RatableRow {
                        stamp_id: stored.stamp_id,
                        reported_start: stored.window.start,
                        billing_subscription_id: billing_subscription_id.to_owned(),
                        row: stored.row,
                    };
                    if what_if_of.is_none_or(|f| counted_by_final(f, &row)) {
                        rows.push(row);
                    }
                }
                Ok(())
            })
            .await
            .context("reading the subscription's usage rows")?;
        // The verifies that touch the hours a month is proven on, from the kept history.
        let proven_hours = ReportedWindow::new(
            month.end() - self.settings.verify_lead,
            month.end() + self.settings.settle_delay,
        )
        .context("the statement settings are whole hours")?;
        let mut evidence = Vec::new();
        for status in self.store.list_statuses().await? {
            let verifies = self.rating.verify_history(&status.stamp_id, proven_hours).await?;
            evidence.push(StampEvidence { stamp_id: status.stamp_id, watermark: status.watermark, verifies });
        }
        let request = StatementRequest {
            billing_subscription_id,
            month,
            term,
            rows: &rows,
            finals: &finals,
            mapped_stamps,
            evidence: &evidence,
            now,
        };
        Ok(Statements::new(&books, &assignments, self.settings).build(&request))
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
