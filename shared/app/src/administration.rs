//! Stamp and mapping administration as the webhook and the CLI serve them: two services built from
//! one store, each seeing only the store traits it uses.
//!
//! | service | store traits | methods it sees |
//! |---|---|---|
//! | [`Registrar`] (stamps) | `AuditedStampRegistry` (with `StampRegistry`, `StampDirectory`), `StatusReader` | 11 |
//! | [`SubscriptionMapper`] (mappings) | `AuditedMappingStore` (with `MappingStore`), `StampDirectory` | 9 |
//! | [`QuarantineList`] (quarantined rows) | `QuarantineReader`, `StampDirectory` | 3 |
//! | [`AuditLog`] (the audit trail) | `AuditTrail`, `StampDirectory` | 3 |
//!
//! The stamp and mapping services write only through the audited writes, each of which records the
//! change with its caller in the change's own transaction.

use crate::audit::AuditLog;
use crate::mapper::SubscriptionMapper;
use crate::quarantine::QuarantineList;
use crate::registrar::{CredentialReader, Registrar};
use azs_core::audit::{AuditTrail, AuditedMappingStore, AuditedStampRegistry};
use azs_core::ports::{QuarantineReader, SecretStore, StampDirectory, StatusReader, Store, UsageSource};
use azs_core::registration::CredentialSecretRules;
use std::sync::Arc;

#[derive(Clone)]
pub struct Administration {
    pub stamps: Registrar,
    pub mappings: SubscriptionMapper,
    pub quarantine: QuarantineList,
    pub audit: AuditLog,
    /// Price books, assignments and statements: `None` when the database keeps none (see
    /// [`crate::rating::open_rating_store`]), and the webhook says so on their paths.
    pub statements: Option<Arc<crate::rating::StatementService>>,
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
        let registry: Arc<dyn AuditedStampRegistry> = store.clone();
        let statuses: Arc<dyn StatusReader> = store.clone();
        let directory: Arc<dyn StampDirectory> = store.clone();
        let quarantine: Arc<dyn QuarantineReader> = store.clone();
        let trail: Arc<dyn AuditTrail> = store.clone();
        let mappings: Arc<dyn AuditedMappingStore> = store;
        Self {
            stamps: Registrar::new(registry, statuses, secrets, source, read_credential, credential_rules),
            mappings: SubscriptionMapper::new(directory.clone(), mappings),
            quarantine: QuarantineList::new(directory.clone(), quarantine),
            audit: AuditLog::new(directory, trail),
            statements: None,
        }
    }
}
