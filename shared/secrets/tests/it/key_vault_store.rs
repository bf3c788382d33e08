//! The Key Vault store: Microsoft's client against the HTTPS double.

use crate::common::{assert_no_secret_in, closed_port_url};
use crate::keyvault_double::{FixedTokenCredential, KeyVaultDouble};
use azs_core::Secret;
use azs_core::ports::{SecretStore, SecretStoreError};
use azs_secrets::KeyVaultStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STAMP: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

#[tokio::test]
async fn the_client_answers_the_bearer_challenge_and_stores_under_the_mapped_name() {
    let vault = KeyVaultDouble::start().await;
    let store = vault.store("azs-usage/");

    store.put_secret(&format!("azs-usage/{STAMP}"), &Secret::new("sp-secret")).await.unwrap();

    let mapped = format!("azs-usage-{STAMP}");
    assert_eq!(vault.secret_names(), vec![mapped.clone()]);
    assert_eq!(vault.raw_value(&mapped).as_deref(), Some("sp-secret"));
    // The first request went without a token and got the 401 challenge; the retry carried the token.
    let path = format!("/secrets/{mapped}");
    assert_eq!(vault.requests(), vec![format!("PUT {path} -> 401"), format!("PUT {path} -> 200")]);
}

#[tokio::test]
async fn an_overwrite_is_a_new_version_and_get_reads_the_latest() {
    let vault = KeyVaultDouble::start().await;
    let store = vault.store("azs-usage/");
    let name = format!("azs-usage/{STAMP}");

    store.put_secret(&name, &Secret::new("v1")).await.unwrap();
    store.put_secret(&name, &Secret::new("v2")).await.unwrap();

    assert_eq!(vault.version_count(&format!("azs-usage-{STAMP}")), 2);
    assert_eq!(store.get_secret(&name).await.unwrap(), Some(Secret::new("v2")));
}

#[tokio::test]
async fn delete_waits_for_the_soft_delete_to_finish_and_then_purges() {
    let vault = KeyVaultDouble::start().await;
    let store = vault.store("azs-usage/");
    let name = format!("azs-usage/{STAMP}");
    store.put_secret(&name, &Secret::new("v1")).await.unwrap();
    vault.set_deletion_delay(Duration::from_millis(300));

    store.delete_secret(&name).await.unwrap();

    assert!(vault.secret_names().is_empty());
    assert!(vault.deleted_names().is_empty(), "purged");
    let purges = vault.requests().iter().filter(|r| r.starts_with("DELETE /deletedsecrets/")).count();
    assert_eq!(purges, 1);
}

