//! Schema migrations: applied once however often and however many processes open the file, and a
//! file migrated by a newer build is refused rather than written with an older schema.

use azs_core::ports::{StampRegistry, StoreError};
use azs_core::stamp::{Stamp, StampConnection, StampId, UsageQueryMode};
use azs_store_sqlite::{LATEST_VERSION, SqliteStore};

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
    assert_eq!(applied_versions(&path), (1..=LATEST_VERSION).collect::<Vec<_>>());
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
    assert_eq!(applied_versions(&path), (1..=LATEST_VERSION).collect::<Vec<_>>());
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
