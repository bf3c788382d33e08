//! Price books as CSV, for spreadsheets: one row per price, the version's own columns repeated on
//! each of its rows. Read into the same [`PriceBook`] as the JSON form and held to the same rules
//! ([`PriceBook::validated`]); written back so that reading gives the same books.
//!
//! ```text
//! book_id,currency,version,effective_from,parent_book_id,adjustment_percent,monthly_fee,one_time_fee,tax_percent,meter_id,unit_multiplier,pricing_unit,kind,property,equals,up_to,unit_price,reason
//! base,USD,1,2026-01-01T00:00:00Z,,,50,100,19,FAB6EB84...,,,property,ServiceType,Standard_D2_v2,,0.0513,
//! base,USD,1,2026-01-01T00:00:00Z,,,50,100,19,FAB6EB84...,,,property,ServiceType,,,0.0333,
//! ```
//!
//! `kind` is `unit`, `property` (one row per rule in order; an empty `equals` is the explicit
//! default), `graduated` or `volume` (one row per tier in order; an empty `up_to` on the last) or
//! `zero` (with a `reason`). A version without prices of its own (a child that only adjusts its
//! parent) is one row with an empty `meter_id`. Fields may be quoted; a field may not span lines.

use super::book::{BookVersion, MeterPrice, ParentBook, Price, PriceBook, PropertyRule, Tier, TierMode};
use super::focus::split_csv_line;
use super::money::Currency;
use crate::error::ValidationErrors;
use rust_decimal::Decimal;

pub const HEADER: &str = "book_id,currency,version,effective_from,parent_book_id,adjustment_percent,monthly_fee,\
one_time_fee,tax_percent,meter_id,unit_multiplier,pricing_unit,kind,property,equals,up_to,unit_price,reason";

const COLUMNS: usize = 18;

/// The books of a CSV text, each validated; every problem named by line and column at once.
pub fn books_from_csv(text: &str) -> Result<Vec<PriceBook>, ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let mut books: Vec<PriceBook> = Vec::new();
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim().trim_start_matches('\u{feff}') == HEADER => {}
        _ => {
            errors.push("line 1", format!("must be the header {HEADER}"));
            return Err(errors);
        }
    }
    for (n, line) in lines {
        let at = |column: &str| format!("line {}: {column}", n + 1);
        let f = split_csv_line(line);
        if f.len() != COLUMNS {
            errors.push(at("columns"), format!("must be {COLUMNS} fields, found {}", f.len()));
            continue;
        }
        let text = |i: usize| f[i].trim().to_owned();
        let opt = |i: usize| Some(text(i)).filter(|s| !s.is_empty());
        let mut decimal = |i: usize, name: &str| -> Option<Decimal> {
            let t = text(i);
            if t.is_empty() {
                return None;
            }
            t.parse::<Decimal>().map_err(|_| errors.push(at(name), "must be a decimal number")).ok()
        };
        let adjustment = decimal(5, "adjustment_percent");
        let (monthly_fee, one_time_fee, tax_percent) =
            (decimal(6, "monthly_fee"), decimal(7, "one_time_fee"), decimal(8, "tax_percent"));
        let unit_multiplier = decimal(10, "unit_multiplier");
        let up_to = decimal(15, "up_to");
        let unit_price = decimal(16, "unit_price");
        let Ok(version) = text(2).parse::<u32>() else {
            errors.push(at("version"), "must be a whole number");
            continue;
        };
        let Ok(effective_from) = text(3).parse() else {
            errors.push(at("effective_from"), "must be an RFC 3339 UTC time such as 2026-01-01T00:00:00Z");
            continue;
        };
        let parent = match (opt(4), adjustment) {
            (Some(book_id), Some(adjustment_percent)) => Some(ParentBook { book_id, adjustment_percent }),
            (None, None) => None,
            _ => {
                errors.push(at("parent_book_id"), "and adjustment_percent must be given together");
                None
            }
        };
        let shell = BookVersion {
            version,
            effective_from,
            parent,
            meters: Vec::new(),
            monthly_fee,
            one_time_fee,
            tax_percent,
        };
        let id = text(0);
        let currency = Currency { code: text(1).to_ascii_uppercase(), minor_units: 0 };
        let book = match books.iter_mut().position(|b| b.id == id) {
            Some(i) => &mut books[i],
            None => {
                books.push(PriceBook { id: id.clone(), currency: currency.clone(), versions: Vec::new() });
                books.last_mut().expect("just pushed")
            }
        };
        if book.currency.code != currency.code {
            errors.push(at("currency"), format!("must be {} on every row of book {id}", book.currency.code));
        }
        let v = match book.versions.iter().position(|v| v.version == version) {
            Some(i) => {
                let v = &mut book.versions[i];
                if (BookVersion { meters: Vec::new(), ..v.clone() }) != shell {
                    errors.push(
                        at("version"),
                        format!("columns of version {version} must repeat its first row's"),
                    );
                }
                v
            }
            None => {
                book.versions.push(shell);
                book.versions.last_mut().expect("just pushed")
            }
        };
        let Some(meter_id) = opt(9) else { continue };
        let same_meter = v.meters.last().is_some_and(|m| m.meter_id == meter_id);
        let kind = text(12);
        // Absent: say so; present but not a number: said above already.
        let price_given = !text(16).is_empty();
        let need = |price: Option<Decimal>, errors: &mut ValidationErrors| {
            price.or_else(|| {
                if !price_given {
                    errors.push(at("unit_price"), "must be set for this kind");
                }
                None
            })
        };
        match kind.as_str() {
            "property"
                if same_meter
                    && matches!(v.meters.last().map(|m| &m.price), Some(Price::ByProperty { .. })) =>
            {
                let Some(price) = need(unit_price, &mut errors) else { continue };
                if let Some(Price::ByProperty { rules, default_unit_price, .. }) =
                    v.meters.last_mut().map(|m| &mut m.price)
                {
                    match opt(14) {
                        Some(equals) => rules.push(PropertyRule { equals, unit_price: price }),
                        None => *default_unit_price = price,
                    }
                }
                continue;
            }
            "graduated" | "volume"
                if same_meter && matches!(v.meters.last().map(|m| &m.price), Some(Price::Tiered { .. })) =>
            {
                let Some(price) = need(unit_price, &mut errors) else { continue };
                if let Some(Price::Tiered { tiers, .. }) = v.meters.last_mut().map(|m| &mut m.price) {
                    tiers.push(Tier { up_to, unit_price: price });
                }
                continue;
            }
            _ => {}
        }
        let price = match kind.as_str() {
            "unit" => need(unit_price, &mut errors).map(|unit_price| Price::Unit { unit_price }),
            "property" => need(unit_price, &mut errors).map(|price| {
                let property = text(13);
                match opt(14) {
                    Some(equals) => Price::ByProperty {
                        property,
                        rules: vec![PropertyRule { equals, unit_price: price }],
                        // No default row (yet): a negative placeholder the rules refuse if it stays.
                        default_unit_price: Decimal::NEGATIVE_ONE,
                    },
                    None => Price::ByProperty { property, rules: Vec::new(), default_unit_price: price },
                }
            }),
            "graduated" | "volume" => need(unit_price, &mut errors).map(|price| Price::Tiered {
                mode: if kind == "graduated" { TierMode::Graduated } else { TierMode::Volume },
                tiers: vec![Tier { up_to, unit_price: price }],
            }),
            "zero" => Some(Price::Zero { reason: text(17) }),
            _ => {
                errors.push(at("kind"), "must be unit, property, graduated, volume or zero");
                None
            }
        };
        if let Some(price) = price {
            v.meters.push(MeterPrice { meter_id, unit_multiplier, pricing_unit: opt(11), price });
        }
    }
    for book in &mut books {
        for v in &mut book.versions {
            for m in &mut v.meters {
                if let Price::ByProperty { default_unit_price, .. } = &mut m.price
                    && *default_unit_price == Decimal::NEGATIVE_ONE
                {
                    errors.push(
                        format!("book {} version {} meter {}", book.id, v.version, m.meter_id),
                        "needs a property row with an empty equals: the explicit default",
                    );
                    *default_unit_price = Decimal::ZERO;
                }
            }
        }
    }
    let mut valid = Vec::new();
    for mut book in books {
        book.currency = Currency::from_code(&book.currency.code).unwrap_or(book.currency);
        match book.validated() {
            Ok(book) => valid.push(book),
            Err(e) => errors.0.extend(e.0),
        }
    }
    errors.into_result(valid)
}

