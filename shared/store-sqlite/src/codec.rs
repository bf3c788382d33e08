//! How domain values are kept in columns: hour-grained times as Unix seconds, instants as Unix
//! milliseconds, enums as their kebab-case names.

use azs_core::stamp::UsageQueryMode;
use azs_core::status::RunOutcome;
use chrono::{DateTime, Utc};
use rusqlite::Row;
use rusqlite::types::Type;

pub(crate) fn secs(t: DateTime<Utc>) -> i64 {
    t.timestamp()
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn now_millis() -> i64 {
    Utc::now().timestamp_millis()
}

fn conversion(idx: usize, ty: Type, what: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, ty, what.into())
}

/// An hour-grained time stored as Unix seconds.
pub(crate) fn get_secs(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    let s: i64 = row.get(idx)?;
    DateTime::from_timestamp(s, 0)
        .ok_or_else(|| conversion(idx, Type::Integer, format!("{s} s is out of range")))
}

/// An instant stored as Unix milliseconds, or NULL.
pub(crate) fn get_millis_opt(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(ms) => DateTime::from_timestamp_millis(ms)
            .map(Some)
            .ok_or_else(|| conversion(idx, Type::Integer, format!("{ms} ms is out of range"))),
    }
}

pub(crate) fn get_millis(row: &Row<'_>, idx: usize) -> rusqlite::Result<DateTime<Utc>> {
    get_millis_opt(row, idx)?.ok_or_else(|| conversion(idx, Type::Null, "a time is required".into()))
}

pub(crate) fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let n: i64 = row.get(idx)?;
    u64::try_from(n).map_err(|_| conversion(idx, Type::Integer, format!("{n} is negative")))
}

pub(crate) fn query_mode_name(mode: UsageQueryMode) -> &'static str {
    match mode {
        UsageQueryMode::AllTenants => "all-tenants",
        UsageQueryMode::PerSubscriber => "per-subscriber",
    }
}

pub(crate) fn get_query_mode(row: &Row<'_>, idx: usize) -> rusqlite::Result<UsageQueryMode> {
    let name: String = row.get(idx)?;
    match name.as_str() {
        "all-tenants" => Ok(UsageQueryMode::AllTenants),
        "per-subscriber" => Ok(UsageQueryMode::PerSubscriber),
        _ => Err(conversion(idx, Type::Text, format!("unknown query mode {name:?}"))),
    }
}

pub(crate) fn get_outcome(row: &Row<'_>, idx: usize) -> rusqlite::Result<RunOutcome> {
    let name: String = row.get(idx)?;
    RunOutcome::parse(&name).ok_or_else(|| conversion(idx, Type::Text, format!("unknown outcome {name:?}")))
}

pub(crate) fn get_quantity(row: &Row<'_>, idx: usize) -> rusqlite::Result<rust_decimal::Decimal> {
    // Borrowed from the row, not copied into a String: a statement pass decodes millions of rows.
    let value = row.get_ref(idx)?;
    let text = value.as_str().map_err(|e| conversion(idx, value.data_type(), e.to_string()))?;
    // Exact: the text was written from a Decimal, so it never needs rounding; if it did, say so.
    rust_decimal::Decimal::from_str_exact(text)
        .map_err(|e| conversion(idx, Type::Text, format!("quantity {text:?}: {e}")))
}
