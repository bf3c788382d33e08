//! What PostgreSQL keeps for rating beyond the shared specification (which covers every scheduled
//! verify, `azs_store_conformance::rating`): the never-edit rules held by the database itself,
//! whatever code writes to it.

use crate::server::{Fresh, url};
use std::str::FromStr;

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
