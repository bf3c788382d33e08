//! `StampRegistry`: stamps are registered once, read back as written, updated in place, and deleted
//! without losing the usage they reported.

use crate::fixtures::*;
use azs_core::ports::{ExportFilter, Store, StoreError};
use azs_core::stamp::UsageQueryMode;
use azs_core::{Stamp, SubscriptionMapping};
use std::sync::Arc;

pub async fn registering_the_same_admin_endpoint_and_subscription_again_names_the_existing_stamp(
    store: Arc<dyn Store>,
) {
    // Given a registered stamp
    let first = stamp("eu-1");
    store.insert_stamp(&first).await.unwrap();

    // When the same stamp is registered again under another id, spelled differently
    let mut again = stamp("eu-1 again");
    again.connection.admin_arm_endpoint = format!("{}/", first.connection.admin_arm_endpoint.to_uppercase());
    again.connection.admin_subscription_id =
        format!("{{{}}}", first.connection.admin_subscription_id.to_uppercase());
    let refused = store.insert_stamp(&again).await;

    // Then it is refused naming the stamp already registered, and nothing of it is stored
    match refused {
        Err(StoreError::DuplicateStamp(existing)) => assert_eq!(existing, first.id),
        other => panic!("expected DuplicateStamp({}), got {other:?}", first.id),
    }
    assert_eq!(store.get_stamp(&again.id).await.unwrap(), None);
    assert_eq!(store.get_status(&again.id).await.unwrap(), None);

    // And the same endpoint with another admin subscription is another stamp
    let mut sibling = stamp("eu-1 other provider subscription");
    sibling.connection.admin_arm_endpoint = first.connection.admin_arm_endpoint.clone();
    sibling.connection.admin_subscription_id = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d".into();
    store.insert_stamp(&sibling).await.expect("a different admin subscription is a different stamp");
}

pub async fn a_registered_stamp_reads_back_exactly_as_written(store: Arc<dyn Store>) {
    // Given a stamp with every optional field set
    let mut s = stamp("adfs-stamp");
    s.connection.certificate_thumbprint = Some("3A1F5C0B9E7D2A4C6B8E0F1D3C5A7B9E1F2D4C6A".into());
    s.connection.token_request_resource_url =
        Some("https://adminmanagement.adfs.azurestack.local/1f3c9a7e-5b2d-4e8f-9a6c-0d1e2f3a4b5c".into());
    s.connection.authority_endpoint_url = Some("https://adfs.local.azurestack.external/adfs/".into());
    s.connection.is_adfs = true;
    s.connection.tenant_id = "adfs".into();
    s.connection.ca_certificate_pem =
        Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    s.query_mode = UsageQueryMode::PerSubscriber;
    s.enabled = false;

    // When it is registered
    store.insert_stamp(&s).await.unwrap();

    // Then it reads back field for field, alone and in the list
    assert_eq!(store.get_stamp(&s.id).await.unwrap(), Some(s.clone()));
    let listed: Vec<Stamp> =
        store.list_stamps().await.unwrap().into_iter().filter(|x| x.id == s.id).collect();
    assert_eq!(listed, vec![s]);
}

pub async fn updating_a_stamp_changes_its_connection_but_not_its_progress(store: Arc<dyn Store>) {
    // Given a stamp that has collected a window, and another stamp
    let mut s = registered_and_leased(store.as_ref(), "eu-1").await;
    advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &[]).await;
    let other = stamp("eu-2");
    store.insert_stamp(&other).await.unwrap();

    // When its connection and settings change
    s.name = "eu-1 renamed".into();
    s.enabled = false;
    s.connection.authority_endpoint_url = Some("https://login.microsoftonline.com/".into());
    s.connection.token_request_resource_url = Some("https://management.azure.example/abc".into());
    s.query_mode = UsageQueryMode::PerSubscriber;
    store.update_stamp(&s).await.unwrap();

    // Then it reads back changed, and its watermark stays where collection left it
    assert_eq!(store.get_stamp(&s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(watermark(store.as_ref(), &s.id).await, hour(COLLECT_FROM).end);

    // And it cannot take another stamp's endpoint, nor can an unknown stamp be updated
    let mut clash = s.clone();
    clash.connection.admin_arm_endpoint = other.connection.admin_arm_endpoint.clone();
    match store.update_stamp(&clash).await {
        Err(StoreError::DuplicateStamp(existing)) => assert_eq!(existing, other.id),
        r => panic!("expected DuplicateStamp({}), got {r:?}", other.id),
    }
    let unknown = stamp("never registered");
    assert!(
        matches!(store.update_stamp(&unknown).await, Err(StoreError::UnknownStamp(id)) if id == unknown.id)
    );
}

pub async fn deleting_a_stamp_removes_its_status_lease_and_mappings_but_keeps_its_rows(
    store: Arc<dyn Store>,
) {
    // Given a leased stamp with a mapping and a committed window
    let s = registered_and_leased(store.as_ref(), "to-delete").await;
    store
        .set_mapping(&SubscriptionMapping {
            stamp_id: s.id.clone(),
            external_subscription_id: TENANT_A.to_lowercase(),
            billing_subscription_id: "billing-a".into(),
            updated_at: t("2026-11-26T11:00:00Z"),
        })
        .await
        .unwrap();
    let window = hour(COLLECT_FROM);
    let rows = [vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1.0")];
    advance(store.as_ref(), &s.id, window, &rows).await;

    // When it is deleted
    assert!(store.delete_stamp(&s.id).await.unwrap());

    // Then the stamp, its status and its mappings are gone, and a second delete finds nothing
    assert_eq!(store.get_stamp(&s.id).await.unwrap(), None);
    assert_eq!(store.get_status(&s.id).await.unwrap(), None);
    assert!(store.list_mappings(Some(&s.id)).await.unwrap().is_empty());
    assert!(!store.delete_stamp(&s.id).await.unwrap());

    // And the usage it reported can still be exported, mapped as it was written
    let kept =
        export(store.as_ref(), &ExportFilter { stamps: vec![s.id.clone()], ..Default::default() }).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].billing_subscription_id.as_deref(), Some("billing-a"));
    assert_eq!(kept[0].row, rows[0]);

    // And its lease went with it: registered again, anyone may take the stamp at once
    store.insert_stamp(&s).await.unwrap();
    assert!(store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap());
}

pub async fn removing_a_stamp_leaves_a_tombstone_with_its_watermark_that_registering_consumes(
    store: Arc<dyn Store>,
) {
    // Given a stamp collected for one hour
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &[]).await;
    let watermark = store.get_status(&s.id).await.unwrap().unwrap().watermark;

    // When it is removed
    assert!(store.delete_stamp(&s.id).await.unwrap());

    // Then a tombstone names its id and watermark, found by the same identity in any casing
    let mut same = s.connection.clone();
    same.admin_arm_endpoint = format!("{}/", same.admin_arm_endpoint.to_uppercase());
    let t = store.tombstone(&same).await.unwrap().expect("a tombstone");
    assert_eq!((t.stamp_id.clone(), t.watermark), (s.id.clone(), watermark));

    // And registering it again under that id consumes the tombstone
    let mut again = s.clone();
    again.collect_from = t.watermark;
    store.insert_stamp(&again).await.unwrap();
    assert!(store.tombstone(&s.connection).await.unwrap().is_none());
    assert_eq!(store.get_status(&s.id).await.unwrap().unwrap().watermark, watermark);
}
