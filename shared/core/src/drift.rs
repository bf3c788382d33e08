//! What differs between the rows stored for a reported hour and what the stamp reports for it now:
//! the comparison behind `reprocess --dry-run`, the shrink guard of a real reprocess, and `verify`.
//!
//! Rows are compared by key ([`UsageRow::key`]): a row in both is equal. Of the rest, a stored and a
//! pulled row that differ only in quantity are one *changed* row; a stored row left over is *removed*
//! (the stamp no longer reports it), a pulled one *added*. Exact duplicates inside a pull count once,
//! as the store keeps them once.

use crate::usage::{Quantity, RowKey, UsageRow};
use crate::window::ReportedWindow;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The difference for one tenant subscription and meter within one hour.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftLine {
    pub subscription_id: String,
    pub meter_id: String,
    /// Rows the stamp reports that are not stored.
    pub added: u64,
    /// Stored rows the stamp no longer reports.
    pub removed: u64,
    /// Rows stored with another quantity than the stamp reports now.
    pub changed: u64,
    /// Reported minus stored quantity over the lines' rows.
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity_delta: Quantity,
    /// Whether any changed row's quantity went down.
    pub lowered: bool,
}

/// The difference for one reported hour (empty `lines`: stored equals reported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourDrift {
    pub window: ReportedWindow,
    pub stored_rows: u64,
    pub reported_rows: u64,
    pub lines: Vec<DriftLine>,
}

impl HourDrift {
    pub fn is_equal(&self) -> bool {
        self.lines.is_empty()
    }

    /// Whether replacing the stored rows with the reported ones would remove a row or lower a
    /// quantity (what a reprocess needs `--allow-shrink` for).
    pub fn shrinks(&self) -> bool {
        self.lines.iter().any(|l| l.removed > 0 || l.lowered)
    }

    pub fn totals(&self) -> (u64, u64, u64) {
        self.lines.iter().fold((0, 0, 0), |(a, r, c), l| (a + l.added, r + l.removed, c + l.changed))
    }
}

/// Compares one hour's stored rows with the rows the stamp reports for it.
pub fn compare_hour(window: ReportedWindow, stored: &[UsageRow], reported: &[UsageRow]) -> HourDrift {
    let stored_keys: HashMap<RowKey, &UsageRow> = stored.iter().map(|r| (r.key(), r)).collect();
    let mut seen = HashSet::with_capacity(reported.len());
    let mut only_reported: Vec<&UsageRow> = Vec::new();
    for row in reported {
        let key = row.key();
        if seen.insert(key) && !stored_keys.contains_key(&key) {
            only_reported.push(row);
        }
    }
    let only_stored: Vec<&UsageRow> =
        stored_keys.iter().filter(|(k, _)| !seen.contains(*k)).map(|(_, r)| *r).collect();

    // What a row is apart from its quantity: a stored and a reported row alike in this are one row
    // whose quantity changed.
    let identity = |r: &UsageRow| UsageRow { quantity: Quantity::ZERO, ..r.clone() }.key();
    let mut unmatched_stored: HashMap<RowKey, Vec<&UsageRow>> = HashMap::new();
    for row in only_stored {
        unmatched_stored.entry(identity(row)).or_default().push(row);
    }
    let mut lines: BTreeMap<(String, String), DriftLine> = BTreeMap::new();
    let mut events: Vec<(&UsageRow, Event)> = Vec::new();
    for row in only_reported {
        match unmatched_stored.get_mut(&identity(row)).and_then(Vec::pop) {
            Some(old) => events.push((row, Event::Changed(row.quantity - old.quantity))),
            None => events.push((row, Event::Added(row.quantity))),
        }
    }
    for rows in unmatched_stored.into_values() {
        for old in rows {
            events.push((old, Event::Removed(old.quantity)));
        }
    }
    for (row, event) in events {
        let l =
            lines.entry((row.subscription_id.clone(), row.meter_id.clone())).or_insert_with(|| DriftLine {
                subscription_id: row.subscription_id.clone(),
                meter_id: row.meter_id.clone(),
                ..Default::default()
            });
        match event {
            Event::Added(q) => {
                l.added += 1;
                l.quantity_delta += q;
            }
            Event::Removed(q) => {
                l.removed += 1;
                l.quantity_delta -= q;
            }
            Event::Changed(delta) => {
                l.changed += 1;
                l.quantity_delta += delta;
                l.lowered |= delta < Quantity::ZERO;
            }
        }
    }
    HourDrift {
        window,
        stored_rows: stored.len() as u64,
        reported_rows: seen.len() as u64,
        lines: lines.into_values().collect(),
    }
}

enum Event {
    Added(Quantity),
    Removed(Quantity),
    Changed(Quantity),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn row(sub: &str, vm: &str, q: &str) -> UsageRow {
        UsageRow {
            subscription_id: sub.into(),
            meter_id: "M".into(),
            usage_start: "2026-11-25T13:00:00Z".parse().unwrap(),
            usage_end: "2026-11-25T14:00:00Z".parse().unwrap(),
            quantity: Quantity::from_str(q).unwrap(),
            resource_uri: format!("/vm/{vm}"),
            location: "local".into(),
            tags: None,
            additional_info: None,
        }
    }

    fn window() -> ReportedWindow {
        ReportedWindow::hour("2026-11-25T14:00:00Z".parse().unwrap())
    }

    #[test]
    fn equal_hours_have_no_lines_even_with_repeated_reported_rows() {
        let rows = vec![row("a", "1", "1"), row("a", "2", "2")];
        let mut reported = rows.clone();
        reported.push(rows[0].clone());
        let d = compare_hour(window(), &rows, &reported);
        assert!(d.is_equal(), "{d:?}");
        assert!(!d.shrinks());
    }

    #[test]
    fn added_removed_and_changed_rows_are_told_apart_per_subscription_and_meter() {
        let stored = vec![row("a", "1", "1"), row("a", "2", "2"), row("b", "3", "5")];
        let reported = vec![row("a", "1", "1"), row("a", "2", "1.5"), row("a", "4", "4")];
        let d = compare_hour(window(), &stored, &reported);
        assert_eq!(d.lines.len(), 2);
        let a = &d.lines[0];
        assert_eq!((a.subscription_id.as_str(), a.added, a.removed, a.changed), ("a", 1, 0, 1));
        assert_eq!(a.quantity_delta, Quantity::from_str("3.5").unwrap());
        assert!(a.lowered);
        let b = &d.lines[1];
        assert_eq!((b.added, b.removed, b.changed), (0, 1, 0));
        assert_eq!(b.quantity_delta, Quantity::from_str("-5").unwrap());
        assert!(d.shrinks());
        assert_eq!(d.totals(), (1, 1, 1));
    }

    #[test]
    fn an_empty_re_pull_removes_everything_and_shrinks() {
        let stored = vec![row("a", "1", "1")];
        let d = compare_hour(window(), &stored, &[]);
        assert!(d.shrinks());
        assert_eq!(d.totals(), (0, 1, 0));
    }

    #[test]
    fn a_grown_quantity_does_not_shrink() {
        let d = compare_hour(window(), &[row("a", "1", "1")], &[row("a", "1", "2")]);
        assert!(!d.shrinks());
        assert_eq!(d.totals(), (0, 0, 1));
    }
}
