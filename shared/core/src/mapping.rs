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
        if !is_billing_subscription_id(billing) {
            errors.push("billingSubscriptionId", BILLING_SUBSCRIPTION_ID_RULE);
        }
        errors.into_result(SubscriptionMapping {
            stamp_id: stamp_id.clone(),
            external_subscription_id: external,
            billing_subscription_id: billing.to_owned(),
            updated_at: now,
        })
    }
}

/// The rule for a billing subscription id, as the API states it (`docs/openapi.yaml` has the same
/// pattern). It is written into exports that land in spreadsheets and billing systems, so it starts
/// with a letter or digit (never `=`, `+`, `-` or `@`, which a spreadsheet evaluates) and holds no
/// control or quote characters. Nor does it end in a space: SQL Server compares text padded with
/// spaces (`'cust '` equals `'cust'`, in keys too), so two ids that differ only there would be one
/// assignment or statement on that store and two on the others.
pub const BILLING_SUBSCRIPTION_ID_RULE: &str = "must be 1 to 128 characters: a letter or digit, then letters, \
     digits, spaces and . _ : / # @ ( ) - (ASCII), not ending in a space";

/// Whether `id` (already trimmed) follows [`BILLING_SUBSCRIPTION_ID_RULE`].
pub fn is_billing_subscription_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= 128
        && !id.ends_with(' ')
        && chars.all(|c| c.is_ascii_alphanumeric() || " ._:/#@()-".contains(c))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_billing_subscription_id_starts_with_a_letter_or_digit_and_keeps_to_its_characters() {
        for good in
            ["billing-0042", "CUST 17", "dept:finance/eu", "a", "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f"]
        {
            assert!(is_billing_subscription_id(good), "{good}");
        }
        let long = "b".repeat(129);
        for bad in [
            "",
            "=HYPERLINK(\"x\")",
            "+1",
            "-1",
            "@x",
            " x",
            "a\"b",
            "a\u{1b}b",
            "é",
            long.as_str(),
            "cust 17 ",
        ] {
            assert!(!is_billing_subscription_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn an_assignment_for_an_id_with_a_trailing_space_is_refused_naming_the_field() {
        // SQL Server would take it for the id without the space and replace that one's assignment.
        let assignment = crate::rating::Assignment {
            billing_subscription_id: Some("cust-a ".into()),
            book_id: "gold".into(),
            effective_from: "2026-03-01T00:00:00Z".parse().unwrap(),
        };
        let refused = assignment.validated().unwrap_err().to_string();
        assert!(
            refused.contains("billingSubscriptionId") && refused.contains("not ending in a space"),
            "{refused}"
        );
    }
}
