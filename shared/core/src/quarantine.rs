//! Quarantine: where a row goes that the stamp sent but the store cannot hold, instead of failing its
//! window on every run.
//!
//! Before this, one such row (a resource URI longer than SQL Server's column, a quantity with more
//! decimals than `decimal(38, 12)`, a quantity no 96-bit decimal represents) refused its whole window,
//! and since the next run pulls the same window, the stamp stopped at that hour for good. Now the core
//! decides per row, against the limits the store adapter declares ([`RowLimits`]), whether the row can
//! be stored exactly; a row that cannot is kept verbatim (the JSON the stamp sent, the field and the
//! rule it broke) in the store's quarantine, in the same transaction as the rest of its window, and the
//! window and the watermark move on. Nothing is dropped silently, nothing is rounded or cut short:
//! the quarantine is counted in the stamp's status and the run summary and listed by
//! `azs-usage quarantine list` and `GET /quarantine`.
//!
//! A quarantined row is keyed like a usage row: `(stamp, reported window start, key)`, the key being
//! the first 128 bits of SHA-256 over the row's verbatim JSON, so pulling the same window again (a
//! re-run, a reprocess) never stores it twice. Reprocessing an hour replaces its quarantine with the
//! re-pull's, like its rows: once the store can hold the row (a column widened, the limits raised), a
//! reprocess moves it from the quarantine into the ledger.

use crate::stamp::StampId;
use crate::usage::{RowKey, UsageRow};
use crate::window::ReportedWindow;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// How a store counts the length of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TextUnit {
    /// UTF-16 code units, as SQL Server's `nvarchar(n)` counts them.
    Utf16,
    /// UTF-8 bytes, as SQLite's length limit counts them.
    Utf8Bytes,
}

/// What one store can hold of a usage row exactly (declared by the store adapter; see
/// `UsageLedger::row_limits`). A row over any limit is quarantined, never cut short or rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowLimits {
    pub text_unit: TextUnit,
    pub subscription_id: usize,
    pub meter_id: usize,
    pub resource_uri: usize,
    pub location: usize,
    pub tags: usize,
    pub additional_info: usize,
    /// Most significant decimals a quantity may have (trailing zeros do not count).
    pub quantity_decimals: u32,
    /// Most digits a quantity may have before the decimal point.
    pub quantity_integer_digits: u32,
}

/// Why a row cannot be stored: the field (named as the usage API names it) and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct Unrepresentable {
    pub field: &'static str,
    pub rule: String,
}

impl RowLimits {
    /// Whether `row` fits, and if not, the first field that does not.
    pub fn check(&self, row: &UsageRow) -> Result<(), Unrepresentable> {
        let unit = match self.text_unit {
            TextUnit::Utf16 => "UTF-16 code units",
            TextUnit::Utf8Bytes => "bytes",
        };
        let texts: [(&'static str, Option<&str>, usize); 6] = [
            ("properties.subscriptionId", Some(&row.subscription_id), self.subscription_id),
            ("properties.meterId", Some(&row.meter_id), self.meter_id),
            (
                "properties.instanceData.Microsoft.Resources.resourceUri",
                Some(&row.resource_uri),
                self.resource_uri,
            ),
            ("properties.instanceData.Microsoft.Resources.location", Some(&row.location), self.location),
            ("properties.instanceData.Microsoft.Resources.tags", row.tags.as_deref(), self.tags),
            (
                "properties.instanceData.Microsoft.Resources.additionalInfo",
                row.additional_info.as_deref(),
                self.additional_info,
            ),
        ];
        for (field, value, limit) in texts {
            let Some(value) = value else { continue };
            // Cheap first: UTF-16 never has more units than UTF-8 has bytes.
            if value.len() <= limit {
                continue;
            }
            let length = match self.text_unit {
                TextUnit::Utf16 => value.encode_utf16().count(),
                TextUnit::Utf8Bytes => value.len(),
            };
            if length > limit {
                return Err(Unrepresentable {
                    field,
                    rule: format!("is {length} {unit} long; the store holds at most {limit}"),
                });
            }
        }
        let quantity = row.quantity;
        let decimals = quantity.normalize().scale();
        if decimals > self.quantity_decimals {
            return Err(Unrepresentable {
                field: "properties.quantity",
                rule: format!(
                    "{quantity} has {decimals} significant decimals; the store holds at most {} (it would be rounded)",
                    self.quantity_decimals
                ),
            });
        }
        let integer_digits = integer_digits(quantity);
        if integer_digits > self.quantity_integer_digits {
            return Err(Unrepresentable {
                field: "properties.quantity",
                rule: format!(
                    "{quantity} has {integer_digits} integer digits; the store holds at most {}",
                    self.quantity_integer_digits
                ),
            });
        }
        Ok(())
    }
}

fn integer_digits(q: Decimal) -> u32 {
    let mut whole = q.trunc().abs().mantissa();
    let mut digits = 0;
    while whole > 0 {
        whole /= 10;
        digits += 1;
    }
    digits
}

/// A row of a window that is kept verbatim instead of stored as usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedRow {
    /// The row's JSON exactly as the stamp sent it (one entry of the page's `value` array); when a
    /// session cannot give the verbatim text, the row as read, in the API's field names.
    pub raw: String,
    /// The field that cannot be stored, as the usage API names it (`properties.quantity`).
    pub field: String,
    /// The field and the rule it breaks, in words.
    pub reason: String,
}

impl QuarantinedRow {
    pub fn new(raw: String, why: &Unrepresentable) -> Self {
        Self { raw, field: why.field.to_owned(), reason: why.to_string() }
    }

