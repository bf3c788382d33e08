//! What every secret store must do, and how the tests reach moto.

use azs_core::ports::{SecretStore, SecretStoreError};
use azs_core::{Secret, StampId};
use std::io::Write;

/// The behaviour the core relies on, whatever the store. `prefix` is the store's configured prefix.
pub async fn behaves_like_a_secret_store(store: &dyn SecretStore, prefix: &str) {
    // Given a stamp, its credential's name is the prefix and the stamp id.
    let stamp = StampId::new_random();
    let name = store.credential_name(&stamp);
    assert_eq!(name, format!("{prefix}{stamp}"));

    // A secret never written is absent, not an error.
    assert_eq!(store.get_secret(&name).await.unwrap(), None);

    // What is put is what is read.
    store.put_secret(&name, &Secret::new("first-value")).await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap(), Some(Secret::new("first-value")));

    // Putting again overwrites.
    let awkward = "second \"value\" with {json}, \\ and ünïcödé ✓\nand a newline";
    store.put_secret(&name, &Secret::new(awkward)).await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap(), Some(Secret::new(awkward)));

    // Names under other prefixes (with the characters AWS allows) are separate secrets.
    let nested = format!("{prefix}team.a/x_y+z=w@v/{}", StampId::new_random());
    store.put_secret(&nested, &Secret::new("nested-value")).await.unwrap();
    assert_eq!(store.get_secret(&nested).await.unwrap(), Some(Secret::new("nested-value")));
    assert_eq!(store.get_secret(&name).await.unwrap(), Some(Secret::new(awkward)));

    // Deleting removes it; deleting again, or a name never written, is fine.
    store.delete_secret(&name).await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap(), None);
    store.delete_secret(&name).await.unwrap();
    store.delete_secret(&format!("{prefix}{}", StampId::new_random())).await.unwrap();
    assert_eq!(store.get_secret(&nested).await.unwrap(), Some(Secret::new("nested-value")));

    // The same name can be used again after a delete (a stamp registered anew).
    store.put_secret(&name, &Secret::new("third-value")).await.unwrap();
    assert_eq!(store.get_secret(&name).await.unwrap(), Some(Secret::new("third-value")));

    store.delete_secret(&name).await.unwrap();
    store.delete_secret(&nested).await.unwrap();
}

/// Asserts that neither the error's Display nor its Debug shows `value`.
pub fn assert_no_secret_in(err: &SecretStoreError, value: &str) {
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains(value), "the secret value leaked into an error: {shown}");
}

pub const MOTO_URL_VAR: &str = "AZS_USAGE_TEST_MOTO_URL";
pub const SKIP_MOTO_VAR: &str = "AZS_USAGE_SKIP_MOTO";

/// moto's endpoint. Without it the AWS tests fail, unless `AZS_USAGE_SKIP_MOTO=1` says to skip them,
/// which is reported on stderr (past the test harness's capture) as NOT RUN.
pub fn moto_url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var(MOTO_URL_VAR)
        && !url.trim().is_empty()
    {
        return Some(url.trim().to_owned());
    }
    if std::env::var(SKIP_MOTO_VAR).as_deref() == Ok("1") {
        let _ = writeln!(
            std::io::stderr(),
            "\n*** NOT RUN: {test}: {SKIP_MOTO_VAR}=1 and no {MOTO_URL_VAR}; the AWS Secrets Manager store was NOT tested ***\n"
        );
        return None;
    }
    panic!(
        "{MOTO_URL_VAR} is not set, so the AWS Secrets Manager tests cannot run. Start moto with \
         `export {MOTO_URL_VAR}=\"$(scripts/moto.sh start)\"` (stop it with `scripts/moto.sh stop`), \
         or set {SKIP_MOTO_VAR}=1 to skip them knowingly"
    );
}

/// An SDK config for moto (or any endpoint): explicit region and test credentials (so the SDK never asks
/// the EC2 metadata service), no retries, short timeouts.
pub async fn aws_config_for(endpoint: &str) -> aws_config::SdkConfig {
    use std::time::Duration;
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "azs-usage-tests",
        ))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .load()
        .await
}

/// A 127.0.0.1 address on which nothing listens.
pub fn closed_port_url(scheme: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("{scheme}://{addr}")
}

/// A prefix no other test run shares (moto and the double outlive single tests).
pub fn unique_prefix() -> String {
    format!("azs-usage-test/{}/", &uuid::Uuid::new_v4().simple().to_string()[..8])
}
