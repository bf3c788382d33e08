//! Subscription mappings (`subscription_mappings`): the seed's `[dbo].[SubscriptionMapper]`. Rows are
//! mapped when written (see `ledger`); setting a mapping back-fills the stamp's still-unmapped rows of
//! that subscription in the same transaction, and never touches rows already mapped.

use crate::SqlServerStore;
use crate::bind;
use crate::session::{Failure, Session};
use crate::types::{self, guid_text, req, stamp_key, text, unsigned};
use async_trait::async_trait;
use azs_core::audit::{Actor, Attribution, AuditAction, AuditedMappingStore};
use azs_core::mapping::{SubscriptionMapping, UnmappedSubscription};
use azs_core::ports::{MappingStore, StoreError};
use azs_core::stamp::StampId;
use azs_core::usage::normalize_subscription_id;
use tiberius::Uuid;

#[async_trait]
impl MappingStore for SqlServerStore {
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
        let Some(key) = stamp_filter(stamp) else { return Ok(Vec::new()) };
        let mut mappings = self
            .run("list_mappings", |mut s| {
                Box::pin(async move {
                    s.query(bind::list_mappings(key))
                        .await?
                        .iter()
                        .map(|r| {
                            Ok(SubscriptionMapping {
                                stamp_id: StampId(guid_text(req(r, 0)?)),
                                external_subscription_id: text(r, 1)?,
                                billing_subscription_id: text(r, 2)?,
                                updated_at: req(r, 3)?,
                            })
                        })
                        .collect::<Result<Vec<_>, Failure>>()
                })
            })
            .await?;
        mappings.sort_by(|a, b| {
            (&a.stamp_id, &a.external_subscription_id).cmp(&(&b.stamp_id, &b.external_subscription_id))
        });
        Ok(mappings)
    }

    /// Registered stamps only: a deleted stamp's rows stay, but there is nothing left to map them to.
    async fn unmapped(&self, stamp: Option<&StampId>) -> Result<Vec<UnmappedSubscription>, StoreError> {
        let Some(key) = stamp_filter(stamp) else { return Ok(Vec::new()) };
        let mut unmapped = self
            .run("unmapped", |mut s| {
                Box::pin(async move {
                    s.query(bind::unmapped(key))
                        .await?
                        .iter()
                        .map(|r| {
                            Ok(UnmappedSubscription {
                                stamp_id: StampId(guid_text(req(r, 0)?)),
                                external_subscription_id: text(r, 1)?,
                                rows: unsigned(r, 2)?,
                                first_usage: types::opt(r, 3)?,
                                last_usage: types::opt(r, 4)?,
                            })
                        })
                        .collect::<Result<Vec<_>, Failure>>()
                })
            })
            .await?;
        unmapped.sort_by(|a, b| {
            (&a.stamp_id, &a.external_subscription_id).cmp(&(&b.stamp_id, &b.external_subscription_id))
        });
        Ok(unmapped)
    }
}

#[async_trait]
impl AuditedMappingStore for SqlServerStore {
    async fn record_mappings(
        &self,
        mappings: &[SubscriptionMapping],
        action: AuditAction,
        by: &Attribution,
    ) -> Result<u64, StoreError> {
        let mut keyed = Vec::with_capacity(mappings.len());
        for mapping in mappings {
            let key = stamp_key(&mapping.stamp_id)
                .ok_or_else(|| StoreError::UnknownStamp(mapping.stamp_id.clone()))?;
            keyed.push((key, normalize_subscription_id(&mapping.external_subscription_id), mapping));
        }
        // Stamps are locked in key order whatever the input's (a stable sort: one stamp's mappings
        // keep theirs), so two imports naming the same stamps cannot each hold one the other waits
        // for (deadlock victim, Msg 1205). The PostgreSQL store locks in id order for the same reason.
        keyed.sort_by_key(|(key, _, _)| *key);
        let keyed = keyed.as_slice();
        self.run("set_mappings", |mut s| Box::pin(async move { set(&mut s, keyed, action, by).await })).await
    }

    async fn unmap(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
        by: &Attribution,
    ) -> Result<bool, StoreError> {
        let Some(key) = stamp_key(stamp) else { return Ok(false) };
        let external = normalize_subscription_id(external_subscription_id);
        let external = external.as_str();
        self.run("remove_mapping", |mut s| {
            Box::pin(async move { remove(&mut s, key, stamp, external, by).await })
        })
        .await
    }
}

/// Removes one mapping and records what it billed to, in one transaction.
async fn remove(
    s: &mut Session,
    key: Uuid,
    stamp: &StampId,
    external: &str,
    by: &Attribution,
) -> Result<bool, Failure> {
    s.begin().await?;
    let result = async {
        if s.query_one(bind::lock_stamp(key)).await?.is_none() {
            return Ok(false);
        }
        let Some(current) = s.query_one(bind::current_mapping(key, external)).await? else {
            return Ok(false);
        };
        let (old, name) = (text(&current, 0)?, text(&current, 1)?);
        s.execute(bind::remove_mapping(key, external)).await?;
        crate::audit::write(s, &by.mapping_removed((stamp, &name), external, &old)).await?;
        Ok(true)
    }
    .await;
    s.finish(result).await
}

/// The stamp to filter by: `Some(None)` for every stamp, `None` for an id that cannot be registered.
fn stamp_filter(stamp: Option<&StampId>) -> Option<Option<Uuid>> {
    match stamp {
        Some(id) => stamp_key(id).map(Some),
        None => Some(None),
    }
}

/// All mappings, their back-fills and their audit records in one transaction: an unknown stamp
/// anywhere writes nothing. The records are written last, after every stamp is locked and back-filled:
/// `audit::write` locks the whole audit table until the commit, and taking a stamp's lock while holding
/// it made an import of stamps A and B and a mapping of B deadlock (each held what the other waited
/// for), and made every audited change anywhere wait for this import's back-fills.
async fn set(
    s: &mut Session,
    mappings: &[(Uuid, String, &SubscriptionMapping)],
    action: AuditAction,
    by: &Attribution,
) -> Result<u64, Failure> {
    s.begin().await?;
    let result = async {
        let mut back_filled = 0;
        let mut records = Vec::new();
        for (key, external, mapping) in mappings {
            // Serialises with this stamp's window commits (see sql::LOCK_STAMP); no row: no such stamp.
            if s.query_one(bind::lock_stamp(*key)).await?.is_none() {
                return Err(StoreError::UnknownStamp(mapping.stamp_id.clone()).into());
            }
            let old = match s.query_one(bind::current_mapping(*key, external)).await? {
                Some(row) => Some(text(&row, 0)?),
                None => None,
            };
            let name = match s.query_one(bind::stamp_name(*key)).await? {
                Some(row) => text(&row, 0)?,
                None => return Err(StoreError::UnknownStamp(mapping.stamp_id.clone()).into()),
            };
            let mut recorded = (*mapping).clone();
            recorded.external_subscription_id = external.clone();
            records.extend(by.mapping_set(action, &name, &recorded, old.as_deref()));
            let billing = mapping.billing_subscription_id.as_str();
            s.execute(bind::upsert_mapping(*key, external, billing, types::millis(mapping.updated_at)))
                .await?;
            back_filled += s.execute(bind::back_fill(*key, external, billing)).await?;
        }
        crate::audit::write_all(s, &records).await?;
        Ok(back_filled)
    }
    .await;
    s.finish(result).await
}
