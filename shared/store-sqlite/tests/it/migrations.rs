//! Schema migrations: applied once however often and however many processes open the file, and a
//! file migrated by a newer build is refused rather than written with an older schema.

use azs_core::ports::{StampDirectory, StampRegistry, StoreError};
use azs_core::stamp::{Stamp, StampConnection, StampId, UsageQueryMode};
use azs_store_sqlite::{LATEST_VERSION, SqliteStore, known_versions};

fn applied_versions(path: &std::path::Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn a_stamp() -> Stamp {
    Stamp {
        id: StampId::new_random(),
        name: "eu-1".into(),
        connection: StampConnection {
            admin_subscription_id: "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f".into(),
            tenant_id: "4de154de-f8a8-4017-af41-df619da68155".into(),
            application_id: "11111111-2222-3333-4444-555555555555".into(),
            certificate_thumbprint: None,
            admin_arm_endpoint: "https://adminmanagement.local.azurestack.external".into(),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: false,
            ca_certificate_pem: None,
        },
        credential_secret_name: "eu-1".into(),
        enabled: true,
        collect_from: "2026-11-01T00:00:00Z".parse().unwrap(),
        query_mode: UsageQueryMode::AllTenants,
        created_at: "2026-11-26T10:30:00Z".parse().unwrap(),
    }
}

#[tokio::test]
async fn reopening_a_database_applies_no_migration_twice_and_keeps_its_data() {
    // Given a database with a registered stamp
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let stamp = a_stamp();
    SqliteStore::open(&path).unwrap().insert_stamp(&stamp).await.unwrap();

    // When it is opened again, several times
    for _ in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        // Then it is at the latest version with each migration recorded once, and the stamp is there
        assert_eq!(store.schema_version().await.unwrap(), LATEST_VERSION);
        assert_eq!(store.get_stamp(&stamp.id).await.unwrap(), Some(stamp.clone()));
    }
    assert_eq!(applied_versions(&path), known_versions());
}

#[test]
fn processes_opening_a_new_file_at_once_migrate_it_once() {
    // Given a file nobody has created yet
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");

    // When four openers race to create and migrate it
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || SqliteStore::open(&path).map(|_| ()))
        })
        .collect();

    // Then every one succeeds and each migration is applied exactly once
    for opener in openers {
        opener.join().unwrap().expect("every opener gets a migrated database");
    }
    assert_eq!(applied_versions(&path), known_versions());
}

#[test]
fn a_database_migrated_by_a_newer_build_is_refused() {
    // Given a database a newer build has migrated further
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'from the future', 0)",
            [LATEST_VERSION + 1],
        )
        .unwrap();

    // When this build opens it
    let opened = SqliteStore::open(&path);

    // Then it refuses, saying which versions
    match opened {
        Err(StoreError::Other(message)) => {
            assert!(message.contains(&format!("schema version {}", LATEST_VERSION + 1)), "{message}")
        }
        Err(e) => panic!("expected a schema version error, got {e}"),
        Ok(_) => panic!("a newer schema must not be opened"),
    }
}

/// Undoes migrations 0005, 0004, 0003 and 0002 by hand, leaving the file exactly as a build at version
/// 1 wrote it.
fn back_to_version_1(path: &std::path::Path) {
    back_to_version_2(path);
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(
            "BEGIN;
             DROP TABLE stamp_tombstones;
             DROP INDEX usage_rows_unmapped;
             ALTER TABLE usage_rows DROP COLUMN tenant_no;
             DROP TABLE tenant_numbers;
             CREATE INDEX usage_rows_unmapped ON usage_rows (stamp_no, subscription_key)
                 WHERE billing_subscription_id IS NULL;
             DELETE FROM schema_migrations WHERE version > 1;
             COMMIT;",
        )
        .unwrap();
}

