//! Secrets in Azure Key Vault, through Microsoft's `azure_security_keyvault_secrets` client.
//!
//! Key Vault names allow only `[0-9a-zA-Z-]{1,127}`, so our names are mapped (see [`vault_secret_name`]).
//! Deleting soft-deletes, then purges when the identity may (see [`KeyVaultStore::delete_secret`]).

use crate::redact;
use async_trait::async_trait;
use azs_core::ports::{SecretStore, SecretStoreError};
use azs_core::{Secret, StampId};
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_security_keyvault_secrets::models::SetSecretParameters;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the client talks to the vault. `Default` is for production.
#[derive(Debug, Clone)]
pub struct KeyVaultOptions {
    /// The HTTP client. `None`: one with [`Self::connect_timeout`] / [`Self::request_timeout`] that
    /// trusts the system's roots. Tests pass one that trusts their CA.
    pub transport: Option<reqwest::Client>,
    /// Retries after throttling, 5xx and connection errors (exponential, 15 s in all at most). 0 turns
    /// them off: the SDK's own default keeps trying for about a minute.
    pub max_retries: u32,
    /// Whether the 401 challenge's resource must match the vault's host. Only a test double on
    /// 127.0.0.1 turns this off.
    pub verify_challenge_resource: bool,
    /// How long a delete waits for Key Vault to finish the soft delete before it purges.
    pub purge_wait: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for KeyVaultOptions {
    fn default() -> Self {
        Self {
            transport: None,
            max_retries: 3,
            verify_challenge_resource: true,
            purge_wait: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A Key Vault secrets client and the prefix of our secrets' names.
pub struct KeyVaultStore {
    client: SecretClient,
    prefix: String,
    purge_wait: Duration,
}

impl std::fmt::Debug for KeyVaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultStore")
            .field("vault", &self.client.endpoint().as_str())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl KeyVaultStore {
    /// `vault_url` like `https://NAME.vault.azure.net` (the client refuses bearer tokens over http);
    /// `credential` a `ManagedIdentityCredential` in Azure, anything that yields a vault token elsewhere.
    pub fn new(
        vault_url: &str,
        credential: Arc<dyn TokenCredential>,
        prefix: impl Into<String>,
        options: KeyVaultOptions,
    ) -> Result<Self, SecretStoreError> {
        let http = match options.transport {
            Some(client) => client,
            None => reqwest::Client::builder()
                .connect_timeout(options.connect_timeout)
                .timeout(options.request_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| {
                    SecretStoreError::Refused(format!("cannot build the Key Vault HTTP client: {e}"))
                })?,
        };
        let retry = if options.max_retries == 0 {
            RetryOptions::none()
        } else {
            RetryOptions::exponential(ExponentialRetryOptions {
                max_retries: options.max_retries,
                max_total_elapsed: azure_core::time::Duration::seconds(15),
                max_delay: azure_core::time::Duration::seconds(5),
                ..Default::default()
            })
        };
        let client_options = SecretClientOptions {
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(http))),
                retry,
                ..Default::default()
            },
            verify_challenge_resource: Some(options.verify_challenge_resource),
            ..Default::default()
        };
        let client = SecretClient::new(vault_url, credential, Some(client_options))
            .map_err(|e| SecretStoreError::Refused(format!("Key Vault URL {vault_url}: {e}")))?;
        Ok(Self { client, prefix: prefix.into(), purge_wait: options.purge_wait })
    }

    /// Purges a soft-deleted secret once Key Vault has finished deleting it. Purging needs the
    /// `secrets/purge` permission (access policy) or a role that grants it; without it the deleted
    /// secret stays recoverable until the vault's retention period ends, which is accepted here.
    async fn purge(&self, name: &str, vault_name: &str, just_deleted: bool) -> Result<(), SecretStoreError> {
        // Deletion finishes asynchronously: the deleted secret appears under /deletedsecrets shortly after.
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match self.client.get_deleted_secret(vault_name, None).await {
                Ok(_) => break,
                Err(e) if status(&e) == Some(404) && just_deleted && started.elapsed() < self.purge_wait => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) if status(&e) == Some(404) => {
                    if just_deleted {
                        tracing::warn!(
                            secret = name,
                            "Key Vault did not list the deleted secret in time; not purged"
                        );
                    }
                    return Ok(());
                }
                Err(e) if status(&e) == Some(403) => {
                    purge_refused(name);
                    return Ok(());
                }
                Err(e) => return Err(classify("get deleted secret", name, &e, None)),
            }
        }
        match self.client.purge_deleted_secret(vault_name, None).await {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(403) => {
                purge_refused(name);
                Ok(())
            }
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify("purge", name, &e, None)),
        }
    }
}

fn purge_refused(name: &str) {
    tracing::info!(
        secret = name,
        "Key Vault refused to purge the deleted secret (no secrets/purge permission); \
         it stays soft-deleted until the vault's retention period ends"
    );
}

