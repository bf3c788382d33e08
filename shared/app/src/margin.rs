//! The month's margin over every billing subscription: each statement brought up to date (a final
//! one stays as it is), the month's mapped rows read once, and the core's `margin` over both with
//! the operator's cost book. What `azs-usage margin` calls.

use crate::rating::StatementService;
use anyhow::{Context, Result};
use azs_core::ports::ExportFilter;
use azs_core::rating::margin::{MarginReport, margin};
use azs_core::rating::{Month, PriceBooks, RatableRow};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// The margin of `month` as of `now`.
pub async fn month_margin(
    service: &StatementService,
    month: Month,
    now: DateTime<Utc>,
) -> Result<MarginReport> {
    let subscriptions: BTreeSet<String> =
        service.store.list_mappings(None).await?.into_iter().map(|m| m.billing_subscription_id).collect();
    let mut statements = Vec::with_capacity(subscriptions.len());
    for subscription in &subscriptions {
        statements.push(service.refresh(subscription, month, now).await?);
    }
    // Usage is reported after it happens: rows with usage in the month are reported from its start.
    let mut rows = Vec::new();
    let filter = ExportFilter { stamps: Vec::new(), from: Some(month.start()), to: None };
    service
        .store
        .export_rows(&filter, &mut |stored| {
            if let Some(billing_subscription_id) = stored.billing_subscription_id
                && month.contains(stored.row.usage_start)
            {
                rows.push(RatableRow {
                    stamp_id: stored.stamp_id,
                    reported_start: stored.window.start,
                    billing_subscription_id,
                    row: stored.row,
                });
            }
            Ok(())
        })
        .await
        .context("reading the month's usage rows")?;
    let books = PriceBooks::new(service.rating.price_books().await?);
    Ok(margin(month, &statements, &rows, &books)?)
}
