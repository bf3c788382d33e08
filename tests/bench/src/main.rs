//! `azs-usage-bench`: the benchmark's entry point. The named runs print a table and one JSON line each;
//! `sim`, `collect`, `pull` and `write` are the child processes a measurement starts.
//!
//! ```text
//! azs-usage-bench [--repeat N] standard|stamps|fan-out|windows|mapped|all
//! azs-usage-bench fleet [--stamps 500 --large 10 --hours 24 --workers 20 --max-span-hours 6 ...]
//! azs-usage-bench [--repeat N] run --stamps 2 --tenants 20 --meters 5 --hours 6 [--stages]
//! ```
//! See `scripts/bench.sh` and `tests/bench/README.md`.

use anyhow::bail;
use azs_bench::measure::Options;
use azs_bench::process::print_result;
use azs_bench::report::Summary;
use azs_bench::scenarios::{self, Verdict};
use azs_bench::stages::{self, Files};
use azs_bench::workload::{Span, Workload};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use std::io::Write as _;
use std::path::PathBuf;

/// Measures azs-usage collecting from simulated stamps into SQLite.
#[derive(Debug, Parser)]
struct Args {
    /// Measure every workload this many times; figures are reported as median and range.
    #[arg(long, global = true, default_value_t = 1)]
    repeat: usize,
    /// Directory for the measurement's database and secret files (default: the system's temp dir).
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    /// Also append every JSON line to this file.
    #[arg(long, global = true)]
    json_out: Option<PathBuf>,
    /// Run the collecting process under this profiler command line, e.g.
    /// `valgrind --tool=callgrind --callgrind-out-file=collect.%p.out` (figures are then meaningless).
    #[arg(long, global = true)]
    profile_collect: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 4 stamps x 1,000 tenants x 10 meters x 24 h (960,000 rows), with each stage alone.
    Standard,
    /// 1, 4, 16 and 64 stamps at 960,000 rows in all.
    Stamps,
    /// 16 stamps at 250 ms per page: concurrency 1 vs 16, and one stamp alone.
    FanOut,
    /// One stamp over 24 and over 168 reported hours: peak memory must stay flat.
    Windows,
    /// The standard workload with every tenant subscription mapped first (the steady state).
    Mapped,
    /// One per-subscriber stamp, 2,000 tenant subscriptions at 200 ms per query: subscriber
    /// concurrency 1 (on a 200-subscription sample), 8 and 16; seconds per collected hour. Not in `all`.
    Scale,
    /// 500 stamps of mixed sizes (ten large per-subscriber, some slow), 24 h behind, brought current
    /// through the queue path by a bounded worker pool; one JSON line per figure. Not in `all`.
    Fleet {
        #[command(flatten)]
        fleet: azs_bench::fleet::Fleet,
    },
    /// All of the above but `scale` and `fleet`.
    All,
    /// Any workload.
    Run {
        #[command(flatten)]
        workload: Workload,
        /// Also measure pulling alone and writing alone.
        #[arg(long)]
        stages: bool,
    },
    /// (child) Serve the workload's simulated stamps until standard input closes.
    #[command(hide = true)]
    Sim {
        #[command(flatten)]
        workload: Workload,
    },
    /// (child) Collect every registered stamp up to `--to`.
    #[command(hide = true)]
    Collect {
        #[command(flatten)]
        files: Files,
        #[arg(long)]
        to: DateTime<Utc>,
        #[arg(long)]
        concurrency: usize,
        #[arg(long, default_value_t = 0)]
        subscriber_concurrency: usize,
    },
    /// (child) Pull every registered stamp's windows, discarding the rows.
    #[command(hide = true)]
    Pull {
        #[command(flatten)]
        files: Files,
        #[arg(long)]
        from: DateTime<Utc>,
        #[arg(long)]
        to: DateTime<Utc>,
        #[arg(long)]
        concurrency: usize,
    },
    /// (child) Commit the workload's rows from memory into a fresh database.
    #[command(hide = true)]
    Write {
        #[arg(long)]
        db: PathBuf,
        #[command(flatten)]
        workload: Workload,
    },
}

