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
use std::collections::{BTreeMap, HashMap};

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

/// One hour's comparison, fed row by row as stored rows and reported pages stream in. It keeps only
/// what the comparison needs of each row (its key, its key without the quantity, its tenant
/// subscription and meter as a number, its quantity: about 60 bytes), never the row: a verify of a
/// large stamp holds a fraction of what collecting the hour holds, not twice as much.
pub struct HourComparison {
    window: ReportedWindow,
    /// (tenant subscription, meter) pairs as first seen, numbered by position.
    lines: Vec<(String, String)>,
    line_numbers: HashMap<String, HashMap<String, u32>>,
    /// Stored rows by key (the store keeps one row per key in a window).
    stored: HashMap<RowKey, Facts>,
    /// Reported rows by key: an exact duplicate inside the pull counts once, as the store keeps it once.
    reported: HashMap<RowKey, Facts>,
}

/// What the comparison keeps of a row.
#[derive(Clone, Copy)]
struct Facts {
    /// What the row is apart from its quantity: a stored and a reported row alike in this are one
    /// row whose quantity changed.
    identity: RowKey,
    line: u32,
    quantity: Quantity,
}

impl HourComparison {
    pub fn new(window: ReportedWindow) -> Self {
        Self {
            window,
            lines: Vec::new(),
            line_numbers: HashMap::new(),
            stored: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    /// A row stored for the hour.
    pub fn stored(&mut self, row: &UsageRow) {
        let facts = self.facts(row);
        self.stored.insert(row.key(), facts);
    }

    /// A row the stamp reports for the hour now.
    pub fn reported(&mut self, row: &UsageRow) {
        let facts = self.facts(row);
        self.reported.entry(row.key()).or_insert(facts);
    }

    fn facts(&mut self, row: &UsageRow) -> Facts {
        let known = self.line_numbers.get(&row.subscription_id).and_then(|meters| meters.get(&row.meter_id));
        let line = match known {
            Some(&line) => line,
            None => {
                let line = u32::try_from(self.lines.len()).expect("fewer than 2^32 lines in an hour");
                let meters = self.line_numbers.entry(row.subscription_id.clone()).or_default();
                meters.insert(row.meter_id.clone(), line);
                self.lines.push((row.subscription_id.clone(), row.meter_id.clone()));
                line
            }
        };
        Facts { identity: row.identity_key(), line, quantity: row.quantity }
    }

    pub fn finish(self) -> HourDrift {
        // Rows on one side only, grouped by identity: within a group, the stored and the reported
        // rows are paired in order of quantity (a changed row each; lowest with lowest, so that a
        // group whose quantities all grew is never reported lowered), the rest are added or removed.
        let mut unmatched: HashMap<RowKey, (Vec<Facts>, Vec<Facts>)> = HashMap::new();
        for (key, old) in &self.stored {
            if !self.reported.contains_key(key) {
                unmatched.entry(old.identity).or_default().0.push(*old);
            }
        }
        for (key, new) in &self.reported {
            if !self.stored.contains_key(key) {
                unmatched.entry(new.identity).or_default().1.push(*new);
            }
        }
        let mut lines: BTreeMap<&(String, String), DriftLine> = BTreeMap::new();
        for (mut old, mut new) in unmatched.into_values() {
            old.sort_by_key(|f| f.quantity);
            new.sort_by_key(|f| f.quantity);
            for (i, f) in old.iter().enumerate() {
                let l = line_of(&mut lines, &self.lines, f);
                match new.get(i) {
                    Some(n) => {
                        let delta = n.quantity - f.quantity;
                        l.changed += 1;
                        l.quantity_delta += delta;
                        l.lowered |= delta < Quantity::ZERO;
                    }
                    None => {
                        l.removed += 1;
                        l.quantity_delta -= f.quantity;
                    }
                }
            }
            for f in new.iter().skip(old.len()) {
                let l = line_of(&mut lines, &self.lines, f);
                l.added += 1;
                l.quantity_delta += f.quantity;
            }
        }
        HourDrift {
            window: self.window,
            stored_rows: self.stored.len() as u64,
            reported_rows: self.reported.len() as u64,
            lines: lines.into_values().collect(),
        }
    }
}

/// The drift line of `facts`' tenant subscription and meter.
fn line_of<'a, 'b>(
    lines: &'b mut BTreeMap<&'a (String, String), DriftLine>,
    names: &'a [(String, String)],
    facts: &Facts,
) -> &'b mut DriftLine {
    let name = &names[facts.line as usize];
    lines.entry(name).or_insert_with(|| DriftLine {
        subscription_id: name.0.clone(),
        meter_id: name.1.clone(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn compare_hour(window: ReportedWindow, stored: &[UsageRow], reported: &[UsageRow]) -> HourDrift {
        let mut comparison = HourComparison::new(window);
        stored.iter().for_each(|row| comparison.stored(row));
        reported.iter().for_each(|row| comparison.reported(row));
        comparison.finish()
    }

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

    #[test]
    fn rows_alike_but_for_quantity_pair_lowest_with_lowest_so_growth_is_never_reported_lowered() {
        let stored = vec![row("a", "1", "3"), row("a", "1", "1")];
        let reported = vec![row("a", "1", "4"), row("a", "1", "2"), row("a", "1", "7")];
        let d = compare_hour(window(), &stored, &reported);
        assert_eq!(d.totals(), (1, 0, 2));
        assert!(!d.shrinks(), "{d:?}");
        assert_eq!(d.lines[0].quantity_delta, Quantity::from_str("9").unwrap());
        assert_eq!((d.stored_rows, d.reported_rows), (2, 3));
    }
}
