//! End to end: the audit trail through the real `azs-usage` binary. A PATCH over HTTP (`serve`) and
//! changes through the CLI all show in `audit list`, with their caller, fields and old and new values;
//! a rotated credential shows as changed, and no secret reaches the database file.

use crate::common::*;
use serde_json::{Value, json};
use std::process::Stdio;

const ROTATED: &str = "rotated-e2e-secret-93d1";

/// Every byte of the SQLite database: the file and its write-ahead log.
fn database_bytes(world: &World) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", world.database().display());
        bytes.extend(std::fs::read(path).unwrap_or_default());
    }
    bytes
}

fn change<'a>(record: &'a Value, field: &str) -> &'a Value {
    record["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == field)
        .unwrap_or_else(|| panic!("no change of {field} in {record}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_over_http_and_cli_changes_show_in_audit_list_and_no_secret_reaches_the_database() {
    // Given a stamp registered through the CLI, and the webhook served locally
    let world = World::start(|_| vec![spec(0, aad(), 2)], 2, 50).await;
    let id = world.stamp_ids[0].clone();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = world
        .cli()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--insecure-loopback"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if http.get(format!("{base}/stamps")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // When a PATCH renames and disables it over HTTP, the CLI rotates its credential and maps a
    // subscription
    let patch = http
        .patch(format!("{base}/stamps/{id}?verify=false"))
        .json(&json!({"name": "renamed-over-http", "enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 200, "{}", patch.text().await.unwrap());
    let audit_http: Value =
        http.get(format!("{base}/audit?stamp={id}")).send().await.unwrap().json().await.unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    let rotate = world
        .run_with(
            &["stamp", "update", &id, "--application-secret-from-env", "--no-verify"],
            &[("AZS_USAGE_APPLICATION_SECRET", ROTATED)],
        )
        .await;
    assert!(rotate.status.success(), "{}", stderr(&rotate));
    let tenant = "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10";
    let mapped = world.run(&["mapping", "set", &id, tenant, "billing-7"]).await;
    assert!(mapped.status.success(), "{}", stderr(&mapped));

    // Then `audit list --json` shows every change in order with its caller
    let out = world.run(&["audit", "list", "--stamp", &id, "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let records = records.as_array().unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["stamp.register", "stamp.update", "stamp.update", "mapping.set"]);
    let (registered, patched, rotated, mapping) = (&records[0], &records[1], &records[2], &records[3]);
    assert!(registered["actor"].as_str().unwrap().starts_with("cli:"), "{registered}");
    // And the PATCH with its fields and their old and new values, as GET /audit showed it
    assert_eq!(patched["actor"], "unauthenticated-loopback");
    assert_eq!(change(patched, "name")["old"], "stamp-0");
    assert_eq!(change(patched, "name")["new"], "renamed-over-http");
    assert_eq!(
        (&change(patched, "enabled")["old"], &change(patched, "enabled")["new"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(patched["changes"].as_array().unwrap().len(), 2, "{patched}");
    assert_eq!(audit_http.as_array().unwrap()[1], *patched);
    // And the rotation as a changed credential without a value; the mapping with its subscription
    assert_eq!(rotated["changes"], json!([{ "field": "credential", "secret": true }]));
    assert!(rotated["actor"].as_str().unwrap().starts_with("cli:"));
    assert_eq!(mapping["subscription"], tenant);
    assert_eq!(change(mapping, "billingSubscriptionId")["new"], "billing-7");

    // And the text listing shows the same, one field a line
    let text = stdout(&world.run(&["audit", "list", "--stamp", "renamed-over-http"]).await);
    assert!(text.contains("name: stamp-0 -> renamed-over-http"), "{text}");
    assert!(text.contains("credential: changed (secret, not recorded)"), "{text}");

    // And neither the registered nor the rotated secret is anywhere in the database file
    let bytes = database_bytes(&world);
    assert!(!bytes.is_empty());
    let db = String::from_utf8_lossy(&bytes);
    for secret in [SECRET, ROTATED] {
        assert!(!db.contains(secret), "secret material in the database file");
    }
    assert!(db.contains("renamed-over-http"), "the audit records are in the file searched");

    // And a time that is no time is refused naming the flag
    let bad = world.run(&["audit", "list", "--since", "yesterday"]).await;
    assert!(!bad.status.success() && stderr(&bad).contains("--since"), "{}", stderr(&bad));
}
