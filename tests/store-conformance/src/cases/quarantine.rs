//! The quarantine (`azs_core::quarantine`): rows the store cannot hold are kept verbatim in the same
//! transaction as their window, keyed like rows, and the watermark moves on.
//!
//! The rule that sends a row to quarantine is the core's, driven by limits; SQLite can hold almost
//! anything, so the cases apply the stricter of the store's own limits and SQL Server's
//! ([`PRODUCTION_LIMITS`], what `azs-store-sqlserver` declares and checks against its schema): every
//! store is shown the same over-long URI and over-precise quantity.

use crate::fixtures::*;
use azs_core::ports::{Store, WindowCommit, WindowWrite};
use azs_core::quarantine::{QuarantinedRow, RowLimits, TextUnit, reconstructed_json};
use azs_core::usage::UsageRow;
use azs_core::{ReportedWindow, StampId};
use std::sync::Arc;

/// SQL Server's usage_rows: nvarchar(256/128/4000/256), nvarchar(max), decimal(38, 12).
pub const PRODUCTION_LIMITS: RowLimits = RowLimits {
    text_unit: TextUnit::Utf16,
    subscription_id: 256,
    meter_id: 128,
    resource_uri: 4000,
    location: 256,
    tags: (1 << 30) - 1,
    additional_info: (1 << 30) - 1,
    quantity_decimals: 12,
    quantity_integer_digits: 26,
};

/// The stricter of two stores' limits, field by field.
fn strictest(a: RowLimits, b: RowLimits) -> RowLimits {
    RowLimits {
        text_unit: if a.text_unit == TextUnit::Utf8Bytes || b.text_unit == TextUnit::Utf8Bytes {
            // Counting bytes is the stricter measure (never fewer than UTF-16 units).
            TextUnit::Utf8Bytes
        } else {
            TextUnit::Utf16
        },
        subscription_id: a.subscription_id.min(b.subscription_id),
        meter_id: a.meter_id.min(b.meter_id),
        resource_uri: a.resource_uri.min(b.resource_uri),
        location: a.location.min(b.location),
        tags: a.tags.min(b.tags),
        additional_info: a.additional_info.min(b.additional_info),
        quantity_decimals: a.quantity_decimals.min(b.quantity_decimals),
        quantity_integer_digits: a.quantity_integer_digits.min(b.quantity_integer_digits),
    }
}

/// Splits `rows` as the collector does: rows within the limits go to the ledger, the others to the
/// quarantine with their reason.
fn split(store: &dyn Store, rows: Vec<UsageRow>) -> (Vec<UsageRow>, Vec<QuarantinedRow>) {
    let limits = strictest(store.row_limits(), PRODUCTION_LIMITS);
    let mut kept = Vec::new();
    let mut quarantined = Vec::new();
    for row in rows {
        match limits.check(&row) {
            Ok(()) => kept.push(row),
            Err(why) => quarantined.push(QuarantinedRow::new(reconstructed_json(&row), &why)),
        }
    }
    (kept, quarantined)
}

async fn commit_split(
    store: &dyn Store,
    stamp: &StampId,
    window: ReportedWindow,
    write: WindowWrite,
    rows: Vec<UsageRow>,
) -> azs_core::ports::CommitReceipt {
    let (rows, quarantined) = split(store, rows);
    store
        .commit_window(WindowCommit { stamp, window, lease_owner: RUN, write, rows, quarantined })
        .await
        .unwrap_or_else(|e| panic!("committing {window} failed: {e}"))
}

/// A window with two good rows, one resource URI of 4,001 characters and one quantity with 13 decimals.
fn window_rows() -> Vec<UsageRow> {
    let mut long = vm_usage(TENANT_A, "long", "2026-10-31T23:00:00Z", "1.0");
    long.resource_uri = format!("{}/{}", long.resource_uri, "x".repeat(4001 - long.resource_uri.len() - 1));
    assert_eq!(long.resource_uri.len(), 4001);
    vec![
        vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "2.0"),
        long,
        vm_usage(TENANT_B, "precise", "2026-10-31T23:00:00Z", "0.0000000000001"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T22:00:00Z", "8.0"),
    ]
}

async fn quarantine_of(store: &dyn Store, stamp: &StampId) -> Vec<azs_core::quarantine::QuarantineEntry> {
    store.quarantine(Some(stamp)).await.expect("the quarantine reads")
}

