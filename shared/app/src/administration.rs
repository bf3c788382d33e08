//! Stamp and mapping administration as the webhook and the CLI serve them: two services built from
//! one store, each seeing only the store traits it uses.
//!
//! | service | store traits | methods it sees |
//! |---|---|---|
//! | [`Registrar`] (stamps) | `StampRegistry` (with `StampDirectory`), `StatusReader` | 8 |
//! | [`SubscriptionMapper`] (mappings) | `MappingStore`, `StampDirectory` | 7 |
//! | [`QuarantineList`] (quarantined rows) | `QuarantineReader`, `StampDirectory` | 3 |

use crate::mapper::SubscriptionMapper;
use crate::quarantine::QuarantineList;
use crate::registrar::{CredentialReader, Registrar};
use azs_core::ports::{
    MappingStore, QuarantineReader, SecretStore, StampDirectory, StampRegistry, StatusReader, Store,
    UsageSource,
};
use azs_core::registration::CredentialSecretRules;
use std::sync::Arc;

#[derive(Clone)]
pub struct Administration {
    pub stamps: Registrar,
    pub mappings: SubscriptionMapper,
    pub quarantine: QuarantineList,
}

impl Administration {
    /// Both services over `store`, each handed only its part of it.
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<dyn SecretStore>,
        source: Arc<dyn UsageSource>,
        read_credential: CredentialReader,
        credential_rules: CredentialSecretRules,
    ) -> Self {
        let registry: Arc<dyn StampRegistry> = store.clone();
        let statuses: Arc<dyn StatusReader> = store.clone();
        let directory: Arc<dyn StampDirectory> = store.clone();
        let quarantine: Arc<dyn QuarantineReader> = store.clone();
        let mappings: Arc<dyn MappingStore> = store;
        Self {
            stamps: Registrar::new(registry, statuses, secrets, source, read_credential, credential_rules),
            mappings: SubscriptionMapper::new(directory.clone(), mappings),
            quarantine: QuarantineList::new(directory, quarantine),
        }
    }
}
