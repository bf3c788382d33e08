//! The shared store specification (`azs-store-conformance`), run against SQLite: every case on its own
//! database file, and every case again on one file shared by all (as a long-lived deployment sees it).

use azs_store_sqlite::SqliteStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conforms_to_the_store_specification_with_a_fresh_file_per_case() {
    let dir = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    let outcomes = azs_store_conformance::run_all(|| {
        let file = dir.path().join(format!("case-{}.db", next.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteStore::open(file).expect("the database opens")) }
    })
    .await;
    azs_store_conformance::assert_all_passed(&outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conforms_to_the_store_specification_with_one_shared_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("shared.db")).unwrap());
    let outcomes = azs_store_conformance::run_all(|| {
        let store = Arc::clone(&store);
        async move { store }
    })
    .await;
    azs_store_conformance::assert_all_passed(&outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_conforms_to_the_store_specification() {
    let outcomes =
        azs_store_conformance::run_all(|| async { Arc::new(SqliteStore::open_in_memory().unwrap()) }).await;
    azs_store_conformance::assert_all_passed(&outcomes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_price_books_and_statements_as_the_rating_specification_says() {
    let dir = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    let outcomes = azs_store_conformance::rating::run_rating(|| {
        let file = dir.path().join(format!("rating-{}.db", next.fetch_add(1, Ordering::Relaxed)));
        async move { Arc::new(SqliteStore::open(file).expect("the database opens")) }
    })
    .await;
    azs_store_conformance::assert_all_passed(&outcomes);
    let shared = Arc::new(SqliteStore::open(dir.path().join("shared.db")).unwrap());
    let outcomes = azs_store_conformance::rating::run_rating(|| {
        let store = Arc::clone(&shared);
        async move { store }
    })
    .await;
    azs_store_conformance::assert_all_passed(&outcomes);
}
