//! `UsageLedger::export_rows`: stored rows streamed in (stamp, reported start, usage start) order,
//! filtered by stamp and reported range; `UsageLedger::billing_rows`: one billing subscription's rows
//! in reported order.

use crate::fixtures::*;
use azs_core::SubscriptionMapping;
use azs_core::ports::{ExportFilter, Store, StoreError, StoredUsageRow};
use azs_core::stamp::Stamp;
use std::sync::Arc;

/// Two stamps with three hours each; each hour reports usage for the two hours before it, out of order.
async fn two_stamps_with_three_hours(store: &dyn Store) -> (Stamp, Stamp) {
    let a = registered_and_leased(store, "a").await;
    let b = registered_and_leased(store, "b").await;
    two_stamps_with_three_hours_on(store, &a, &b).await;
    (a, b)
}

/// [`two_stamps_with_three_hours`]' rows on stamps registered (and perhaps mapped) already.
async fn two_stamps_with_three_hours_on(store: &dyn Store, a: &Stamp, b: &Stamp) {
    for s in [a, b] {
        for h in 0..3 {
            let window = hour(&format!("2026-11-01T0{h}:00:00Z"));
            let late = (window.start - chrono::Duration::hours(2)).to_rfc3339();
            let recent = (window.start - chrono::Duration::hours(1)).to_rfc3339();
            let rows = vec![
                vm_usage(TENANT_A, "web-01", &recent, "1"),
                vm_usage(TENANT_B, "db-01", &late, "1"),
                vm_usage(TENANT_A, "web-02", &recent, "1"),
                vm_usage(TENANT_B, "db-02", &late, "1"),
            ];
            advance(store, &s.id, window, &rows).await;
        }
    }
}

pub async fn export_streams_rows_in_stamp_reported_and_usage_order(store: Arc<dyn Store>) {
    // Given two stamps' rows, written out of usage order
    let (a, b) = two_stamps_with_three_hours(store.as_ref()).await;

    // When everything is exported
    let all = export(store.as_ref(), &ExportFilter::default()).await;

    // Then both stamps' rows are all there, ordered by stamp, reported start, then usage start
    let ours: Vec<_> = all.iter().filter(|r| r.stamp_id == a.id || r.stamp_id == b.id).collect();
    assert_eq!(ours.len(), 24);
    let keys: Vec<_> = all.iter().map(|r| (r.stamp_id.clone(), r.window.start, r.row.usage_start)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "rows come in (stamp, reported start, usage start) order");
    for r in &ours {
        assert_eq!(r.window.end - r.window.start, chrono::Duration::hours(1));
    }
}

pub async fn export_filters_by_stamp_and_reported_range(store: Arc<dyn Store>) {
    // Given two stamps with hours 00:00, 01:00 and 02:00 collected
    let (a, b) = two_stamps_with_three_hours(store.as_ref()).await;

    // When one stamp's rows reported in [01:00, 02:00) are exported
    let filter = ExportFilter {
        stamps: vec![b.id.clone()],
        from: Some(t("2026-11-01T01:00:00Z")),
        to: Some(t("2026-11-01T02:00:00Z")),
    };
    let rows = export(store.as_ref(), &filter).await;

    // Then exactly that stamp's rows of that reported hour come out
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r.stamp_id == b.id && r.window == hour("2026-11-01T01:00:00Z")));

    // And an open-ended range and a list of stamps work the same way
    let from_one = ExportFilter {
        stamps: vec![a.id.clone(), b.id.clone()],
        from: Some(t("2026-11-01T01:00:00Z")),
        to: None,
    };
    let rows = export(store.as_ref(), &from_one).await;
    assert_eq!(rows.len(), 16);
    assert!(rows.iter().all(|r| r.window.start >= t("2026-11-01T01:00:00Z")));
    let until_one =
        ExportFilter { stamps: vec![a.id.clone()], from: None, to: Some(t("2026-11-01T01:00:00Z")) };
    assert_eq!(export(store.as_ref(), &until_one).await.len(), 4);

    // And a stamp nobody registered exports nothing
    let nobody = ExportFilter { stamps: vec![stamp("nobody").id], ..Default::default() };
    assert!(export(store.as_ref(), &nobody).await.is_empty());
}

