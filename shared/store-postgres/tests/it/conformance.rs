//! The shared store specification (`azs-store-conformance`), against a real PostgreSQL server: every
//! case on one database shared by all (as a long-lived deployment sees it), in a database made fresh
//! for this run, after two cold starts migrated it at once; the rating cases too, on the same database.

use crate::server::Fresh;
use azs_store_postgres::{LATEST_VERSION, PostgresStore};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conforms_to_the_store_specification() {
    let db = Fresh::new("conformance").await;

    // Given two cold starts on a database with no schema yet, they migrate it once between them
    let (a, b) =
        tokio::join!(PostgresStore::connect(db.config.clone()), PostgresStore::connect(db.config.clone()));
    let store = Arc::new(a.expect("the first cold start connects and migrates"));
    let other = b.expect("the second cold start waits for the migration lock and finds nothing to do");
    assert_eq!(other.migrate().await.expect("migrating again is a no-op"), LATEST_VERSION);
    assert_eq!(store.schema_version().await.unwrap(), LATEST_VERSION);
    drop(other);

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
    drop(store);
    db.drop_now().await;
    azs_store_conformance::assert_all_passed(&outcomes);
    azs_store_conformance::assert_all_passed(&rating);
}
