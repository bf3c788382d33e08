//! Progress for long runs: one bar per stamp (windows committed / planned) on a terminal; nothing
//! when stderr is not a terminal (indicatif hides itself then).

use azs_core::collect::Progress;
use azs_core::ports::CommitReceipt;
use azs_core::stamp::{Stamp, StampId};
use azs_core::window::ReportedWindow;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct TerminalProgress {
    bars: MultiProgress,
    per_stamp: Mutex<HashMap<StampId, ProgressBar>>,
}

impl TerminalProgress {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { bars: MultiProgress::new(), per_stamp: Mutex::new(HashMap::new()) })
    }

    pub fn finish(&self) {
        for bar in self.per_stamp.lock().expect("progress lock").values() {
            bar.finish_and_clear();
        }
    }
}

impl Progress for TerminalProgress {
    fn planned(&self, stamp: &Stamp, windows: usize) {
        let bar = self.bars.add(ProgressBar::new(windows as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:24} {bar:30} {pos}/{len} windows {msg}")
                .expect("valid template"),
        );
        bar.set_prefix(stamp.name.chars().take(24).collect::<String>());
        self.per_stamp.lock().expect("progress lock").insert(stamp.id.clone(), bar);
    }

    fn window_committed(&self, stamp: &Stamp, window: ReportedWindow, receipt: &CommitReceipt) {
        if let Some(bar) = self.per_stamp.lock().expect("progress lock").get(&stamp.id) {
            bar.inc(1);
            bar.set_message(format!(
                "{} (+{} rows)",
                window.start.format("%m-%d %H:00"),
                receipt.rows_written
            ));
        }
    }
}
