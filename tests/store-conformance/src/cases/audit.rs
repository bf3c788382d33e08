//! `AuditedStampRegistry`, `AuditedMappingStore`, `AuditTrail`: every change to a stamp or a mapping
//! leaves one record, written with the change or not at all, listed in the order written.

use crate::fixtures::*;
use azs_core::SubscriptionMapping;
use azs_core::audit::{Actor, Attribution, AuditAction, AuditEntry, AuditQuery, FieldChange};
use azs_core::ports::{Store, StoreError};
use azs_core::stamp::StampId;
use std::sync::Arc;

fn by(actor: &str, at: &str) -> Attribution {
    Attribution { actor: Actor::new(actor), at: t(at) }
}

async fn trail(store: &dyn Store, stamp: &StampId) -> Vec<AuditEntry> {
    let query = AuditQuery { stamp: Some(stamp.clone()), limit: 1000, ..AuditQuery::default() };
    store.audit_records(&query).await.expect("the trail reads")
}

fn change<'a>(entry: &'a AuditEntry, field: &str) -> &'a FieldChange {
    entry
        .record
        .changes
        .iter()
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no {field} in {entry:?}"))
}

fn mapping(stamp: &StampId, external: &str, billing: &str) -> SubscriptionMapping {
    SubscriptionMapping {
        stamp_id: stamp.clone(),
        external_subscription_id: external.into(),
        billing_subscription_id: billing.into(),
        updated_at: t("2026-12-01T10:00:00Z"),
    }
}

pub async fn a_stamp_change_is_recorded_with_who_when_and_each_changed_fields_old_and_new_value(
    store: Arc<dyn Store>,
) {
    // Given a stamp registered by one caller
    let s = stamp("eu-1");
    store
        .register_stamp(&s, &by("aws-iam:arn:aws:iam::123456789012:user/ops", "2026-12-01T10:00:00Z"))
        .await
        .unwrap();

    // When another caller moves its admin ARM endpoint, renames it and brings a new credential
    let mut changed = s.clone();
    changed.name = "eu-1-renamed".into();
    changed.connection.admin_arm_endpoint = format!("{}/moved", s.connection.admin_arm_endpoint);
    store.change_stamp(&changed, true, &by("cli:alice", "2026-12-01T11:00:00Z")).await.unwrap();

    // Then the trail holds the registration and the update, in that order, each with its caller and time
    let entries = trail(store.as_ref(), &s.id).await;
    let actions: Vec<AuditAction> = entries.iter().map(|e| e.record.action).collect();
    assert_eq!(actions, vec![AuditAction::StampRegister, AuditAction::StampUpdate]);
    assert!(entries[0].position < entries[1].position);
    let (registered, update) = (&entries[0].record, &entries[1].record);
    assert_eq!(registered.actor.as_str(), "aws-iam:arn:aws:iam::123456789012:user/ops");
    assert_eq!(registered.at, t("2026-12-01T10:00:00Z"));
    assert_eq!(registered.stamp_name, "eu-1");
    assert_eq!(
        change(&entries[0], "adminArmEndpoint").new.as_ref().and_then(|v| v.as_str()),
        Some(s.connection.admin_arm_endpoint.as_str())
    );
    assert_eq!(
        (update.actor.as_str(), update.at, update.stamp_id.clone()),
        ("cli:alice", t("2026-12-01T11:00:00Z"), s.id.clone())
    );
    assert_eq!(update.stamp_name, "eu-1-renamed");
    // And only what changed, with old and new values; the credential as changed, without any value
    let fields: Vec<&str> = update.changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, vec!["adminArmEndpoint", "name", "credential"]);
    let name = change(&entries[1], "name");
    assert_eq!(
        (name.old.as_ref().and_then(|v| v.as_str()), name.new.as_ref().and_then(|v| v.as_str())),
        (Some("eu-1"), Some("eu-1-renamed"))
    );
    let endpoint = change(&entries[1], "adminArmEndpoint");
    assert_eq!(
        endpoint.old.as_ref().and_then(|v| v.as_str()),
        Some(s.connection.admin_arm_endpoint.as_str())
    );
    assert_eq!(
        endpoint.new.as_ref().and_then(|v| v.as_str()),
        Some(changed.connection.admin_arm_endpoint.as_str())
    );
    let credential = change(&entries[1], "credential");
    assert!(credential.secret && credential.old.is_none() && credential.new.is_none(), "{credential:?}");

    // And disabling alone is recorded as stamp.disable; an update that changes nothing records nothing
    let mut off = changed.clone();
    off.enabled = false;
    store.change_stamp(&off, false, &by("cli:alice", "2026-12-01T12:00:00Z")).await.unwrap();
    store.change_stamp(&off, false, &by("cli:alice", "2026-12-01T12:30:00Z")).await.unwrap();
    let entries = trail(store.as_ref(), &s.id).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[2].record.action, AuditAction::StampDisable);
}

