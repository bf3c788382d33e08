//! Where the stamps' credentials live: a local JSON file, AWS Secrets Manager or Azure Key Vault, each
//! behind the core's [`SecretStore`] port. [`SecretStoreConfig`] reads the choice from the environment
//! and [`connect`] builds the store once per process.

mod aws;
mod file;
mod keyvault;

pub use aws::AwsSecretsManagerStore;
pub use file::{DEFAULT_PATH, FileSecretStore};
pub use keyvault::{KeyVaultOptions, KeyVaultStore, vault_secret_name};

use azs_core::Secret;
use azs_core::ports::SecretStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The variable that chooses the store.
pub const SECRETS_VAR: &str = "AZS_USAGE_SECRETS";
/// The variable that sets the prefix of every secret name.
pub const PREFIX_VAR: &str = "AZS_USAGE_SECRET_PREFIX";
pub const DEFAULT_PREFIX: &str = "azs-usage/";

const ACCEPTED_FORMS: &str =
    "file:PATH (or file), aws-secrets-manager, azure-key-vault:https://NAME.vault.azure.net";

/// Which store, and the prefix of our names in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretStoreConfig {
    pub backend: SecretBackend,
    pub prefix: String,
    /// AWS Secrets Manager: the KMS key new secrets are encrypted with (`None`: `aws/secretsmanager`).
    pub kms_key_id: Option<String>,
    /// Azure Key Vault: the client id of the user-assigned managed identity to use (`None`: the
    /// system-assigned one). Read from the environment by the app's configuration, not here.
    pub managed_identity_client_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretBackend {
    File {
        path: PathBuf,
    },
    /// Region, credentials and endpoint (`AWS_ENDPOINT_URL`) come from the AWS SDK's usual sources.
    AwsSecretsManager,
    /// The managed identity is the system-assigned one, or the user-assigned one named by
    /// [`SecretStoreConfig::managed_identity_client_id`].
    AzureKeyVault {
        vault_url: Url,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{SECRETS_VAR}={value:?}: {reason}; accepted forms: {ACCEPTED_FORMS}")]
    Secrets { value: String, reason: String },
    #[error(
        "{PREFIX_VAR}={value:?}: {reason}; a prefix is at most 64 characters of letters, digits and / _ + = . @ -"
    )]
    Prefix { value: String, reason: String },
    #[error("cannot set up the secret store: {0}")]
    Connect(String),
}

impl SecretStoreConfig {
    /// Parses the values of [`SECRETS_VAR`] and [`PREFIX_VAR`] (read by the app's configuration). Unset
    /// or empty `AZS_USAGE_SECRETS` means the file store at [`DEFAULT_PATH`].
    pub fn parse(secrets: Option<&str>, prefix: Option<&str>) -> Result<Self, ConfigError> {
        let raw = secrets.map(str::trim).unwrap_or("");
        let err = |reason: &str| ConfigError::Secrets { value: raw.to_owned(), reason: reason.to_owned() };
        let backend = match raw.split_once(':') {
            _ if raw.is_empty() || raw == "file" => SecretBackend::File { path: DEFAULT_PATH.into() },
            _ if raw == "aws-secrets-manager" => SecretBackend::AwsSecretsManager,
            Some(("file", path)) if !path.trim().is_empty() => {
                SecretBackend::File { path: path.trim().into() }
            }
            Some(("file", _)) => return Err(err("the file path is empty")),
            Some(("azure-key-vault", url)) => {
                let url =
                    Url::parse(url.trim()).map_err(|e| err(&format!("the vault URL is not a URL ({e})")))?;
                if url.scheme() != "https" || url.host_str().is_none() {
                    return Err(err("the vault URL must be https://NAME.vault.azure.net"));
                }
                if url.path() != "/" || url.query().is_some() {
                    return Err(err("the vault URL must have no path or query"));
                }
                SecretBackend::AzureKeyVault { vault_url: url }
            }
            _ => return Err(err("unknown secret store")),
        };
        let prefix = prefix.unwrap_or(DEFAULT_PREFIX).trim();
        let perr = |reason: &str| ConfigError::Prefix { value: prefix.to_owned(), reason: reason.to_owned() };
        if prefix.len() > 64 {
            return Err(perr("too long"));
        }
        if let Some(c) = prefix.chars().find(|c| !(c.is_ascii_alphanumeric() || "/_+=.@-".contains(*c))) {
            return Err(perr(&format!("{c:?} is not allowed")));
        }
        Ok(Self { backend, prefix: prefix.to_owned(), kms_key_id: None, managed_identity_client_id: None })
    }

