//! Reported windows: `[start, end)` on whole UTC hours of *reported* time, the only time the usage API
//! can be queried by. Consecutive windows never overlap, so each reported hour is pulled exactly once.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReportedWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl ReportedWindow {
    /// The one-hour window starting at `start`, which must be on a whole hour.
    pub fn hour(start: DateTime<Utc>) -> Self {
        debug_assert_eq!(start, floor_hour(start));
        Self { start, end: start + Duration::hours(1) }
    }

    /// A window `[start, end)`; both must be whole hours and `start < end`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Self> {
        (start < end && is_whole_hour(start) && is_whole_hour(end)).then_some(Self { start, end })
    }

    pub fn hours(&self) -> i64 {
        (self.end - self.start).num_hours()
    }

    /// The one-hour windows this window is made of, in order.
    pub fn split_hours(&self) -> impl Iterator<Item = ReportedWindow> + use<> {
        let start = self.start;
        (0..self.hours()).map(move |h| ReportedWindow::hour(start + Duration::hours(h)))
    }
}

impl fmt::Display for ReportedWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.start.format("%Y-%m-%dT%H:%M:%SZ"), self.end.format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

/// The whole UTC hour `t` falls in. Total over every representable time (chrono's own truncation
/// refuses times outside about 1677..2262, which user input can reach).
pub fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let secs = t.timestamp().div_euclid(3600) * 3600;
    DateTime::from_timestamp(secs, 0).unwrap_or(t)
}

pub fn is_whole_hour(t: DateTime<Utc>) -> bool {
    floor_hour(t) == t
}

/// The rule for when a price book version or an assignment takes effect.
pub const EFFECTIVE_HOUR_RULE: &str = "must be a whole UTC hour in the years 1970 to 9998";

/// Whether `t` follows [`EFFECTIVE_HOUR_RULE`]: the years statements cover (see `rating::Month`), and
/// every store can hold it (chrono reads `+10000-…` and `0000-…`, which SQL Server's datetime2 cannot
/// hold: the import would fail there with a server error instead of this rule).
pub fn is_effective_hour(t: DateTime<Utc>) -> bool {
    is_whole_hour(t) && (1970..=9998).contains(&chrono::Datelike::year(&t))
}

/// The start of the UTC month `now` is in: where a new stamp starts collecting by default.
pub fn start_of_month(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Datelike;
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().expect("first of month exists")
}

/// Most reported hours one catch-up span may cover (the upper bound of `AZS_USAGE_MAX_SPAN_HOURS`). A
/// day: the API documents no maximum range, a span is held in memory until its commit, and stores look
/// this far back for a stored span that overlaps a range to reprocess or verify.
pub const LONGEST_SPAN_HOURS: u32 = 24;

/// The end of the newest complete reported hour a run may pull: `now - settle_delay`, floored to the
/// hour. Never in the future (the API refuses a `reportedEndTime` in the future, and the current hour is
/// still "processing not complete").
pub fn horizon(now: DateTime<Utc>, settle_delay: Duration) -> DateTime<Utc> {
    floor_hour(now - settle_delay.max(Duration::zero()))
}

/// The next window to pull from `start`: `hours` long (at least one), cut at `horizon`; `None` when
/// `start` has reached the horizon.
pub fn next_window(start: DateTime<Utc>, horizon: DateTime<Utc>, hours: u32) -> Option<ReportedWindow> {
    let start = floor_hour(start);
    let end = (start + Duration::hours(i64::from(hours.max(1)))).min(horizon);
    ReportedWindow::new(start, end)
}

/// The windows that cover `range` as it is stored: each hour of `range` inside one of the `stored`
/// windows (a catch-up span, see [`LONGEST_SPAN_HOURS`]) is covered by that whole window, every other
/// hour by itself. Reprocess and verify work on these, because a span's rows carry no reported hour
/// of their own (the API does not say which hour of the span reported a row): the span is re-pulled,
/// compared and replaced as one. The result may reach before `range.start` or past `range.end`.
pub fn covering_windows(range: ReportedWindow, stored: &[ReportedWindow]) -> Vec<ReportedWindow> {
    let mut covering = Vec::new();
    let mut t = range.start;
    while t < range.end {
        let window = stored
            .iter()
            .filter(|w| w.start <= t && t < w.end)
            .min_by_key(|w| w.start)
            .copied()
            .unwrap_or_else(|| ReportedWindow::hour(t));
        covering.push(window);
        t = window.end;
    }
    covering
}

