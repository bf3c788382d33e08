//! What callers see when the database cannot be reached: `Unavailable`, after the configured retries,
//! never the password. Runs against a local TCP listener that hangs up on every connection (no SQL
//! Server needed).

use azs_core::ports::{StampDirectory, StoreError};
use azs_store_sqlserver::{RetryPolicy, SqlServerConfig, SqlServerStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// A listener that accepts and immediately closes every connection; returns its port and a counter.
async fn hang_up_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, accepted)
}

fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy { attempts, first_delay: Duration::from_millis(10), max_delay: Duration::from_millis(20) }
}

#[tokio::test]
async fn a_database_that_hangs_up_is_unavailable_after_every_attempt_was_made() {
    // Given a "server" that drops every connection during the TDS handshake
    let (port, accepted) = hang_up_server().await;
    let config = SqlServerConfig::parse(&format!("sqlserver://collector:s3cr3t-pw@127.0.0.1:{port}/usage"))
        .unwrap()
        .with_retry(quick_retries(3));

    // When the store starts (and migrates)
    let result = SqlServerStore::connect(config).await;

    // Then it reports the database unavailable, naming where, after three attempts, without the password
    match result {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
            assert!(!message.contains("s3cr3t-pw"), "{message}");
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, got a store"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_lazy_store_starts_without_a_database_and_fails_its_first_call_as_unavailable() {
    // Given nothing listening at all (a port that was just freed)
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config =
        SqlServerConfig::parse(&format!("Server=tcp:127.0.0.1,{port};Database=usage;User Id=u;Password=p"))
            .unwrap()
            .with_retry(RetryPolicy::none());

    // When a store is built lazily (as a function's cold start does) and then used
    let store = SqlServerStore::lazy(config).expect("building the pool needs no connection");
    let result = store.list_stamps().await;

    // Then the call, not the start, reports the database unavailable
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
}

#[tokio::test]
async fn db_check_against_a_database_that_hangs_up_is_one_failed_connect_item_without_the_password() {
    // Given a "server" that drops every connection during the TDS handshake
    let (port, _) = hang_up_server().await;
    let config = SqlServerConfig::parse(&format!("sqlserver://collector:s3cr3t-pw@127.0.0.1:{port}/usage"))
        .unwrap()
        .with_retry(RetryPolicy::none());

    // When an operator checks it
    let store = SqlServerStore::lazy(config).expect("building the pool needs no connection");
    let check = store.check().await;

    // Then the report fails on `connect`, names where, carries a fix and never the password
    assert!(check.failed());
    assert_eq!((check.store, check.items.len()), ("sqlserver", 1));
    let item = &check.items[0];
    assert_eq!(item.name, "connect");
    assert!(item.detail.contains(&format!("127.0.0.1:{port}")), "{}", item.detail);
    assert!(item.fix.as_deref().is_some_and(|f| f.contains("firewall")));
    let json = format!("{check:?}");
    assert!(!json.contains("s3cr3t-pw"), "{json}");
}
