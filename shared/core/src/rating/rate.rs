//! Rating: one mapped usage row and the card in force at its usage hour become a rated line. Pure
//! and exact: decimals throughout (28 significant digits), nothing rounded here; rounding happens
//! once, on a statement's totals ([`super::money`]).

use super::book::{CardPrice, Price, RateCard, TierMode};
use crate::usage::UsageRow;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A normalised meter id (32 upper-case hex digits) held inline: rating looks one up per row
/// without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterKey([u8; 32]);

impl MeterKey {
    /// The key of a meter id as sent (any casing, with or without hyphens and braces), or `None`
    /// when it is not a GUID.
    pub fn of(meter_id: &str) -> Option<MeterKey> {
        let mut key = [0u8; 32];
        let mut n = 0;
        for b in meter_id.bytes() {
            match b {
                b'-' | b'{' | b'}' => continue,
                b if b.is_ascii_hexdigit() && n < 32 => {
                    key[n] = b.to_ascii_uppercase();
                    n += 1;
                }
                _ => return None,
            }
        }
        (n == 32).then_some(MeterKey(key))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl fmt::Debug for MeterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeterKey({})", self.as_str())
    }
}

impl fmt::Display for MeterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one row costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedLine {
    pub meter: MeterKey,
    /// The reported quantity times the meter's unit multiplier.
    pub pricing_quantity: Decimal,
    pub charge: Charge,
}

/// Rating allocates nothing per row: a charge names the price that applied by position
/// ([`Applied`]), and [`Applied::component`] spells it out when a statement line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Priced on its own: `amount = pricing_quantity * unit_price`, exact.
    Priced { applied: Applied, unit_price: Decimal, list_unit_price: Decimal, amount: Decimal },
    /// Priced by the band the billing subscription's month reaches: the statement prices it with the
    /// month's other rows of the meter.
    Tiered { mode: TierMode },
    /// Rated at zero on purpose (the reason is the price's, [`Price::Zero`]).
    Zero,
}

/// Which price of a `Unit` or `ByProperty` meter applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Applied {
    Unit,
    /// Property rule number `n` (from 0) matched.
    Rule(usize),
    /// No property rule matched: the explicit default.
    Default,
}

impl Applied {
    /// The component this names in `price` (the meter's price on the card that rated the row).
    pub fn component(&self, price: &Price) -> Component {
        match (self, price) {
            (Applied::Rule(n), Price::ByProperty { property, rules, .. }) => {
                Component::Property { property: property.clone(), value: rules[*n].equals.clone() }
            }
            (Applied::Default, Price::ByProperty { property, .. }) => {
                Component::PropertyDefault { property: property.clone() }
            }
            _ => Component::Unit,
        }
    }
}

/// Which price of a meter applied: what a statement groups lines by, after the meter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Component {
    /// The meter's one unit price.
    Unit,
    /// A property rule matched: `property` equals `value`.
    Property { property: String, value: String },
    /// A property price's explicit default (no rule matched, or the row lacks the property).
    PropertyDefault { property: String },
    /// Band `index` (from 0) of a tiered price.
    Tier { index: usize },
    /// A zero-rated meter.
    Zero,
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Component::Unit => f.write_str("unit"),
            Component::Property { property, value } => write!(f, "{property}={value}"),
            Component::PropertyDefault { property } => write!(f, "{property}=(default)"),
            Component::Tier { index } => write!(f, "tier {}", index + 1),
            Component::Zero => f.write_str("zero-rated"),
        }
    }
}

/// Why a row has no rated line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrated {
    /// The card has no price for the meter: listed, and blocks finalising, never rated at zero.
    #[error("meter {meter_id} has no price in {book}")]
    Unpriced { meter_id: String, book: String },
    /// Quantity times price leaves the 28 significant digits exact decimals hold.
    #[error("meter {meter_id}: quantity {quantity} times its price overflows")]
    Overflow { meter_id: String, quantity: Decimal },
}

/// The rated line of `row` under `card`, the card in force at the row's usage hour.
pub fn rate(row: &UsageRow, card: &RateCard) -> Result<RatedLine, Unrated> {
    let unpriced = || Unrated::Unpriced { meter_id: row.meter_id.clone(), book: card.lineage.to_string() };
    let meter = MeterKey::of(&row.meter_id).ok_or_else(unpriced)?;
    let price = card.meters.get(meter.as_str()).ok_or_else(unpriced)?;
    rate_with(row, meter, price)
}