/// The books as CSV ([`books_from_csv`] reads it back to the same books).
pub fn books_to_csv(books: &[PriceBook]) -> String {
    let mut out = format!("{HEADER}\r\n");
    let field = |s: &str| {
        if s.contains([',', '"']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
    };
    let dec = |d: Option<Decimal>| d.map(|d| d.to_string()).unwrap_or_default();
    for book in books {
        for v in &book.versions {
            let head = [
                field(&book.id),
                book.currency.code.clone(),
                v.version.to_string(),
                v.effective_from.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                v.parent.as_ref().map(|p| field(&p.book_id)).unwrap_or_default(),
                dec(v.parent.as_ref().map(|p| p.adjustment_percent)),
                dec(v.monthly_fee),
                dec(v.one_time_fee),
                dec(v.tax_percent),
            ]
            .join(",");
            let mut row = |meter: &str, m: Option<&MeterPrice>, tail: [String; 6]| {
                let multiplier = dec(m.and_then(|m| m.unit_multiplier));
                let unit = m.and_then(|m| m.pricing_unit.as_deref()).map(field).unwrap_or_default();
                out.push_str(&format!("{head},{meter},{multiplier},{unit},{}\r\n", tail.join(",")));
            };
            if v.meters.is_empty() {
                row("", None, Default::default());
            }
            for m in &v.meters {
                let s = String::new;
                match &m.price {
                    Price::Unit { unit_price } => {
                        row(&m.meter_id, Some(m), ["unit".into(), s(), s(), s(), unit_price.to_string(), s()])
                    }
                    Price::ByProperty { property, rules, default_unit_price } => {
                        for r in rules {
                            let tail = [
                                "property".into(),
                                field(property),
                                field(&r.equals),
                                s(),
                                r.unit_price.to_string(),
                                s(),
                            ];
                            row(&m.meter_id, Some(m), tail);
                        }
                        let tail = [
                            "property".into(),
                            field(property),
                            s(),
                            s(),
                            default_unit_price.to_string(),
                            s(),
                        ];
                        row(&m.meter_id, Some(m), tail);
                    }
                    Price::Tiered { mode, tiers } => {
                        let kind = match mode {
                            TierMode::Graduated => "graduated",
                            TierMode::Volume => "volume",
                        };
                        for t in tiers {
                            let tail = [kind.into(), s(), s(), dec(t.up_to), t.unit_price.to_string(), s()];
                            row(&m.meter_id, Some(m), tail);
                        }
                    }
                    Price::Zero { reason } => {
                        row(&m.meter_id, Some(m), ["zero".into(), s(), s(), s(), s(), field(reason)])
                    }
                }
            }
        }
    }
    out
}
