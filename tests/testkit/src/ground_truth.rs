//! Stored usage rows against the simulated stamp's ground truth, every field: the reported window a
//! row is stored under and the nine fields the usage API sends (tenant subscription, meter, usage
//! start and end, quantity as its exact text, resource URI, location, tags, additional info). Equal
//! lists mean every row stored once, none lost, none altered.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::Path;

/// What a stored row or a ground-truth row is, compared field by field (tags and additional info as
/// parsed JSON, so that whitespace in the served text does not matter; the quantity as its exact
/// decimal text, so `2.40` and `2.4` differ as they do on the wire).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Comparable {
    /// The start of the reported window the row is stored under (its key with the row key).
    pub reported_start: DateTime<Utc>,
    pub subscription_id: String,
    pub meter_id: String,
    pub usage_start: DateTime<Utc>,
    pub usage_end: DateTime<Utc>,
    pub quantity: String,
    pub resource_uri: String,
    pub location: String,
    pub tags: String,
    pub additional_info: String,
}

impl Comparable {
    /// A ground-truth row as the stamp serves it.
    pub fn from_truth(row: stamp_sim::TruthRow) -> Self {
        Self {
            reported_start: row.reported_start,
            subscription_id: row.subscription_id,
            meter_id: row.meter_id,
            usage_start: row.usage_start,
            usage_end: row.usage_end,
            quantity: row.quantity,
            resource_uri: row.resource_uri,
            location: row.location,
            tags: json_canonical(row.tags.as_deref()),
            additional_info: json_canonical(row.additional_info.as_deref()),
        }
    }
}

/// The ground truth, comparable and sorted.
pub fn truth_rows(truth: Vec<stamp_sim::TruthRow>) -> Vec<Comparable> {
    let mut rows: Vec<Comparable> = truth.into_iter().map(Comparable::from_truth).collect();
    rows.sort();
    rows
}

/// JSON text in one spelling (`null` for none); text that is not JSON stays as it is.
pub fn json_canonical(text: Option<&str>) -> String {
    match text {
        None => "null".into(),
        Some(t) => serde_json::from_str::<serde_json::Value>(t)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| t.to_owned()),
    }
}

/// The usage rows in a SQLite database written by the SQLite store, of one stamp (its id) or of all,
/// comparable and sorted; empty when there is no database yet. For tests that watch a database a
/// packaged function wrote, where the store's own export is not linked.
pub fn sqlite_rows(db: &Path, stamp_id: Option<&str>) -> Vec<Comparable> {
    if !db.exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(db).expect("the database opens");
    let mut query = conn
        .prepare(
            "SELECT u.reported_start, u.subscription_id, u.meter_id, u.usage_start, u.usage_end, u.quantity,
                    u.resource_uri, u.location, u.tags, u.additional_info
             FROM usage_rows u JOIN stamp_numbers s ON s.stamp_no = u.stamp_no
             WHERE ?1 IS NULL OR s.stamp_id = ?1",
        )
        .expect("the usage_rows table is as the SQLite store writes it");
    let time = |seconds: i64| DateTime::from_timestamp(seconds, 0).expect("a time the store wrote");
    let mut rows: Vec<Comparable> = query
        .query_map([stamp_id], |r| {
            Ok(Comparable {
                reported_start: time(r.get(0)?),
                subscription_id: r.get(1)?,
                meter_id: r.get(2)?,
                usage_start: time(r.get(3)?),
                usage_end: time(r.get(4)?),
                quantity: r.get(5)?,
                resource_uri: r.get(6)?,
                location: r.get(7)?,
                tags: json_canonical(r.get::<_, Option<String>>(8)?.as_deref()),
                additional_info: json_canonical(r.get::<_, Option<String>>(9)?.as_deref()),
            })
        })
        .expect("the rows read")
        .map(|row| row.expect("a row of the store's shape"))
        .collect();
    rows.sort();
    rows
}