#[async_trait]
impl SecretStore for KeyVaultStore {
    /// Set Secret: a new version when the name exists.
    async fn put_secret(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError> {
        let vault_name = vault_secret_name(name)?;
        let parameters = SetSecretParameters { value: Some(value.expose().to_owned()), ..Default::default() };
        let body = parameters.try_into().map_err(|_| {
            SecretStoreError::Refused(format!("Key Vault set {name}: cannot encode the request"))
        })?;
        self.client
            .set_secret(&vault_name, body, None)
            .await
            .map(|_| ())
            .map_err(|e| classify("set", name, &e, Some(value)))
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SecretStoreError> {
        let vault_name = vault_secret_name(name)?;
        match self.client.get_secret(&vault_name, None).await {
            Ok(response) => {
                let secret = response.into_model().map_err(|_| {
                    SecretStoreError::Refused(format!("Key Vault get {name}: unreadable answer"))
                })?;
                Ok(secret.value.map(Secret::new))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(classify("get", name, &e, None)),
        }
    }

    /// Delete Secret (a soft delete where the vault has soft delete on, as all new vaults do), then
    /// purge, so that a deleted stamp's credential does not linger. A missing secret is not an error;
    /// a leftover soft-deleted one (from a delete whose purge failed) is purged now.
    async fn delete_secret(&self, name: &str) -> Result<(), SecretStoreError> {
        let vault_name = vault_secret_name(name)?;
        match self.client.delete_secret(&vault_name, None).await {
            Ok(response) => {
                let deleted = response.into_model().ok();
                // No recoveryId: the vault has no soft delete and the secret is gone already.
                if deleted.is_some_and(|d| d.recovery_id.is_none()) {
                    return Ok(());
                }
                self.purge(name, &vault_name, true).await
            }
            Err(e) if status(&e) == Some(404) => self.purge(name, &vault_name, false).await,
            Err(e) => Err(classify("delete", name, &e, None)),
        }
    }

    fn credential_name(&self, stamp: &StampId) -> String {
        format!("{}{}", self.prefix, stamp)
    }
}

/// Our name as a Key Vault secret name: `/ _ . + = @` become `-`; anything else outside
/// `[0-9a-zA-Z-]`, an empty name or one over 127 characters is refused.
///
/// The mapping is not injective in general (`a/b` and `a-b` meet), but the names we generate are
/// `prefix + stamp UUID`: one fixed prefix, and UUIDs of hex digits and `-`, which the mapping keeps.
/// Two different stamps therefore always get two different vault names.
pub fn vault_secret_name(name: &str) -> Result<String, SecretStoreError> {
    let mapped: String =
        name.chars().map(|c| if matches!(c, '/' | '_' | '.' | '+' | '=' | '@') { '-' } else { c }).collect();
    if mapped.is_empty()
        || mapped.len() > 127
        || !mapped.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(SecretStoreError::Refused(format!(
            "{name:?} cannot be a Key Vault secret name: after mapping / _ . + = @ to '-', \
             it must be 1-127 characters of 0-9, a-z, A-Z and '-'"
        )));
    }
    Ok(mapped)
}

fn status(err: &azure_core::Error) -> Option<u16> {
    err.http_status().map(u16::from)
}

/// 429, 5xx, connection and token failures may pass: `Unavailable`. Other answers (401/403: no
/// permission, 400: bad request, 409: a soft-deleted secret holds the name) need an operator: `Refused`.
fn classify(op: &str, name: &str, err: &azure_core::Error, secret: Option<&Secret>) -> SecretStoreError {
    let message = |detail: String| redact(&format!("Key Vault {op} {name}: {detail}"), secret);
    match err.kind() {
        ErrorKind::HttpResponse { status, error_code, raw_response } => {
            let code = u16::from(*status);
            let service_message = raw_response
                .as_ref()
                .and_then(|r| serde_json::from_slice::<ErrorBody>(r.body()).ok())
                .map(|b| b.error.message)
                .unwrap_or_default();
            let detail = message(format!(
                "HTTP {code} {}: {service_message}",
                error_code.as_deref().unwrap_or("(no error code)")
            ));
            if code == 429 || code == 408 || code >= 500 {
                SecretStoreError::Unavailable(detail)
            } else {
                SecretStoreError::Refused(detail)
            }
        }
        ErrorKind::Connection | ErrorKind::Io => SecretStoreError::Unavailable(message(error_chain(err))),
        ErrorKind::Credential => SecretStoreError::Unavailable(message(format!(
            "cannot get a token for Key Vault: {}",
            error_chain(err)
        ))),
        _ => SecretStoreError::Refused(message(error_chain(err))),
    }
}

/// Key Vault's error body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_map_to_valid_distinct_vault_names() {
        let a = vault_secret_name("azs-usage/0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        let b = vault_secret_name("azs-usage/7c9e6679-7425-40de-944b-e07fc1f90ae7").unwrap();
        assert_eq!(a, "azs-usage-0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_ne!(a, b);
        assert_eq!(vault_secret_name("a_b.c+d=e@f/g").unwrap(), "a-b-c-d-e-f-g");
    }

    #[test]
    fn names_key_vault_cannot_hold_are_refused() {
        for bad in ["", "has space", "ümlaut", &"x".repeat(128)] {
            assert!(matches!(vault_secret_name(bad), Err(SecretStoreError::Refused(_))), "{bad:?}");
        }
        assert!(vault_secret_name(&"x".repeat(127)).is_ok());
    }
}
