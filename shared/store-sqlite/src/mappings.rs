//! Subscription mappings (`subscription_mappings`): the seed's `[dbo].[SubscriptionMapper]`. Rows are
//! mapped when written (see `ledger`); setting a mapping back-fills the stamp's still-unmapped rows of
//! that subscription in the same transaction, and never touches rows already mapped.

use crate::SqliteStore;
use crate::codec::{get_millis, get_secs, get_u64, millis};
use crate::db::Failure;
use async_trait::async_trait;
use azs_core::audit::{Actor, Attribution, AuditAction, AuditedMappingStore};
use azs_core::mapping::{SubscriptionMapping, UnmappedSubscription};
use azs_core::ports::{MappingStore, StoreError};
use azs_core::stamp::StampId;
use azs_core::usage::normalize_subscription_id;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// `billing_subscription_id IS NULL` lets both read the partial index `usage_rows_unmapped` only.
pub(crate) const BACK_FILL: &str = "UPDATE usage_rows SET billing_subscription_id = ?3
    WHERE tenant_no = (SELECT tenant_no FROM tenant_numbers WHERE stamp_no = ?1 AND subscription_key = ?2)
        AND billing_subscription_id IS NULL";
pub(crate) const UNMAPPED: &str =
    "SELECT s.id, t.subscription_key, count(*), min(u.usage_start), max(u.usage_end)
    FROM stamps s JOIN tenant_numbers t ON t.stamp_no = s.stamp_no
        JOIN usage_rows u ON u.tenant_no = t.tenant_no
    WHERE u.billing_subscription_id IS NULL AND (?1 IS NULL OR s.id = ?1)
    GROUP BY s.id, t.subscription_key
    ORDER BY s.id, t.subscription_key";

#[async_trait]
impl MappingStore for SqliteStore {
    async fn set_mapping(&self, mapping: &SubscriptionMapping) -> Result<u64, StoreError> {
        self.set_mappings(std::slice::from_ref(mapping)).await
    }

    async fn set_mappings(&self, mappings: &[SubscriptionMapping]) -> Result<u64, StoreError> {
        let by = Attribution::now(Actor::unattributed());
        self.record_mappings(mappings, AuditAction::MappingSet, &by).await
    }

    async fn remove_mapping(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
    ) -> Result<bool, StoreError> {
        self.unmap(stamp, external_subscription_id, &Attribution::now(Actor::unattributed())).await
    }

    async fn list_mappings(&self, stamp: Option<&StampId>) -> Result<Vec<SubscriptionMapping>, StoreError> {
        let stamp = stamp.cloned();
        self.run(move |db| {
            db.read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT stamp_id, external_subscription_id, billing_subscription_id, updated_at
                     FROM subscription_mappings WHERE ?1 IS NULL OR stamp_id = ?1
                     ORDER BY stamp_id, external_subscription_id",
                )?;
                let mappings = stmt
                    .query_map([stamp.as_ref().map(StampId::as_str)], |r| {
                        Ok(SubscriptionMapping {
                            stamp_id: StampId(r.get(0)?),
                            external_subscription_id: r.get(1)?,
                            billing_subscription_id: r.get(2)?,
                            updated_at: get_millis(r, 3)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(mappings)
            })
        })
        .await
    }

    /// Registered stamps only: a deleted stamp's rows stay, but there is nothing left to map them to.
    async fn unmapped(&self, stamp: Option<&StampId>) -> Result<Vec<UnmappedSubscription>, StoreError> {
        let stamp = stamp.cloned();
        self.run(move |db| {
            db.read(|conn| {
                let mut stmt = conn.prepare_cached(UNMAPPED)?;
                let unmapped = stmt
                    .query_map([stamp.as_ref().map(StampId::as_str)], |r| {
                        Ok(UnmappedSubscription {
                            stamp_id: StampId(r.get(0)?),
                            external_subscription_id: r.get(1)?,
                            rows: get_u64(r, 2)?,
                            first_usage: Some(get_secs(r, 3)?),
                            last_usage: Some(get_secs(r, 4)?),
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(unmapped)
            })
        })
        .await
    }
}

#[async_trait]
impl AuditedMappingStore for SqliteStore {
    async fn record_mappings(
        &self,
        mappings: &[SubscriptionMapping],
        action: AuditAction,
        by: &Attribution,
    ) -> Result<u64, StoreError> {
        let (mappings, by) = (mappings.to_vec(), by.clone());
        self.run(move |db| db.write(|conn| set(conn, &mappings, action, &by))).await
    }

    async fn unmap(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
        by: &Attribution,
    ) -> Result<bool, StoreError> {
        let (stamp, by) = (stamp.clone(), by.clone());
        let external = normalize_subscription_id(external_subscription_id);
        self.run(move |db| db.write(|conn| remove(conn, &stamp, &external, &by))).await
    }
}

/// Removes one mapping and records what it billed to, in one transaction.
fn remove(conn: &mut Connection, stamp: &StampId, external: &str, by: &Attribution) -> Result<bool, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(old) = billing_of(&tx, stamp, external)? else { return Ok(false) };
    let name = crate::stamps::name_of(&tx, stamp)?.unwrap_or_default();
    crate::audit::write(&tx, &by.mapping_removed((stamp, &name), external, &old))?;
    tx.execute(
        "DELETE FROM subscription_mappings WHERE stamp_id = ?1 AND external_subscription_id = ?2",
        (stamp.as_str(), external),
    )?;
    tx.commit()?;
    Ok(true)
}

/// The billing subscription a tenant subscription maps to now, inside the caller's transaction.
fn billing_of(tx: &Connection, stamp: &StampId, external: &str) -> rusqlite::Result<Option<String>> {
    tx.prepare_cached(
        "SELECT billing_subscription_id FROM subscription_mappings
         WHERE stamp_id = ?1 AND external_subscription_id = ?2",
    )?
    .query_row((stamp.as_str(), external), |r| r.get(0))
    .optional()
}

/// All mappings, their back-fills and their audit records in one transaction: an unknown stamp
/// anywhere writes nothing.
fn set(
    conn: &mut Connection,
    mappings: &[SubscriptionMapping],
    action: AuditAction,
    by: &Attribution,
) -> Result<u64, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut back_filled = 0;
    for mapping in mappings {
        let external = normalize_subscription_id(&mapping.external_subscription_id);
        let stamp = mapping.stamp_id.as_str();
        let (stamp_no, name): (i64, String) = tx
            .prepare_cached("SELECT stamp_no, name FROM stamps WHERE id = ?1")?
            .query_row([stamp], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
            .ok_or_else(|| StoreError::UnknownStamp(mapping.stamp_id.clone()))?;
        let old = billing_of(&tx, &mapping.stamp_id, &external)?;
        let mut recorded = mapping.clone();
        recorded.external_subscription_id = external.clone();
        if let Some(record) = by.mapping_set(action, &name, &recorded, old.as_deref()) {
            crate::audit::write(&tx, &record)?;
        }
        tx.prepare_cached(
            "INSERT INTO subscription_mappings (stamp_id, external_subscription_id, billing_subscription_id, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (stamp_id, external_subscription_id) DO UPDATE SET
                 billing_subscription_id = excluded.billing_subscription_id, updated_at = excluded.updated_at",
        )?
        .execute((stamp, external.as_str(), mapping.billing_subscription_id.as_str(), millis(mapping.updated_at)))?;
        back_filled += tx.prepare_cached(BACK_FILL)?.execute((
            stamp_no,
            external.as_str(),
            mapping.billing_subscription_id.as_str(),
        ))? as u64;
    }
    tx.commit()?;
    Ok(back_filled)
}
