//! The audit trail (`audit_records`): written by the stamp and mapping writes inside their own
//! transactions ([`write`]), read by `audit list` and `GET /audit` in the order written.

use crate::{Failure, PostgresStore};
use async_trait::async_trait;
use azs_core::audit::{
    Actor, AuditAction, AuditEntry, AuditPosition, AuditQuery, AuditRecord, AuditTrail, Uuid,
    changes_from_json, changes_to_json,
};
use azs_core::ports::StoreError;
use azs_core::stamp::StampId;
use deadpool_postgres::GenericClient;

/// Held by a transaction that writes a record, until it ends ("azs_audt" as a big-endian integer).
const AUDIT_LOCK: i64 = 0x617a_735f_6175_6474;

/// Adds `record` inside the caller's transaction: it commits or rolls back with the change.
///
/// Writers take turns (a transaction-scoped advisory lock, taken before the record's position is
/// drawn): positions then become visible in the order they were drawn, so a reader paging by position
/// never passes one that commits later. Changes to stamps and mappings are rare; the collector's
/// writes take no such lock.
pub(crate) async fn write(tx: &impl GenericClient, record: &AuditRecord) -> Result<(), Failure> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK]).await?;
    tx.execute(
        "INSERT INTO audit_records (id, at, actor, action, stamp_id, stamp_name, subscription, changes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &record.id.to_string(),
            &record.at,
            &record.actor.as_str(),
            &record.action.name(),
            &record.stamp_id.as_str(),
            &record.stamp_name,
            &record.subscription,
            &changes_to_json(&record.changes),
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AuditTrail for PostgresStore {
    async fn audit_records(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let stamp = query.stamp.as_ref().map(StampId::as_str);
        let after = query.after.map_or(0, |p| p.0);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let since = query.since;
        self.run("audit_records", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT position, id, at, actor, action, stamp_id, stamp_name, subscription, changes
                         FROM audit_records
                         WHERE ($1::text IS NULL OR stamp_id = $1)
                             AND ($2::timestamptz IS NULL OR at >= $2) AND position > $3
                         ORDER BY position LIMIT $4",
                        &[&stamp, &since, &after, &limit],
                    )
                    .await?;
                let mut entries = Vec::with_capacity(rows.len());
                for r in rows {
                    let position: i64 = r.try_get(0)?;
                    let id: String = r.try_get(1)?;
                    let id = Uuid::parse_str(&id)
                        .map_err(|e| StoreError::Other(format!("audit record {position}: id {id:?}: {e}")))?;
                    let action: String = r.try_get(4)?;
                    let action = AuditAction::from_name(&action).ok_or_else(|| {
                        StoreError::Other(format!("audit record {id}: unknown action {action:?}"))
                    })?;
                    let changes: String = r.try_get(8)?;
                    entries.push(AuditEntry {
                        position: AuditPosition(position),
                        record: AuditRecord {
                            id,
                            at: r.try_get(2)?,
                            actor: Actor::new(r.try_get(3)?),
                            action,
                            stamp_id: StampId(r.try_get(5)?),
                            stamp_name: r.try_get(6)?,
                            subscription: r.try_get(7)?,
                            changes: changes_from_json(&id, &changes)?,
                        },
                    });
                }
                Ok(entries)
            })
        })
        .await
    }
}