/// The windows a run should pull one hour at a time: whole hours from the watermark up to the
/// [`horizon`].
pub fn plan_windows(
    watermark: DateTime<Utc>,
    now: DateTime<Utc>,
    settle_delay: Duration,
) -> impl Iterator<Item = ReportedWindow> {
    let horizon = horizon(now, settle_delay);
    let start = floor_hour(watermark);
    let count = if horizon > start { (horizon - start).num_hours() } else { 0 };
    (0..count).map(move |h| ReportedWindow::hour(start + Duration::hours(h)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn plans_whole_hours_up_to_now_minus_settle_delay() {
        let w: Vec<_> =
            plan_windows(t("2026-11-25T10:00:00Z"), t("2026-11-25T14:30:00Z"), Duration::hours(1)).collect();
        assert_eq!(w.len(), 3);
        assert_eq!(w[0], ReportedWindow::hour(t("2026-11-25T10:00:00Z")));
        assert_eq!(w[2].end, t("2026-11-25T13:00:00Z"));
    }

    #[test]
    fn plans_nothing_when_the_watermark_is_at_the_horizon_or_beyond() {
        assert_eq!(
            plan_windows(t("2026-11-25T13:00:00Z"), t("2026-11-25T14:30:00Z"), Duration::hours(1)).count(),
            0
        );
        assert_eq!(
            plan_windows(t("2026-11-26T13:00:00Z"), t("2026-11-25T14:30:00Z"), Duration::hours(1)).count(),
            0
        );
    }

    #[test]
    fn never_plans_into_the_future_even_with_zero_settle_delay() {
        let w: Vec<_> =
            plan_windows(t("2026-11-25T13:00:00Z"), t("2026-11-25T14:59:59Z"), Duration::zero()).collect();
        assert_eq!(w.len(), 1);
        assert!(w[0].end <= t("2026-11-25T14:59:59Z"));
    }

    #[test]
    fn windows_must_be_on_whole_hours() {
        assert!(ReportedWindow::new(t("2026-11-25T13:30:00Z"), t("2026-11-25T14:00:00Z")).is_none());
        assert_eq!(
            ReportedWindow::new(t("2026-11-25T13:00:00Z"), t("2026-11-25T16:00:00Z"))
                .unwrap()
                .split_hours()
                .count(),
            3
        );
    }

    #[test]
    fn hours_far_from_now_are_handled_without_panicking() {
        assert!(is_whole_hour(t("2999-01-01T00:00:00Z")));
        assert!(!is_whole_hour(t("1500-01-01T00:30:00Z")));
    }

    #[test]
    fn a_span_is_cut_at_the_horizon_and_none_is_planned_past_it() {
        let horizon = t("2026-11-25T13:00:00Z");
        let w = next_window(t("2026-11-25T03:00:00Z"), horizon, 12).unwrap();
        assert_eq!((w.start, w.end), (t("2026-11-25T03:00:00Z"), horizon));
        assert_eq!(next_window(t("2026-11-25T01:00:00Z"), horizon, 6).unwrap().hours(), 6);
        assert_eq!(next_window(t("2026-11-25T12:00:00Z"), horizon, 0).unwrap().hours(), 1);
        assert!(next_window(horizon, horizon, 12).is_none());
        assert!(next_window(t("2026-11-25T14:00:00Z"), horizon, 12).is_none());
    }

    #[test]
    fn covering_windows_widen_a_range_to_the_stored_spans_it_cuts() {
        let span = ReportedWindow::new(t("2026-11-25T10:00:00Z"), t("2026-11-25T16:00:00Z")).unwrap();
        let range = ReportedWindow::new(t("2026-11-25T08:00:00Z"), t("2026-11-25T12:00:00Z")).unwrap();
        assert_eq!(
            covering_windows(range, &[span]),
            vec![
                ReportedWindow::hour(t("2026-11-25T08:00:00Z")),
                ReportedWindow::hour(t("2026-11-25T09:00:00Z")),
                span
            ]
        );
        let inside = ReportedWindow::new(t("2026-11-25T12:00:00Z"), t("2026-11-25T13:00:00Z")).unwrap();
        assert_eq!(covering_windows(inside, &[span]), vec![span]);
        assert_eq!(covering_windows(inside, &[]), vec![inside]);
    }

    #[test]
    fn start_of_month_is_midnight_utc_on_the_first() {
        assert_eq!(start_of_month(t("2026-11-25T13:30:00Z")), t("2026-11-01T00:00:00Z"));
    }
}
