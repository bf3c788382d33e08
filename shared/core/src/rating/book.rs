//! Price books: what each meter costs, versioned and effective-dated, optionally derived from a parent
//! book by a markup or discount.
//!
//! A book holds versions; the version in force at a usage hour is the newest whose `effectiveFrom` is
//! at or before that hour. A version a final statement used is never edited: a correction is a new
//! version. A child book's version names a parent book and an adjustment percentage (`10` a markup,
//! `-15` a discount); the child inherits every meter of the parent's version in force at the same hour,
//! adjusted, and overrides the meters it prices itself (its own prices are not adjusted). Fees and the
//! tax rate are inherited unless the child sets its own. [`PriceBooks::card_at`] flattens that into a
//! [`RateCard`], what rating reads.

use super::money::{CURRENCY_RULE, Currency};
use crate::error::ValidationErrors;
use crate::usage::normalize_meter_id;
use crate::window::{EFFECTIVE_HOUR_RULE, is_effective_hour};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// A price book as imported (JSON): its id, currency and versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriceBook {
    pub id: String,
    pub currency: Currency,
    pub versions: Vec<BookVersion>,
}

/// One effective-dated version of a book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BookVersion {
    pub version: u32,
    /// The first usage hour this version prices (a whole UTC hour).
    pub effective_from: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentBook>,
    #[serde(default)]
    pub meters: Vec<MeterPrice>,
    /// Charged per billing subscription per month, prorated by the hours it was active.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_decimal")]
    pub monthly_fee: Option<Decimal>,
    /// Charged once, in the month a billing subscription became active.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_decimal")]
    pub one_time_fee: Option<Decimal>,
    /// Tax on a statement's subtotal, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_decimal")]
    pub tax_percent: Option<Decimal>,
}

impl BookVersion {
    /// The version as stored: its JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a book version serialises")
    }

    /// A version from [`BookVersion::to_json`]'s document.
    pub fn from_json(json: &str) -> Result<BookVersion, String> {
        serde_json::from_str(json).map_err(|e| format!("a stored price book version does not read back: {e}"))
    }
}

/// The book a version derives from, and by how much its prices move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentBook {
    pub book_id: String,
    /// Percent added to every inherited price: `10` is a 10 % markup, `-15` a 15 % discount.
    #[serde(with = "rust_decimal::serde::str")]
    pub adjustment_percent: Decimal,
}

/// The price of one meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeterPrice {
    /// The meter id; stored normalised ([`normalize_meter_id`]).
    pub meter_id: String,
    /// The reported quantity is multiplied by this before pricing (e.g. `0.0013698630` to turn
    /// hours into 730-hour months); 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_decimal")]
    pub unit_multiplier: Option<Decimal>,
    /// What a priced quantity counts (FOCUS `PricingUnit`); the meter's own unit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing_unit: Option<String>,
    pub price: Price,
}

/// How a meter's priced quantity becomes money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum Price {
    /// One price per priced unit.
    #[serde(rename_all = "camelCase")]
    Unit {
        #[serde(with = "rust_decimal::serde::str")]
        unit_price: Decimal,
    },
    /// A price by a field of the row's `additionalInfo` (e.g. `ServiceType`, the VM size): the first
    /// rule whose value equals the field's (ASCII case-insensitive) wins, else the default.
    #[serde(rename_all = "camelCase")]
    ByProperty {
        property: String,
        rules: Vec<PropertyRule>,
        #[serde(with = "rust_decimal::serde::str")]
        default_unit_price: Decimal,
    },
    /// Prices by the priced quantity a billing subscription used of the meter in the month.
    #[serde(rename_all = "camelCase")]
    Tiered { mode: TierMode, tiers: Vec<Tier> },
    /// Rated at zero on purpose.
    Zero { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertyRule {
    pub equals: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TierMode {
    /// Each band's quantity at that band's price (the first 100 at one price, the next at another).
    Graduated,
    /// The whole month's quantity at the price of the band the total falls in.
    Volume,
}

/// A band `(previous upTo, upTo]` of the month's priced quantity; the last has no `upTo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tier {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_decimal")]
    pub up_to: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    pub unit_price: Decimal,
}

mod opt_decimal {
    use rust_decimal::Decimal;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        rust_decimal::serde::str_option::deserialize(d)
    }
}

/// Longest book id, property name, rule value, pricing unit or zero-rating reason.
const MAX_TEXT: usize = 128;

