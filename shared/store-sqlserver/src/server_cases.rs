//! This store's own cases that need a real SQL Server (run only when `AZS_USAGE_TEST_SQLSERVER` is
//! set, like `tests/it/conformance.rs`; otherwise they say NOT RUN on stderr and check nothing). They live
//! inside the crate because they reach under the store's API (a stored key forced to collide), which
//! no public method offers.

use crate::bind::Bound;
use crate::sql::Statement;
use crate::{SchemaName, SqlServerConfig, SqlServerStore};
use azs_core::usage::{RowKey, UsageRow};
use azs_store_conformance::fixtures;
use tiberius::IntoSql;

const SERVER: &str = "AZS_USAGE_TEST_SQLSERVER";

/// Test-only: every stored row of the schema gets the key @P1 (32 hex digits).
const FORCE_ROW_KEY: Statement = Statement {
    name: "FORCE_ROW_KEY",
    sql: "UPDATE {schema}.usage_rows SET row_key = CONVERT(binary(16), @P1, 2)",
    params: 1,
};
/// Test-only: the stamp @P1's watermark back to @P2, so a committed window can be committed again.
const REWIND: Statement = Statement {
    name: "REWIND",
    sql: "UPDATE {schema}.processing_status SET watermark = @P2 WHERE stamp_id = @P1",
    params: 2,
};

fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

async fn fresh_store(case: &str) -> Option<SqlServerStore> {
    let Some(connection) = std::env::var(SERVER).ok().filter(|s| !s.trim().is_empty()) else {
        say(&format!("SQL Server case {case}: NOT RUN ({SERVER} is not set)"));
        return None;
    };
    let schema =
        SchemaName::parse(&format!("azs_usage_test_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
            .expect("a valid schema name");
    let config =
        SqlServerConfig::parse(&connection).unwrap_or_else(|e| panic!("{SERVER}: {e}")).with_schema(schema);
    say(&format!("SQL Server case {case}: running against {}", config.address()));
    Some(SqlServerStore::connect(config).await.expect("connects and migrates"))
}

async fn run(store: &SqlServerStore, bound: Bound<'static>) {
    store
        .run("test", |mut s| {
            let bound = Bound { statement: bound.statement, params: bound.params.clone() };
            Box::pin(async move { s.execute(bound).await })
        })
        .await
        .expect("the test statement runs");
}

fn hex(key: &RowKey) -> String {
    key.bytes().iter().map(|b| format!("{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_rows_whose_first_64_key_bits_collide_are_both_stored() {
    let Some(store) = fresh_store("two_rows_whose_first_64_key_bits_collide_are_both_stored").await else {
        return;
    };
    // Given a stored row whose key's first 64 bits are forced equal to another row's (the stand-in for
    // a collision of the legacy 64-bit fingerprint, random or crafted: the old key was exactly 64 bits)
    let stamp = fixtures::registered_and_leased(&store, "collide").await;
    let window = fixtures::hour(fixtures::COLLECT_FROM);
    let first = fixtures::vm_usage(fixtures::TENANT_A, "web-01", fixtures::COLLECT_FROM, "1.5000000000");
    let second = fixtures::vm_usage(fixtures::TENANT_B, "db-01", fixtures::COLLECT_FROM, "2");
    fixtures::advance(&store, &stamp.id, window, std::slice::from_ref(&first)).await;
    let mut forced = *first.key().bytes();
    forced[..8].copy_from_slice(&second.key().bytes()[..8]);
    run(&store, Bound { statement: &FORCE_ROW_KEY, params: vec![hex(&RowKey(forced)).into_sql()] }).await;
    let stamp_key = crate::types::stamp_key(&stamp.id).expect("a GUID");
    run(&store, Bound { statement: &REWIND, params: vec![stamp_key.into_sql(), window.start.into_sql()] })
        .await;

    // When the other row arrives in the same window
    let receipt = fixtures::advance(&store, &stamp.id, window, std::slice::from_ref(&second)).await;

    // Then it is stored beside the first, not dropped as its duplicate
    let stored: Vec<UsageRow> =
        fixtures::rows_of(&store, &stamp.id).await.into_iter().map(|r| r.row).collect();
    let dropped = store.drop_schema().await;
    assert_eq!((receipt.rows_written, receipt.duplicates), (1, 0));
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&first) && stored.contains(&second));
    dropped.expect("the test schema is dropped");
}

#[test]
fn the_test_only_statements_parse_and_declare_their_parameters() {
    use sqlparser::dialect::MsSqlDialect;
    use sqlparser::parser::Parser;
    for statement in [&FORCE_ROW_KEY, &REWIND] {
        let sql = SchemaName::default().render(statement.sql);
        Parser::parse_sql(&MsSqlDialect {}, &sql).unwrap_or_else(|e| panic!("{}: {e}", statement.name));
        assert_eq!(crate::sql::placeholders(statement.sql), (1..=statement.params).collect::<Vec<_>>());
    }
}
