//! Currencies, calendar months and the one rounding rule of statements.
//!
//! Amounts stay exact decimals from rating through a statement's line sums; they are rounded once,
//! when a statement line (or fee, or the tax) is totalled, to the currency's minor unit, half away
//! from zero ([`round_to_minor_unit`]). The statement's total is the sum of those rounded figures, so
//! a printed statement adds up to the cent.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217 currency and the number of decimals its minor unit has (USD 2, JPY 0, BHD 3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Currency {
    pub code: String,
    pub minor_units: u32,
}

/// The ISO 4217 codes a price book may use, with their minor units (ISO 4217 list one, the
/// currencies Azure bills in and their neighbours). A code outside this table is refused rather than
/// guessed: a wrong minor unit rounds every statement wrong.
const CURRENCIES: &[(&str, u32)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PLN", 2),
    ("QAR", 2),
    ("RUB", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// The rule a price book's `currency` must follow.
pub const CURRENCY_RULE: &str =
    "must be an ISO 4217 code this tool knows the minor unit of (e.g. USD, EUR, JPY)";

impl Currency {
    /// The currency for an ISO 4217 code (case-insensitive), or `None` when the code is unknown.
    pub fn from_code(code: &str) -> Option<Currency> {
        let code = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, minor_units)| Currency { code: (*c).to_owned(), minor_units: *minor_units })
    }

    /// `amount` rounded to this currency's minor unit by the statement rule.
    pub fn round(&self, amount: Decimal) -> Decimal {
        round_to_minor_unit(amount, self.minor_units)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

/// The statement rounding rule: to `minor_units` decimals, half away from zero (0.125 -> 0.13,
/// -0.125 -> -0.13), the commercial rule invoices and tax authorities expect. The result keeps
/// exactly `minor_units` decimals, so `1` prints as `1.00`.
pub fn round_to_minor_unit(amount: Decimal, minor_units: u32) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(minor_units, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(minor_units);
    rounded
}

/// A calendar month in UTC: the period a statement covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1..=12).contains(&month) && (1970..=9998).contains(&year)).then_some(Month { year, month })
    }

    /// The month `t` falls in.
    pub fn of(t: DateTime<Utc>) -> Month {
        Month { year: t.year(), month: t.month() }
    }

    /// The first instant of the month.
    pub fn start(&self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0).single().expect("the first of a month exists")
    }

    /// The first instant after the month.
    pub fn end(&self) -> DateTime<Utc> {
        self.next().start()
    }

    pub fn next(&self) -> Month {
        if self.month == 12 {
            Month { year: self.year + 1, month: 1 }
        } else {
            Month { year: self.year, month: self.month + 1 }
        }
    }

    pub fn hours(&self) -> i64 {
        (self.end() - self.start()).num_hours()
    }

    /// Whether `t` lies in the month.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start() <= t && t < self.end()
    }

    /// The whole hours of `[from, to)` that lie in the month.
    pub fn hours_within(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        let start = from.max(self.start());
        let end = to.min(self.end());
        if end > start { ((end - start) + Duration::minutes(59)).num_hours() } else { 0 }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rule = || format!("{s:?} must be a month as YYYY-MM");
        let (year, month) = s.split_once('-').ok_or_else(rule)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(rule());
        }
        Month::new(year.parse().map_err(|_| rule())?, month.parse().map_err(|_| rule())?).ok_or_else(rule)
    }
}

impl TryFrom<String> for Month {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Month> for String {
    fn from(m: Month) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn rounding_is_half_away_from_zero_to_the_minor_unit_and_keeps_its_scale() {
        assert_eq!(round_to_minor_unit(d("0.125"), 2).to_string(), "0.13");
        assert_eq!(round_to_minor_unit(d("-0.125"), 2).to_string(), "-0.13");
        assert_eq!(round_to_minor_unit(d("0.124999"), 2).to_string(), "0.12");
        assert_eq!(round_to_minor_unit(d("1"), 2).to_string(), "1.00");
        assert_eq!(round_to_minor_unit(d("2.5"), 0).to_string(), "3");
        assert_eq!(round_to_minor_unit(d("0.0005"), 3).to_string(), "0.001");
    }

    #[test]
    fn currencies_are_known_iso_codes_with_their_minor_units() {
        assert_eq!(Currency::from_code("usd").unwrap().minor_units, 2);
        assert_eq!(Currency::from_code("JPY").unwrap().minor_units, 0);
        assert_eq!(Currency::from_code("KWD").unwrap().minor_units, 3);
        assert!(Currency::from_code("XXX").is_none());
        assert!(Currency::from_code("").is_none());
    }

    #[test]
    fn months_know_their_bounds_and_hours() {
        let feb = Month::from_str("2028-02").unwrap();
        assert_eq!(feb.hours(), 29 * 24);
        assert_eq!(feb.end(), Utc.with_ymd_and_hms(2028, 3, 1, 0, 0, 0).unwrap());
        assert_eq!(Month::from_str("2026-12").unwrap().next().to_string(), "2027-01");
        assert!(Month::from_str("2026-13").is_err());
        assert!(Month::from_str("26-01").is_err());
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(feb.hours_within(t("2028-01-20T00:00:00Z"), t("2028-02-02T05:00:00Z")), 29);
        assert_eq!(feb.hours_within(t("2028-03-20T00:00:00Z"), t("2028-04-01T00:00:00Z")), 0);
    }
}