/// Bounds that keep every statement total inside what an exact decimal holds (7.9e28), so summing
/// a month can never overflow: a row's quantity is at most [`MAX_QUANTITY`] (larger rows are not
/// rated, and block finalising), times a multiplier and a unit price at most these, over tens of
/// millions of rows.
const UNIT_PRICE_RULE: &str = "must be between 0 and 1000000";
pub const MAX_UNIT_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
pub const MAX_UNIT_MULTIPLIER: Decimal = Decimal::from_parts(1_000, 0, 0, false, 0);
pub const MAX_FEE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// 10^12: far beyond any meter's hourly quantity.
pub const MAX_QUANTITY: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

impl PriceBook {
    /// Every rule of a book, all violations at once, fields named as in the JSON
    /// (`versions[1].meters[0].price.unitPrice`). Normalises meter ids and sorts versions by
    /// `effectiveFrom`.
    pub fn validated(mut self) -> Result<PriceBook, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if !is_book_id(&self.id) {
            errors.push(
                "id",
                "must be 1 to 128 characters: letters, digits, . _ -, starting with a letter or digit",
            );
        }
        match Currency::from_code(&self.currency.code) {
            Some(c) if c.minor_units == self.currency.minor_units => self.currency = c,
            Some(c) => {
                errors.push("currency.minorUnits", format!("must be {} for {}", c.minor_units, c.code))
            }
            None => errors.push("currency.code", CURRENCY_RULE),
        }
        if self.versions.is_empty() {
            errors.push("versions", "must hold at least one version");
        }
        let mut numbers = std::collections::HashSet::new();
        let mut starts = std::collections::HashSet::new();
        for (v, version) in self.versions.iter_mut().enumerate() {
            let at = |field: &str| format!("versions[{v}].{field}");
            if !numbers.insert(version.version) {
                errors.push(at("version"), "must be unique within the book");
            }
            if !is_effective_hour(version.effective_from) {
                errors.push(at("effectiveFrom"), EFFECTIVE_HOUR_RULE);
            } else if !starts.insert(version.effective_from) {
                errors.push(at("effectiveFrom"), "must differ from every other version's");
            }
            if let Some(parent) = &version.parent {
                if parent.book_id == self.id {
                    errors.push(at("parent.bookId"), "must name another book");
                }
                if parent.adjustment_percent <= Decimal::from(-100) {
                    errors.push(at("parent.adjustmentPercent"), "must be greater than -100");
                }
            }
            for (field, fee) in [("monthlyFee", version.monthly_fee), ("oneTimeFee", version.one_time_fee)] {
                if fee.is_some_and(|f| f < Decimal::ZERO || f > MAX_FEE) {
                    errors.push(at(field), format!("must be between 0 and {MAX_FEE}"));
                }
            }
            if version.tax_percent.is_some_and(|t| t < Decimal::ZERO || t > Decimal::from(100)) {
                errors.push(at("taxPercent"), "must be between 0 and 100");
            }
            let mut meters = std::collections::HashSet::new();
            for (m, meter) in version.meters.iter_mut().enumerate() {
                let at = |field: &str| format!("versions[{v}].meters[{m}].{field}");
                meter.meter_id = normalize_meter_id(&meter.meter_id);
                if meter.meter_id.len() != 32 || !meter.meter_id.chars().all(|c| c.is_ascii_hexdigit()) {
                    errors.push(at("meterId"), "must be a meter GUID");
                } else if !meters.insert(meter.meter_id.clone()) {
                    errors.push(at("meterId"), "must appear once per version");
                }
                if meter.unit_multiplier.is_some_and(|m| m <= Decimal::ZERO || m > MAX_UNIT_MULTIPLIER) {
                    errors.push(
                        at("unitMultiplier"),
                        format!("must be greater than 0 and at most {MAX_UNIT_MULTIPLIER}"),
                    );
                }
                if meter.pricing_unit.as_deref().is_some_and(|u| !is_text(u)) {
                    errors.push(at("pricingUnit"), "must be 1 to 128 printable characters");
                }
                validate_price(&meter.price, &at, &mut errors);
            }
        }
        self.versions.sort_by_key(|v| v.effective_from);
        errors.into_result(self)
    }

    /// The version in force at `hour`: the newest that took effect at or before it.
    pub fn version_at(&self, hour: DateTime<Utc>) -> Option<&BookVersion> {
        let after = self.versions.partition_point(|v| v.effective_from <= hour);
        after.checked_sub(1).map(|i| &self.versions[i])
    }
}