/// [`rate`] once the meter's price is found.
pub fn rate_with(row: &UsageRow, meter: MeterKey, price: &CardPrice) -> Result<RatedLine, Unrated> {
    let overflow = || Unrated::Overflow { meter_id: row.meter_id.clone(), quantity: row.quantity };
    let pricing_quantity = row.quantity.checked_mul(price.unit_multiplier).ok_or_else(overflow)?;
    let charge = match &price.price {
        Price::Zero { .. } => Charge::Zero,
        Price::Tiered { mode, .. } => Charge::Tiered { mode: *mode },
        priced => {
            let info = row.additional_info.as_deref();
            let (applied, unit_price) = unit_price_of(priced, info);
            // The list price is the same kind of price (the parent's, before the adjustment), so
            // the same rule applies.
            let (_, list_unit_price) = unit_price_of(&price.list, info);
            let amount = pricing_quantity.checked_mul(unit_price).ok_or_else(overflow)?;
            Charge::Priced { applied, unit_price, list_unit_price, amount }
        }
    };
    Ok(RatedLine { meter, pricing_quantity, charge })
}

/// The unit price of a `Unit` or `ByProperty` price for a row's `additionalInfo`.
fn unit_price_of(price: &Price, additional_info: Option<&str>) -> (Applied, Decimal) {
    match price {
        Price::Unit { unit_price } => (Applied::Unit, *unit_price),
        Price::ByProperty { property, rules, default_unit_price } => {
            let matched = additional_info.and_then(|info| {
                with_property(info, property, |value| {
                    rules.iter().position(|r| r.equals.eq_ignore_ascii_case(value))
                })
            });
            match matched.flatten() {
                Some(n) => (Applied::Rule(n), rules[n].unit_price),
                None => (Applied::Default, *default_unit_price),
            }
        }
        // Neither kind has one unit price; rating never asks (see `rate_with`).
        Price::Tiered { .. } | Price::Zero { .. } => (Applied::Unit, Decimal::ZERO),
    }
}

/// Calls `found` with the text of the top-level field `property` of `additionalInfo` (an object,
/// or a string holding one); numbers and booleans as their JSON text. Reads the JSON without
/// building it: the other fields are skipped, nothing is allocated unless the value has escapes.
fn with_property<T>(additional_info: &str, property: &str, found: impl FnOnce(&str) -> T) -> Option<T> {
    match find_field(additional_info, property) {
        Ok(value) => value.map(|v| found(&v)),
        Err(()) => {
            let inner: String = serde_json::from_str(additional_info).ok()?;
            find_field(&inner, property).ok().flatten().map(|v| found(&v))
        }
    }
}

