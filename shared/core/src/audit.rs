//! The audit trail: who changed which stamp or mapping, when, and which fields from what to what.
//!
//! A record is written by the store in the same transaction as the change it records, so a change
//! without its record (or a record of a change that did not happen) cannot be committed. The core
//! decides what a record says ([`AuditRecord`]'s constructors, the field diff); a store only carries
//! it out: it reads the stored state inside its transaction, hands it to a constructor here, and
//! writes the change and the record together.
//!
//! Secrets never enter a record. A stamp row holds no secret (only the secret's *name*); a credential
//! given with a change is recorded as the field `credential` having changed, with no value.

use crate::mapping::SubscriptionMapping;
use crate::ports::{MappingStore, StampRegistry, StoreError};
use crate::stamp::{Stamp, StampId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
/// A record's id; re-exported so that a store reads it back without a dependency of its own.
pub use uuid::Uuid;

/// Who made a change, as the platform identified the caller: `aws-iam:<user ARN>`,
/// `azure-principal:<name> (<id>)`, `api-token`, `cli:<OS user>`. Never a credential or token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

/// Longest actor text kept; a platform identity is far shorter (an IAM ARN is at most 2048 bytes,
/// but real ones are under 200).
const ACTOR_MAX_CHARS: usize = 256;

impl Actor {
    /// An actor from identity text the platform vouched for. Control characters go (the text ends up
    /// on operators' terminals) and the text is cut at [`ACTOR_MAX_CHARS`].
    pub fn new(identity: &str) -> Self {
        let clean: String =
            identity.chars().filter(|c| !c.is_control()).take(ACTOR_MAX_CHARS).collect::<String>();
        let clean = clean.trim();
        Self(if clean.is_empty() { "unknown".to_owned() } else { clean.to_owned() })
    }

    /// A change made through the store's plain writes (tests, seeding): nobody is named, but the
    /// change is still recorded.
    pub fn unattributed() -> Self {
        Self("unattributed".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    #[serde(rename = "stamp.register")]
    StampRegister,
    #[serde(rename = "stamp.update")]
    StampUpdate,
    /// An update whose only change is `enabled` to true.
    #[serde(rename = "stamp.enable")]
    StampEnable,
    /// An update whose only change is `enabled` to false.
    #[serde(rename = "stamp.disable")]
    StampDisable,
    #[serde(rename = "stamp.remove")]
    StampRemove,
    #[serde(rename = "mapping.set")]
    MappingSet,
    /// A mapping set by an import (`mapping import`): one record per mapping of the file.
    #[serde(rename = "mapping.import")]
    MappingImport,
    #[serde(rename = "mapping.remove")]
    MappingRemove,
}

impl AuditAction {
    pub const ALL: [AuditAction; 8] = [
        AuditAction::StampRegister,
        AuditAction::StampUpdate,
        AuditAction::StampEnable,
        AuditAction::StampDisable,
        AuditAction::StampRemove,
        AuditAction::MappingSet,
        AuditAction::MappingImport,
        AuditAction::MappingRemove,
    ];

    /// The name stored and shown (`stamp.update`).
    pub fn name(self) -> &'static str {
        match self {
            AuditAction::StampRegister => "stamp.register",
            AuditAction::StampUpdate => "stamp.update",
            AuditAction::StampEnable => "stamp.enable",
            AuditAction::StampDisable => "stamp.disable",
            AuditAction::StampRemove => "stamp.remove",
            AuditAction::MappingSet => "mapping.set",
            AuditAction::MappingImport => "mapping.import",
            AuditAction::MappingRemove => "mapping.remove",
        }
    }

    /// The action a stored name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One field of a change. `old` is absent for a field that came into being (a registration), `new`
/// for one that went (a removal); a secret field has neither, only `secret: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldChange {
    /// The field as the API names it (`adminArmEndpoint`, `billingSubscriptionId`).
    pub field: String,
    /// `Some(null)` is a value (the field was empty) and stays one when read back.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// A secret changed: recorded that it did, never what it was or is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// A member that is there is `Some`, `null` included (serde's own `Option` reads `null` as `None`,
/// which would turn an empty value into no value); a missing one is `None` (`default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl FieldChange {
    fn values(field: &str, old: Option<Value>, new: Option<Value>) -> Self {
        Self { field: field.to_owned(), old, new, secret: false }
    }

    /// The stamp's credential changed (a new secret value, or another secret named).
    pub fn credential() -> Self {
        Self { field: CREDENTIAL_FIELD.to_owned(), old: None, new: None, secret: true }
    }
}

/// The field a credential change is recorded under.
pub const CREDENTIAL_FIELD: &str = "credential";

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: AuditAction,
    pub stamp_id: StampId,
    /// The stamp's name when the change was made (a removed stamp's name stays readable here).
    pub stamp_name: String,
    /// The tenant subscription a mapping change is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    pub changes: Vec<FieldChange>,
}

/// Who asks for a change and when: handed with each audited write, the rest of the record is made
/// from what the store finds inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub actor: Actor,
    pub at: DateTime<Utc>,
}

