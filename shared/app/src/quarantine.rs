//! The quarantine as operators read it: rows a stamp sent that the store cannot hold exactly, kept
//! verbatim (see `azs_core::quarantine`). The one code path behind `azs-usage quarantine list` and the
//! webhook's `GET /quarantine`. Sees the quarantine and, to resolve a stamp handle, the stamp
//! directory; nothing else of the database.

use crate::registrar::{RegistrationError, find_stamp};
use azs_core::ports::{QuarantineReader, StampDirectory};
use azs_core::quarantine::QuarantineEntry;
use azs_core::stamp::StampId;
use std::sync::Arc;

#[derive(Clone)]
pub struct QuarantineList {
    stamps: Arc<dyn StampDirectory>,
    quarantine: Arc<dyn QuarantineReader>,
}

impl QuarantineList {
    pub fn new(stamps: Arc<dyn StampDirectory>, quarantine: Arc<dyn QuarantineReader>) -> Self {
        Self { stamps, quarantine }
    }

    /// Quarantined rows of one stamp (its id or name; `NotFound` when there is none) or of all.
    pub async fn list(&self, stamp: Option<&StampId>) -> Result<Vec<QuarantineEntry>, RegistrationError> {
        let stamp = match stamp {
            Some(handle) => Some(find_stamp(self.stamps.as_ref(), handle).await?.id),
            None => None,
        };
        Ok(self.quarantine.quarantine(stamp.as_ref()).await?)
    }
}
