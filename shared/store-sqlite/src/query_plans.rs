//! The queries that touch many usage rows go through an index, never a scan of the table: SQLite's
//! planner decides, so these tests pin its decision.

use crate::{ledger, mappings, migrations, rating};
use rusqlite::Connection;

fn plan(sql: &str) -> String {
    let mut conn = Connection::open_in_memory().unwrap();
    migrations::migrate(&mut conn).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
    let steps: Vec<String> = stmt
        .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    steps.join("; ")
}

#[test]
fn export_reads_one_stamps_range_through_the_key_and_sorts_only_within_a_reported_hour() {
    let p = plan(ledger::EXPORT_STAMP_ROWS);
    assert!(
        p.contains("SEARCH usage_rows USING INDEX usage_rows_key (stamp_no=? AND reported_start>?"),
        "{p}"
    );
    assert!(
        p.contains("LAST 2 TERMS OF ORDER BY"),
        "the sort is per reported start, not the whole export: {p}"
    );
}

#[test]
fn replacing_a_window_deletes_through_the_key() {
    let p = plan(ledger::DELETE_WINDOW);
    assert!(p.contains("SEARCH usage_rows USING INDEX usage_rows_key"), "{p}");
}

#[test]
fn back_fill_and_the_unmapped_list_read_only_the_unmapped_rows_index() {
    let p = plan(mappings::BACK_FILL);
    assert!(p.contains("SEARCH usage_rows USING INDEX usage_rows_unmapped"), "{p}");
    let p = plan(mappings::UNMAPPED);
    assert!(p.contains("u USING INDEX usage_rows_unmapped"), "only unmapped rows are read: {p}");
}

#[test]
fn the_stored_windows_of_a_range_are_found_through_the_keys_not_a_scan() {
    let p = plan(ledger::STORED_WINDOWS);
    assert!(
        p.contains("SEARCH usage_rows USING INDEX usage_rows_key (stamp_no=? AND reported_start>?"),
        "{p}"
    );
    assert!(!p.contains("SCAN usage_rows"), "{p}");
    assert!(!p.contains("SCAN quarantined_rows"), "{p}");
}

#[test]
fn a_billing_subscriptions_rows_are_one_range_of_its_covering_index_in_order() {
    let p = plan(ledger::BILLING_ROWS);
    // Covering: the table is never touched (no B-tree descent per row); and in the statement's
    // order already, so no sorter copies the rows.
    assert!(
        p.contains(
            "SEARCH u USING COVERING INDEX usage_rows_billing (billing_subscription_id=? AND reported_start>? AND reported_start<?)"
        ),
        "{p}"
    );
    assert!(!p.contains("SCAN u"), "{p}");
    assert!(!p.contains("TEMP B-TREE"), "{p}");
}

#[test]
fn a_page_of_a_months_statements_is_a_seek_on_the_month_index_in_its_order() {
    let p = plan(rating::STATEMENTS_PAGE);
    assert!(
        p.contains(
            "SEARCH statements USING INDEX statements_by_month (month=? AND billing_subscription_id>?)"
        ),
        "{p}"
    );
    assert!(!p.contains("TEMP B-TREE"), "no sort: {p}");
}
