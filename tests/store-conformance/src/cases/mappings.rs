//! `MappingStore`: rows are mapped to billing subscriptions when written; a new mapping back-fills rows
//! that were written unmapped; rows already mapped keep the subscription they were invoiced under.

use crate::fixtures::*;
use azs_core::SubscriptionMapping;
use azs_core::mapping::UnmappedSubscription;
use azs_core::ports::{Store, StoreError, WindowWrite};
use azs_core::stamp::StampId;
use azs_core::usage::normalize_subscription_id;
use std::sync::Arc;

fn mapping(stamp: &StampId, external: &str, billing: &str) -> SubscriptionMapping {
    SubscriptionMapping {
        stamp_id: stamp.clone(),
        external_subscription_id: external.into(),
        billing_subscription_id: billing.into(),
        updated_at: t("2026-11-26T11:00:00Z"),
    }
}

pub async fn rows_are_mapped_when_written_and_unmapped_rows_are_counted(store: Arc<dyn Store>) {
    // Given a stamp where tenant A (mapped in lower case) is billed as "billing-a" and tenant B is unmapped
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    store.set_mapping(&mapping(&s.id, &TENANT_A.to_lowercase(), "billing-a")).await.unwrap();

    // When a window with both tenants' rows is committed, tenant A's id in the API's upper case
    let rows = vec![
        vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1"),
        vm_usage(TENANT_A, "web-02", "2026-10-31T23:00:00Z", "1"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T23:00:00Z", "1"),
    ];
    let receipt = advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &rows).await;

    // Then tenant A's rows carry the billing subscription, tenant B's none, and the receipt counts B's
    assert_eq!(receipt.rows_written, 3);
    assert_eq!(receipt.unmapped_rows, 1);
    for r in rows_of(store.as_ref(), &s.id).await {
        let expected = (r.row.subscription_id == TENANT_A).then_some("billing-a");
        assert_eq!(r.billing_subscription_id.as_deref(), expected, "{}", r.row.resource_uri);
    }
    // And the subscription id is kept as the API sent it
    assert!(rows_of(store.as_ref(), &s.id).await.iter().any(|r| r.row.subscription_id == TENANT_A));
}

pub async fn setting_a_mapping_back_fills_only_that_subscriptions_unmapped_rows(store: Arc<dyn Store>) {
    // Given two stamps whose tenant A and B rows were written before any mapping existed
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let neighbour = registered_and_leased(store.as_ref(), "eu-2").await;
    let rows = vec![
        vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1"),
        vm_usage(TENANT_A, "web-02", "2026-10-31T23:00:00Z", "1"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T23:00:00Z", "1"),
    ];
    advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &rows).await;
    advance(store.as_ref(), &neighbour.id, hour(COLLECT_FROM), &rows).await;

    // When tenant A is mapped on the first stamp (its id given in another casing)
    let back_filled = store.set_mapping(&mapping(&s.id, TENANT_A, "billing-a")).await.unwrap();

    // Then exactly that stamp's tenant A rows are back-filled
    assert_eq!(back_filled, 2);
    for r in rows_of(store.as_ref(), &s.id).await {
        let expected = (r.row.subscription_id == TENANT_A).then_some("billing-a");
        assert_eq!(r.billing_subscription_id.as_deref(), expected);
    }
    assert!(rows_of(store.as_ref(), &neighbour.id).await.iter().all(|r| r.billing_subscription_id.is_none()));

    // And setting it again finds nothing left to back-fill; a mapping for an unknown stamp is refused
    assert_eq!(store.set_mapping(&mapping(&s.id, TENANT_A, "billing-a")).await.unwrap(), 0);
    let unknown = stamp("unknown");
    assert!(matches!(
        store.set_mapping(&mapping(&unknown.id, TENANT_A, "x")).await,
        Err(StoreError::UnknownStamp(id)) if id == unknown.id
    ));
}