pub async fn a_refused_change_writes_no_audit_record(store: Arc<dyn Store>) {
    // Given two stamps
    let (a, b) = (stamp("eu-1"), stamp("eu-2"));
    store.register_stamp(&a, &by("cli:alice", "2026-12-01T10:00:00Z")).await.unwrap();
    store.register_stamp(&b, &by("cli:alice", "2026-12-01T10:00:00Z")).await.unwrap();

    // When one is changed into a duplicate of the other, registered twice, a mapping names an unknown
    // stamp in an import, and an unknown stamp is changed
    let mut duplicate = b.clone();
    duplicate.connection.admin_arm_endpoint = a.connection.admin_arm_endpoint.clone();
    let refused = store.change_stamp(&duplicate, true, &by("cli:mallory", "2026-12-01T11:00:00Z")).await;
    assert!(matches!(refused, Err(StoreError::DuplicateStamp(_))), "{refused:?}");
    let again = store.register_stamp(&a, &by("cli:mallory", "2026-12-01T11:00:00Z")).await;
    assert!(again.is_err());
    let unknown = stamp("never registered");
    let import = [mapping(&b.id, TENANT_A, "billing-1"), mapping(&unknown.id, TENANT_B, "billing-2")];
    let refused = store
        .record_mappings(&import, AuditAction::MappingImport, &by("cli:mallory", "2026-12-01T11:00:00Z"))
        .await;
    assert!(matches!(refused, Err(StoreError::UnknownStamp(_))), "{refused:?}");
    assert!(store.change_stamp(&unknown, false, &by("cli:mallory", "2026-12-01T11:00:00Z")).await.is_err());
    assert!(!store.remove_stamp(&unknown.id, &by("cli:mallory", "2026-12-01T11:00:00Z")).await.unwrap());
    assert!(!store.unmap(&b.id, TENANT_A, &by("cli:mallory", "2026-12-01T11:00:00Z")).await.unwrap());

    // Then nothing changed and each stamp has only its registration on record
    for s in [&a, &b] {
        let entries = trail(store.as_ref(), &s.id).await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].record.action, AuditAction::StampRegister);
    }
    assert!(trail(store.as_ref(), &unknown.id).await.is_empty());
    assert_eq!(store.get_stamp(&b.id).await.unwrap(), Some(b.clone()));
    assert!(store.list_mappings(Some(&b.id)).await.unwrap().is_empty());
}

pub async fn mapping_changes_are_recorded_with_the_subscription_and_the_old_and_new_billing_subscription(
    store: Arc<dyn Store>,
) {
    // Given a stamp
    let s = stamp("eu-1");
    store.register_stamp(&s, &by("cli:alice", "2026-12-01T10:00:00Z")).await.unwrap();

    // When a mapping is set (in the API's casing), changed by an import, set again unchanged, and removed
    store
        .record_mappings(
            &[mapping(&s.id, TENANT_A, "billing-1")],
            AuditAction::MappingSet,
            &by("api-token", "2026-12-01T11:00:00Z"),
        )
        .await
        .unwrap();
    store
        .record_mappings(
            &[mapping(&s.id, TENANT_A, "billing-2")],
            AuditAction::MappingImport,
            &by("api-token", "2026-12-01T12:00:00Z"),
        )
        .await
        .unwrap();
    store
        .record_mappings(
            &[mapping(&s.id, TENANT_A, "billing-2")],
            AuditAction::MappingSet,
            &by("api-token", "2026-12-01T12:30:00Z"),
        )
        .await
        .unwrap();
    assert!(store.unmap(&s.id, TENANT_A, &by("cli:bob", "2026-12-01T13:00:00Z")).await.unwrap());

    // Then three records follow the registration, each naming the normalised subscription
    let entries = trail(store.as_ref(), &s.id).await;
    let mappings: Vec<_> = entries.iter().skip(1).map(|e| &e.record).collect();
    let actions: Vec<AuditAction> = mappings.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        vec![AuditAction::MappingSet, AuditAction::MappingImport, AuditAction::MappingRemove]
    );
    let tenant = TENANT_A.to_lowercase();
    for record in &mappings {
        assert_eq!(record.subscription.as_deref(), Some(tenant.as_str()));
        assert_eq!(record.stamp_name, "eu-1");
    }
    let billing = |i: usize| {
        let c = &mappings[i].changes[0];
        assert_eq!(c.field, "billingSubscriptionId");
        (
            c.old.as_ref().and_then(|v| v.as_str()).map(str::to_owned),
            c.new.as_ref().and_then(|v| v.as_str()).map(str::to_owned),
        )
    };
    assert_eq!(billing(0), (None, Some("billing-1".to_owned())));
    assert_eq!(billing(1), (Some("billing-1".to_owned()), Some("billing-2".to_owned())));
    assert_eq!(billing(2), (Some("billing-2".to_owned()), None));
    assert_eq!(mappings[2].actor.as_str(), "cli:bob");
}