fn validate_price(price: &Price, at: &dyn Fn(&str) -> String, errors: &mut ValidationErrors) {
    let negative = |d: &Decimal| *d < Decimal::ZERO || *d > MAX_UNIT_PRICE;
    match price {
        Price::Unit { unit_price } => {
            if negative(unit_price) {
                errors.push(at("price.unitPrice"), UNIT_PRICE_RULE);
            }
        }
        Price::ByProperty { property, rules, default_unit_price } => {
            if !is_text(property) {
                errors.push(at("price.property"), "must be 1 to 128 printable characters");
            }
            if negative(default_unit_price) {
                errors.push(at("price.defaultUnitPrice"), UNIT_PRICE_RULE);
            }
            for (r, rule) in rules.iter().enumerate() {
                if !is_text(&rule.equals) {
                    errors.push(
                        at(&format!("price.rules[{r}].equals")),
                        "must be 1 to 128 printable characters",
                    );
                }
                if negative(&rule.unit_price) {
                    errors.push(at(&format!("price.rules[{r}].unitPrice")), UNIT_PRICE_RULE);
                }
            }
        }
        Price::Tiered { tiers, .. } => {
            if tiers.is_empty() {
                errors.push(at("price.tiers"), "must hold at least one tier");
            }
            let mut previous = Decimal::ZERO;
            for (t, tier) in tiers.iter().enumerate() {
                let last = t + 1 == tiers.len();
                match tier.up_to {
                    Some(_) if last => {
                        errors.push(at(&format!("price.tiers[{t}].upTo")), "must be absent on the last tier")
                    }
                    None if !last => errors.push(
                        at(&format!("price.tiers[{t}].upTo")),
                        "must be set on every tier but the last",
                    ),
                    Some(up_to) if up_to <= previous => errors.push(
                        at(&format!("price.tiers[{t}].upTo")),
                        "must be greater than the previous tier's",
                    ),
                    Some(up_to) => previous = up_to,
                    None => {}
                }
                if negative(&tier.unit_price) {
                    errors.push(at(&format!("price.tiers[{t}].unitPrice")), UNIT_PRICE_RULE);
                }
            }
        }
        Price::Zero { reason } => {
            if !is_text(reason) {
                errors.push(at("price.reason"), "must say why, in 1 to 128 printable characters");
            }
        }
    }
}

