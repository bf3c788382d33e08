//! Where a collection run spends its time: a thin wrapper around the real stamp client and an observer
//! of the real store ([`azs_core::observed`]) note when each window's pull (HTTPS, paging, parsing) and
//! each window's commit (mapping, inserting, the watermark, the transaction) begin and end. They add
//! a few clock readings per window.

use async_trait::async_trait;
use azs_core::observed::StoreObserver;
use azs_core::ports::{DiscoveredEndpoints, PageRows, PullError, PullSummary, StampSession, UsageSource};
use azs_core::stamp::{Credential, Stamp};
use azs_core::window::ReportedWindow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Busy intervals of the two stages, in seconds since the timeline started.
pub struct Timeline {
    epoch: Instant,
    pulls: Mutex<Vec<(f64, f64)>>,
    commits: Mutex<Vec<(f64, f64)>>,
}

/// One stage's time: summed over windows (stamps overlap, so this can exceed the wall time) and as
/// the wall time during which at least one window was in that stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageTime {
    pub summed_seconds: f64,
    pub busy_seconds: f64,
}

impl Timeline {
    pub fn start() -> Arc<Self> {
        Arc::new(Self { epoch: Instant::now(), pulls: Mutex::default(), commits: Mutex::default() })
    }

    fn note(&self, into: &Mutex<Vec<(f64, f64)>>, began: Instant) {
        let at = |t: Instant| t.duration_since(self.epoch).as_secs_f64();
        into.lock().unwrap_or_else(|e| e.into_inner()).push((at(began), at(Instant::now())));
    }

    pub fn pulling(&self) -> StageTime {
        stage_time(&self.pulls.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn writing(&self) -> StageTime {
        stage_time(&self.commits.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn stage_time(intervals: &[(f64, f64)]) -> StageTime {
    let summed_seconds = intervals.iter().map(|(a, b)| b - a).sum();
    let mut sorted = intervals.to_vec();
    sorted.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (mut busy_seconds, mut reach) = (0.0, f64::NEG_INFINITY);
    for (a, b) in sorted {
        let a = a.max(reach);
        if b > a {
            busy_seconds += b - a;
            reach = b;
        }
    }
    StageTime { summed_seconds, busy_seconds }
}

/// The stamp client, timing every window's pull.
pub struct TimedSource {
    pub inner: Arc<dyn UsageSource>,
    pub timeline: Arc<Timeline>,
}

struct TimedSession {
    inner: Box<dyn StampSession>,
    timeline: Arc<Timeline>,
}

#[async_trait]
impl UsageSource for TimedSource {
    async fn connect(
        &self,
        stamp: &Stamp,
        credential: &Credential,
    ) -> Result<Box<dyn StampSession>, PullError> {
        let inner = self.inner.connect(stamp, credential).await?;
        Ok(Box::new(TimedSession { inner, timeline: self.timeline.clone() }))
    }

    async fn discover(&self, stamp: &Stamp) -> Result<DiscoveredEndpoints, PullError> {
        self.inner.discover(stamp).await
    }
}

#[async_trait]
impl StampSession for TimedSession {
    fn endpoints(&self) -> &DiscoveredEndpoints {
        self.inner.endpoints()
    }

    async fn pull_pages(
        &self,
        window: ReportedWindow,
        also_subscribers: &[String],
        on_page: &mut (dyn for<'p> FnMut(PageRows<'p>) + Send),
    ) -> Result<PullSummary, PullError> {
        let began = Instant::now();
        let pulled = self.inner.pull_pages(window, also_subscribers, on_page).await;
        self.timeline.note(&self.timeline.pulls, began);
        pulled
    }
}

/// Times every window's commit; the store's other calls are not noted.
pub struct CommitTimer(pub Arc<Timeline>);

impl StoreObserver for CommitTimer {
    fn after(&self, call: &'static str, took: Duration) {
        if call == "commit_window" {
            self.0.note(&self.0.commits, Instant::now() - took);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_counts_overlapping_windows_once() {
        let t = stage_time(&[(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.8)]);
        assert_eq!(t.summed_seconds, 2.0 + 2.0 + 1.0 + 0.3);
        assert!((t.busy_seconds - 4.0).abs() < 1e-9);
    }
}
