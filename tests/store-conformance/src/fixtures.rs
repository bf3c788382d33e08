//! Givens shared by the cases: stamps as the registration produces them, usage rows in the shape the
//! provider usage API documents (meter ids from Microsoft's published meter list), and small helpers
//! that commit and export.
//!
//! Times are whole seconds (whole hours for usage): every store keeps at least that precision.

use azs_core::ports::{
    CommitReceipt, ExportFilter, Store, StoreError, StoredUsageRow, WindowCommit, WindowWrite,
};
use azs_core::stamp::{Stamp, StampConnection, StampId, UsageQueryMode};
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use std::time::Duration as StdDuration;

/// Base VM Size Hours (Compute).
pub const BASE_VM_HOURS: &str = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5";
/// Windows VM Size Hours (Compute).
pub const WINDOWS_VM_HOURS: &str = "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A";
/// BlockBlobCapacity (Storage).
pub const BLOCK_BLOB_CAPACITY: &str = "09F8879E-87E9-4305-A572-4B7BE209F857";

/// Tenant subscriptions on a stamp, as the API sends them (casing varies between sources).
pub const TENANT_A: &str = "8E8CD5A6-05B6-4B9D-9B5A-4E8F3C1D2A10";
pub const TENANT_B: &str = "3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f";

/// Who the cases are, for leases.
pub const RUN: &str = "run-conformance-1";
pub const OTHER_RUN: &str = "run-conformance-2";

/// A lease long enough for any case.
pub const LEASE: StdDuration = StdDuration::from_secs(600);

pub fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("a fixture time is RFC 3339")
}

/// The reported hour starting at `start`.
pub fn hour(start: &str) -> ReportedWindow {
    ReportedWindow::hour(t(start))
}

pub fn quantity(text: &str) -> Decimal {
    Decimal::from_str_exact(text).expect("a fixture quantity is a decimal")
}

/// Where fixture stamps start collecting.
pub const COLLECT_FROM: &str = "2026-11-01T00:00:00Z";

/// A stamp as registration produces it, with a unique admin ARM endpoint so that cases sharing one
/// database never collide.
pub fn stamp(name: &str) -> Stamp {
    let id = StampId::new_random();
    let region = id.as_str().split('-').next().unwrap_or("local").to_owned();
    Stamp {
        connection: StampConnection {
            admin_subscription_id: "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f".into(),
            tenant_id: "4de154de-f8a8-4017-af41-df619da68155".into(),
            application_id: "11111111-2222-3333-4444-555555555555".into(),
            certificate_thumbprint: None,
            admin_arm_endpoint: format!("https://adminmanagement.r{region}.azs.example"),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: false,
            ca_certificate_pem: None,
        },
        credential_secret_name: format!("azs-usage-stamp-{id}"),
        id,
        name: name.into(),
        enabled: true,
        collect_from: t(COLLECT_FROM),
        query_mode: UsageQueryMode::AllTenants,
        created_at: t("2026-11-26T10:30:00Z"),
    }
}

/// Registers a fresh stamp and takes its lease as [`RUN`].
pub async fn registered_and_leased(store: &dyn Store, name: &str) -> Stamp {
    let s = stamp(name);
    store.insert_stamp(&s).await.expect("the stamp registers");
    assert!(store.try_acquire(&s.id, RUN, LEASE).await.expect("the lease call works"), "the lease is free");
    s
}

/// One VM's usage for one hour, as the API reports it.
pub fn vm_usage(subscription: &str, vm: &str, usage_hour: &str, qty: &str) -> UsageRow {
    let start = t(usage_hour);
    UsageRow {
        subscription_id: subscription.into(),
        meter_id: BASE_VM_HOURS.into(),
        usage_start: start,
        usage_end: start + Duration::hours(1),
        quantity: quantity(qty),
        resource_uri: format!(
            "/subscriptions/{subscription}/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/{vm}"
        ),
        location: "local".into(),
        tags: Some(r#"{"costCenter":"4711"}"#.into()),
        additional_info: Some(r#"{"ServiceType":"Standard_D2_v2","ImageType":"Windows"}"#.into()),
    }
}

pub async fn commit(
    store: &dyn Store,
    stamp: &StampId,
    window: ReportedWindow,
    owner: &str,
    write: WindowWrite,
    rows: &[UsageRow],
) -> Result<CommitReceipt, StoreError> {
    store
        .commit_window(WindowCommit {
            stamp,
            window,
            lease_owner: owner,
            write,
            rows: rows.to_vec(),
            quarantined: Vec::new(),
        })
        .await
}

/// Commits `rows` as the next window of a stamp leased by [`RUN`], expecting success.
pub async fn advance(
    store: &dyn Store,
    stamp: &StampId,
    window: ReportedWindow,
    rows: &[UsageRow],
) -> CommitReceipt {
    commit(store, stamp, window, RUN, WindowWrite::Advance, rows)
        .await
        .unwrap_or_else(|e| panic!("committing {window} failed: {e}"))
}

pub async fn export(store: &dyn Store, filter: &ExportFilter) -> Vec<StoredUsageRow> {
    let mut rows = Vec::new();
    let n = store
        .export_rows(filter, &mut |row| {
            rows.push(row);
            Ok(())
        })
        .await
        .expect("export works");
    assert_eq!(n as usize, rows.len(), "export returns how many rows it handed to the sink");
    rows
}

/// Every stored row of one stamp, in export order.
pub async fn rows_of(store: &dyn Store, stamp: &StampId) -> Vec<StoredUsageRow> {
    export(store, &ExportFilter { stamps: vec![stamp.clone()], ..Default::default() }).await
}

pub async fn watermark(store: &dyn Store, stamp: &StampId) -> DateTime<Utc> {
    store.get_status(stamp).await.expect("status reads").expect("the stamp has a status").watermark
}

pub fn total(rows: &[StoredUsageRow]) -> Decimal {
    rows.iter().map(|r| r.row.quantity).sum()
}

/// Whether `e` is `Fenced` for this stamp and window.
pub fn is_fenced(e: &StoreError, stamp: &StampId, window: ReportedWindow) -> bool {
    matches!(e, StoreError::Fenced { stamp: s, window: w, .. } if s == stamp && *w == window)
}