pub async fn a_changed_mapping_applies_to_new_rows_and_leaves_mapped_rows_alone(store: Arc<dyn Store>) {
    // Given tenant A's first hour written while it was billed as "billing-old"
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    store.set_mapping(&mapping(&s.id, TENANT_A, "billing-old")).await.unwrap();
    let first = hour("2026-11-01T00:00:00Z");
    advance(store.as_ref(), &s.id, first, &[vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1")]).await;

    // When the mapping changes and the next hour is written
    let back_filled = store.set_mapping(&mapping(&s.id, TENANT_A, "billing-new")).await.unwrap();
    let second = hour("2026-11-01T01:00:00Z");
    advance(store.as_ref(), &s.id, second, &[vm_usage(TENANT_A, "web-01", "2026-11-01T00:00:00Z", "1")])
        .await;

    // Then the first hour keeps the subscription it was invoiced under, and the new hour gets the new one
    assert_eq!(back_filled, 0);
    let billed: Vec<_> = rows_of(store.as_ref(), &s.id)
        .await
        .into_iter()
        .map(|r| (r.window, r.billing_subscription_id.unwrap_or_default()))
        .collect();
    assert_eq!(billed, vec![(first, "billing-old".to_owned()), (second, "billing-new".to_owned())]);
    let listed = store.list_mappings(Some(&s.id)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].billing_subscription_id, "billing-new");
}

pub async fn replacing_a_window_keeps_the_billing_subscription_its_rows_were_billed_under_unless_remapped(
    store: Arc<dyn Store>,
) {
    // Given an hour stored while tenant A was billed as "billing-old" and tenant B had no mapping
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    store.set_mapping(&mapping(&s.id, TENANT_A, "billing-old")).await.unwrap();
    let window = hour(COLLECT_FROM);
    let stored = vec![
        vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T23:00:00Z", "2"),
    ];
    advance(store.as_ref(), &s.id, window, &stored).await;

    // When A is re-mapped to "billing-new", a tenant C absent from the hour is mapped, and the hour is
    // replaced by a re-pull that also has a new A row and a C row
    const TENANT_C: &str = "c0c0c0c0-0000-4000-8000-00000000000c";
    store.set_mapping(&mapping(&s.id, TENANT_A, "billing-new")).await.unwrap();
    store.set_mapping(&mapping(&s.id, TENANT_C, "billing-c")).await.unwrap();
    let mut repulled = stored.clone();
    repulled.push(vm_usage(TENANT_A, "web-02", "2026-10-31T23:00:00Z", "3"));
    repulled.push(vm_usage(TENANT_C, "app-01", "2026-10-31T23:00:00Z", "4"));
    let receipt =
        commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Replace { remap: false }, &repulled)
            .await
            .unwrap();

    // Then A's rows (the new one too) stay billed as the hour was billed, B stays unmapped (never billed,
    // no mapping now) and C takes its current mapping
    let billing = |vm: &str, rows: &[azs_core::ports::StoredUsageRow]| {
        let row = rows.iter().find(|r| r.row.resource_uri.ends_with(vm)).expect("the row is stored");
        row.billing_subscription_id.clone().unwrap_or_default()
    };
    let kept = rows_of(store.as_ref(), &s.id).await;
    assert_eq!(kept.len(), 4);
    assert_eq!(billing("web-01", &kept), "billing-old");
    assert_eq!(billing("web-02", &kept), "billing-old");
    assert_eq!(billing("db-01", &kept), "");
    assert_eq!(billing("app-01", &kept), "billing-c");
    assert_eq!(receipt.unmapped_rows, 1);

    // And a replace with remap maps every row with the current mappings
    commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Replace { remap: true }, &repulled)
        .await
        .unwrap();
    let remapped = rows_of(store.as_ref(), &s.id).await;
    assert_eq!(billing("web-01", &remapped), "billing-new");
    assert_eq!(billing("web-02", &remapped), "billing-new");
    assert_eq!(billing("db-01", &remapped), "");
    assert_eq!(billing("app-01", &remapped), "billing-c");

    // And a mapping removed since does not unbill rows a plain replace keeps: they were billed so
    commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Replace { remap: false }, &repulled)
        .await
        .unwrap();
    store.remove_mapping(&s.id, TENANT_A).await.unwrap();
    commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Replace { remap: false }, &repulled)
        .await
        .unwrap();
    assert_eq!(billing("web-01", &rows_of(store.as_ref(), &s.id).await), "billing-new");
}

pub async fn unmapped_lists_each_subscription_with_its_rows_and_usage_span(store: Arc<dyn Store>) {
    // Given two stamps with unmapped usage over several hours, and one mapped tenant
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let neighbour = registered_and_leased(store.as_ref(), "eu-2").await;
    store.set_mapping(&mapping(&s.id, TENANT_A, "billing-a")).await.unwrap();
    let rows = vec![
        vm_usage(TENANT_A, "web-01", "2026-10-31T22:00:00Z", "1"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T21:00:00Z", "1"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T23:00:00Z", "1"),
    ];
    advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &rows).await;
    advance(
        store.as_ref(),
        &s.id,
        hour("2026-11-01T01:00:00Z"),
        &[vm_usage(TENANT_B, "db-02", "2026-11-01T00:00:00Z", "1")],
    )
    .await;
    advance(store.as_ref(), &neighbour.id, hour(COLLECT_FROM), &rows[..1]).await;

    // When the unmapped subscriptions of the first stamp are listed
    let listed = store.unmapped(Some(&s.id)).await.unwrap();

    // Then tenant B is listed once (normalised), with its row count and first usage start to last usage end
    assert_eq!(
        listed,
        vec![UnmappedSubscription {
            stamp_id: s.id.clone(),
            external_subscription_id: normalize_subscription_id(TENANT_B),
            rows: 3,
            first_usage: Some(t("2026-10-31T21:00:00Z")),
            last_usage: Some(t("2026-11-01T01:00:00Z")),
        }]
    );

    // And across all stamps, the neighbour's unmapped tenant A shows up too
    let everywhere: Vec<_> = store
        .unmapped(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|u| u.stamp_id == s.id || u.stamp_id == neighbour.id)
        .map(|u| (u.stamp_id, u.external_subscription_id, u.rows))
        .collect();
    assert!(everywhere.contains(&(s.id.clone(), normalize_subscription_id(TENANT_B), 3)));
    assert!(everywhere.contains(&(neighbour.id.clone(), normalize_subscription_id(TENANT_A), 1)));
    assert_eq!(everywhere.len(), 2);

    // And once tenant B is mapped it is no longer listed
    store.set_mapping(&mapping(&s.id, TENANT_B, "billing-b")).await.unwrap();
    assert!(store.unmapped(Some(&s.id)).await.unwrap().is_empty());
}

