//! What only a server database shows: several connections at once. The fence under contention, a
//! lease raced for, a mapping set while windows commit, a connection lost between calls, and
//! `db check` on a real server.

use crate::server::{Fresh, url};
use azs_core::mapping::SubscriptionMapping;
use azs_core::ports::{ExportFilter, LeaseStore, MappingStore, StoreError, UsageLedger, WindowWrite};
use azs_store_conformance::fixtures;
use azs_store_postgres::PostgresStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_window_committed_from_many_connections_at_once_is_stored_once() {
    let db = Fresh::new("fence").await;
    let store = Arc::new(db.store().await);
    // Given a stamp leased by one run, and that run's window sent eight times at once (redeliveries)
    let s = fixtures::registered_and_leased(store.as_ref(), "contended").await;
    let window = fixtures::hour(fixtures::COLLECT_FROM);
    let rows = vec![
        fixtures::vm_usage(fixtures::TENANT_A, "web-01", fixtures::COLLECT_FROM, "1"),
        fixtures::vm_usage(fixtures::TENANT_B, "web-02", fixtures::COLLECT_FROM, "2.5"),
    ];
    let attempts = (0..8).map(|_| {
        let (store, id, rows) = (Arc::clone(&store), s.id.clone(), rows.clone());
        tokio::spawn(async move {
            fixtures::commit(store.as_ref(), &id, window, fixtures::RUN, WindowWrite::Advance, &rows).await
        })
    });
    let results: Vec<_> = futures_join(attempts).await;

    // Then exactly one commits, every other is fenced, and the rows are there once
    let committed = results.iter().filter(|r| r.is_ok()).count();
    let fenced = results.iter().filter(|r| matches!(r, Err(StoreError::Fenced { .. }))).count();
    assert_eq!((committed, fenced), (1, 7), "{results:?}");
    assert_eq!(fixtures::watermark(store.as_ref(), &s.id).await, window.end);
    let mut stored = 0;
    store
        .export_rows(&ExportFilter { stamps: vec![s.id.clone()], ..Default::default() }, &mut |_| {
            stored += 1;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(stored, 2);
    drop(store);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_many_runs_racing_for_a_free_lease_exactly_one_wins() {
    let db = Fresh::new("lease").await;
    let store = Arc::new(db.store().await);
    let s = fixtures::stamp("raced");
    azs_core::ports::StampRegistry::insert_stamp(store.as_ref(), &s).await.unwrap();
    let racers = (0..10).map(|i| {
        let (store, id) = (Arc::clone(&store), s.id.clone());
        tokio::spawn(async move { store.try_acquire(&id, &format!("run-{i}"), fixtures::LEASE).await })
    });
    let won = futures_join(racers).await.into_iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(won, 1);
    drop(store);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_set_while_windows_commit_leaves_no_row_of_that_subscription_unmapped() {
    let db = Fresh::new("mapping").await;
    let store = Arc::new(db.store().await);
    let s = fixtures::registered_and_leased(store.as_ref(), "mapped-meanwhile").await;
    // Given a run committing 24 hours of one tenant's usage
    let committing = {
        let (store, id) = (Arc::clone(&store), s.id.clone());
        tokio::spawn(async move {
            let mut window = fixtures::hour(fixtures::COLLECT_FROM);
            for _ in 0..24 {
                let hour = window.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let rows: Vec<_> = (0..200)
                    .map(|vm| fixtures::vm_usage(fixtures::TENANT_A, &format!("vm-{vm}"), &hour, "1"))
                    .collect();
                fixtures::commit(store.as_ref(), &id, window, fixtures::RUN, WindowWrite::Advance, &rows)
                    .await
                    .expect("the window commits");
                window = azs_core::window::ReportedWindow::hour(window.end);
            }
        })
    };
    // When the tenant is mapped in the middle of it
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    store
        .set_mapping(&SubscriptionMapping {
            stamp_id: s.id.clone(),
            external_subscription_id: fixtures::TENANT_A.into(),
            billing_subscription_id: "billing-a".into(),
            updated_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    committing.await.unwrap();
    // Then every row of it carries the billing subscription
    assert!(store.unmapped(Some(&s.id)).await.unwrap().is_empty());
    drop(store);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_ended_is_replaced_and_the_call_succeeds() {
    let db = Fresh::new("reconnect").await;
    let store = db.store().await;
    let s = fixtures::registered_and_leased(&store, "reconnect").await;
    // When the server ends every session of the store's pool (a failover, an idle timeout)
    let (admin, connection) =
        tokio_postgres::connect(url(), tokio_postgres::NoTls).await.expect("an admin connection");
    tokio::spawn(connection);
    let ended = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .unwrap();
    assert!(ended >= 1, "the pool had a session to end");
    // Then the next calls succeed on fresh connections
    assert!(store.renew(&s.id, fixtures::RUN, fixtures::LEASE).await.unwrap());
    let window = fixtures::hour(fixtures::COLLECT_FROM);
    fixtures::commit(&store, &s.id, window, fixtures::RUN, WindowWrite::Advance, &[]).await.unwrap();
    drop(store);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_check_passes_on_a_migrated_database_and_warns_on_an_empty_one() {
    let db = Fresh::new("check").await;
    let empty = PostgresStore::lazy(db.config.clone()).unwrap().check().await;
    assert_eq!(empty.status, azs_core::check::CheckStatus::Warning, "{empty:#?}");
    let store = db.store().await;
    let checked = store.check().await;
    assert_eq!(checked.status, azs_core::check::CheckStatus::Ok, "{checked:#?}");
    assert!(checked.items.iter().any(|i| i.name == "trial-commit"));
    // The trial commit was rolled back: no stamp is left behind
    assert!(azs_core::ports::StampDirectory::list_stamps(&store).await.unwrap().is_empty());
    drop((store, empty));
    db.drop_now().await;
}

async fn futures_join<T: Send + 'static>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        out.push(t.await.expect("the task finished"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_a_rows_text_refuses_the_window_naming_the_field_and_a_nul_in_an_error_is_kept() {
    use azs_core::ports::{StatusReader, StatusStore};
    let db = Fresh::new("nul").await;
    let store = db.store().await;
    let s = fixtures::registered_and_leased(&store, "nul").await;
    let window = fixtures::hour(fixtures::COLLECT_FROM);
    let mut row = fixtures::vm_usage(fixtures::TENANT_A, "web-01", fixtures::COLLECT_FROM, "1");
    row.tags = Some("{\"a\":\"b\u{0}\"}".into());
    let refused = fixtures::commit(&store, &s.id, window, fixtures::RUN, WindowWrite::Advance, &[row]).await;
    assert!(
        matches!(&refused, Err(StoreError::Other(m)) if m.contains("instanceData.tags") && m.contains(s.id.as_str())),
        "{refused:?}"
    );
    assert_eq!(fixtures::watermark(&store, &s.id).await, window.start);
    let record = azs_core::status::RunRecord {
        outcome: azs_core::status::RunOutcome::Failed,
        finished: chrono::Utc::now(),
        rows_written: 0,
        unmapped_rows: 0,
        duplicates: 0,
        last_error: Some("stamp said \u{0}".into()),
    };
    store.record_run_finished(&s.id, &record).await.unwrap();
    let status = store.get_status(&s.id).await.unwrap().unwrap();
    assert_eq!(status.last_error.as_deref(), Some("stamp said \u{FFFD}"));
    drop(store);
    db.drop_now().await;
}

/// A password source that counts how often it was asked, handing out the test server's password.
struct CountingSource {
    password: String,
    asked: std::sync::atomic::AtomicUsize,
    fail: bool,
}

#[async_trait::async_trait]
impl azs_store_postgres::PasswordSource for CountingSource {
    async fn password(&self) -> Result<String, String> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.fail { Err("the identity endpoint did not answer".into()) } else { Ok(self.password.clone()) }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_token_is_asked_for_on_every_new_connection_and_its_failure_is_named() {
    use azs_store_postgres::{PostgresConfig, RetryPolicy};
    let db = Fresh::new("token").await;
    // Given the URL without its password, and a source that hands it out (as a token would be)
    let mut bare = url::Url::parse(url()).unwrap();
    let password = bare.password().expect("the test URL has a password").to_owned();
    bare.set_password(None).unwrap();
    bare.set_path(&format!("/{}", db.name));
    let source = Arc::new(CountingSource { password, asked: Default::default(), fail: false });
    let config = PostgresConfig::parse(bare.as_str()).unwrap().with_password_source(source.clone());
    // When the store connects, migrates and works
    let store = PostgresStore::connect(config).await.expect("the token logs in");
    let s = fixtures::registered_and_leased(&store, "token").await;
    assert!(store.renew(&s.id, fixtures::RUN, fixtures::LEASE).await.unwrap());
    // Then the source was asked for the connection(s) it opened
    assert!(source.asked.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    // And a source that fails makes the store unavailable, naming the cause, not a login refusal
    let failing = Arc::new(CountingSource { password: String::new(), asked: Default::default(), fail: true });
    let config = PostgresConfig::parse(bare.as_str())
        .unwrap()
        .with_password_source(failing.clone())
        .with_retry(RetryPolicy::none());
    let refused = PostgresStore::connect(config).await.err().expect("no token, no connection");
    assert!(
        matches!(&refused, StoreError::Unavailable(m) if m.contains("identity endpoint did not answer")),
        "{refused}"
    );
    drop(store);
    db.drop_now().await;
}