/// Every process of a measurement (simulator, collector, stages) starts like the entry points do.
fn main() -> anyhow::Result<()> {
    azs_process::runtime()?.block_on(measure())
}

async fn measure() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options {
        stages: false,
        work_dir: args.work_dir.clone(),
        profile_collect: args.profile_collect.clone(),
    };
    let (summaries, verdicts): (Vec<Summary>, Vec<Verdict>) = match args.command {
        Command::Sim { workload } => return azs_bench::sim::serve(&workload).await,
        Command::Fleet { fleet } => return azs_bench::fleet::run(&fleet).await,
        Command::Collect { files, to, concurrency, subscriber_concurrency } => {
            return print_result(&stages::collect(&files, to, concurrency, subscriber_concurrency).await?);
        }
        Command::Pull { files, from, to, concurrency } => {
            return print_result(&stages::pull_only(&files, Span { from, to }, concurrency).await?);
        }
        Command::Write { db, workload } => return print_result(&stages::write_only(&workload, &db).await?),
        Command::Standard => {
            let s = scenarios::repeated(scenarios::standard_cases(), args.repeat, &options).await?;
            let v = s.iter().flat_map(scenarios::standard_verdicts).collect();
            (s, v)
        }
        Command::Stamps => {
            (scenarios::repeated(scenarios::stamps_cases(), args.repeat, &options).await?, vec![])
        }
        Command::FanOut => {
            let s = scenarios::repeated(scenarios::fan_out_cases(), args.repeat, &options).await?;
            let v = scenarios::fan_out_verdicts(&s);
            (s, v)
        }
        Command::Windows => {
            let s = scenarios::repeated(scenarios::windows_cases(), args.repeat, &options).await?;
            let v = scenarios::windows_verdicts(&s);
            (s, v)
        }
        Command::Scale => {
            let s = scenarios::repeated(scenarios::scale_cases(), args.repeat, &options).await?;
            let v = scenarios::scale_verdicts(&s);
            (s, v)
        }
        Command::Mapped => {
            (scenarios::repeated(scenarios::mapped_cases(), args.repeat, &options).await?, vec![])
        }
        Command::All => {
            let mut s = scenarios::repeated(scenarios::standard_cases(), args.repeat, &options).await?;
            let mut v: Vec<Verdict> = s.iter().flat_map(scenarios::standard_verdicts).collect();
            s.extend(scenarios::repeated(scenarios::stamps_cases(), args.repeat, &options).await?);
            let fan_out = scenarios::repeated(scenarios::fan_out_cases(), args.repeat, &options).await?;
            v.extend(scenarios::fan_out_verdicts(&fan_out));
            s.extend(fan_out);
            let windows = scenarios::repeated(scenarios::windows_cases(), args.repeat, &options).await?;
            v.extend(scenarios::windows_verdicts(&windows));
            s.extend(windows);
            s.extend(scenarios::repeated(scenarios::mapped_cases(), args.repeat, &options).await?);
            (s, v)
        }
        Command::Run { workload, stages } => {
            // The targets are about the standard workload; other workloads are only reported.
            let judged = workload == Workload::standard();
            let cases = vec![("run".to_owned(), workload, stages)];
            let s = scenarios::repeated(cases, args.repeat, &options).await?;
            let v = if judged { s.iter().flat_map(scenarios::standard_verdicts).collect() } else { vec![] };
            (s, v)
        }
    };

    let mut json_out = match &args.json_out {
        Some(path) => Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    for s in &summaries {
        println!("{}", s.table());
    }
    if !verdicts.is_empty() {
        println!("== targets (2-core machine)");
        for v in &verdicts {
            println!("   {}", v.line());
        }
        println!();
    }
    for s in &summaries {
        let line = serde_json::to_string(&s.json())?;
        println!("{line}");
        if let Some(file) = json_out.as_mut() {
            writeln!(file, "{line}")?;
        }
    }
    if summaries.iter().any(|s| !s.verified()) {
        bail!("stored rows did not match the ground truth");
    }
    Ok(())
}
