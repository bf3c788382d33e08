//! The processes of a measurement and what Linux says about them: each stage runs in its own child of
//! this executable, so its peak resident memory (`VmHWM`) and CPU time are its own and nobody else's.

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::process::{Command, Stdio};

/// Linux's USER_HZ, the unit of the CPU times in `/proc/PID/stat`.
const TICKS_PER_SECOND: f64 = 100.0;

/// Peak resident set size of this process so far, in KiB (`VmHWM`).
pub fn own_peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process (all its threads) so far, in seconds; `None` once it is gone.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((ticks(11)? + ticks(12)?) as f64 / TICKS_PER_SECOND)
}

/// The machine's load average (`uptime`): 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

impl Load {
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let mut values = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(0.0));
        Self {
            one: values.next().unwrap_or(0.0),
            five: values.next().unwrap_or(0.0),
            fifteen: values.next().unwrap_or(0.0),
        }
    }
}

/// Runs this executable again with `args`, waits for it, and reads the JSON value it printed as its
/// last line of standard output. Its standard error goes to ours.
///
/// `wrapper` (whitespace-separated, e.g. `valgrind --tool=callgrind`) runs the child under a profiler.
pub fn run_child<T: DeserializeOwned>(args: &[String], wrapper: Option<&str>) -> anyhow::Result<T> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut words = wrapper.unwrap_or_default().split_whitespace();
    let mut command = match words.next() {
        Some(profiler) => {
            let mut c = Command::new(profiler);
            c.args(words).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting `{}`", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("`{}` failed ({}): {}", args.join(" "), output.status, stdout.trim());
    }
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last)
        .with_context(|| format!("reading the result of `{}`: {last:?}", args.join(" ")))
}

/// Prints a child's result as the one line its parent reads.
pub fn print_result<T: Serialize>(result: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(result)?);
    Ok(())
}
