//! What SQLite keeps for rating beyond the shared specification (which covers every scheduled verify,
//! `azs_store_conformance::rating`): the never-edit rules held by the database itself, whatever code
//! writes to it.

use azs_store_sqlite::SqliteStore;

#[test]
fn the_database_itself_refuses_to_edit_a_stored_book_version_or_a_final_statement() {
    // Given a database with a stored version and a final statement, written behind the store's back
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "INSERT INTO price_book_versions VALUES ('base', 1, 'USD', 2, 0, '{}', 0);
         INSERT INTO statements VALUES ('cust', '2026-11', 'final', '{}', 0);
         INSERT INTO statements VALUES ('cust', '2026-12', 'draft', '{}', 0);",
    )
    .unwrap();

    // Then no statement changes or removes them, while a draft still may change
    for sql in [
        "UPDATE price_book_versions SET body = '{\"x\":1}'",
        "DELETE FROM price_book_versions",
        "UPDATE statements SET body = '{\"x\":1}' WHERE month = '2026-11'",
        "DELETE FROM statements WHERE month = '2026-11'",
    ] {
        let err = conn.execute(sql, []).unwrap_err().to_string();
        assert!(err.contains("never"), "{sql}: {err}");
    }
    assert_eq!(conn.execute("UPDATE statements SET body = '{}' WHERE month = '2026-12'", []).unwrap(), 1);
}
