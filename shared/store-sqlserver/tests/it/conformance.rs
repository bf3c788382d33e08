//! The shared store conformance suite (the rating cases too), against a real SQL Server or Azure SQL database.
//!
//! No SQL Server runs on our machines or in CI, so this runs only when `AZS_USAGE_TEST_SQLSERVER` holds
//! a connection string (ADO.NET or `sqlserver://`); otherwise it says so on stderr and checks nothing.
//! It works in a fresh schema `azs_usage_test_<random>` and drops it afterwards.
//!
//! ```text
//! AZS_USAGE_TEST_SQLSERVER='Server=tcp:HOST,1433;Database=DB;User ID=USER;Password=...' \
//!     cargo test -p azs-store-sqlserver --test it -- --nocapture conformance::
//! ```

use azs_core::ports::{StampRegistry, StoreError, UsageLedger, WindowCommit, WindowWrite};
use azs_store_conformance::fixtures;
use azs_store_sqlserver::{LATEST_VERSION, RetryPolicy, SchemaName, SqlServerConfig, SqlServerStore};
use std::sync::Arc;
use std::time::Duration;

const SERVER: &str = "AZS_USAGE_TEST_SQLSERVER";

#[tokio::test(flavor = "multi_thread")]
async fn sql_server_conformance_suite_runs_only_against_a_real_server() {
    let Some(connection) = std::env::var(SERVER).ok().filter(|s| !s.trim().is_empty()) else {
        say(&format!("SQL Server conformance suite: NOT RUN ({SERVER} is not set)"));
        return;
    };
    let schema =
        SchemaName::parse(&format!("azs_usage_test_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
            .expect("a valid schema name");
    let config = SqlServerConfig::parse(&connection)
        .unwrap_or_else(|e| panic!("{SERVER}: {e}"))
        .with_schema(schema.clone())
        // Patient enough for a paused serverless Azure SQL database, which answers 40613 until it has
        // resumed (about a minute, sometimes more): 10 attempts, 2 s doubling to 16 s, about 2 minutes.
        .with_retry(RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(16),
        });
    say(&format!("SQL Server conformance suite: running against {} in schema {schema}", config.address()));

    // Given two cold starts on a schema that does not exist yet, they migrate it once between them
    let (a, b) =
        tokio::join!(SqlServerStore::connect(config.clone()), SqlServerStore::connect(config.clone()));
    let store = Arc::new(a.expect("the first cold start connects and migrates"));
    let other = b.expect("the second cold start waits for the migration lock and finds nothing to do");
    assert_eq!(other.migrate().await.expect("migrating again is a no-op"), LATEST_VERSION);

    let outcomes = azs_store_conformance::run_all(|| {
        let store = Arc::clone(&store);
        async move { store }
    })
    .await;
    let rating = azs_store_conformance::rating::run_rating(|| {
        let store = Arc::clone(&store);
        async move { store }
    })
    .await;
    let own = quantities_the_column_cannot_hold_are_refused_naming_stamp_and_window(store.as_ref()).await;
    let dropped = store.drop_schema().await;

    azs_store_conformance::assert_all_passed(&outcomes);
    azs_store_conformance::assert_all_passed(&rating);
    own.unwrap_or_else(|e| panic!("SQL Server's own case failed: {e}"));
    dropped.expect("the test schema is dropped");
}

/// Writes straight to the process's stderr: the test harness captures `eprintln!` of a passing test,
/// and whether this suite ran must be visible in every run's output.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// decimal(38, 12) holds every quantity the API sends (at most 10 decimals seen); a value needing more
/// is refused, never rounded.
async fn quantities_the_column_cannot_hold_are_refused_naming_stamp_and_window(
    store: &SqlServerStore,
) -> Result<(), String> {
    let s = fixtures::registered_and_leased(store, "precision").await;
    let window = fixtures::hour(fixtures::COLLECT_FROM);
    let rows = [fixtures::vm_usage(fixtures::TENANT_A, "web-01", "2026-10-31T23:00:00Z", "0.0000000000001")];
    let refused = store
        .commit_window(WindowCommit {
            stamp: &s.id,
            window,
            lease_owner: fixtures::RUN,
            write: WindowWrite::Advance,
            rows: rows.to_vec(),
            quarantined: Vec::new(),
        })
        .await;
    match refused {
        Err(StoreError::Other(m)) if m.contains(s.id.as_str()) && m.contains(&window.to_string()) => {}
        other => return Err(format!("expected a refusal naming the stamp and window, got {other:?}")),
    }
    if fixtures::watermark(store, &s.id).await != window.start {
        return Err("the refused window moved the watermark".into());
    }
    store.delete_stamp(&s.id).await.map_err(|e| e.to_string())?;
    Ok(())
}
