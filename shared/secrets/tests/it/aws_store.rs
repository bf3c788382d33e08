//! The AWS Secrets Manager store against moto (`scripts/moto.sh start`), through the real SDK.

use crate::common::{assert_no_secret_in, aws_config_for, closed_port_url, moto_url, unique_prefix};
use aws_sdk_secretsmanager::Client;
use azs_core::Secret;
use azs_core::ports::{SecretStore, SecretStoreError};
use azs_secrets::AwsSecretsManagerStore;
use std::time::{Duration, Instant};

#[tokio::test]
async fn an_overwrite_adds_a_version_and_a_delete_leaves_nothing_to_recover() {
    let Some(url) = moto_url("an_overwrite_adds_a_version_and_a_delete_leaves_nothing_to_recover") else {
        return;
    };
    let config = aws_config_for(&url).await;
    let prefix = unique_prefix();
    let store = AwsSecretsManagerStore::new(&config, prefix.clone());
    let raw = Client::new(&config);
    let name = format!("{prefix}stamp");

    store.put_secret(&name, &Secret::new("v1")).await.unwrap();
    store.put_secret(&name, &Secret::new("v2")).await.unwrap();
    let versions = raw.list_secret_version_ids().secret_id(&name).send().await.unwrap();
    assert_eq!(versions.versions().len(), 2, "PutSecretValue added a version to the same secret");

    store.delete_secret(&name).await.unwrap();
    // Forced: not "scheduled for deletion", so neither listed nor restorable.
    let described = raw.describe_secret().secret_id(&name).send().await;
    assert!(
        described.is_err_and(|e| e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()))
    );
    assert!(raw.restore_secret().secret_id(&name).send().await.is_err());
}

#[tokio::test]
async fn a_new_credential_is_encrypted_with_the_configured_key_and_keeps_it_on_overwrite() {
    let Some(url) =
        moto_url("a_new_credential_is_encrypted_with_the_configured_key_and_keeps_it_on_overwrite")
    else {
        return;
    };
    let config = aws_config_for(&url).await;
    let prefix = unique_prefix();
    let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let store = AwsSecretsManagerStore::new(&config, prefix.clone()).with_kms_key(Some(key.to_owned()));
    let unkeyed = AwsSecretsManagerStore::new(&config, prefix.clone());
    let raw = Client::new(&config);
    let (name, other) = (format!("{prefix}stamp"), format!("{prefix}default-key"));

    store.put_secret(&name, &Secret::new("v1")).await.unwrap();
    store.put_secret(&name, &Secret::new("v2")).await.unwrap();
    unkeyed.put_secret(&other, &Secret::new("v1")).await.unwrap();

    let described = raw.describe_secret().secret_id(&name).send().await.unwrap();
    assert_eq!(described.kms_key_id(), Some(key), "CreateSecret named the deployment's key");
    let described = raw.describe_secret().secret_id(&other).send().await.unwrap();
    assert_ne!(described.kms_key_id(), Some(key), "without a key, Secrets Manager's default applies");
    assert_eq!(store.get_secret(&name).await.unwrap().unwrap().expose(), "v2");
}

#[tokio::test]
async fn reading_a_secret_scheduled_for_deletion_is_refused_without_showing_its_value() {
    let Some(url) = moto_url("reading_a_secret_scheduled_for_deletion_is_refused_without_showing_its_value")
    else {
        return;
    };
    let config = aws_config_for(&url).await;
    let prefix = unique_prefix();
    let store = AwsSecretsManagerStore::new(&config, prefix.clone());
    let name = format!("{prefix}stamp");
    // Given a secret that someone else deleted with a recovery window (so it still exists),
    let value = "stored-s3cr3t-that-must-not-leak";
    store.put_secret(&name, &Secret::new(value)).await.unwrap();
    Client::new(&config).delete_secret().secret_id(&name).recovery_window_in_days(7).send().await.unwrap();

    // reading it is refused by Secrets Manager,
    let err = store.get_secret(&name).await.unwrap_err();

    // and the error says which secret and why, without the value.
    assert!(matches!(err, SecretStoreError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains(&name), "{err}");
    assert!(err.to_string().contains("InvalidRequestException"), "{err}");
    assert_no_secret_in(&err, value);
}

#[tokio::test]
async fn a_write_the_service_rejects_is_refused_without_showing_the_value() {
    let Some(url) = moto_url("a_write_the_service_rejects_is_refused_without_showing_the_value") else {
        return;
    };
    // moto answers 404 (an HTML page) under a path that is no AWS API.
    let config = aws_config_for(&format!("{url}/not-an-aws-api/")).await;
    let store = AwsSecretsManagerStore::new(&config, "azs-usage/");
    let value = "written-s3cr3t-that-must-not-leak";

    let err = store.put_secret("azs-usage/stamp", &Secret::new(value)).await.unwrap_err();

    assert!(matches!(err, SecretStoreError::Refused(_)), "{err:?}");
    assert!(err.to_string().contains("CreateSecret azs-usage/stamp: HTTP 404"), "{err}");
    assert_no_secret_in(&err, value);
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_is_unavailable_quickly_without_the_value() {
    // No moto needed: nothing listens on this port.
    let config = aws_config_for(&closed_port_url("http")).await;
    let store = AwsSecretsManagerStore::new(&config, "azs-usage/");
    let value = "unreachable-s3cr3t";
    let started = Instant::now();

    let put = store.put_secret("azs-usage/x", &Secret::new(value)).await.unwrap_err();
    let get = store.get_secret("azs-usage/x").await.unwrap_err();
    let delete = store.delete_secret("azs-usage/x").await.unwrap_err();

    for err in [&put, &get, &delete] {
        assert!(matches!(err, SecretStoreError::Unavailable(_)), "{err:?}");
        assert_no_secret_in(err, value);
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

const CHILD_VAR: &str = "AZS_SECRETS_TEST_CONNECT_CHILD";

/// `connect` builds the store from the environment: `AZS_USAGE_SECRETS`, the prefix, and the AWS SDK's
/// own variables (`AWS_ENDPOINT_URL` included). Run in a child process, since a test cannot set its own
/// environment safely.
#[tokio::test]
async fn connect_builds_the_aws_store_from_the_environment() {
    let Some(url) = moto_url("connect_builds_the_aws_store_from_the_environment") else { return };
    let prefix = unique_prefix();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "aws_store::child_connect_from_environment", "--ignored", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .env("AZS_USAGE_SECRETS", "aws-secrets-manager")
        .env("AZS_USAGE_SECRET_PREFIX", &prefix)
        .env("AWS_ENDPOINT_URL", &url)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // What the child wrote through `connect` is in moto under the configured prefix.
    let raw = Client::new(&aws_config_for(&url).await);
    let value = raw.get_secret_value().secret_id(format!("{prefix}from-child")).send().await.unwrap();
    assert_eq!(value.secret_string(), Some("written-through-connect"));
}

#[tokio::test]
#[ignore = "a helper: runs in a child process of connect_builds_the_aws_store_from_the_environment"]
async fn child_connect_from_environment() {
    if std::env::var(CHILD_VAR).is_err() {
        return;
    }
    let var = |name| std::env::var(name).ok();
    let config = azs_secrets::SecretStoreConfig::parse(
        var(azs_secrets::SECRETS_VAR).as_deref(),
        var(azs_secrets::PREFIX_VAR).as_deref(),
    )
    .unwrap();
    let store = azs_secrets::connect(&config).await.unwrap();
    let name = format!("{}from-child", config.prefix);
    store.put_secret(&name, &Secret::new("written-through-connect")).await.unwrap();
}