#[tokio::test]
async fn without_the_purge_permission_delete_still_succeeds_and_the_secret_stays_soft_deleted() {
    let vault = KeyVaultDouble::start().await;
    let store = vault.store("azs-usage/");
    let name = format!("azs-usage/{STAMP}");
    store.put_secret(&name, &Secret::new("v1")).await.unwrap();
    vault.deny_purge(true);

    store.delete_secret(&name).await.unwrap();

    assert_eq!(store.get_secret(&name).await.unwrap(), None);
    assert_eq!(vault.deleted_names(), vec![format!("azs-usage-{STAMP}")]);

    // Writing the soft-deleted name again is refused by Key Vault; the error says why, without the value.
    let err = store.put_secret(&name, &Secret::new("never-leaks-9f2")).await.unwrap_err();
    assert!(matches!(err, SecretStoreError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("409") && err.to_string().contains("deleted but recoverable"), "{err}");
    assert_no_secret_in(&err, "never-leaks-9f2");

    // Once purging is allowed, a repeated delete clears the leftover and the name is free again.
    vault.deny_purge(false);
    store.delete_secret(&name).await.unwrap();
    assert!(vault.deleted_names().is_empty());
    store.put_secret(&name, &Secret::new("v2")).await.unwrap();
}

#[tokio::test]
async fn a_failing_vault_is_unavailable_at_once_and_the_error_never_shows_the_value() {
    let vault = KeyVaultDouble::start().await;
    let store = vault.store("azs-usage/");
    let name = format!("azs-usage/{STAMP}");
    store.put_secret(&name, &Secret::new("v1")).await.unwrap(); // the challenge is behind us
    let value = "kv-s3cr3t-that-must-not-leak";
    let started = Instant::now();

    vault.fail_next(3);
    let put = store.put_secret(&name, &Secret::new(value)).await.unwrap_err();
    let get = store.get_secret(&name).await.unwrap_err();
    let delete = store.delete_secret(&name).await.unwrap_err();

    for err in [&put, &get, &delete] {
        assert!(matches!(err, SecretStoreError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("503"), "{err}");
        assert_no_secret_in(err, value);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // Once the vault recovers, so does the store.
    assert_eq!(store.get_secret(&name).await.unwrap(), Some(Secret::new("v1")));
}

#[tokio::test]
async fn a_vault_that_cannot_be_reached_is_unavailable_quickly() {
    let vault = KeyVaultDouble::start().await;
    let store = KeyVaultStore::new(
        &closed_port_url("https"),
        Arc::new(FixedTokenCredential),
        "azs-usage/",
        vault.store_options(),
    )
    .unwrap();
    let started = Instant::now();

    let err = store.put_secret("azs-usage/x", &Secret::new("unreachable-value")).await.unwrap_err();

    assert!(matches!(err, SecretStoreError::Unavailable(_)), "{err:?}");
    assert_no_secret_in(&err, "unreachable-value");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_name_key_vault_cannot_hold_is_refused_before_any_request() {
    let vault = KeyVaultDouble::start().await;
    let store = vault.store("azs-usage/");

    let err = store.put_secret("azs-usage/has space", &Secret::new("v")).await.unwrap_err();

    assert!(matches!(err, SecretStoreError::Refused(_)), "{err:?}");
    assert!(vault.requests().is_empty());
}

#[tokio::test]
async fn the_double_validates_names_and_answers_in_key_vaults_error_shape() {
    // Checked with a plain HTTP client, so the double's REST shapes do not depend on the SDK's habits.
    let vault = KeyVaultDouble::start().await;
    let http = vault.http_client();
    let auth = format!("Bearer {}", crate::keyvault_double::ACCESS_TOKEN);

    let challenge = http.get(format!("{}/secrets/a?api-version=7.5", vault.url)).send().await.unwrap();
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(header.starts_with(r#"Bearer authorization="https://login.microsoftonline.com/"#), "{header}");
    assert!(header.ends_with(r#"resource="https://vault.azure.net""#), "{header}");

    let bad = http
        .put(format!("{}/secrets/bad_name?api-version=7.5", vault.url))
        .header("authorization", &auth)
        .json(&serde_json::json!({"value": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadParameter");

    let set: serde_json::Value = http
        .put(format!("{}/secrets/good-name?api-version=7.5", vault.url))
        .header("authorization", &auth)
        .json(&serde_json::json!({"value": "v"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set["value"], "v");
    let id = set["id"].as_str().unwrap();
    assert!(id.starts_with(&format!("{}/secrets/good-name/", vault.url)), "{id}");
    assert_eq!(set["attributes"]["enabled"], true);

    let by_version =
        http.get(format!("{id}?api-version=7.5")).header("authorization", &auth).send().await.unwrap();
    assert_eq!(by_version.status(), 200);

    let deleted: serde_json::Value = http
        .delete(format!("{}/secrets/good-name?api-version=7.5", vault.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["recoveryId"], format!("{}/deletedsecrets/good-name", vault.url));
    assert!(deleted.get("value").is_none());

    let missing = http
        .get(format!("{}/secrets/good-name?api-version=7.5", vault.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "SecretNotFound");

    let purged = http
        .delete(format!("{}/deletedsecrets/good-name?api-version=7.5", vault.url))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 204);
}