/// Equal as multisets, with a readable difference when not: how many rows each side has, and the
/// first rows missing from and extra in the store. `stamp` names the stamp in the message.
pub fn assert_same_rows(stamp: impl std::fmt::Display, stored: &[Comparable], truth: &[Comparable]) {
    if stored == truth {
        return;
    }
    fn count(rows: &[Comparable]) -> BTreeMap<&Comparable, i64> {
        let mut m = BTreeMap::new();
        for r in rows {
            *m.entry(r).or_default() += 1;
        }
        m
    }
    let (s, t) = (count(stored), count(truth));
    let missing: Vec<_> = t.iter().filter(|(r, n)| s.get(*r).copied().unwrap_or(0) < **n).take(3).collect();
    let extra: Vec<_> = s.iter().filter(|(r, n)| t.get(*r).copied().unwrap_or(0) < **n).take(3).collect();
    panic!(
        "stamp {stamp}: stored {} rows, ground truth {} rows\nmissing (first 3): {missing:#?}\nextra (first 3): {extra:#?}",
        stored.len(),
        truth.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Comparable {
        let hour = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        Comparable {
            reported_start: hour,
            subscription_id: "5e3a1f0c-0000-4000-8000-00000000000a".into(),
            meter_id: "6DAB500F-A4FD-49C4-956D-229BB9C8C793".into(),
            usage_start: hour,
            usage_end: hour + chrono::Duration::hours(1),
            quantity: "2.4000000000".into(),
            resource_uri: "/subscriptions/x/providers/Microsoft.Compute/virtualMachines/web-01".into(),
            location: "local".into(),
            tags: json_canonical(Some(r#"{ "env": "prod" }"#)),
            additional_info: json_canonical(None),
        }
    }

    #[test]
    fn json_fields_compare_by_value_not_by_spelling() {
        assert_eq!(json_canonical(Some(r#"{ "env" : "prod" }"#)), json_canonical(Some(r#"{"env":"prod"}"#)));
        assert_eq!(json_canonical(None), "null");
        assert_eq!(json_canonical(Some("not json")), "not json");
    }

    #[test]
    fn a_difference_in_any_field_is_a_difference() {
        let base = row();
        let later = base.usage_start + chrono::Duration::hours(1);
        let changed = [
            Comparable { reported_start: later, ..base.clone() },
            Comparable { subscription_id: "5e3a1f0c-0000-4000-8000-00000000000b".into(), ..base.clone() },
            Comparable { meter_id: "6dab500f-a4fd-49c4-956d-229bb9c8c793".into(), ..base.clone() },
            Comparable { usage_start: later, ..base.clone() },
            Comparable { usage_end: base.usage_end + chrono::Duration::hours(1), ..base.clone() },
            Comparable { quantity: "2.4".into(), ..base.clone() },
            Comparable { resource_uri: format!("{}-2", base.resource_uri), ..base.clone() },
            Comparable { location: "east".into(), ..base.clone() },
            Comparable { tags: json_canonical(Some(r#"{"env":"test"}"#)), ..base.clone() },
            Comparable { additional_info: json_canonical(Some(r#"{"a":1}"#)), ..base.clone() },
        ];
        for other in changed {
            assert_ne!(other, base, "{other:?}");
        }
    }

    #[test]
    #[should_panic(expected = "stamp 0: stored 1 rows, ground truth 2 rows")]
    fn unequal_rows_are_reported_with_what_is_missing() {
        let (one, two) = (row(), Comparable { quantity: "3".into(), ..row() });
        assert_same_rows(0, std::slice::from_ref(&one), &[one.clone(), two]);
    }

    #[test]
    fn the_same_rows_in_any_order_are_equal_once_sorted() {
        let (one, two) = (row(), Comparable { location: "east".into(), ..row() });
        let (mut a, mut b) = (vec![one.clone(), two.clone()], vec![two, one]);
        a.sort();
        b.sort();
        assert_same_rows("s", &a, &b);
    }
}
