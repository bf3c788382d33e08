//! Per-stamp leases (`stamp_leases`). Taking a lease is one atomic conditional UPDATE (ours already, or
//! expired) and, when the stamp has no lease row yet, one INSERT guarded by the primary key, so two runs
//! racing for a stamp cannot both win. Expiry is judged by the server's clock, never the callers'.

use crate::SqlServerStore;
use crate::bind;
use crate::types::{stamp_key, ttl_millis};
use async_trait::async_trait;
use azs_core::ports::{LeaseStore, StoreError};
use azs_core::stamp::StampId;
use std::time::Duration;

/// Primary key and unique index violations: someone else created the row first.
const DUPLICATE_KEY: [u32; 2] = [2627, 2601];
/// A foreign key violation: the stamp is not registered.
const FOREIGN_KEY: u32 = 547;

#[async_trait]
impl LeaseStore for SqlServerStore {
    async fn try_acquire(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = stamp_key(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        let ttl = ttl_millis(ttl);
        self.run("try_acquire", |mut s| {
            Box::pin(async move {
                if s.execute(bind::lease_take_over(key, owner, ttl)).await? == 1 {
                    return Ok(true);
                }
                match s.execute(bind::lease_create(key, owner, ttl)).await {
                    Ok(created) => Ok(created == 1),
                    Err(f) if f.code().is_some_and(|c| DUPLICATE_KEY.contains(&c)) => Ok(false),
                    Err(f) if f.code() == Some(FOREIGN_KEY) => {
                        Err(StoreError::UnknownStamp(stamp.clone()).into())
                    }
                    Err(f) => Err(f),
                }
            })
        })
        .await
    }

    async fn renew(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let Some(key) = stamp_key(stamp) else { return Ok(false) };
        let ttl = ttl_millis(ttl);
        self.run("renew", |mut s| {
            Box::pin(async move { Ok(s.execute(bind::lease_renew(key, owner, ttl)).await? == 1) })
        })
        .await
    }

    async fn release(&self, stamp: &StampId, owner: &str) -> Result<(), StoreError> {
        let Some(key) = stamp_key(stamp) else { return Ok(()) };
        self.run("release", |mut s| {
            Box::pin(async move {
                s.execute(bind::lease_release(key, owner)).await?;
                Ok(())
            })
        })
        .await
    }
}