fn is_text(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

/// A book id: written into exports and statements, so as tame as a billing subscription id.
pub fn is_book_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.len() <= MAX_TEXT
        && chars.all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Which book versions a card was flattened from, child first: `gold@3 < base@2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lineage(pub Vec<(String, u32)>);

impl Lineage {
    pub fn book_id(&self) -> &str {
        &self.0[0].0
    }
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (book, version)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" < ")?;
            }
            write!(f, "{book}@{version}")?;
        }
        Ok(())
    }
}

/// A meter's price as a card holds it: adjusted for the book that rates with it, and the price it
/// was adjusted from (the *list* price: what FOCUS calls `ListUnitPrice`, and the base a discount
/// is shown against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPrice {
    pub price: Price,
    pub list: Price,
    pub unit_multiplier: Decimal,
    pub pricing_unit: Option<String>,
}

/// A book version flattened with its parents: every meter's price at one hour. What
/// [`super::rate::rate`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCard {
    pub lineage: Lineage,
    pub currency: Currency,
    /// By normalised meter id.
    pub meters: HashMap<String, CardPrice>,
    pub monthly_fee: Option<Decimal>,
    pub one_time_fee: Option<Decimal>,
    pub tax_percent: Option<Decimal>,
}

/// Why no card exists for a book at an hour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("price book {book:?} does not exist")]
    UnknownBook { book: String },
    #[error("price book {book:?} has no version in force at {hour}")]
    NoVersion { book: String, hour: DateTime<Utc> },
    #[error("price book {book:?} derives from itself through {through}")]
    ParentCycle { book: String, through: String },
    #[error("price book {book:?} is in {currency}, its parent {parent:?} in {parent_currency}")]
    CurrencyMismatch { book: String, currency: String, parent: String, parent_currency: String },
}

/// Every price book, by id.
#[derive(Debug, Clone, Default)]
pub struct PriceBooks {
    books: BTreeMap<String, PriceBook>,
}

impl PriceBooks {
    pub fn new(books: impl IntoIterator<Item = PriceBook>) -> Self {
        Self { books: books.into_iter().map(|b| (b.id.clone(), b)).collect() }
    }

    pub fn get(&self, id: &str) -> Option<&PriceBook> {
        self.books.get(id)
    }

    /// Every hour at which some book's version changes.
    pub fn change_points(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.books.values().flat_map(|b| b.versions.iter().map(|v| v.effective_from))
    }

    /// Which versions price `book` at `hour`, child first (cheap: no prices copied).
    pub fn lineage_at(&self, book: &str, hour: DateTime<Utc>) -> Result<Lineage, BookError> {
        let mut lineage = Vec::new();
        let mut id = book.to_owned();
        loop {
            if lineage.iter().any(|(b, _)| *b == id) {
                return Err(BookError::ParentCycle { book: book.to_owned(), through: id });
            }
            let b = self.books.get(&id).ok_or_else(|| BookError::UnknownBook { book: id.clone() })?;
            let v = b.version_at(hour).ok_or_else(|| BookError::NoVersion { book: id.clone(), hour })?;
            lineage.push((id.clone(), v.version));
            match &v.parent {
                Some(parent) => id = parent.book_id.clone(),
                None => return Ok(Lineage(lineage)),
            }
        }
    }

    /// The card `book` rates with at `hour`.
    pub fn card_at(&self, book: &str, hour: DateTime<Utc>) -> Result<RateCard, BookError> {
        let lineage = self.lineage_at(book, hour)?;
        self.card_of(&lineage)
    }

    /// The card of a lineage from [`PriceBooks::lineage_at`]: the root's prices, then each child's
    /// adjustment and overrides on top.
    pub fn card_of(&self, lineage: &Lineage) -> Result<RateCard, BookError> {
        let version_of = |(book, version): &(String, u32)| {
            let b = self.books.get(book).ok_or_else(|| BookError::UnknownBook { book: book.clone() })?;
            let v =
                b.versions.iter().find(|v| v.version == *version).expect("a lineage names existing versions");
            Ok::<_, BookError>((b, v))
        };
        let mut card: Option<RateCard> = None;
        for link in lineage.0.iter().rev() {
            let (book, version) = version_of(link)?;
            let mut next = match card.take() {
                None => RateCard {
                    lineage: Lineage(Vec::new()),
                    currency: book.currency.clone(),
                    meters: HashMap::new(),
                    monthly_fee: None,
                    one_time_fee: None,
                    tax_percent: None,
                },
                Some(parent) => {
                    if parent.currency != book.currency {
                        return Err(BookError::CurrencyMismatch {
                            book: book.id.clone(),
                            currency: book.currency.code.clone(),
                            parent: parent.lineage.book_id().to_owned(),
                            parent_currency: parent.currency.code.clone(),
                        });
                    }
                    let factor = Decimal::ONE
                        + version.parent.as_ref().map_or(Decimal::ZERO, |p| p.adjustment_percent)
                            / Decimal::ONE_HUNDRED;
                    RateCard {
                        meters: parent
                            .meters
                            .into_iter()
                            .map(|(id, p)| {
                                let adjusted = CardPrice {
                                    price: p.price.scaled(factor),
                                    list: p.price,
                                    unit_multiplier: p.unit_multiplier,
                                    pricing_unit: p.pricing_unit,
                                };
                                (id, adjusted)
                            })
                            .collect(),
                        ..parent
                    }
                }
            };
            for meter in &version.meters {
                next.meters.insert(
                    meter.meter_id.clone(),
                    CardPrice {
                        price: meter.price.clone(),
                        list: meter.price.clone(),
                        unit_multiplier: meter.unit_multiplier.unwrap_or(Decimal::ONE),
                        pricing_unit: meter.pricing_unit.clone(),
                    },
                );
            }
            next.monthly_fee = version.monthly_fee.or(next.monthly_fee);
            next.one_time_fee = version.one_time_fee.or(next.one_time_fee);
            next.tax_percent = version.tax_percent.or(next.tax_percent);
            next.lineage.0.insert(0, link.clone());
            card = Some(next);
        }
        Ok(card.expect("a lineage names at least one version"))
    }
}

impl Price {
    /// Every price in it multiplied by `factor` (a markup or discount).
    fn scaled(&self, factor: Decimal) -> Price {
        match self {
            Price::Unit { unit_price } => Price::Unit { unit_price: unit_price * factor },
            Price::ByProperty { property, rules, default_unit_price } => Price::ByProperty {
                property: property.clone(),
                rules: rules
                    .iter()
                    .map(|r| PropertyRule { equals: r.equals.clone(), unit_price: r.unit_price * factor })
                    .collect(),
                default_unit_price: default_unit_price * factor,
            },
            Price::Tiered { mode, tiers } => Price::Tiered {
                mode: *mode,
                tiers: tiers
                    .iter()
                    .map(|t| Tier { up_to: t.up_to, unit_price: t.unit_price * factor })
                    .collect(),
            },
            Price::Zero { reason } => Price::Zero { reason: reason.clone() },
        }
    }
}

/// A shared card, as statements cache them per lineage.
pub type SharedCard = Arc<RateCard>;
