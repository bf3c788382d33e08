//! Usage rows as the provider usage API reports them, and the key that makes storing them exactly once
//! possible.
//!
//! ## The row key
//!
//! The API gives rows no unique id (`id`/`name` are `{subscription}-{meterId}`, repeated across hours and
//! resources). A stored row is keyed by `(stamp, reported window start, row key)`, where the row key
//! ([`RowKey`]) is the first 128 bits of SHA-256 over the row's canonical form: every field the API
//! sent, exactly as received, in this order, each followed by the byte `0xFF` (which never occurs in
//! UTF-8, so bytes cannot move from one field to the next unnoticed):
//!
//! `subscriptionId` (UTF-8); `meterId`; `usageStartTime` and `usageEndTime` as Unix seconds (8-byte
//! little-endian two's complement); `quantity` as its exact decimal text (scale kept:
//! `2.4000000000`); `resourceUri`; `location`; `tags` and `additionalInfo` as the JSON text received,
//! or the five bytes `\0null` (NUL, then `null`) when null or absent.
//!
//! - An exact duplicate inside one window's response (e.g. repeated across a page boundary) has the same
//!   reported window and the same key: it is stored once, and counted as a duplicate.
//! - A late-reported row for a usage hour already seen arrives in a *later* reported window: its key
//!   differs in the window start, so it is kept as additional usage, never as a replacement.
//! - Re-pulling a window that is already committed cannot happen in normal runs (the watermark moved on
//!   in the same transaction); if it did, every row would collide with itself and nothing would double.
//!
//! Why SHA-256 and 128 bits: tenants control several hashed fields (tags, resource names), so the key
//! must resist crafted collisions, not only random ones; the earlier 64-bit XXH3 key did not, and a
//! collision silently drops a real row as a "duplicate". 128 bits of SHA-256 make a random collision
//! among a stamp's rows about 2^-80 likely and a crafted one infeasible. [`UsageRow::legacy_fingerprint`]
//! is the earlier key, kept only so that migrations can recognise rows written under it.

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
    /// The row's key (see the module documentation).
    pub fn key(&self) -> RowKey {
        self.digest(WithQuantity::Yes)
    }

    /// The key of what the row is apart from its quantity: equal for two rows that differ in
    /// quantity only (how [`crate::drift`] tells a changed row from an added and a removed one).
    pub fn identity_key(&self) -> RowKey {
        self.digest(WithQuantity::No)
    }

    fn digest(&self, quantity: WithQuantity) -> RowKey {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        self.canonical_fields(quantity, |bytes| {
            h.update(bytes);
            h.update([0xff]);
        });
        let digest = h.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        RowKey(key)
    }

    /// The 64-bit XXH3 fingerprint rows were keyed by before the 128-bit [`RowKey`]; kept for
    /// migrations and tests that show what it could not tell apart.
    pub fn legacy_fingerprint(&self) -> i64 {
        use xxhash_rust::xxh3::Xxh3;
        let mut h = Xxh3::new();
        self.canonical_fields(WithQuantity::Yes, |bytes| {
            h.update(bytes);
            h.update(&[0xff]);
        });
        h.digest() as i64
    }

    /// Hands each field of the canonical form to `field`, in order.
    fn canonical_fields(&self, quantity: WithQuantity, mut field: impl FnMut(&[u8])) {
        field(self.subscription_id.as_bytes());
        field(self.meter_id.as_bytes());
        field(&self.usage_start.timestamp().to_le_bytes());
        field(&self.usage_end.timestamp().to_le_bytes());
        if quantity == WithQuantity::Yes {
            field(self.quantity.to_string().as_bytes());
        }
        field(self.resource_uri.as_bytes());
        field(self.location.as_bytes());
        field(self.tags.as_deref().unwrap_or("\u{0}null").as_bytes());
        field(self.additional_info.as_deref().unwrap_or("\u{0}null").as_bytes());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WithQuantity {
    Yes,
    No,
}

/// A usage row's 128-bit key: the first 16 bytes of SHA-256 over its canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey(pub [u8; 16]);

impl RowKey {
    /// The key as two signed 64-bit integers (big-endian halves), for stores that index integers.
    pub fn halves(&self) -> (i64, i64) {
        let (high, low) = self.0.split_at(8);
        (
            i64::from_be_bytes(high.try_into().expect("8 bytes")),
            i64::from_be_bytes(low.try_into().expect("8 bytes")),
        )
    }

    /// The key as 16 bytes, for stores that index binary columns.
    pub fn bytes(&self) -> &[u8; 16] {
        &self.0
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
    fn identical_rows_share_a_key() {
        assert_eq!(row().key(), row().key());
    }

    #[test]
    fn any_field_change_changes_the_key() {
        let base = row().key();
        let mut r = row();
        r.usage_start = "2026-11-25T12:00:00Z".parse().unwrap();
        assert_ne!(r.key(), base);
        let mut r = row();
        r.quantity = Decimal::from_str("2.4").unwrap();
        assert_ne!(r.key(), base, "scale is part of what the API sent");
        let mut r = row();
        r.tags = Some("null".into());
        assert_ne!(r.key(), base);
        let mut r = row();
        r.resource_uri = "/subscriptions/x/resourcegroups/web".into();
        assert_ne!(r.key(), base);
        let mut r = row();
        r.subscription_id.push('x');
        r.meter_id.remove(0);
        assert_ne!(r.key(), base, "a byte moved between fields changes the key");
    }

    #[test]
    fn the_key_is_the_documented_sha256_prefix_of_the_canonical_form() {
        use sha2::{Digest, Sha256};
        let r = row();
        let mut canonical = Vec::new();
        for field in [
            r.subscription_id.as_bytes(),
            r.meter_id.as_bytes(),
            &1_795_611_600i64.to_le_bytes(),
            &1_795_615_200i64.to_le_bytes(),
            b"2.4000000000",
            r.resource_uri.as_bytes(),
            b"local",
            b"\0null",
            b"{\"a\":1}",
        ] {
            canonical.extend_from_slice(field);
            canonical.push(0xff);
        }
        assert_eq!(&r.key().0[..], &Sha256::digest(&canonical)[..16]);
        let (high, low) = r.key().halves();
        assert_eq!(high.to_be_bytes(), r.key().0[..8]);
        assert_eq!(low.to_be_bytes(), r.key().0[8..]);
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