#[tokio::test]
async fn a_version_1_file_with_unmapped_rows_keeps_listing_and_back_filling_them_after_migrating() {
    use azs_core::SubscriptionMapping;
    use azs_core::ports::{MappingStore, WindowWrite};
    use azs_store_conformance::fixtures::{TENANT_A, TENANT_B};

    // Given a version-1 file holding two stamps' rows: tenant A mapped on the first, B unmapped on both
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let store = SqliteStore::open(&path).unwrap();
    let (first, second) = (
        azs_store_conformance::fixtures::registered_and_leased(&store, "first").await,
        azs_store_conformance::fixtures::registered_and_leased(&store, "second").await,
    );
    let mapping = |stamp: &Stamp, tenant: &str, billing: &str| SubscriptionMapping {
        stamp_id: stamp.id.clone(),
        external_subscription_id: tenant.into(),
        billing_subscription_id: billing.into(),
        updated_at: chrono::Utc::now(),
    };
    store.set_mapping(&mapping(&first, TENANT_A, "billing-a")).await.unwrap();
    for stamp in [&first, &second] {
        let hour = azs_store_conformance::fixtures::COLLECT_FROM;
        let rows = vec![
            azs_store_conformance::fixtures::vm_usage(TENANT_A, "web-01", hour, "1"),
            azs_store_conformance::fixtures::vm_usage(TENANT_B, "db-01", hour, "2"),
            azs_store_conformance::fixtures::vm_usage(&TENANT_B.to_uppercase(), "db-02", hour, "3"),
        ];
        azs_store_conformance::fixtures::advance(
            &store,
            &stamp.id,
            azs_store_conformance::fixtures::hour(hour),
            &rows,
        )
        .await;
    }
    let unmapped_before = store.unmapped(None).await.unwrap();
    drop(store);
    back_to_version_1(&path);

    // When this build opens it
    let store = SqliteStore::open(&path).unwrap();

    // Then the same subscriptions are listed unmapped, with the same counts and times
    assert_eq!(store.schema_version().await.unwrap(), LATEST_VERSION);
    assert_eq!(store.unmapped(None).await.unwrap(), unmapped_before);
    let b_on_first: Vec<_> = unmapped_before.iter().filter(|u| u.stamp_id == first.id).collect();
    assert_eq!(b_on_first.len(), 1);
    assert_eq!(b_on_first[0].rows, 2, "both casings of B are one subscription");

    // And a new mapping back-fills exactly that stamp's rows of the subscription
    assert_eq!(store.set_mapping(&mapping(&first, TENANT_B, "billing-b")).await.unwrap(), 2);
    let left = store.unmapped(None).await.unwrap();
    assert_eq!(left.len(), 2, "A and B on the second stamp: {left:?}");
    assert!(left.iter().all(|u| u.stamp_id == second.id));
    let rows = azs_store_conformance::fixtures::rows_of(&store, &first.id).await;
    assert!(rows.iter().all(|r| r.billing_subscription_id.is_some()), "{rows:?}");

    // And rows written after the migration join the numbering of the migrated ones
    let next = azs_store_conformance::fixtures::hour("2026-11-01T01:00:00Z");
    let late =
        vec![azs_store_conformance::fixtures::vm_usage(TENANT_B, "db-03", "2026-11-01T01:00:00Z", "4")];
    let receipt = azs_store_conformance::fixtures::commit(
        &store,
        &second.id,
        next,
        azs_store_conformance::fixtures::RUN,
        WindowWrite::Advance,
        &late,
    )
    .await
    .unwrap();
    assert_eq!(receipt.unmapped_rows, 1);
    let b_on_second = store.unmapped(Some(&second.id)).await.unwrap();
    assert_eq!(b_on_second.iter().find(|u| u.external_subscription_id == TENANT_B).unwrap().rows, 3);
}

// -- The 128-bit row key (migration 0004) ------------------------------------------------------------