impl Attribution {
    /// Now, to the millisecond: what every store keeps of a time.
    pub fn now(actor: Actor) -> Self {
        Self { actor, at: chrono::SubsecRound::trunc_subsecs(Utc::now(), 3) }
    }

    fn record(&self, action: AuditAction, stamp: (&StampId, &str), changes: Vec<FieldChange>) -> AuditRecord {
        AuditRecord {
            id: Uuid::new_v4(),
            at: self.at,
            actor: self.actor.clone(),
            action,
            stamp_id: stamp.0.clone(),
            stamp_name: stamp.1.to_owned(),
            subscription: None,
            changes,
        }
    }

    /// A stamp registered: every field, with its new value.
    pub fn registered(&self, stamp: &Stamp) -> AuditRecord {
        let changes = stamp_fields(stamp)
            .into_iter()
            .map(|(field, value)| FieldChange::values(&field, None, Some(value)))
            .chain(std::iter::once(FieldChange::credential()))
            .collect();
        self.record(AuditAction::StampRegister, (&stamp.id, &stamp.name), changes)
    }

    /// A stamp changed from `old` to `new`: the fields that differ, and `credential` when a new one
    /// was given. `None` when nothing changed at all (nothing to record).
    pub fn updated(&self, old: &Stamp, new: &Stamp, credential_replaced: bool) -> Option<AuditRecord> {
        let before = stamp_fields(old);
        let mut changes: Vec<FieldChange> = stamp_fields(new)
            .into_iter()
            .filter_map(|(field, value)| {
                let previous = before.iter().find(|(f, _)| *f == field).map(|(_, v)| v.clone());
                (previous.as_ref() != Some(&value))
                    .then(|| FieldChange::values(&field, previous, Some(value)))
            })
            .collect();
        if credential_replaced {
            changes.push(FieldChange::credential());
        }
        if changes.is_empty() {
            return None;
        }
        let action = match changes.as_slice() {
            [only] if only.field == "enabled" && only.new == Some(Value::Bool(true)) => {
                AuditAction::StampEnable
            }
            [only] if only.field == "enabled" => AuditAction::StampDisable,
            _ => AuditAction::StampUpdate,
        };
        Some(self.record(action, (&new.id, &new.name), changes))
    }

    /// A stamp removed: every field it had, with its last value.
    pub fn removed(&self, stamp: &Stamp) -> AuditRecord {
        let changes = stamp_fields(stamp)
            .into_iter()
            .map(|(field, value)| FieldChange::values(&field, Some(value), None))
            .collect();
        self.record(AuditAction::StampRemove, (&stamp.id, &stamp.name), changes)
    }

    /// A mapping set (`MappingSet` or `MappingImport`), over `old_billing` when one existed. `None`
    /// when the mapping already said exactly that.
    pub fn mapping_set(
        &self,
        action: AuditAction,
        stamp_name: &str,
        mapping: &SubscriptionMapping,
        old_billing: Option<&str>,
    ) -> Option<AuditRecord> {
        if old_billing == Some(mapping.billing_subscription_id.as_str()) {
            return None;
        }
        let change = FieldChange::values(
            BILLING_FIELD,
            old_billing.map(Value::from),
            Some(Value::from(mapping.billing_subscription_id.as_str())),
        );
        let mut record = self.record(action, (&mapping.stamp_id, stamp_name), vec![change]);
        record.subscription = Some(mapping.external_subscription_id.clone());
        Some(record)
    }

