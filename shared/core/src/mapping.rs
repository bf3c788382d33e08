//! Subscription mappings: the seed's `[dbo].[SubscriptionMapper]`. A usage source (stamp) and its
//! tenant ("external") subscription id map to the subscription the billing system invoices.
//!
//! Rows are mapped when written, inside the same transaction; rows written while no mapping existed are
//! stored with no billing subscription, counted, and listed by `unmapped`. Setting a mapping back-fills
//! those rows in the same transaction as the mapping itself. A mapping changed later applies to rows
//! collected from then on, and back-fills only rows that were still unmapped: rows already mapped keep
//! the billing subscription they were invoiced under.

use crate::stamp::StampId;
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
