//! What PostgreSQL keeps for rating beyond the shared specification, as the SQLite store does: every
//! scheduled verify (the status row keeps only the last), and the never-edit rules held by the
//! database itself, whatever code writes to it.

use crate::server::{Fresh, url};
use azs_core::ports::{StampRegistry, StatusStore};
use azs_core::rating::ports::StatementStore;
use azs_core::status::{DriftCounts, LastVerified};
use azs_core::window::ReportedWindow;
use azs_store_conformance::fixtures::{stamp, t};
use std::str::FromStr;

fn range(from: &str, to: &str) -> ReportedWindow {
    ReportedWindow::new(t(from), t(to)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scheduled_verify_is_kept_and_found_by_the_hours_it_covered() {
    // Given a stamp verified on three days, the second with drift
    let db = Fresh::new("verifies").await;
    let store = db.store().await;
    let s = stamp("verified");
    store.insert_stamp(&s).await.unwrap();
    let days = [
        ("2026-11-30T06:00:00Z", range("2026-11-28T05:00:00Z", "2026-11-30T05:00:00Z"), 0),
        ("2026-12-01T06:00:00Z", range("2026-11-29T05:00:00Z", "2026-12-01T05:00:00Z"), 2),
        ("2026-12-02T06:00:00Z", range("2026-11-30T05:00:00Z", "2026-12-02T05:00:00Z"), 0),
    ];
    for (at, range, missing) in days {
        let drift = DriftCounts { missing, extra: 0, changed: 0 };
        store.record_verified(&s.id, &LastVerified { at: t(at), range }, &drift).await.unwrap();
    }

    // When the verifies touching the last day of November and the first of December are asked for
    let found =
        store.verify_history(&s.id, range("2026-11-30T00:00:00Z", "2026-12-02T00:00:00Z")).await.unwrap();

    // Then all three are there, oldest first, with their drift; a range none touched finds none
    let seen: Vec<_> = found.iter().map(|v| (v.at, v.range, v.drift.missing)).collect();
    assert_eq!(seen, days.iter().map(|(at, r, m)| (t(at), *r, *m)).collect::<Vec<_>>());
    let none =
        store.verify_history(&s.id, range("2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z")).await.unwrap();
    assert!(none.is_empty());
    drop(store);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_itself_refuses_to_edit_a_stored_book_version_or_a_final_statement() {
    // Given a database with a stored version and a final statement, written behind the store's back
    let db = Fresh::new("immutable").await;
    drop(db.store().await);
    let mut config = tokio_postgres::Config::from_str(url()).unwrap();
    config.dbname(&db.name);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.expect("a raw connection");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(
            "INSERT INTO price_book_versions (book_id, version, currency, minor_units, effective_from, body)
                 VALUES ('base', 1, 'USD', 2, now(), '{}');
             INSERT INTO statements VALUES ('cust', '2026-11', 'final', '{}', now());
             INSERT INTO statements VALUES ('cust', '2026-12', 'draft', '{}', now());",
        )
        .await
        .unwrap();

    // Then no statement changes or removes them, while a draft still may change
    for sql in [
        "UPDATE price_book_versions SET body = '{\"x\":1}'",
        "DELETE FROM price_book_versions",
        "UPDATE statements SET body = '{\"x\":1}' WHERE month = '2026-11'",
        "DELETE FROM statements WHERE month = '2026-11'",
    ] {
        let err = client.execute(sql, &[]).await.unwrap_err();
        let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(message.contains("never"), "{sql}: {err:?}");
    }
    assert_eq!(
        client.execute("UPDATE statements SET body = '{}' WHERE month = '2026-12'", &[]).await.unwrap(),
        1
    );
    assert_eq!(client.execute("DELETE FROM statements WHERE month = '2026-12'", &[]).await.unwrap(), 1);
    drop(client);
    let _ = connection.await;
    db.drop_now().await;
}
