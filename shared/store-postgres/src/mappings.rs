//! Subscription mappings (`subscription_mappings`). Rows are mapped when written (see `ledger`);
//! setting a mapping back-fills the stamp's still-unmapped rows of that subscription in the same
//! transaction, and never touches rows already mapped.
//!
//! Setting a mapping locks the stamp's row (`FOR NO KEY UPDATE`), which a window commit holds
//! `FOR SHARE`: a commit either ran before the mapping (and its unmapped rows are back-filled) or
//! after it (and maps its rows with it). Without the lock a commit could read the mappings, a mapping
//! could commit and back-fill, and the commit's rows land unmapped after the back-fill.

use crate::status::get_u64;
use crate::{Failure, PostgresStore};
use async_trait::async_trait;
use azs_core::audit::{Actor, Attribution, AuditAction, AuditedMappingStore};
use azs_core::mapping::{SubscriptionMapping, UnmappedSubscription};
use azs_core::ports::{MappingStore, StoreError};
use azs_core::stamp::StampId;
use azs_core::usage::normalize_subscription_id;

#[async_trait]
impl MappingStore for PostgresStore {
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
        let stamp = stamp.map(StampId::as_str);
        self.run("list_mappings", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT stamp_id, external_subscription_id, billing_subscription_id, updated_at
                         FROM subscription_mappings WHERE $1::text IS NULL OR stamp_id = $1
                         ORDER BY stamp_id, external_subscription_id",
                        &[&stamp],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(SubscriptionMapping {
                            stamp_id: StampId(r.try_get(0)?),
                            external_subscription_id: r.try_get(1)?,
                            billing_subscription_id: r.try_get(2)?,
                            updated_at: r.try_get(3)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    /// Registered stamps only: a deleted stamp's rows stay, but there is nothing left to map them to.
    async fn unmapped(&self, stamp: Option<&StampId>) -> Result<Vec<UnmappedSubscription>, StoreError> {
        let stamp = stamp.map(StampId::as_str);
        self.run("unmapped", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT s.id, u.subscription_key, count(*), min(u.usage_start), max(u.usage_end)
                         FROM stamps s JOIN usage_rows u ON u.stamp_no = s.stamp_no
                         WHERE u.billing_subscription_id IS NULL AND ($1::text IS NULL OR s.id = $1)
                         GROUP BY s.id, u.subscription_key
                         ORDER BY s.id, u.subscription_key",
                        &[&stamp],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(UnmappedSubscription {
                            stamp_id: StampId(r.try_get(0)?),
                            external_subscription_id: r.try_get(1)?,
                            rows: get_u64(r, 2)?,
                            first_usage: r.try_get(3)?,
                            last_usage: r.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, Failure>>()
            })
        })
        .await
    }
}

#[async_trait]
impl AuditedMappingStore for PostgresStore {
    /// All mappings, their back-fills and their audit records in one transaction: an unknown stamp
    /// anywhere writes nothing.
    async fn record_mappings(
        &self,
        mappings: &[SubscriptionMapping],
        action: AuditAction,
        by: &Attribution,
    ) -> Result<u64, StoreError> {
        // Stamps are locked in id order whatever the input's, so two calls cannot deadlock on them.
        let mut ordered: Vec<&SubscriptionMapping> = mappings.iter().collect();
        ordered.sort_by(|a, b| a.stamp_id.cmp(&b.stamp_id));
        let ordered = &ordered;
        self.run("set_mappings", |mut client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                let lock =
                    tx.prepare("SELECT stamp_no, name FROM stamps WHERE id = $1 FOR NO KEY UPDATE").await?;
                let current = tx.prepare(CURRENT_BILLING).await?;
                let upsert = tx
                    .prepare(
                        "INSERT INTO subscription_mappings (stamp_id, external_subscription_id,
                             billing_subscription_id, updated_at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (stamp_id, external_subscription_id) DO UPDATE SET
                             billing_subscription_id = excluded.billing_subscription_id,
                             updated_at = excluded.updated_at",
                    )
                    .await?;
                let back_fill = tx
                    .prepare(
                        "UPDATE usage_rows SET billing_subscription_id = $3
                         WHERE stamp_no = $1 AND subscription_key = $2 AND billing_subscription_id IS NULL",
                    )
                    .await?;
                let mut back_filled = 0;
                for mapping in ordered.iter() {
                    let external = normalize_subscription_id(&mapping.external_subscription_id);
                    let stamp = mapping.stamp_id.as_str();
                    let locked = tx
                        .query_opt(&lock, &[&stamp])
                        .await?
                        .ok_or_else(|| StoreError::UnknownStamp(mapping.stamp_id.clone()))?;
                    let (stamp_no, name): (i64, String) = (locked.try_get(0)?, locked.try_get(1)?);
                    let old: Option<String> = tx
                        .query_opt(&current, &[&stamp, &external])
                        .await?
                        .map(|r| r.try_get(0))
                        .transpose()?;
                    let mut recorded = (*mapping).clone();
                    recorded.external_subscription_id = external.clone();
                    if let Some(record) = by.mapping_set(action, &name, &recorded, old.as_deref()) {
                        crate::audit::write(&tx, &record).await?;
                    }
                    tx.execute(
                        &upsert,
                        &[&stamp, &external, &mapping.billing_subscription_id, &mapping.updated_at],
                    )
                    .await?;
                    back_filled += tx
                        .execute(&back_fill, &[&stamp_no, &external, &mapping.billing_subscription_id])
                        .await?;
                }
                tx.commit().await?;
                Ok(back_filled)
            })
        })
        .await
    }

    /// Removes one mapping and records what it billed to, in one transaction.
    async fn unmap(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
        by: &Attribution,
    ) -> Result<bool, StoreError> {
        let external = normalize_subscription_id(external_subscription_id);
        let external = &external;
        self.run("remove_mapping", |mut client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                let removed = tx
                    .query_opt(
                        "DELETE FROM subscription_mappings m USING stamps s
                         WHERE m.stamp_id = $1 AND m.external_subscription_id = $2 AND s.id = m.stamp_id
                         RETURNING m.billing_subscription_id, s.name",
                        &[&stamp.as_str(), external],
                    )
                    .await?;
                let Some(removed) = removed else { return Ok(false) };
                let (old, name): (String, String) = (removed.try_get(0)?, removed.try_get(1)?);
                crate::audit::write(&tx, &by.mapping_removed((stamp, &name), external, &old)).await?;
                tx.commit().await?;
                Ok(true)
            })
        })
        .await
    }
}

/// The billing subscription a tenant subscription maps to now.
const CURRENT_BILLING: &str = "SELECT billing_subscription_id FROM subscription_mappings
    WHERE stamp_id = $1 AND external_subscription_id = $2";
