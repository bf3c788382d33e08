//! The file store: private file, atomic replacement, no lost writes between stores or processes.

use crate::common::assert_no_secret_in;
use azs_core::Secret;
use azs_core::ports::{SecretStore, SecretStoreError};
use azs_secrets::FileSecretStore;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn entries(path: &Path) -> BTreeMap<String, String> {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn the_file_is_created_private_to_its_owner_and_holds_plain_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let store = FileSecretStore::new(&path, "azs-usage/");

    store.put_secret("azs-usage/a", &Secret::new("value-a")).await.unwrap();

    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("secrets.json.lock")), 0o600);
    assert_eq!(entries(&path), BTreeMap::from([("azs-usage/a".to_owned(), "value-a".to_owned())]));
    // Each write is a rename of a finished temporary file: none is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_file_others_can_read_is_refused_with_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    std::fs::write(&path, r#"{"azs-usage/a": "leaky-value"}"#).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = FileSecretStore::new(&path, "azs-usage/");

    let err = store.get_secret("azs-usage/a").await.unwrap_err();
    let SecretStoreError::Refused(message) = &err else { panic!("expected Refused, got {err:?}") };
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("chmod 600"), "{message}");
    assert_no_secret_in(&err, "leaky-value");
    // Writing is refused as well, and so is opening the store through `verify`.
    assert!(matches!(
        store.put_secret("azs-usage/b", &Secret::new("x")).await,
        Err(SecretStoreError::Refused(_))
    ));
    assert!(matches!(store.verify(), Err(SecretStoreError::Refused(_))));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(store.get_secret("azs-usage/a").await.unwrap(), Some(Secret::new("leaky-value")));
}

#[tokio::test]
async fn a_damaged_file_is_refused_without_showing_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    std::fs::write(&path, r#"{"azs-usage/a": "half-written-secret"#).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = FileSecretStore::new(&path, "azs-usage/");

    let err = store.get_secret("azs-usage/a").await.unwrap_err();
    assert!(matches!(err, SecretStoreError::Refused(_)), "{err:?}");
    assert_no_secret_in(&err, "half-written-secret");
}

#[tokio::test]
async fn an_unwritable_directory_is_an_error_that_never_shows_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("secrets.json");
    let store = FileSecretStore::new(&path, "azs-usage/");

    let err = store.put_secret("azs-usage/a", &Secret::new("never-shown-value")).await.unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
    assert_no_secret_in(&err, "never-shown-value");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_writing_one_file_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let (a, b) = (FileSecretStore::new(&path, "p/"), FileSecretStore::new(&path, "p/"));

    let mut tasks = Vec::new();
    for i in 0..40 {
        for (who, store) in [("a", a.clone()), ("b", b.clone())] {
            tasks.push(tokio::spawn(async move {
                store.put_secret(&format!("p/{who}{i}"), &Secret::new(format!("{who}-{i}"))).await.unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }

    let stored = entries(&path);
    assert_eq!(stored.len(), 80);
    for i in 0..40 {
        assert_eq!(stored[&format!("p/a{i}")], format!("a-{i}"));
        assert_eq!(stored[&format!("p/b{i}")], format!("b-{i}"));
    }
}

const CHILD_FILE_VAR: &str = "AZS_SECRETS_TEST_CHILD_FILE";
const CHILD_WRITER_VAR: &str = "AZS_SECRETS_TEST_CHILD_WRITER";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_writing_one_file_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    // Given two other processes writing 30 secrets each into the same file...
    let children: Vec<_> = ["x", "y"]
        .into_iter()
        .map(|writer| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "file_store::child_process_writer", "--ignored", "--test-threads=1"])
                .env(CHILD_FILE_VAR, &path)
                .env(CHILD_WRITER_VAR, writer)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // ...while this one writes 30 of its own,
    let store = FileSecretStore::new(&path, "p/");
    for i in 0..30 {
        store.put_secret(&format!("p/z{i}"), &Secret::new(format!("z-{i}"))).await.unwrap();
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // then every one of the 90 writes is in the file.
    let stored = entries(&path);
    assert_eq!(stored.len(), 90, "{:?}", stored.keys().collect::<Vec<_>>());
    for who in ["x", "y", "z"] {
        for i in 0..30 {
            assert_eq!(stored[&format!("p/{who}{i}")], format!("{who}-{i}"));
        }
    }
}

/// Run by `two_processes_writing_one_file_at_once_lose_nothing` in a child process.
#[tokio::test]
#[ignore = "a helper: runs in a child process of two_processes_writing_one_file_at_once_lose_nothing"]
async fn child_process_writer() {
    let (Ok(path), Ok(writer)) = (std::env::var(CHILD_FILE_VAR), std::env::var(CHILD_WRITER_VAR)) else {
        return;
    };
    let store = FileSecretStore::new(path, "p/");
    for i in 0..30 {
        store.put_secret(&format!("p/{writer}{i}"), &Secret::new(format!("{writer}-{i}"))).await.unwrap();
    }
}
