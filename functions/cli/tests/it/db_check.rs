//! `azs-usage db check` against SQLite, through the real binary: what a healthy database reports (in
//! the documented JSON shape), that checking changes nothing, and that a broken file fails with exit 1.

use crate::common::exe;
use azs_testkit::process::scrubbed;
use std::path::Path;
use std::process::{Command, Output};

/// `azs-usage` on `database` through the test kit's launcher: only the variables set here reach it.
fn launch(dir: &Path, database: &str) -> Command {
    let mut command = scrubbed(exe());
    command
        .env("AZS_USAGE_DATABASE", database)
        .env("AZS_USAGE_SECRETS", format!("file:{}", dir.join("secrets.json").display()));
    command
}

fn azs(dir: &Path, database: &Path, args: &[&str]) -> Output {
    launch(dir, &format!("sqlite:{}", database.display())).args(args).output().expect("azs-usage runs")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn a_migrated_database_checks_ok_in_the_documented_shape_and_the_trial_commit_leaves_nothing() {
    // Given a database the CLI has created and migrated
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    assert!(azs(dir.path(), &db, &["status"]).status.success());

    // When it is checked
    let out = azs(dir.path(), &db, &["db", "check", "--json"]);

    // Then every item is ok, in the documented shape, and the exit code is 0
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["store"], "sqlite");
    assert_eq!(report["target"], db.display().to_string());
    assert_eq!(report["status"], "ok", "{report:#}");
    let names: Vec<&str> =
        report["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["sqlite-version", "database-file", "journal-mode", "integrity", "migration-version", "trial-commit"]
    );
    for item in report["items"].as_array().unwrap() {
        assert_eq!(item["status"], "ok", "{item}");
        assert!(item["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(item.get("fix").is_none(), "an ok item carries no fix: {item}");
    }

    // And the trial commit was rolled back: no stamp, no rows
    let stamps = json(&azs(dir.path(), &db, &["stamp", "list", "--json"]));
    assert_eq!(stamps, serde_json::json!([]));
    let csv = dir.path().join("all.csv");
    let export = azs(dir.path(), &db, &["export", "--csv", csv.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&export.stdout).contains("wrote 0 rows"));

    // And the text form says so in one line
    let text = azs(dir.path(), &db, &["db", "check"]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("database ready"));
}

#[test]
fn a_missing_file_is_a_warning_and_checking_does_not_create_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("not-yet.db");
    let out = azs(dir.path(), &db, &["db", "check", "--json"]);
    assert!(out.status.success());
    let report = json(&out);
    assert_eq!(report["status"], "warning");
    assert_eq!(report["items"][1]["name"], "database-file");
    assert!(report["items"][1]["fix"].as_str().unwrap().contains("first azs-usage command creates"));
    assert!(!db.exists(), "db check must not create the database");
}

#[test]
fn a_file_that_is_not_a_database_fails_with_exit_code_1_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    let out = azs(dir.path(), &db, &["db", "check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["status"], "fail");
    let failed: Vec<&serde_json::Value> =
        report["items"].as_array().unwrap().iter().filter(|i| i["status"] == "fail").collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|i| i["fix"].as_str().is_some_and(|f| !f.is_empty())));
    let text = azs(dir.path(), &db, &["db", "check"]);
    assert_eq!(text.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&text.stdout).contains("NOT ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_checks_ok_once_migrated_and_never_shows_its_password() {
    // Given a fresh PostgreSQL database, checked before and after the CLI migrated it
    let backend = crate::common::Backend::fresh_postgres("db_check").await;
    let crate::common::Backend::Postgres { url, name, .. } = &backend else { unreachable!() };
    let password = url::Url::parse(url).unwrap().password().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| launch(dir.path(), url).args(args).output().expect("azs-usage runs");
    let before = json(&run(&["db", "check", "--json"]));
    assert_eq!(before["status"], "warning", "{before:#}");
    assert!(run(&["status"]).status.success());

    // When it is checked
    let out = run(&["db", "check", "--json"]);

    // Then every item is ok, the target names host, port and database, and no output holds the password
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["store"], "postgres");
    assert!(report["target"].as_str().unwrap().ends_with(&format!("/{name}")), "{report:#}");
    assert_eq!(report["status"], "ok", "{report:#}");
    let names: Vec<&str> =
        report["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["connect", "migration-version", "trial-commit"]);
    assert!(!password.is_empty());
    for text in [String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)] {
        assert!(!text.contains(&password), "the password was printed: {text}");
    }
    // And the trial commit left nothing behind
    assert_eq!(json(&run(&["stamp", "list", "--json"])), serde_json::json!([]));
    let admin = azs_store_postgres::PostgresStore::lazy(
        azs_store_postgres::PostgresConfig::parse(crate::common::postgres_server_url()).unwrap(),
    )
    .unwrap();
    admin.drop_database(name).await.unwrap();
}