use azs_core::usage::UsageRow;
use azs_store_conformance::fixtures::{TENANT_A, TENANT_B};

fn sql(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

/// Moves the stamp's watermark back to the start of `hour`, as if that hour were being collected again
/// (a run that re-pulls it after a crash between pull and commit would be fenced; this forces the
/// worst case: the same rows offered again for a window that already holds them).
fn rewind(path: &std::path::Path, stamp: &azs_core::StampId, hour: &str) {
    let secs = azs_store_conformance::fixtures::hour(hour).start.timestamp();
    sql(path)
        .execute("UPDATE processing_status SET watermark = ?1 WHERE stamp_id = ?2", (secs, stamp.as_str()))
        .unwrap();
}

fn rows() -> Vec<UsageRow> {
    let hour = azs_store_conformance::fixtures::COLLECT_FROM;
    vec![
        azs_store_conformance::fixtures::vm_usage(TENANT_A, "web-01", hour, "1.5000000000"),
        azs_store_conformance::fixtures::vm_usage(TENANT_B, "db-01", hour, "2"),
        azs_store_conformance::fixtures::vm_usage(TENANT_B, "db-02", hour, "3.25"),
    ]
}

#[tokio::test]
async fn two_rows_whose_first_64_key_bits_collide_are_both_kept() {
    // Given a stored row whose key's first 64 bits are forced equal to another row's (the stand-in for a
    // 64-bit collision, random or crafted; the old key was exactly those 64 bits)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let store = SqliteStore::open(&path).unwrap();
    let stamp = azs_store_conformance::fixtures::registered_and_leased(&store, "collide").await;
    let window = azs_store_conformance::fixtures::hour(azs_store_conformance::fixtures::COLLECT_FROM);
    let (first, second) = (rows()[0].clone(), rows()[1].clone());
    azs_store_conformance::fixtures::advance(&store, &stamp.id, window, std::slice::from_ref(&first)).await;
    let (second_high, _) = second.key().halves();
    sql(&path).execute("UPDATE usage_rows SET row_key = ?1", [second_high]).unwrap();
    rewind(&path, &stamp.id, azs_store_conformance::fixtures::COLLECT_FROM);

    // When the other row arrives in the same window
    let receipt =
        azs_store_conformance::fixtures::advance(&store, &stamp.id, window, std::slice::from_ref(&second))
            .await;

    // Then it is stored beside the first, not dropped as its duplicate
    assert_eq!((receipt.rows_written, receipt.duplicates), (1, 0));
    let stored: Vec<UsageRow> = azs_store_conformance::fixtures::rows_of(&store, &stamp.id)
        .await
        .into_iter()
        .map(|r| r.row)
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&first) && stored.contains(&second));
}

#[tokio::test]
async fn a_database_on_the_64_bit_key_is_upgraded_and_a_re_collected_window_doubles_nothing() {
    // Given a database written by the previous layout (keys are 64-bit XXH3 fingerprints, version 2)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let store = SqliteStore::open(&path).unwrap();
    let stamp = azs_store_conformance::fixtures::registered_and_leased(&store, "upgrade").await;
    let window = azs_store_conformance::fixtures::hour(azs_store_conformance::fixtures::COLLECT_FROM);
    azs_store_conformance::fixtures::advance(&store, &stamp.id, window, &rows()).await;
    drop(store);
    back_to_version_2(&path);
    let legacy: i64 = sql(&path).query_row("SELECT count(*) FROM usage_rows", [], |r| r.get(0)).unwrap();
    assert_eq!(legacy, 3);

    // When this build opens it and the same window is collected again, with one row repeated
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().await.unwrap(), azs_store_sqlite::LATEST_VERSION);
    rewind(&path, &stamp.id, azs_store_conformance::fixtures::COLLECT_FROM);
    let mut again = rows();
    again.push(rows()[0].clone());
    let receipt = azs_store_conformance::fixtures::advance(&store, &stamp.id, window, &again).await;

    // Then every row meets its upgraded self: nothing doubles, and the duplicates are counted
    assert_eq!((receipt.rows_written, receipt.duplicates), (0, 4));
    let stored: Vec<UsageRow> = azs_store_conformance::fixtures::rows_of(&store, &stamp.id)
        .await
        .into_iter()
        .map(|r| r.row)
        .collect();
    assert_eq!(stored.len(), 3);
    for row in rows() {
        assert!(stored.contains(&row), "{row:?}");
    }
    // And a new row of that window is still added
    rewind(&path, &stamp.id, azs_store_conformance::fixtures::COLLECT_FROM);
    let late = azs_store_conformance::fixtures::vm_usage(
        TENANT_A,
        "web-02",
        azs_store_conformance::fixtures::COLLECT_FROM,
        "7",
    );
    let receipt = azs_store_conformance::fixtures::advance(&store, &stamp.id, window, &[late]).await;
    assert_eq!(receipt.rows_written, 1);
}

