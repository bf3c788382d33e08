//! Per-stamp leases (`stamp_leases`). Each operation is one conditional statement, so two runs racing
//! for a stamp cannot both win (an `INSERT .. ON CONFLICT DO UPDATE .. WHERE` is atomic in PostgreSQL).
//! Expiry is the server's clock, so workers on different machines agree on it. `commit_window` locks
//! the same row and checks its owner inside its own transaction.

use crate::{Failure, PostgresStore, is_foreign_key_violation};
use async_trait::async_trait;
use azs_core::ports::{LeaseStore, StoreError};
use azs_core::stamp::StampId;
use std::time::Duration;

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn try_acquire(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ttl = ttl_millis(ttl);
        self.run("try_acquire", |client| {
            Box::pin(async move {
                let taken = client
                    .execute(
                        "INSERT INTO stamp_leases (stamp_id, owner, expires_at)
                         VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
                         ON CONFLICT (stamp_id) DO UPDATE SET owner = excluded.owner,
                             expires_at = excluded.expires_at
                         WHERE stamp_leases.owner = excluded.owner OR stamp_leases.expires_at < clock_timestamp()",
                        &[&stamp.as_str(), &owner, &ttl],
                    )
                    .await;
                match taken {
                    Ok(changed) => Ok(changed == 1),
                    Err(e) if is_foreign_key_violation(&e) => Err(StoreError::UnknownStamp(stamp.clone()).into()),
                    Err(e) => Err(Failure::from(e)),
                }
            })
        })
        .await
    }

    async fn renew(&self, stamp: &StampId, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let ttl = ttl_millis(ttl);
        self.run("renew", |client| {
            Box::pin(async move {
                let changed = client
                    .execute(
                        "UPDATE stamp_leases SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
                         WHERE stamp_id = $1 AND owner = $2",
                        &[&stamp.as_str(), &owner, &ttl],
                    )
                    .await?;
                Ok(changed == 1)
            })
        })
        .await
    }

    async fn release(&self, stamp: &StampId, owner: &str) -> Result<(), StoreError> {
        self.run("release", |client| {
            Box::pin(async move {
                client
                    .execute(
                        "DELETE FROM stamp_leases WHERE stamp_id = $1 AND owner = $2",
                        &[&stamp.as_str(), &owner],
                    )
                    .await?;
                Ok(())
            })
        })
        .await
    }
}

/// The TTL in milliseconds as a float (an interval multiplier), capped at a century.
fn ttl_millis(ttl: Duration) -> f64 {
    const CENTURY_MS: f64 = 100.0 * 365.25 * 24.0 * 3600.0 * 1000.0;
    (ttl.as_millis() as f64).min(CENTURY_MS)
}
