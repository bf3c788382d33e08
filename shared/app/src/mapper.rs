//! Mapping administration: which billing subscription each tenant subscription of a stamp bills to.
//! The one code path behind `azs-usage mapping ...`, `azs-usage unmapped` and the webhook's
//! `/stamps/{id}/subscriptions` routes. Sees the mapping store and, to resolve a stamp handle, the
//! stamp directory; nothing else of the database.

use crate::registrar::{RegistrationError, find_stamp};
use azs_core::audit::{Actor, Attribution, AuditAction, AuditedMappingStore};
use azs_core::error::ValidationErrors;
use azs_core::mapping::{SubscriptionMapping, UnmappedSubscription};
use azs_core::ports::StampDirectory;
use azs_core::stamp::StampId;
use azs_core::usage::normalize_subscription_id;
use chrono::Utc;
use std::sync::Arc;

/// One line of a mapping import, numbered as in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingLine {
    pub line: usize,
    pub external_subscription_id: String,
    pub billing_subscription_id: String,
}

#[derive(Clone)]
pub struct SubscriptionMapper {
    stamps: Arc<dyn StampDirectory>,
    /// The mapping store's audited writes: every change is recorded with its caller.
    mappings: Arc<dyn AuditedMappingStore>,
}

impl SubscriptionMapper {
    pub fn new(stamps: Arc<dyn StampDirectory>, mappings: Arc<dyn AuditedMappingStore>) -> Self {
        Self { stamps, mappings }
    }

    pub async fn set_mapping(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
        billing_subscription_id: &str,
        by: &Actor,
    ) -> Result<(SubscriptionMapping, u64), RegistrationError> {
        let stamp = &self.stamp_id(stamp).await?;
        let mapping = SubscriptionMapping::validated(
            stamp,
            external_subscription_id,
            billing_subscription_id,
            Utc::now(),
        )
        .map_err(RegistrationError::Invalid)?;
        let by = Attribution::now(by.clone());
        let backfilled = self
            .mappings
            .record_mappings(std::slice::from_ref(&mapping), AuditAction::MappingSet, &by)
            .await?;
        Ok((mapping, backfilled))
    }

    /// Sets many mappings of one stamp, all or nothing: every line is checked with the rules of
    /// [`SubscriptionMapper::set_mapping`] first, every bad line is reported at once (its field named
    /// `line N: field`), and the mappings are written in one transaction. Returns the rows back-filled.
    pub async fn import_mappings(
        &self,
        stamp: &StampId,
        lines: &[MappingLine],
        by: &Actor,
    ) -> Result<u64, RegistrationError> {
        let stamp = &self.stamp_id(stamp).await?;
        let now = Utc::now();
        let mut errors = ValidationErrors::default();
        let mut mappings = Vec::with_capacity(lines.len());
        for line in lines {
            match SubscriptionMapping::validated(
                stamp,
                &line.external_subscription_id,
                &line.billing_subscription_id,
                now,
            ) {
                Ok(m) => mappings.push(m),
                Err(e) => {
                    for f in e.0 {
                        errors.push(format!("line {}: {}", line.line, f.field), f.rule);
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(RegistrationError::Invalid(errors));
        }
        let by = Attribution::now(by.clone());
        Ok(self.mappings.record_mappings(&mappings, AuditAction::MappingImport, &by).await?)
    }

    pub async fn remove_mapping(
        &self,
        stamp: &StampId,
        external_subscription_id: &str,
        by: &Actor,
    ) -> Result<(), RegistrationError> {
        let stamp = &self.stamp_id(stamp).await?;
        let external = normalize_subscription_id(external_subscription_id);
        if self.mappings.unmap(stamp, &external, &Attribution::now(by.clone())).await? {
            Ok(())
        } else {
            Err(RegistrationError::MappingNotFound(stamp.clone(), external))
        }
    }

    pub async fn mappings(
        &self,
        stamp: Option<&StampId>,
    ) -> Result<Vec<SubscriptionMapping>, RegistrationError> {
        let stamp = match stamp {
            Some(handle) => Some(self.stamp_id(handle).await?),
            None => None,
        };
        Ok(self.mappings.list_mappings(stamp.as_ref()).await?)
    }

    pub async fn unmapped(
        &self,
        stamp: Option<&StampId>,
    ) -> Result<Vec<UnmappedSubscription>, RegistrationError> {
        let stamp = match stamp {
            Some(handle) => Some(self.stamp_id(handle).await?),
            None => None,
        };
        Ok(self.mappings.unmapped(stamp.as_ref()).await?)
    }

    async fn stamp_id(&self, handle: &StampId) -> Result<StampId, RegistrationError> {
        Ok(find_stamp(self.stamps.as_ref(), handle).await?.id)
    }
}
