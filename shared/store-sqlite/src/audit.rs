//! The audit trail (`audit_records`): written by the stamp and mapping writes inside their own
//! transactions ([`write`]), read by `audit list` and `GET /audit` in the order written.

use crate::SqliteStore;
use crate::codec::{get_millis, millis};
use async_trait::async_trait;
use azs_core::audit::{
    Actor, AuditAction, AuditEntry, AuditPosition, AuditQuery, AuditRecord, AuditTrail, Uuid,
    changes_from_json, changes_to_json,
};
use azs_core::ports::StoreError;
use azs_core::stamp::StampId;
use rusqlite::Connection;

/// Adds `record` inside the caller's write transaction: it commits or rolls back with the change.
pub(crate) fn write(tx: &Connection, record: &AuditRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit_records (id, at, actor, action, stamp_id, stamp_name, subscription, changes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute((
        record.id.to_string(),
        millis(record.at),
        record.actor.as_str(),
        record.action.name(),
        record.stamp_id.as_str(),
        record.stamp_name.as_str(),
        record.subscription.as_deref(),
        changes_to_json(&record.changes),
    ))?;
    Ok(())
}

#[async_trait]
impl AuditTrail for SqliteStore {
    async fn audit_records(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let query = query.clone();
        self.run(move |db| {
            db.read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT position, id, at, actor, action, stamp_id, stamp_name, subscription, changes
                     FROM audit_records
                     WHERE (?1 IS NULL OR stamp_id = ?1) AND (?2 IS NULL OR at >= ?2) AND position > ?3
                     ORDER BY position LIMIT ?4",
                )?;
                let rows = stmt
                    .query_map(
                        (
                            query.stamp.as_ref().map(StampId::as_str),
                            query.since.map(millis),
                            query.after.map_or(0, |p| p.0),
                            i64::try_from(query.limit).unwrap_or(i64::MAX),
                        ),
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                get_millis(r, 2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, String>(4)?,
                                r.get::<_, String>(5)?,
                                r.get::<_, String>(6)?,
                                r.get::<_, Option<String>>(7)?,
                                r.get::<_, String>(8)?,
                            ))
                        },
                    )?
                    .collect::<Result<Vec<_>, _>>()?;
                let mut entries = Vec::with_capacity(rows.len());
                for (position, id, at, actor, action, stamp_id, stamp_name, subscription, changes) in rows {
                    let id = Uuid::parse_str(&id)
                        .map_err(|e| StoreError::Other(format!("audit record {position}: id {id:?}: {e}")))?;
                    let action = AuditAction::from_name(&action).ok_or_else(|| {
                        StoreError::Other(format!("audit record {id}: unknown action {action:?}"))
                    })?;
                    entries.push(AuditEntry {
                        position: AuditPosition(position),
                        record: AuditRecord {
                            id,
                            at,
                            actor: Actor::new(&actor),
                            action,
                            stamp_id: StampId(stamp_id),
                            stamp_name,
                            subscription,
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
