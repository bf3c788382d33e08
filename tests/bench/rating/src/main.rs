//! `azs-rating-bench`: rating throughput on one core and a month of statements, with peak memory.
//!
//! ```text
//! azs-rating-bench rate [ROWS]              # default 2,000,000 rows, rated 3 times over
//! azs-rating-bench statements [SUBSCRIPTIONS]  # default 10,000
//! ```
//! Each prints one line for people and one JSON line. See `tests/bench/README.md`.

use azs_rating_bench::{cpu_seconds, mixed_row, month_of_statements, peak_rss_mib, rate_rows};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |default: usize| args.get(1).map_or(default, |n| n.parse().expect("a count"));
    match args.first().map(String::as_str) {
        Some("rate") => {
            let rows: Vec<_> = (0..count(2_000_000)).map(mixed_row).collect();
            rate_rows(&rows[..rows.len().min(100_000)], 1); // warm the caches and the allocator
            let cpu_before = cpu_seconds();
            let figures = rate_rows(&rows, 3);
            let cpu = cpu_seconds() - cpu_before;
            println!(
                "rating: {} rows in {:.3} s on one core = {:.0} rows/s, {:.0} rows per CPU-second (target >= 1,000,000)",
                figures.rows,
                figures.elapsed.as_secs_f64(),
                figures.rows_per_second(),
                figures.rows as f64 / cpu
            );
            println!(
                "{}",
                serde_json::json!({"run": "rating", "rows": figures.rows, "seconds": figures.elapsed.as_secs_f64(),
                    "rowsPerSecond": figures.rows_per_second().round(), "cpuSeconds": cpu,
                    "rowsPerCpuSecond": (figures.rows as f64 / cpu).round(), "priced": figures.priced_rows})
            );
        }
        Some("statements") => {
            let (figures, statements) = month_of_statements(count(10_000));
            let cpu = cpu_seconds();
            let seconds = (figures.generating + figures.building).as_secs_f64();
            println!(
                "statements: {} billing subscriptions, {} rows, {} lines, {} final; building {:.2} s, making the rows {:.2} s, \
                 {seconds:.2} s in all (target < 60 s), {cpu:.2} CPU-seconds; peak RSS {:.0} MiB; total {}",
                figures.subscriptions,
                figures.rows,
                figures.lines,
                figures.finalised,
                figures.building.as_secs_f64(),
                figures.generating.as_secs_f64(),
                peak_rss_mib(),
                figures.total
            );
            println!(
                "{}",
                serde_json::json!({"run": "statements", "subscriptions": figures.subscriptions, "rows": figures.rows,
                    "buildingSeconds": figures.building.as_secs_f64(), "generatingSeconds": figures.generating.as_secs_f64(),
                    "cpuSeconds": cpu, "peakRssMiB": peak_rss_mib().round(), "final": figures.finalised, "statements": statements.len()})
            );
        }
        _ => {
            eprintln!("usage: azs-rating-bench rate [ROWS] | statements [SUBSCRIPTIONS]");
            std::process::exit(2);
        }
    }
}