    /// The key that makes storing it exactly once possible: the first 128 bits of SHA-256 over the
    /// verbatim JSON (the same row sent again is the same text).
    pub fn key(&self) -> RowKey {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.raw.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        RowKey(key)
    }
}

/// A row as the usage API shapes it, for a session that has no verbatim text to give (the row's own
/// fields, nothing invented; times in RFC 3339 UTC, the quantity as its exact decimal text).
pub fn reconstructed_json(row: &UsageRow) -> String {
    use serde_json::value::RawValue;
    // Kept as JSON text, not parsed: a float would lose the quantity's scale.
    let raw = |text: &str| {
        RawValue::from_string(text.to_owned()).unwrap_or_else(|_| {
            RawValue::from_string(serde_json::to_string(text).expect("a string")).expect("JSON")
        })
    };
    let null = || RawValue::from_string("null".into()).expect("JSON");
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Resources<'a> {
        resource_uri: &'a str,
        location: &'a str,
        tags: Box<RawValue>,
        additional_info: Box<RawValue>,
    }
    #[derive(Serialize)]
    struct Instance<'a> {
        #[serde(rename = "Microsoft.Resources")]
        resources: Resources<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Properties<'a> {
        subscription_id: &'a str,
        usage_start_time: String,
        usage_end_time: String,
        instance_data: String,
        quantity: Box<RawValue>,
        meter_id: &'a str,
    }
    #[derive(Serialize)]
    struct Entry<'a> {
        properties: Properties<'a>,
    }
    let instance = Instance {
        resources: Resources {
            resource_uri: &row.resource_uri,
            location: &row.location,
            tags: row.tags.as_deref().map(raw).unwrap_or_else(null),
            additional_info: row.additional_info.as_deref().map(raw).unwrap_or_else(null),
        },
    };
    let entry = Entry {
        properties: Properties {
            subscription_id: &row.subscription_id,
            usage_start_time: row.usage_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            usage_end_time: row.usage_end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            instance_data: serde_json::to_string(&instance).expect("serialisable"),
            quantity: raw(&row.quantity.to_string()),
            meter_id: &row.meter_id,
        },
    };
    serde_json::to_string(&entry).expect("serialisable")
}

/// A quarantined row as stored: where it came from and when it was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineEntry {
    pub stamp_id: StampId,
    pub window: ReportedWindow,
    pub field: String,
    pub reason: String,
    /// The row as the stamp sent it (JSON text).
    pub raw: String,
    pub quarantined_at: DateTime<Utc>,
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
            tags: Some("{\"a\":\"b\"}".into()),
            additional_info: None,
        }
    }

    fn limits() -> RowLimits {
        RowLimits {
            text_unit: TextUnit::Utf16,
            subscription_id: 256,
            meter_id: 128,
            resource_uri: 4000,
            location: 256,
            tags: 1 << 30,
            additional_info: 1 << 30,
            quantity_decimals: 12,
            quantity_integer_digits: 26,
        }
    }

    #[test]
    fn a_row_within_every_limit_fits_and_trailing_zeros_are_not_decimals() {
        let mut r = row();
        r.quantity = Decimal::from_str("1.0000000000000000").unwrap();
        assert_eq!(limits().check(&r), Ok(()));
    }

    #[test]
    fn an_over_long_text_is_named_with_its_length_in_the_stores_unit() {
        let mut r = row();
        r.resource_uri = "é".repeat(4001);
        let why = limits().check(&r).unwrap_err();
        assert_eq!(why.field, "properties.instanceData.Microsoft.Resources.resourceUri");
        assert_eq!(why.rule, "is 4001 UTF-16 code units long; the store holds at most 4000");
        r.resource_uri = "é".repeat(4000); // 8,000 UTF-8 bytes, 4,000 UTF-16 units: fits
        assert_eq!(limits().check(&r), Ok(()));
        let bytes = RowLimits { text_unit: TextUnit::Utf8Bytes, ..limits() };
        assert!(bytes.check(&r).unwrap_err().rule.contains("8000 bytes"));
    }

    #[test]
    fn a_quantity_the_column_would_round_or_overflow_is_named() {
        let mut r = row();
        r.quantity = Decimal::from_str("0.0000000000001").unwrap();
        let why = limits().check(&r).unwrap_err();
        assert_eq!(why.field, "properties.quantity");
        assert!(why.rule.contains("13 significant decimals"), "{}", why.rule);
        r.quantity = Decimal::from_str("123456789012345678901234567").unwrap();
        assert!(limits().check(&r).unwrap_err().rule.contains("27 integer digits"));
        r.quantity = Decimal::from_str("-12345678901234567890123456").unwrap();
        assert_eq!(limits().check(&r), Ok(()));
    }

    #[test]
    fn the_same_verbatim_row_has_the_same_key_and_any_byte_changes_it() {
        let why = Unrepresentable { field: "properties.quantity", rule: "r".into() };
        let a = QuarantinedRow::new("{\"a\":1}".into(), &why);
        let b = QuarantinedRow::new("{\"a\":1}".into(), &why);
        let c = QuarantinedRow::new("{\"a\": 1}".into(), &why);
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert_eq!(a.reason, "properties.quantity: r");
    }

    #[test]
    fn a_reconstructed_row_has_the_api_shape_and_the_exact_quantity() {
        let text = reconstructed_json(&row());
        assert!(text.contains("\"quantity\":2.4000000000"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let instance: serde_json::Value =
            serde_json::from_str(json["properties"]["instanceData"].as_str().unwrap()).unwrap();
        assert_eq!(instance["Microsoft.Resources"]["tags"]["a"], "b");
        assert_eq!(json["properties"]["usageStartTime"], "2026-11-25T13:00:00Z");
    }
}