pub async fn a_removed_stamps_history_stays_with_its_removal_and_last_values(store: Arc<dyn Store>) {
    // Given a stamp
    let s = stamp("eu-1");
    store.register_stamp(&s, &by("cli:alice", "2026-12-01T10:00:00Z")).await.unwrap();

    // When it is removed
    assert!(store.remove_stamp(&s.id, &by("cli:bob", "2026-12-01T11:00:00Z")).await.unwrap());

    // Then its trail still reads, ending with the removal and the values it had
    let entries = trail(store.as_ref(), &s.id).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let removal = &entries[1].record;
    assert_eq!(
        (removal.action, removal.actor.as_str(), removal.stamp_name.as_str()),
        (AuditAction::StampRemove, "cli:bob", "eu-1")
    );
    let name = change(&entries[1], "name");
    assert_eq!((name.old.as_ref().and_then(|v| v.as_str()), name.new.is_none()), (Some("eu-1"), true));
}

pub async fn the_trail_is_listed_in_the_order_written_by_stamp_time_and_cursor(store: Arc<dyn Store>) {
    // Given two stamps with changes at known times
    let (a, b) = (stamp("eu-1"), stamp("eu-2"));
    store.register_stamp(&a, &by("cli:alice", "2026-12-01T10:00:00Z")).await.unwrap();
    store.register_stamp(&b, &by("cli:alice", "2026-12-01T10:30:00Z")).await.unwrap();
    for (i, hour) in ["11", "12", "13"].iter().enumerate() {
        let billing = format!("billing-{i}");
        store
            .record_mappings(
                &[mapping(&a.id, TENANT_A, &billing)],
                AuditAction::MappingSet,
                &by("api-token", &format!("2026-12-01T{hour}:00:00Z")),
            )
            .await
            .unwrap();
    }

    // When a's trail is read two at a time, and from 12:00 on
    let first = AuditQuery { stamp: Some(a.id.clone()), limit: 2, ..AuditQuery::default() };
    let page1 = store.audit_records(&first).await.unwrap();
    let next = AuditQuery { after: page1.last().map(|e| e.position), ..first.clone() };
    let page2 = store.audit_records(&next).await.unwrap();
    let since = AuditQuery { since: Some(t("2026-12-01T12:00:00Z")), limit: 10, ..first.clone() };
    let recent = store.audit_records(&since).await.unwrap();

    // Then the pages follow each other without a gap or a repeat, hold only a's records, and the
    // time filter keeps records at or after it
    let times = |entries: &[AuditEntry]| entries.iter().map(|e| e.record.at).collect::<Vec<_>>();
    assert_eq!(times(&page1), vec![t("2026-12-01T10:00:00Z"), t("2026-12-01T11:00:00Z")]);
    assert_eq!(times(&page2), vec![t("2026-12-01T12:00:00Z"), t("2026-12-01T13:00:00Z")]);
    assert!(page1.iter().chain(&page2).all(|e| e.record.stamp_id == a.id));
    assert_eq!(times(&recent), vec![t("2026-12-01T12:00:00Z"), t("2026-12-01T13:00:00Z")]);
    // And the whole trail (no stamp filter) holds b's registration between a's
    let all = store.audit_records(&AuditQuery { limit: 100_000, ..AuditQuery::default() }).await.unwrap();
    let ours: Vec<&StampId> =
        all.iter().map(|e| &e.record.stamp_id).filter(|id| **id == a.id || **id == b.id).collect();
    assert_eq!(ours, vec![&a.id, &b.id, &a.id, &a.id, &a.id]);
}
