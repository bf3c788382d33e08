//! Usage rows as the provider usage API reports them, and the key that makes storing them exactly once
//! possible.
//!
//! ## The row key
//!
//! The API gives rows no unique id (`id`/`name` are `{subscription}-{meterId}`, repeated across hours and
//! resources). A stored row is keyed by `(stamp, reported window start, fingerprint)`, where the
//! fingerprint is a 64-bit XXH3 of every field the API sent for the row (subscription, meter, usage
//! start and end, quantity, resource URI, location, tags, additional info, all exactly as received).
//!
//! - An exact duplicate inside one window's response (e.g. repeated across a page boundary) has the same
//!   reported window and the same fingerprint: it is stored once.
//! - A late-reported row for a usage hour already seen arrives in a *later* reported window: its key
//!   differs in the window start, so it is kept as additional usage, never as a replacement.
//! - Re-pulling a window that is already committed cannot happen in normal runs (the watermark moved on
//!   in the same transaction); if it did, every row would collide with itself and nothing would double.
//!
//! The hash is the published XXH3-64 with seed 0, so a key computed by one version or one store is
//! computed the same by every other. Collisions among the ~10^4-10^5 rows of one stamp's window are
//! about 10^-10 likely.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A usage quantity, exact as the API sent it: the JSON number's text parsed into a 96-bit decimal
/// (28 significant digits, scale kept: `2.4000000000` stays `2.4000000000`). Never a float.
pub type Quantity = Decimal;

/// One row of `subscriberUsageAggregates`, with `instanceData` already unpacked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The tenant (user) subscription on the stamp, as sent: the "external subscription id".
    pub subscription_id: String,
    /// As sent (casing and hyphens vary; see [`normalize_meter_id`]).
    pub meter_id: String,
    pub usage_start: DateTime<Utc>,
    pub usage_end: DateTime<Utc>,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Quantity,
    pub resource_uri: String,
    pub location: String,
    /// `tags` as JSON text (object or string), `None` when null or absent.
    pub tags: Option<String>,
    /// `additionalInfo` as JSON text, `None` when null or absent.
    pub additional_info: Option<String>,
}

impl UsageRow {
    /// The 64-bit fingerprint of this row's content (see the module documentation).
    pub fn fingerprint(&self) -> i64 {
        use xxhash_rust::xxh3::Xxh3;
        let mut h = Xxh3::new();
        // Each field is followed by a separator byte that cannot occur in UTF-8 text, so moving bytes
        // from one field to the next changes the hash.
        let mut field = |bytes: &[u8]| {
            h.update(bytes);
            h.update(&[0xff]);
        };
        field(self.subscription_id.as_bytes());
        field(self.meter_id.as_bytes());
        field(&self.usage_start.timestamp().to_le_bytes());
        field(&self.usage_end.timestamp().to_le_bytes());
        field(self.quantity.to_string().as_bytes());
        field(self.resource_uri.as_bytes());
        field(self.location.as_bytes());
        field(self.tags.as_deref().unwrap_or("\u{0}null").as_bytes());
        field(self.additional_info.as_deref().unwrap_or("\u{0}null").as_bytes());
        h.digest() as i64
    }
}

/// Meter ids are published with and without hyphens and in mixed case; joins use this form, audits
/// keep the original.
pub fn normalize_meter_id(meter_id: &str) -> String {
    meter_id.chars().filter(|c| *c != '-' && *c != '{' && *c != '}').flat_map(char::to_uppercase).collect()
}

/// Subscription ids are GUIDs whose casing varies between sources; mappings join on this form.
pub fn normalize_subscription_id(id: &str) -> String {
    id.trim().trim_matches(|c| c == '{' || c == '}').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn row() -> UsageRow {
        UsageRow {
            subscription_id: "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10".into(),
            meter_id: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5".into(),
            usage_start: "2026-11-25T13:00:00Z".parse().unwrap(),
            usage_end: "2026-11-25T14:00:00Z".parse().unwrap(),
            quantity: Decimal::from_str("2.4000000000").unwrap(),
            resource_uri: "/subscriptions/x/resourceGroups/web".into(),
            location: "local".into(),
            tags: None,
            additional_info: Some("{\"a\":1}".into()),
        }
    }

    #[test]
    fn identical_rows_share_a_fingerprint() {
        assert_eq!(row().fingerprint(), row().fingerprint());
    }

    #[test]
    fn any_field_change_changes_the_fingerprint() {
        let base = row().fingerprint();
        let mut r = row();
        r.usage_start = "2026-11-25T12:00:00Z".parse().unwrap();
        assert_ne!(r.fingerprint(), base);
        let mut r = row();
        r.quantity = Decimal::from_str("2.4").unwrap();
        assert_ne!(r.fingerprint(), base, "scale is part of what the API sent");
        let mut r = row();
        r.tags = Some("null".into());
        assert_ne!(r.fingerprint(), base);
        let mut r = row();
        r.resource_uri = "/subscriptions/x/resourcegroups/web".into();
        assert_ne!(r.fingerprint(), base);
    }

    #[test]
    fn quantity_keeps_its_exact_text() {
        assert_eq!(row().quantity.to_string(), "2.4000000000");
    }

    #[test]
    fn meter_ids_normalise_across_hyphen_and_case_variants() {
        assert_eq!(
            normalize_meter_id("f271a8a3-88c4-4d93-956a-063e1d2fa80b"),
            "F271A8A388C44D93956A063E1D2FA80B"
        );
        assert_eq!(
            normalize_meter_id("F271A8A388C44D93956A063E1D2FA80B"),
            "F271A8A388C44D93956A063E1D2FA80B"
        );
    }
}
