//! The audit trail as operators read it: who changed which stamp or mapping, when, and which fields
//! from what to what (see `azs_core::audit`). The one code path behind `azs-usage audit list` and the
//! webhook's `GET /audit`. Sees the trail and, to resolve a stamp name, the stamp directory.

use crate::registrar::{RegistrationError, find_stamp};
use azs_core::audit::{AuditEntry, AuditPosition, AuditQuery, AuditTrail};
use azs_core::ports::StampDirectory;
use azs_core::registration::parse_guid;
use azs_core::stamp::StampId;
use chrono::{DateTime, Utc};
use std::sync::Arc;

#[derive(Clone)]
pub struct AuditLog {
    stamps: Arc<dyn StampDirectory>,
    trail: Arc<dyn AuditTrail>,
}

/// Which records: of one stamp (its id, or the name of a registered stamp), at or after a time.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub stamp: Option<StampId>,
    pub since: Option<DateTime<Utc>>,
}

impl AuditLog {
    pub fn new(stamps: Arc<dyn StampDirectory>, trail: Arc<dyn AuditTrail>) -> Self {
        Self { stamps, trail }
    }

    /// At most `limit` records after `after`, oldest first. A stamp id finds a removed stamp's records
    /// too; a name only a registered stamp's (`NotFound` otherwise).
    pub async fn list(
        &self,
        filter: &AuditFilter,
        after: Option<AuditPosition>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, RegistrationError> {
        let stamp = match &filter.stamp {
            Some(handle) => Some(match parse_guid(handle.as_str()) {
                Some(id) => StampId(id),
                None => find_stamp(self.stamps.as_ref(), handle).await?.id,
            }),
            None => None,
        };
        let query = AuditQuery { stamp, since: filter.since, after, limit };
        Ok(self.trail.audit_records(&query).await?)
    }

    /// Every record the filter selects, read page by page (the CLI's whole listing).
    pub async fn all(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, RegistrationError> {
        const PAGE: usize = 1000;
        let mut entries: Vec<AuditEntry> = Vec::new();
        loop {
            let page = self.list(filter, entries.last().map(|e| e.position), PAGE).await?;
            let done = page.len() < PAGE;
            entries.extend(page);
            if done {
                return Ok(entries);
            }
        }
    }
}