pub async fn mappings_are_listed_per_stamp_and_removed_by_any_casing(store: Arc<dyn Store>) {
    // Given mappings on two stamps, one tenant id given in upper case
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let neighbour = stamp("eu-2");
    store.insert_stamp(&neighbour).await.unwrap();
    store.set_mapping(&mapping(&s.id, TENANT_A, "billing-a")).await.unwrap();
    store.set_mapping(&mapping(&s.id, TENANT_B, "billing-b")).await.unwrap();
    store.set_mapping(&mapping(&neighbour.id, TENANT_A, "billing-n")).await.unwrap();
    advance(
        store.as_ref(),
        &s.id,
        hour(COLLECT_FROM),
        &[vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1")],
    )
    .await;

    // Then each stamp lists its own, with normalised (lower-case) tenant ids, in tenant order
    let mut expected = vec![
        mapping(&s.id, &normalize_subscription_id(TENANT_A), "billing-a"),
        mapping(&s.id, &normalize_subscription_id(TENANT_B), "billing-b"),
    ];
    expected.sort_by(|a, b| a.external_subscription_id.cmp(&b.external_subscription_id));
    assert_eq!(store.list_mappings(Some(&s.id)).await.unwrap(), expected);
    let all = store.list_mappings(None).await.unwrap();
    assert!(all.contains(&mapping(&neighbour.id, &normalize_subscription_id(TENANT_A), "billing-n")));
    assert!(expected.iter().all(|m| all.contains(m)));

    // When tenant A's mapping is removed, named in the API's upper case
    assert!(store.remove_mapping(&s.id, TENANT_A).await.unwrap());

    // Then it is gone from that stamp only, a second removal finds nothing, and stored rows stay mapped
    assert!(!store.remove_mapping(&s.id, &TENANT_A.to_lowercase()).await.unwrap());
    assert_eq!(store.list_mappings(Some(&s.id)).await.unwrap().len(), 1);
    assert_eq!(store.list_mappings(Some(&neighbour.id)).await.unwrap().len(), 1);
    let stored = rows_of(store.as_ref(), &s.id).await;
    assert_eq!(stored[0].billing_subscription_id.as_deref(), Some("billing-a"));
}

pub async fn setting_many_mappings_is_all_or_nothing(store: Arc<dyn Store>) {
    // Given a stamp whose tenant A and B rows were written unmapped
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let rows = vec![
        vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T23:00:00Z", "1"),
    ];
    advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &rows).await;
    let unknown = StampId("00000000-0000-4000-8000-00000000dead".into());

    // When a batch whose last mapping names an unknown stamp is set
    let batch = [
        mapping(&s.id, TENANT_A, "billing-a"),
        mapping(&s.id, TENANT_B, "billing-b"),
        mapping(&unknown, TENANT_A, "billing-x"),
    ];
    let refused = store.set_mappings(&batch).await;

    // Then it is refused and nothing of it was written: no mapping, no back-fill
    assert!(matches!(refused, Err(StoreError::UnknownStamp(_))), "{refused:?}");
    assert!(store.list_mappings(Some(&s.id)).await.unwrap().is_empty());
    assert!(rows_of(store.as_ref(), &s.id).await.iter().all(|r| r.billing_subscription_id.is_none()));

    // And the valid part alone is written in one call, back-filling both tenants
    let back_filled = store.set_mappings(&batch[..2]).await.unwrap();
    assert_eq!(back_filled, 2);
    assert_eq!(store.list_mappings(Some(&s.id)).await.unwrap().len(), 2);
    assert!(rows_of(store.as_ref(), &s.id).await.iter().all(|r| r.billing_subscription_id.is_some()));
}