    /// Encrypts new AWS secrets with this key (ignored by the other stores, which have their own).
    pub fn with_kms_key(mut self, kms_key_id: Option<String>) -> Self {
        self.kms_key_id = kms_key_id;
        self
    }

    pub fn with_managed_identity(mut self, client_id: Option<String>) -> Self {
        self.managed_identity_client_id = client_id;
        self
    }
}

/// Per-attempt and total time limits for the AWS client built by [`connect`].
const AWS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The AWS SDK configuration every AWS client of the process shares (Secrets Manager, SQS): region,
/// credentials and endpoint from the SDK's usual sources; standard retries (3 attempts) within bounded
/// time, so that a run never hangs on an outage.
pub async fn aws_sdk_config() -> Result<aws_config::SdkConfig, ConfigError> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(AWS_CONNECT_TIMEOUT)
                .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
                .operation_timeout(AWS_OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(aws_config::retry::RetryConfig::standard())
        .load()
        .await;
    if sdk.region().is_none() {
        return Err(ConfigError::Connect("no AWS region: set AWS_REGION (Lambda sets it for you)".into()));
    }
    Ok(sdk)
}

/// Builds the configured store; call once per process and share the `Arc`.
pub async fn connect(config: &SecretStoreConfig) -> Result<Arc<dyn SecretStore>, ConfigError> {
    let prefix = config.prefix.clone();
    match &config.backend {
        SecretBackend::File { path } => {
            let store = FileSecretStore::new(path, prefix);
            store.verify().map_err(|e| ConfigError::Connect(e.to_string()))?;
            Ok(Arc::new(store))
        }
        SecretBackend::AwsSecretsManager => Ok(Arc::new(
            AwsSecretsManagerStore::new(&aws_sdk_config().await?, prefix)
                .with_kms_key(config.kms_key_id.clone()),
        )),
        SecretBackend::AzureKeyVault { vault_url } => {
            let user_assigned_id = config
                .managed_identity_client_id
                .clone()
                .filter(|id| !id.trim().is_empty())
                .map(|id| azure_identity::UserAssignedId::ClientId(id.trim().to_owned()));
            let credential = azure_identity::ManagedIdentityCredential::new(Some(
                azure_identity::ManagedIdentityCredentialOptions { user_assigned_id, ..Default::default() },
            ))
            .map_err(|e| ConfigError::Connect(format!("managed identity: {e}")))?;
            let store =
                KeyVaultStore::new(vault_url.as_str(), credential, prefix, KeyVaultOptions::default())
                    .map_err(|e| ConfigError::Connect(e.to_string()))?;
            Ok(Arc::new(store))
        }
    }
}

/// Masks every occurrence of the secret's value in an error message. The messages are built from
/// names, codes and the services' own texts, none of which should hold the value; this is the backstop.
pub(crate) fn redact(message: &str, secret: Option<&Secret>) -> String {
    match secret.map(Secret::expose) {
        Some(value) if !value.is_empty() => message.replace(value, "[redacted]"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_parse_and_the_prefix_defaults() {
        let c = SecretStoreConfig::parse(Some("file:/var/lib/azs/secrets.json"), None).unwrap();
        assert_eq!(c.backend, SecretBackend::File { path: "/var/lib/azs/secrets.json".into() });
        assert_eq!(c.prefix, "azs-usage/");
        let c = SecretStoreConfig::parse(Some("aws-secrets-manager"), Some("prod/azs/")).unwrap();
        assert_eq!((c.backend, c.prefix.as_str()), (SecretBackend::AwsSecretsManager, "prod/azs/"));
        let c = SecretStoreConfig::parse(Some("azure-key-vault:https://kv1.vault.azure.net"), None).unwrap();
        assert_eq!(
            c.backend,
            SecretBackend::AzureKeyVault { vault_url: Url::parse("https://kv1.vault.azure.net/").unwrap() }
        );
    }

    #[test]
    fn unset_means_the_default_file() {
        let c = SecretStoreConfig::parse(None, None).unwrap();
        assert_eq!(c.backend, SecretBackend::File { path: DEFAULT_PATH.into() });
    }

    #[test]
    fn parse_errors_name_the_variable_and_the_accepted_forms() {
        for bad in ["vault", "azure-key-vault:http://kv1.vault.azure.net", "azure-key-vault:kv1", "file:"] {
            let e = SecretStoreConfig::parse(Some(bad), None).unwrap_err().to_string();
            assert!(e.contains("AZS_USAGE_SECRETS") && e.contains("aws-secrets-manager"), "{e}");
        }
        let e = SecretStoreConfig::parse(Some("file"), Some("bad prefix")).unwrap_err().to_string();
        assert!(e.contains("AZS_USAGE_SECRET_PREFIX"), "{e}");
    }
}
