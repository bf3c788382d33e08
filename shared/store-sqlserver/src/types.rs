//! How domain values become SQL Server values and back: GUIDs as `uniqueidentifier`, times as
//! `datetime2` UTC, quantities as exact `decimal(38, 12)` plus their scale, and typed NULLs.

use crate::session::Failure;
use azs_core::stamp::{StampId, UsageQueryMode};
use azs_core::status::RunOutcome;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tiberius::numeric::Numeric;
use tiberius::{FromSql, Row, Uuid};

/// Decimal places the quantity column keeps.
pub(crate) const QUANTITY_SCALE: u32 = 12;
/// Integer digits the quantity column keeps (38 - 12).
pub(crate) const QUANTITY_INTEGER_DIGITS: u32 = 26;

/// A GUID-valued field as `uniqueidentifier`. Stamp ids, admin subscriptions, tenants and application
/// ids are GUIDs by the time they are registered (registration validates them); anything else is
/// refused rather than stored in a different shape than the other store would keep.
pub(crate) fn guid(field: &str, value: &str) -> Result<Uuid, Failure> {
    Uuid::try_parse(value.trim().trim_start_matches('{').trim_end_matches('}')).map_err(|_| {
        Failure::other(format!(
            "{field} {value:?} is not a GUID; the SQL Server store keeps it as uniqueidentifier"
        ))
    })
}

/// A stamp id for a lookup: an id that is not a GUID cannot have been registered here.
pub(crate) fn stamp_key(id: &StampId) -> Option<Uuid> {
    Uuid::try_parse(id.as_str()).ok()
}

/// The text form the rest of the system uses for a GUID (lower-case, hyphenated).
pub(crate) fn guid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// The tenant column: NULL stands for an AD FS stamp's literal tenant `adfs`.
pub(crate) fn tenant(tenant_id: &str, is_adfs: bool) -> Result<Option<Uuid>, Failure> {
    if is_adfs && tenant_id.trim().eq_ignore_ascii_case("adfs") {
        Ok(None)
    } else {
        guid("tenantId", tenant_id).map(Some)
    }
}

pub(crate) fn tenant_text(tenant: Option<Uuid>) -> String {
    tenant.map(guid_text).unwrap_or_else(|| "adfs".to_owned())
}

/// An hour-grained time for a `datetime2(0)` column: whole seconds, truncated (the server would round).
pub(crate) fn seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// An instant for a `datetime2(3)` column: whole milliseconds, truncated like the SQLite store does.
pub(crate) fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// A time a caller filters by (`since`), moved into what `datetime2` holds (0001-01-01 to 9999-12-31):
/// RFC 3339 admits year 0, and a late time with a negative offset is in year 10000 in UTC, which
/// tiberius would send as a wrapped day count the server refuses. Every stored time lies inside, so
/// the filter keeps the same rows.
pub(crate) fn within_datetime2(t: DateTime<Utc>) -> DateTime<Utc> {
    let first = DateTime::from_timestamp(-62_135_596_800, 0).expect("0001-01-01T00:00:00Z");
    let last = DateTime::from_timestamp(253_402_300_799, 999_999_900).expect("9999-12-31T23:59:59.9999999Z");
    t.clamp(first, last)
}

/// A count for a `bigint` column.
pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A lease's time to live in milliseconds, as DATEADD takes it (an `int`: at most ~24.8 days).
pub(crate) fn ttl_millis(ttl: std::time::Duration) -> i32 {
    i32::try_from(ttl.as_millis()).unwrap_or(i32::MAX)
}

pub(crate) fn query_mode_name(mode: UsageQueryMode) -> &'static str {
    match mode {
        UsageQueryMode::AllTenants => "all-tenants",
        UsageQueryMode::PerSubscriber => "per-subscriber",
    }
}

pub(crate) fn query_mode(name: &str) -> Result<UsageQueryMode, Failure> {
    match name {
        "all-tenants" => Ok(UsageQueryMode::AllTenants),
        "per-subscriber" => Ok(UsageQueryMode::PerSubscriber),
        _ => Err(Failure::other(format!("unknown query mode {name:?} in the database"))),
    }
}

pub(crate) fn outcome(name: &str) -> Result<RunOutcome, Failure> {
    RunOutcome::parse(name)
        .ok_or_else(|| Failure::other(format!("unknown run outcome {name:?} in the database")))
}