    /// A mapping removed; it billed to `old_billing`.
    pub fn mapping_removed(
        &self,
        stamp: (&StampId, &str),
        external_subscription_id: &str,
        old_billing: &str,
    ) -> AuditRecord {
        let change = FieldChange::values(BILLING_FIELD, Some(Value::from(old_billing)), None);
        let mut record = self.record(AuditAction::MappingRemove, stamp, vec![change]);
        record.subscription = Some(external_subscription_id.to_owned());
        record
    }
}

const BILLING_FIELD: &str = "billingSubscriptionId";

/// A stamp's recorded fields, named as the API names them (the connection's fields at the top level,
/// as in a registration), without its id and registration time, which never change. A stamp holds no
/// secret value, so every field is recorded with its value; a new column is recorded without a change
/// here.
pub fn stamp_fields(stamp: &Stamp) -> Vec<(String, Value)> {
    let Ok(Value::Object(mut all)) = serde_json::to_value(stamp) else {
        unreachable!("a stamp serialises to a JSON object")
    };
    let connection = match all.remove("connection") {
        Some(Value::Object(connection)) => connection,
        _ => serde_json::Map::new(),
    };
    all.remove("id");
    all.remove("createdAt");
    let mut fields: Vec<(String, Value)> = connection.into_iter().chain(all).collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}

/// Which records to list: oldest first, after `after` (a cursor: the position of the previous
/// page's last record), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub stamp: Option<StampId>,
    /// Records at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub after: Option<AuditPosition>,
    pub limit: usize,
}

/// Where a record stands in the trail: the order it was written in (a number the store assigns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditPosition(pub i64);

/// A record as listed: with its position, the cursor for the page after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub position: AuditPosition,
    pub record: AuditRecord,
}

/// The record's `changes` as the stores keep them: one JSON text column.
pub fn changes_to_json(changes: &[FieldChange]) -> String {
    serde_json::to_string(changes).expect("field changes serialise")
}

/// The stored `changes` text read back; a store that cannot read its own column reports which
/// record.
pub fn changes_from_json(id: &Uuid, text: &str) -> Result<Vec<FieldChange>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Other(format!("audit record {id}: changes unreadable: {e}")))
}

/// Writes to stamps, each with its audit record in the same transaction.
#[async_trait]
pub trait AuditedStampRegistry: StampRegistry {
    /// [`StampRegistry::insert_stamp`], recorded as `stamp.register`.
    async fn register_stamp(&self, stamp: &Stamp, by: &Attribution) -> Result<(), StoreError>;
    /// [`StampRegistry::update_stamp`], recorded with the fields that differ from the stored stamp
    /// (and `credential` when `credential_replaced`); an update that changes nothing records nothing.
    async fn change_stamp(
        &self,
        stamp: &Stamp,
        credential_replaced: bool,
        by: &Attribution,
    ) -> Result<(), StoreError>;
    /// [`StampRegistry::delete_stamp`], recorded as `stamp.remove` with the stamp's last values.
    async fn remove_stamp(&self, id: &StampId, by: &Attribution) -> Result<bool, StoreError>;
}

/// Writes to mappings, each with its audit record in the same transaction.
#[async_trait]
pub trait AuditedMappingStore: MappingStore {
    /// [`MappingStore::set_mappings`], one record per mapping whose billing subscription changed,
    /// with `action` (`mapping.set` or `mapping.import`).
    async fn record_mappings(
        &self,
        mappings: &[SubscriptionMapping],
        action: AuditAction,
        by: &Attribution,
    ) -> Result<u64, StoreError>;
    /// [`MappingStore::remove_mapping`], recorded as `mapping.remove`.
    async fn unmap(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
        by: &Attribution,
    ) -> Result<bool, StoreError>;
}