pub async fn a_row_over_the_stores_limits_is_quarantined_with_its_window_and_the_watermark_moves_on(
    store: Arc<dyn Store>,
) {
    // Given a window with two rows the production store cannot hold exactly
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let window = hour(COLLECT_FROM);
    let rows = window_rows();

    // When it is committed the way the collector commits it
    let receipt = commit_split(store.as_ref(), &s.id, window, WindowWrite::Advance, rows.clone()).await;

    // Then the other rows are stored exactly, the two are quarantined, and the watermark moved on
    assert_eq!((receipt.rows_written, receipt.quarantined), (2, 2));
    let stored: Vec<UsageRow> = rows_of(store.as_ref(), &s.id).await.into_iter().map(|r| r.row).collect();
    let mut want = vec![rows[0].clone(), rows[3].clone()];
    let mut got = stored;
    want.sort_by(|a, b| a.resource_uri.cmp(&b.resource_uri));
    got.sort_by(|a, b| a.resource_uri.cmp(&b.resource_uri));
    assert_eq!(got, want);
    assert_eq!(watermark(store.as_ref(), &s.id).await, window.end);

    // And each quarantined row is kept verbatim, naming its window, field and rule
    let entries = quarantine_of(store.as_ref(), &s.id).await;
    assert_eq!(entries.len(), 2);
    let long = entries.iter().find(|e| e.field.ends_with("resourceUri")).expect("the long URI");
    assert_eq!(long.raw, reconstructed_json(&rows[1]));
    assert!(long.reason.contains("4001"), "{}", long.reason);
    let precise = entries.iter().find(|e| e.field == "properties.quantity").expect("the precise quantity");
    assert_eq!(precise.raw, reconstructed_json(&rows[2]));
    assert!(precise.reason.contains("13 significant decimals"), "{}", precise.reason);
    assert!(entries.iter().all(|e| e.stamp_id == s.id && e.window == window));
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    assert!(entries.iter().all(|e| e.quarantined_at > since));

    // And the stamp's status counts them
    let status = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!(status.quarantined_rows, 2);
}

pub async fn a_quarantined_row_is_stored_once_however_often_its_window_is_pulled(store: Arc<dyn Store>) {
    // Given a collected window with quarantined rows
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let window = hour(COLLECT_FROM);
    let mut rows = window_rows();
    rows.push(rows[1].clone()); // the same over-long row twice in one pull
    let first = commit_split(store.as_ref(), &s.id, window, WindowWrite::Advance, rows.clone()).await;
    assert_eq!(first.quarantined, 2, "a row repeated within the window is quarantined once");

    // When the same window is pulled and committed again, twice
    let again =
        commit_split(store.as_ref(), &s.id, window, WindowWrite::Replace { remap: false }, rows.clone())
            .await;
    commit_split(store.as_ref(), &s.id, window, WindowWrite::Replace { remap: false }, rows).await;

    // Then nothing is doubled: not the rows, not the quarantine
    assert_eq!(again.quarantined, 2, "replacing rewrites the window's quarantine");
    assert_eq!(rows_of(store.as_ref(), &s.id).await.len(), 2);
    assert_eq!(quarantine_of(store.as_ref(), &s.id).await.len(), 2);
    assert_eq!(store.get_status(&s.id).await.unwrap().unwrap().quarantined_rows, 2);
}

pub async fn replacing_a_window_replaces_its_quarantine_and_leaves_other_windows_alone(
    store: Arc<dyn Store>,
) {
    // Given two collected windows, each with quarantined rows
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let first = hour(COLLECT_FROM);
    let second = hour("2026-11-01T01:00:00Z");
    commit_split(store.as_ref(), &s.id, first, WindowWrite::Advance, window_rows()).await;
    commit_split(store.as_ref(), &s.id, second, WindowWrite::Advance, window_rows()).await;
    assert_eq!(quarantine_of(store.as_ref(), &s.id).await.len(), 4);

    // When the first is replaced by a re-pull the store can hold entirely (the stamp fixed its rows)
    let fixed = vec![vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "2.0")];
    let receipt =
        commit_split(store.as_ref(), &s.id, first, WindowWrite::Replace { remap: false }, fixed).await;

    // Then its quarantine is gone with its old rows, and the second window's stays
    assert_eq!(receipt.quarantined, 0);
    let entries = quarantine_of(store.as_ref(), &s.id).await;
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.window == second));
    assert_eq!(watermark(store.as_ref(), &s.id).await, second.end);
}

pub async fn the_quarantine_is_listed_per_stamp(store: Arc<dyn Store>) {
    // Given two stamps with quarantined rows
    let a = registered_and_leased(store.as_ref(), "eu-1").await;
    let b = registered_and_leased(store.as_ref(), "eu-2").await;
    commit_split(store.as_ref(), &a.id, hour(COLLECT_FROM), WindowWrite::Advance, window_rows()).await;
    let mut one = window_rows();
    one.truncate(2);
    commit_split(store.as_ref(), &b.id, hour(COLLECT_FROM), WindowWrite::Advance, one).await;

    // Then each stamp lists its own, and the full list has both, in stamp order
    assert_eq!(quarantine_of(store.as_ref(), &a.id).await.len(), 2);
    assert_eq!(quarantine_of(store.as_ref(), &b.id).await.len(), 1);
    let all = store.quarantine(None).await.unwrap();
    let mine: Vec<&StampId> =
        all.iter().map(|e| &e.stamp_id).filter(|id| **id == a.id || **id == b.id).collect();
    assert_eq!(mine.len(), 3);
    let mut sorted = mine.clone();
    sorted.sort();
    assert_eq!(mine, sorted, "listed in stamp order");

    // And a stamp without any lists none
    let c = registered_and_leased(store.as_ref(), "eu-3").await;
    assert!(quarantine_of(store.as_ref(), &c.id).await.is_empty());
    assert_eq!(store.get_status(&c.id).await.unwrap().unwrap().quarantined_rows, 0);
}