/// A quantity ready for the `quantity decimal(38, 12)` and `quantity_scale tinyint` columns.
///
/// Quantities seen from the usage API have at most 10 decimals. The column keeps 12 decimals and 26
/// integer digits; a value needing more is refused (never rounded), and the scale it was sent with is
/// kept beside it so that reading it back gives the same text (`2.4000000000`, not `2.400000000000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantity {
    /// The value, at a scale of at most 12 (tiberius scales it up to the column's 12 exactly).
    pub value: Decimal,
    /// The scale the API sent (0-28; above 12 only with trailing zeros).
    pub sent_scale: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QuantityError {
    #[error("quantity {0} has more than 12 significant decimals; decimal(38, 12) would round it")]
    TooManyDecimals(Decimal),
    #[error("quantity {0} has more than 26 integer digits; decimal(38, 12) cannot hold it")]
    TooLarge(Decimal),
}

impl Quantity {
    pub(crate) fn new(q: Decimal) -> Result<Self, QuantityError> {
        let normalized = q.normalize();
        if normalized.scale() > QUANTITY_SCALE {
            return Err(QuantityError::TooManyDecimals(q));
        }
        if q.trunc().abs() >= Decimal::from_i128_with_scale(10i128.pow(QUANTITY_INTEGER_DIGITS), 0) {
            return Err(QuantityError::TooLarge(q));
        }
        let value = if q.scale() > QUANTITY_SCALE { normalized } else { q };
        Ok(Self { value, sent_scale: q.scale() as u8 })
    }

    /// The value read from the column, at the scale it was sent with. Decoded from the raw numeric:
    /// tiberius's own Decimal conversion panics on a 38-digit mantissa, which decimal(38, 12) can hold.
    pub(crate) fn read(stored: Numeric, sent_scale: u8) -> Result<Decimal, Failure> {
        let (value, scale) = (stored.value(), u32::from(stored.scale()));
        let target = u32::from(sent_scale);
        let mantissa = if target <= scale {
            let factor = 10i128.pow(scale - target);
            (value % factor == 0).then(|| value / factor)
        } else {
            10i128.checked_pow(target - scale).and_then(|f| value.checked_mul(f))
        };
        mantissa.and_then(|m| Decimal::try_from_i128_with_scale(m, target).ok()).ok_or_else(|| {
            Failure::other(format!("stored quantity {stored} does not fit its recorded scale {sent_scale}"))
        })
    }
}

// ---------------------------------------------------------------------------------------------------
// Reading rows
// ---------------------------------------------------------------------------------------------------

/// Column `idx` of `row`, which may be NULL.
pub(crate) fn opt<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<Option<T>, Failure> {
    row.try_get::<T, usize>(idx).map_err(|e| Failure::other(format!("reading column {idx}: {e}")))
}

/// Column `idx` of `row`, which must not be NULL.
pub(crate) fn req<'a, T: FromSql<'a>>(row: &'a Row, idx: usize) -> Result<T, Failure> {
    opt(row, idx)?.ok_or_else(|| Failure::other(format!("column {idx} is unexpectedly NULL")))
}

pub(crate) fn text(row: &Row, idx: usize) -> Result<String, Failure> {
    req::<&str>(row, idx).map(str::to_owned)
}

pub(crate) fn opt_text(row: &Row, idx: usize) -> Result<Option<String>, Failure> {
    Ok(opt::<&str>(row, idx)?.map(str::to_owned))
}