/// Reading the trail: what `azs-usage audit list` and `GET /audit` show.
#[async_trait]
pub trait AuditTrail: Send + Sync {
    async fn audit_records(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Everything of the audit a store provides (a part of [`crate::ports::Store`]).
pub trait AuditedStore: AuditedStampRegistry + AuditedMappingStore + AuditTrail {}
impl<T: AuditedStampRegistry + AuditedMappingStore + AuditTrail> AuditedStore for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::{StampConnection, UsageQueryMode};
    use chrono::TimeZone;

    fn stamp() -> Stamp {
        Stamp {
            id: StampId("6f1c1a52-6a43-4d55-9a35-3f2a3c1f8a11".into()),
            name: "eu-1".into(),
            connection: StampConnection {
                admin_subscription_id: "11111111-1111-1111-1111-111111111111".into(),
                tenant_id: "22222222-2222-2222-2222-222222222222".into(),
                application_id: "33333333-3333-3333-3333-333333333333".into(),
                certificate_thumbprint: None,
                admin_arm_endpoint: "https://adminmanagement.eu1.example".into(),
                token_request_resource_url: None,
                authority_endpoint_url: None,
                is_adfs: false,
                ca_certificate_pem: None,
            },
            credential_secret_name: "azs-usage/stamps/6f1c".into(),
            enabled: true,
            collect_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            query_mode: UsageQueryMode::AllTenants,
            created_at: Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
        }
    }

    fn by() -> Attribution {
        Attribution { actor: Actor::new("cli:ops"), at: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap() }
    }

    #[test]
    fn an_update_records_only_the_fields_that_changed_with_old_and_new_values() {
        let old = stamp();
        let mut new = old.clone();
        new.name = "eu-1b".into();
        new.connection.admin_arm_endpoint = "https://adminmanagement.eu2.example".into();

        let record = by().updated(&old, &new, false).unwrap();

        assert_eq!(record.action, AuditAction::StampUpdate);
        assert_eq!(record.stamp_name, "eu-1b");
        assert_eq!(
            record.changes,
            vec![
                FieldChange::values(
                    "adminArmEndpoint",
                    Some("https://adminmanagement.eu1.example".into()),
                    Some("https://adminmanagement.eu2.example".into())
                ),
                FieldChange::values("name", Some("eu-1".into()), Some("eu-1b".into())),
            ]
        );
    }

    #[test]
    fn a_new_credential_is_recorded_as_changed_without_any_value() {
        let record = by().updated(&stamp(), &stamp(), true).unwrap();
        let json = serde_json::to_value(&record.changes).unwrap();
        assert_eq!(json, serde_json::json!([{ "field": "credential", "secret": true }]));
    }

    #[test]
    fn an_empty_value_reads_back_as_a_value_and_a_missing_one_as_none() {
        let mut old = stamp();
        old.connection.certificate_thumbprint = Some("AB".into());
        let record = by().updated(&old, &stamp(), false).unwrap();
        let text = changes_to_json(&record.changes);
        assert_eq!(text, r#"[{"field":"certificateThumbprint","old":"AB","new":null}]"#);
        assert_eq!(changes_from_json(&record.id, &text).unwrap(), record.changes);
        let credential = changes_from_json(&record.id, r#"[{"field":"credential","secret":true}]"#).unwrap();
        assert_eq!(credential, vec![FieldChange::credential()]);
    }

    #[test]
    fn enabling_alone_is_stamp_enable_and_an_update_that_changes_nothing_records_nothing() {
        let mut off = stamp();
        off.enabled = false;
        assert_eq!(by().updated(&off, &stamp(), false).unwrap().action, AuditAction::StampEnable);
        assert_eq!(by().updated(&stamp(), &off, false).unwrap().action, AuditAction::StampDisable);
        assert_eq!(by().updated(&stamp(), &stamp(), false), None);
    }

    #[test]
    fn a_registration_names_every_field_but_the_id_and_registration_time() {
        let record = by().registered(&stamp());
        let fields: Vec<&str> = record.changes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"adminArmEndpoint") && fields.contains(&"enabled"));
        assert!(!fields.contains(&"id") && !fields.contains(&"createdAt") && !fields.contains(&"connection"));
        assert!(record.changes.iter().all(|c| c.old.is_none()));
    }

    #[test]
    fn actions_round_trip_through_their_stored_names_and_actors_lose_control_characters() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::from_name(action.name()), Some(action));
            assert_eq!(serde_json::to_value(action).unwrap(), Value::from(action.name()));
        }
        assert_eq!(Actor::new("aws-iam:arn\u{1b}[31m").as_str(), "aws-iam:arn[31m");
        assert_eq!(Actor::new(" \n").as_str(), "unknown");
    }
}