/// Rewrites the file as a version-2 build left it: 64-bit fingerprints in `row_key`, no `row_key_low`,
/// the old unique index, no `last_reported`, no quarantine, no duplicate count or verify outcome, no record
/// of migrations 4 to 8.
fn back_to_version_2(path: &std::path::Path) {
    let conn = sql(path);
    let mut keys = Vec::new();
    {
        let mut stmt = conn
            .prepare(
                "SELECT rowid, subscription_id, meter_id, usage_start, usage_end, quantity, resource_uri,
                        location, tags, additional_info FROM usage_rows",
            )
            .unwrap();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let secs = |i: usize| chrono::DateTime::from_timestamp(r.get::<_, i64>(i).unwrap(), 0).unwrap();
            let row = UsageRow {
                subscription_id: r.get(1).unwrap(),
                meter_id: r.get(2).unwrap(),
                usage_start: secs(3),
                usage_end: secs(4),
                quantity: r.get::<_, String>(5).unwrap().parse().unwrap(),
                resource_uri: r.get(6).unwrap(),
                location: r.get(7).unwrap(),
                tags: r.get(8).unwrap(),
                additional_info: r.get(9).unwrap(),
            };
            keys.push((r.get::<_, i64>(0).unwrap(), row.legacy_fingerprint()));
        }
    }
    conn.execute_batch("BEGIN; DROP INDEX usage_rows_key;").unwrap();
    for (rowid, key) in keys {
        conn.execute("UPDATE usage_rows SET row_key = ?2 WHERE rowid = ?1", (rowid, key)).unwrap();
    }
    conn.execute_batch(
        "DROP INDEX usage_rows_billing;
         DROP TRIGGER processing_status_keeps_verifies;
         DROP TABLE verify_history;
         DROP TABLE statements;
         DROP TABLE rating_assignments;
         DROP TABLE price_book_versions;
         DROP TABLE audit_records;
         DROP TABLE quarantined_rows;
         ALTER TABLE processing_status DROP COLUMN duplicate_rows;
         ALTER TABLE processing_status DROP COLUMN last_verified_at;
         ALTER TABLE processing_status DROP COLUMN verified_from;
         ALTER TABLE processing_status DROP COLUMN verified_to;
         ALTER TABLE processing_status DROP COLUMN drift_missing;
         ALTER TABLE processing_status DROP COLUMN drift_extra;
         ALTER TABLE processing_status DROP COLUMN drift_changed;
         DROP INDEX tenant_numbers_last_reported;
         ALTER TABLE tenant_numbers DROP COLUMN last_reported;
         ALTER TABLE usage_rows DROP COLUMN row_key_low;
         CREATE UNIQUE INDEX usage_rows_key ON usage_rows (stamp_no, reported_start, row_key);
         DELETE FROM schema_migrations WHERE version > 3;
         COMMIT;",
    )
    .unwrap();
}