pub(crate) fn unsigned(row: &Row, idx: usize) -> Result<u64, Failure> {
    let n: i64 = req(row, idx)?;
    u64::try_from(n).map_err(|_| Failure::other(format!("column {idx} holds a negative count {n}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn a_filter_time_outside_datetime2_is_moved_to_its_nearest_end_and_one_inside_is_kept() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        // Both are valid RFC 3339 (`?since=` of GET /audit); neither fits datetime2 in UTC.
        let year_zero = at("0000-06-01T00:00:00Z");
        let year_10000 = at("9999-12-31T23:00:00-02:00");
        assert_eq!(within_datetime2(year_zero), at("0001-01-01T00:00:00Z"));
        assert_eq!(year_10000.to_rfc3339(), "+10000-01-01T01:00:00+00:00");
        assert_eq!(within_datetime2(year_10000).to_rfc3339(), "9999-12-31T23:59:59.999999900+00:00");
        let inside = at("2026-12-01T10:00:00.123Z");
        assert_eq!(within_datetime2(inside), inside);
        assert_eq!(millis(within_datetime2(year_10000)).to_rfc3339(), "9999-12-31T23:59:59.999+00:00");
    }
    use tiberius::{ColumnData, IntoSql, ToSql};

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn a_quantity_is_sent_as_an_exact_numeric_with_its_own_scale() {
        let q = Quantity::new(dec("2.4000000000")).unwrap();
        assert_eq!(q.sent_scale, 10);
        match q.value.into_sql() {
            ColumnData::Numeric(Some(n)) => {
                assert_eq!(n.scale(), 10);
                assert_eq!(n.value(), 24_000_000_000);
            }
            other => panic!("expected a numeric, got {other:?}"),
        }
    }

    #[test]
    fn a_quantity_reads_back_with_the_scale_it_was_sent_with() {
        for text in [
            "2.4000000000",
            "0",
            "7",
            "-3.25",
            "0.000000000001",
            "99999999999999999999999999",
            "1.50000000000000",
        ] {
            let q = Quantity::new(dec(text)).unwrap();
            // What decimal(38, 12) holds: the value at scale 12.
            let stored = Numeric::new_with_scale(
                q.value.mantissa() * 10i128.pow(QUANTITY_SCALE - q.value.scale()),
                QUANTITY_SCALE as u8,
            );
            let back = Quantity::read(stored, q.sent_scale).unwrap();
            assert_eq!(back.to_string(), text, "round trip of {text}");
        }
    }

    #[test]
    fn a_quantity_needing_more_than_twelve_decimals_is_refused_not_rounded() {
        assert_eq!(
            Quantity::new(dec("0.0000000000001")),
            Err(QuantityError::TooManyDecimals(dec("0.0000000000001")))
        );
        // Trailing zeros beyond 12 decimals lose nothing, so they are accepted.
        assert!(Quantity::new(dec("1.50000000000000")).is_ok());
    }

    #[test]
    fn a_quantity_with_more_than_twenty_six_integer_digits_is_refused() {
        assert!(Quantity::new(dec("99999999999999999999999999.99")).is_ok());
        assert!(matches!(Quantity::new(dec("100000000000000000000000000")), Err(QuantityError::TooLarge(_))));
        assert!(matches!(
            Quantity::new(dec("-100000000000000000000000000")),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn a_stored_value_at_full_precision_decodes_without_panicking() {
        // 26 integer digits and 12 decimals: more than rust_decimal's 96-bit mantissa when at scale 12.
        let stored = Numeric::new_with_scale(99_999_999_999_999_999_999_999_999 * 10i128.pow(12), 12);
        assert_eq!(Quantity::read(stored, 0).unwrap(), dec("99999999999999999999999999"));
    }

    #[test]
    fn utc_times_go_as_datetime2_truncated_to_the_column_precision() {
        let t: DateTime<Utc> = "2026-11-25T13:00:00.123456789Z".parse().unwrap();
        assert!(matches!(seconds(t).into_sql(), ColumnData::DateTime2(Some(_))));
        assert_eq!(seconds(t).to_rfc3339(), "2026-11-25T13:00:00+00:00");
        assert_eq!(millis(t), "2026-11-25T13:00:00.123Z".parse::<DateTime<Utc>>().unwrap());
        // Round trip through tiberius's own conversion.
        let cd = millis(t).into_sql();
        assert_eq!(DateTime::<Utc>::from_sql(&cd).unwrap(), Some(millis(t)));
    }

    #[test]
    fn guids_go_as_uniqueidentifier_and_read_back_lower_case() {
        let g = guid("stampId", "{8E8CD5A6-05B6-4B9D-9B5A-4E8F3C1D2A10}").unwrap();
        assert!(matches!(g.into_sql(), ColumnData::Guid(Some(_))));
        assert_eq!(guid_text(g), "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10");
        assert!(guid("stampId", "stamp-1").is_err());
        assert_eq!(stamp_key(&StampId("not-a-guid".into())), None);
    }

    #[test]
    fn an_adfs_tenant_is_a_null_uniqueidentifier() {
        assert_eq!(tenant("adfs", true).unwrap(), None);
        assert!(tenant("adfs", false).is_err(), "only AD FS stamps have the literal tenant");
        assert_eq!(tenant_text(None), "adfs");
        let g = tenant("8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10", false).unwrap();
        assert_eq!(tenant_text(g), "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10");
    }

    #[test]
    fn absent_values_are_nulls_of_the_column_type() {
        assert!(matches!(None::<Uuid>.into_sql(), ColumnData::Guid(None)));
        assert!(matches!(None::<&str>.into_sql(), ColumnData::String(None)));
        assert!(matches!(None::<String>.into_sql(), ColumnData::String(None)));
        assert!(matches!(None::<DateTime<Utc>>.into_sql(), ColumnData::DateTime2(None)));
        assert!(matches!(None::<Decimal>.to_sql(), ColumnData::Numeric(None)));
    }

    #[test]
    fn counts_and_small_numbers_use_the_column_integer_types() {
        assert!(matches!(count(5).into_sql(), ColumnData::I64(Some(5))));
        assert!(matches!(10u8.into_sql(), ColumnData::U8(Some(10))));
        assert!(matches!(true.into_sql(), ColumnData::Bit(Some(true))));
        assert_eq!(ttl_millis(std::time::Duration::from_secs(600)), 600_000);
        assert_eq!(ttl_millis(std::time::Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