/// The field's text, `Ok(None)` when the object lacks it, `Err` when the text is not an object.
fn find_field<'a>(json: &'a str, property: &str) -> Result<Option<std::borrow::Cow<'a, str>>, ()> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    use std::borrow::Cow;

    struct Field<'p>(&'p str);

    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Option<Cow<'de, str>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if found.is_none() && key == self.0 {
                    let raw: &'de serde_json::value::RawValue = map.next_value()?;
                    found = Some(match serde_json::from_str::<Cow<'de, str>>(raw.get()) {
                        Ok(text) => text,
                        Err(_) => Cow::Borrowed(raw.get()),
                    });
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    let mut de = serde_json::Deserializer::from_str(json);
    let value = de.deserialize_map(Field(property)).map_err(|_| ())?;
    de.end().map_err(|_| ())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::book::{PriceBook, PriceBooks};
    use std::str::FromStr;

    const VM: &str = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5";
    const IP: &str = "f271a8a3-88c4-4d93-956a-063e1d2fa80b";

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn books() -> PriceBooks {
        let base: PriceBook = serde_json::from_value(serde_json::json!({
            "id": "base", "currency": {"code": "USD", "minorUnits": 2},
            "versions": [{"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z", "meters": [
                {"meterId": VM, "price": {"kind": "byProperty", "property": "ServiceType",
                    "rules": [{"equals": "Standard_D2_v2", "unitPrice": "0.05"},
                              {"equals": "standard_d2_v2", "unitPrice": "9"}],
                    "defaultUnitPrice": "0.04"}},
                {"meterId": IP, "unitMultiplier": "0.5", "price": {"kind": "unit", "unitPrice": "0.004"}}
            ]}]
        }))
        .unwrap();
        let gold: PriceBook = serde_json::from_value(serde_json::json!({
            "id": "gold", "currency": {"code": "USD", "minorUnits": 2},
            "versions": [{"version": 1, "effectiveFrom": "2026-01-01T00:00:00Z",
                "parent": {"bookId": "base", "adjustmentPercent": "-10"}, "meters": []}]
        }))
        .unwrap();
        PriceBooks::new([base.validated().unwrap(), gold.validated().unwrap()])
    }

    fn row(meter: &str, quantity: &str, info: Option<&str>) -> UsageRow {
        UsageRow {
            subscription_id: "s".into(),
            meter_id: meter.into(),
            usage_start: "2026-11-25T13:00:00Z".parse().unwrap(),
            usage_end: "2026-11-25T14:00:00Z".parse().unwrap(),
            quantity: d(quantity),
            resource_uri: "/r".into(),
            location: "local".into(),
            tags: None,
            additional_info: info.map(str::to_owned),
        }
    }

    fn at() -> chrono::DateTime<chrono::Utc> {
        "2026-11-25T13:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_property_price_takes_the_first_matching_rule_case_insensitively_else_its_default() {
        let card = books().card_at("base", at()).unwrap();
        let price = &card.meters[MeterKey::of(VM).unwrap().as_str()].price;
        let vm = |info| match rate(&row(VM, "2.0000000000", info), &card).unwrap().charge {
            Charge::Priced { applied, amount, .. } => (applied.component(price).to_string(), amount),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            vm(Some(r#"{"ServiceType":"STANDARD_D2_V2"}"#)),
            ("ServiceType=Standard_D2_v2".into(), d("0.1"))
        );
        assert_eq!(
            vm(Some(r#""{\"ServiceType\":\"Standard_D2_v2\"}""#)).1,
            d("0.1"),
            "a string holding JSON"
        );
        assert_eq!(vm(Some(r#"{"ServiceType":"Standard_A1"}"#)), ("ServiceType=(default)".into(), d("0.08")));
        assert_eq!(vm(None).1, d("0.08"));
        assert_eq!(vm(Some("not json")).1, d("0.08"));
        assert_eq!(
            vm(Some(r#"{"ServiceType":"Standard_D2_v2","ServiceType":"Standard_A1"}"#)).1,
            d("0.1"),
            "the first wins"
        );
        assert_eq!(vm(Some(r#"{"Other":{"ServiceType":"Standard_D2_v2"}}"#)).1, d("0.08"), "top level only");
        assert_eq!(vm(Some(r#"{"ServiceType":"Standard\u005fD2_v2"}"#)).1, d("0.1"), "escapes decoded");
    }

    #[test]
    fn the_unit_multiplier_scales_the_quantity_before_the_price_and_nothing_is_rounded() {
        let card = books().card_at("base", at()).unwrap();
        let rated = rate(&row(IP, "3", None), &card).unwrap();
        assert_eq!(rated.pricing_quantity, d("1.5"));
        assert!(matches!(rated.charge, Charge::Priced { amount, .. } if amount == d("0.006")));
    }

    #[test]
    fn a_child_book_inherits_its_parents_prices_adjusted_and_keeps_the_parents_as_list_price() {
        let card = books().card_at("gold", at()).unwrap();
        assert_eq!(card.lineage.to_string(), "gold@1 < base@1");
        match rate(&row(IP, "10", None), &card).unwrap().charge {
            Charge::Priced { unit_price, list_unit_price, amount, .. } => {
                assert_eq!((unit_price, list_unit_price, amount), (d("0.0036"), d("0.004"), d("0.018")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_meter_without_a_price_is_unpriced_never_zero() {
        let card = books().card_at("base", at()).unwrap();
        let err = rate(&row("09F8879E-87E9-4305-A572-4B7BE209F857", "1", None), &card).unwrap_err();
        assert!(matches!(err, Unrated::Unpriced { .. }), "{err:?}");
        assert!(err.to_string().contains("base@1"), "{err}");
    }

    #[test]
    fn meter_keys_normalise_and_refuse_what_is_not_a_guid() {
        assert_eq!(MeterKey::of(IP).unwrap().as_str(), "F271A8A388C44D93956A063E1D2FA80B");
        assert_eq!(MeterKey::of("{F271A8A388C44D93956A063E1D2FA80B}"), MeterKey::of(IP));
        assert!(MeterKey::of("F271A8A388C44D93956A063E1D2FA80").is_none());
        assert!(MeterKey::of("F271A8A388C44D93956A063E1D2FA80BB").is_none());
        assert!(MeterKey::of("G271A8A388C44D93956A063E1D2FA80B").is_none());
    }
}
