//! The audit trail (`audit_records`): written by the stamp and mapping writes inside their own
//! transactions ([`write`]), read by `audit list` and `GET /audit` in the order written.

use crate::SqlServerStore;
use crate::bind::{self, AuditColumns};
use crate::session::{Failure, Session};
use crate::sql;
use crate::types::{self, guid, guid_text, opt_text, req, stamp_key, text};
use async_trait::async_trait;
use azs_core::audit::{
    Actor, AuditAction, AuditEntry, AuditPosition, AuditQuery, AuditRecord, AuditTrail, changes_from_json,
    changes_to_json,
};
use azs_core::ports::StoreError;
use azs_core::stamp::StampId;

/// Adds `record` inside the session's open transaction: it commits or rolls back with the change.
/// Call it after the change's other locks are taken: it locks the audit table until the commit (see
/// `sql::LOCK_AUDIT`), so the audit lock is every change's last and no two changes wait on each other.
pub(crate) async fn write(s: &mut Session, record: &AuditRecord) -> Result<(), Failure> {
    write_all(s, std::slice::from_ref(record)).await
}

/// [`write`] for several records, in order (a mapping import's).
pub(crate) async fn write_all(s: &mut Session, records: &[AuditRecord]) -> Result<(), Failure> {
    if records.is_empty() {
        return Ok(());
    }
    s.query(bind::none(&sql::LOCK_AUDIT)).await?;
    for record in records {
        s.execute(bind::insert_audit(&columns(record)?)).await?;
    }
    Ok(())
}

fn columns(record: &AuditRecord) -> Result<AuditColumns<'_>, Failure> {
    Ok(AuditColumns {
        id: record.id,
        at: types::millis(record.at),
        actor: record.actor.as_str(),
        action: record.action.name(),
        stamp_id: guid("stamp id", record.stamp_id.as_str())?,
        stamp_name: &record.stamp_name,
        subscription: record.subscription.as_deref(),
        changes: changes_to_json(&record.changes),
    })
}

#[async_trait]
impl AuditTrail for SqlServerStore {
    async fn audit_records(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        // A stamp id that is no GUID was never registered here, so it has no records.
        let stamp = match &query.stamp {
            Some(id) => match stamp_key(id) {
                Some(key) => Some(key),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let since = query.since.map(|t| types::millis(types::within_datetime2(t)));
        let after = query.after.map_or(0, |p| p.0);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.run("audit_records", |mut s| {
            Box::pin(async move {
                let rows = s.query(bind::list_audit(stamp, since, after, limit)).await?;
                let mut entries = Vec::with_capacity(rows.len());
                for r in &rows {
                    let id: tiberius::Uuid = req(r, 1)?;
                    let action = text(r, 4)?;
                    let action = AuditAction::from_name(&action).ok_or_else(|| {
                        StoreError::Other(format!("audit record {id}: unknown action {action:?}"))
                    })?;
                    entries.push(AuditEntry {
                        position: AuditPosition(req(r, 0)?),
                        record: AuditRecord {
                            id,
                            at: req(r, 2)?,
                            actor: Actor::new(&text(r, 3)?),
                            action,
                            stamp_id: StampId(guid_text(req(r, 5)?)),
                            stamp_name: text(r, 6)?,
                            subscription: opt_text(r, 7)?,
                            changes: changes_from_json(&id, &text(r, 8)?)?,
                        },
                    });
                }
                Ok(entries)
            })
        })
        .await
    }
}
