//! Subscription mappings: the seed's `[dbo].[SubscriptionMapper]`. A usage source (stamp) and its
//! tenant ("external") subscription id map to the subscription the billing system invoices.
//!
//! Rows are mapped when written, inside the same transaction; rows written while no mapping existed are
//! stored with no billing subscription, counted, and listed by `unmapped`. Setting a mapping back-fills
//! those rows in the same transaction as the mapping itself. A mapping changed later applies to rows
//! collected from then on, and back-fills only rows that were still unmapped: rows already mapped keep
//! the billing subscription they were invoiced under.

use crate::error::ValidationErrors;
use crate::stamp::StampId;
use crate::usage::normalize_subscription_id;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionMapping {
    pub stamp_id: StampId,
    /// Normalised (lower-case) tenant subscription id on the stamp.
    pub external_subscription_id: String,
    pub billing_subscription_id: String,
    pub updated_at: DateTime<Utc>,
}

impl SubscriptionMapping {
    /// The one rule set for a mapping, whether set alone (`mapping set`, `PUT .../subscriptions/{id}`)
    /// or imported from a file. Every violation is named at once.
    pub fn validated(
        stamp_id: &StampId,
        external_subscription_id: &str,
        billing_subscription_id: &str,
        now: DateTime<Utc>,
    ) -> Result<SubscriptionMapping, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let external = normalize_subscription_id(external_subscription_id);
        if external.is_empty() || external.len() > 128 || external.chars().any(|c| c.is_control() || c == '/')
        {
            errors.push(
                "externalSubscriptionId",
                "must be 1 to 128 characters without '/' or control characters",
            );
        }
        let billing = billing_subscription_id.trim();
        if billing.is_empty() || billing.len() > 128 || billing.chars().any(char::is_control) {
            errors.push("billingSubscriptionId", "must be 1 to 128 characters without control characters");
        }
        errors.into_result(SubscriptionMapping {
            stamp_id: stamp_id.clone(),
            external_subscription_id: external,
            billing_subscription_id: billing.to_owned(),
            updated_at: now,
        })
    }
}

/// A tenant subscription that has usage but no mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnmappedSubscription {
    pub stamp_id: StampId,
    pub external_subscription_id: String,
    pub rows: u64,
    pub first_usage: Option<DateTime<Utc>>,
    pub last_usage: Option<DateTime<Utc>>,
}