pub async fn an_export_stops_when_its_sink_fails(store: Arc<dyn Store>) {
    // Given a stamp with rows
    let (a, _) = two_stamps_with_three_hours(store.as_ref()).await;

    // When the sink fails on the fifth row (a closed pipe, a full disk)
    let mut seen = 0;
    let result = store
        .export_rows(&ExportFilter { stamps: vec![a.id.clone()], ..Default::default() }, &mut |_row| {
            seen += 1;
            if seen == 5 { Err("disk full".to_owned()) } else { Ok(()) }
        })
        .await;

    // Then the export ends with an error that says why, and no row is handed over after the failure
    match result {
        Err(StoreError::Other(message) | StoreError::Unavailable(message)) => {
            assert!(message.contains("disk full"), "the sink's reason is kept: {message}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(seen, 5);
}

/// Every row of `billing_subscription_id` reported from `from` on, as `billing_rows` streams them.
async fn billing_rows(
    store: &dyn Store,
    billing_subscription_id: &str,
    from: &str,
    to: Option<&str>,
) -> Vec<StoredUsageRow> {
    let mut rows = Vec::new();
    let n = store
        .billing_rows(billing_subscription_id, t(from), to.map(t), &mut |row| {
            rows.push(row);
            Ok(())
        })
        .await
        .expect("billing rows read");
    assert_eq!(n as usize, rows.len(), "billing_rows returns how many rows it handed to the sink");
    rows
}

pub async fn a_billing_subscriptions_rows_are_read_alone_in_reported_order_over_every_stamp(
    store: Arc<dyn Store>,
) {
    // Given two stamps with three hours each: tenant A mapped to one billing subscription on both
    // stamps, tenant B to another (the same id in upper case) on the first stamp and unmapped on the
    // second
    let a = registered_and_leased(store.as_ref(), "a").await;
    let b = registered_and_leased(store.as_ref(), "b").await;
    let ours = format!("billing-{}", &a.id.as_str()[..8]);
    // Billing subscription ids are case-sensitive: one that differs from ours only in case is another
    // customer (a store comparing in a case-insensitive collation would hand us its rows too).
    let theirs = ours.to_uppercase();
    assert_ne!(theirs, ours);
    for (stamp, tenant, billing) in [(&a, TENANT_A, &ours), (&b, TENANT_A, &ours), (&a, TENANT_B, &theirs)] {
        let mapping = SubscriptionMapping {
            stamp_id: stamp.id.clone(),
            external_subscription_id: tenant.to_lowercase(),
            billing_subscription_id: billing.clone(),
            updated_at: t("2026-11-01T00:00:00Z"),
        };
        store.set_mapping(&mapping).await.expect("the mapping is stored");
    }
    two_stamps_with_three_hours_on(store.as_ref(), &a, &b).await;

    // When our billing subscription's rows are read from the first hour on
    let rows = billing_rows(store.as_ref(), &ours, "2026-11-01T00:00:00Z", None).await;

    // Then they are exactly the stored rows mapped to it, on both stamps, every field as exported
    let mut expected: Vec<StoredUsageRow> = export(store.as_ref(), &ExportFilter::default())
        .await
        .into_iter()
        .filter(|r| r.billing_subscription_id.as_deref() == Some(ours.as_str()))
        .collect();
    assert_eq!(expected.len(), 12, "tenant A's two VMs, three hours, two stamps");
    let key = |r: &StoredUsageRow| format!("{r:?}");
    let mut got = rows.clone();
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(got, expected);

    // And they come in reported-start order
    assert!(rows.windows(2).all(|w| w[0].window.start <= w[1].window.start), "{rows:?}");

    // And a later start gives the same rows in the same order, less the earlier hours
    let later = billing_rows(store.as_ref(), &ours, "2026-11-01T01:00:00Z", None).await;
    let tail: Vec<_> = rows.iter().filter(|r| r.window.start >= t("2026-11-01T01:00:00Z")).cloned().collect();
    assert_eq!(later, tail);
    assert_eq!(later.len(), 8);

    // And an end leaves out the hours reported at or after it
    let first =
        billing_rows(store.as_ref(), &ours, "2026-11-01T00:00:00Z", Some("2026-11-01T01:00:00Z")).await;
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|r| r.window == hour("2026-11-01T00:00:00Z")));

    // And the other billing subscription has only its own stamp's rows; unmapped rows belong to none
    let other = billing_rows(store.as_ref(), &theirs, "2026-11-01T00:00:00Z", None).await;
    assert_eq!(other.len(), 6);
    assert!(other.iter().all(|r| r.stamp_id == a.id && r.row.subscription_id == TENANT_B));
    assert!(billing_rows(store.as_ref(), "billing-nobody", "2026-11-01T00:00:00Z", None).await.is_empty());
}
