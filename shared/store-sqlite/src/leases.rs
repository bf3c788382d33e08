//! Per-stamp leases (`stamp_leases`). Each operation is one conditional statement, so two runs racing
//! for a stamp cannot both win. A lease belongs to its owner until someone else takes it over after it
//! expired; `commit_window` checks the same owner column inside its own transaction.

use crate::SqliteStore;
use crate::codec::now_millis;
use crate::db::{Failure, is_foreign_key_violation};
use async_trait::async_trait;
use azs_core::ports::{LeaseStore, StoreError};
use azs_core::stamp::StampId;
use std::time::Duration;

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn try_acquire(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (stamp, owner) = (stamp.clone(), owner.to_owned());
        self.run(move |db| {
            db.write(|conn| {
                let now = now_millis();
                let taken = conn
                    .prepare_cached(
                        "INSERT INTO stamp_leases (stamp_id, owner, expires_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (stamp_id) DO UPDATE SET owner = excluded.owner,
                             expires_at = excluded.expires_at
                         WHERE stamp_leases.owner = excluded.owner OR stamp_leases.expires_at < ?4",
                    )?
                    .execute((stamp.as_str(), owner.as_str(), expiry(now, ttl), now));
                match taken {
                    Ok(changed) => Ok(changed == 1),
                    Err(e) if is_foreign_key_violation(&e) => {
                        Err(StoreError::UnknownStamp(stamp.clone()).into())
                    }
                    Err(e) => Err(Failure::from(e)),
                }
            })
        })
        .await
    }

    async fn renew(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (stamp, owner) = (stamp.clone(), owner.to_owned());
        self.run(move |db| {
            db.write(|conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE stamp_leases SET expires_at = ?3 WHERE stamp_id = ?1 AND owner = ?2",
                    )?
                    .execute((stamp.as_str(), owner.as_str(), expiry(now_millis(), ttl)))?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn release(&self, stamp: &StampId, owner: &str) -> Result<(), StoreError> {
        let (stamp, owner) = (stamp.clone(), owner.to_owned());
        self.run(move |db| {
            db.write(|conn| {
                conn.prepare_cached("DELETE FROM stamp_leases WHERE stamp_id = ?1 AND owner = ?2")?
                    .execute((stamp.as_str(), owner.as_str()))?;
                Ok(())
            })
        })
        .await
    }
}

fn expiry(now_ms: i64, ttl: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}
