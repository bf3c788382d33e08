//! `azs-rating-bench`: rating throughput on one core and a month of statements, with peak memory.
//!
//! ```text
//! azs-rating-bench rate [ROWS]              # default 2,000,000 rows, rated 3 times over
//! azs-rating-bench statements [SUBSCRIPTIONS]  # default 10,000
//! azs-rating-bench pass [SUBSCRIPTIONS] [--db PATH] [--at TIME]  # the timer's pass over SQLite
//! azs-rating-bench pass [SUBSCRIPTIONS] --postgres [--at TIME]  # ... over AZS_USAGE_TEST_POSTGRES
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
        Some("pass") => pass(&args, count(10_000)),
        Some(store @ ("fill-sqlite" | "fill-postgres")) => fill(store, &args, count(10_000)),
        _ => {
            eprintln!(
                "usage: azs-rating-bench rate [ROWS] | statements [SUBSCRIPTIONS] | pass [SUBSCRIPTIONS] [--db PATH | --postgres] [--at TIME]"
            );
            std::process::exit(2);
        }
    }
}

/// The value after `flag`, if given.
fn option<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// The PostgreSQL database of a workload of `subscriptions`.
fn postgres_database(subscriptions: usize) -> String {
    format!("azs_rating_bench_{subscriptions}")
}

fn postgres_config() -> azs_store_postgres::PostgresConfig {
    let url = std::env::var("AZS_USAGE_TEST_POSTGRES").expect("--postgres needs AZS_USAGE_TEST_POSTGRES");
    azs_store_postgres::PostgresConfig::parse(&url).expect("AZS_USAGE_TEST_POSTGRES is a postgres:// URL")
}

/// Stores the workload (a child process of `pass`, so its memory is not the pass's).
fn fill(store: &str, args: &[String], subscriptions: usize) {
    let runtime = azs_process::runtime().expect("a runtime");
    let started = std::time::Instant::now();
    let rows = runtime.block_on(async {
        if store == "fill-sqlite" {
            let path = option(args, "--db").expect("--db PATH");
            let store =
                std::sync::Arc::new(azs_store_sqlite::SqliteStore::open(path).expect("the file opens"));
            azs_rating_bench::pass::fill(store.as_ref(), store.as_ref(), subscriptions).await
        } else {
            let config = postgres_config();
            let admin = azs_store_postgres::PostgresStore::lazy(config.clone()).expect("a pool");
            let name = postgres_database(subscriptions);
            let _ = admin.drop_database(&name).await;
            admin.create_database(&name).await.expect("the bench database is created");
            let store = azs_store_postgres::PostgresStore::connect(config.with_database(&name))
                .await
                .expect("the bench database opens");
            azs_rating_bench::pass::fill(&store, &store, subscriptions).await
        }
    });
    eprintln!("filled: {rows} rows in {:.1} s", started.elapsed().as_secs_f64());
}

/// The timer's statement pass over a stored month, filled first (in a child process) when needed.
fn pass(args: &[String], subscriptions: usize) {
    let at: chrono::DateTime<chrono::Utc> =
        option(args, "--at").unwrap_or("2026-11-30T23:00:00Z").parse().expect("--at is an RFC 3339 time");
    let postgres = args.iter().any(|a| a == "--postgres");
    let default_db = format!("target/bench/rating-pass-{subscriptions}.db");
    let db = option(args, "--db").unwrap_or(&default_db).to_owned();
    let fill_needed = postgres || !std::path::Path::new(&db).exists();
    if fill_needed {
        let exe = std::env::current_exe().expect("this executable");
        let mut child = std::process::Command::new(exe);
        if postgres {
            child.args(["fill-postgres", &subscriptions.to_string()]);
        } else {
            if let Some(dir) = std::path::Path::new(&db).parent() {
                std::fs::create_dir_all(dir).expect("the database's folder");
            }
            // Filled under another name: a fill that stops half way is never measured.
            let _ = std::fs::remove_file(format!("{db}.filling"));
            child.args(["fill-sqlite", &subscriptions.to_string(), "--db", &format!("{db}.filling")]);
        }
        assert!(child.status().expect("the fill runs").success(), "filling the database failed");
        if !postgres {
            for suffix in ["-wal", "-shm", ""] {
                let filled = format!("{db}.filling{suffix}");
                if std::path::Path::new(&filled).exists() {
                    std::fs::rename(&filled, format!("{db}{suffix}"))
                        .expect("the filled database is renamed");
                }
            }
        }
    }
    let runtime = azs_process::runtime().expect("a runtime");
    let cpu_before = cpu_seconds();
    let anon = azs_rating_bench::AnonPeak::start();
    let figures = runtime.block_on(async {
        if postgres {
            let config = postgres_config().with_database(&postgres_database(subscriptions));
            let store = std::sync::Arc::new(
                azs_store_postgres::PostgresStore::connect(config).await.expect("the bench database opens"),
            );
            azs_rating_bench::pass::keep(store.clone(), store, at).await
        } else {
            let store =
                std::sync::Arc::new(azs_store_sqlite::SqliteStore::open(&db).expect("the file opens"));
            azs_rating_bench::pass::keep(store.clone(), store, at).await
        }
    });
    let cpu = cpu_seconds() - cpu_before;
    let anon_peak = anon.finish();
    let store = if postgres { "postgresql" } else { "sqlite" };
    let r = &figures.report;
    println!(
        "statement pass ({store}): {subscriptions} billing subscriptions, {} rows of November counted; {:.2} s \
         (target < 60 s), {cpu:.2} CPU-seconds; peak RSS {:.0} MiB (VmHWM, mapped file pages included), \
         anonymous {anon_peak:.0} MiB (peak RssAnon); {}",
        figures.rows,
        figures.elapsed.as_secs_f64(),
        peak_rss_mib(),
        r.summary()
    );
    println!(
        "{}",
        serde_json::json!({"run": "pass", "store": store, "subscriptions": subscriptions, "rows": figures.rows,
            "seconds": figures.elapsed.as_secs_f64(), "cpuSeconds": cpu, "peakRssMiB": peak_rss_mib().round(),
            "peakAnonMiB": anon_peak.round(),
            "finalised": r.finalised, "drafts": r.drafts, "blocked": r.blocked, "failed": r.failed,
            "deferred": r.deferred, "at": at.to_rfc3339()})
    );
    assert_eq!(r.failed, 0, "{:?}", r.lines.first());
}
