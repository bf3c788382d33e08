//! The secret store port: where stamp credentials live (a file, AWS Secrets Manager, Azure Key Vault).

use crate::secret::Secret;
use crate::stamp::StampId;
use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// The store could not be reached or refused the call; retrying later may work.
    #[error("secret store unavailable: {0}")]
    Unavailable(String),
    #[error("secret store refused the request: {0}")]
    Refused(String),
}

/// Where credentials live. Errors never contain a secret value.
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn put_secret(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError>;
    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SecretStoreError>;
    /// Deleting a secret that does not exist is not an error.
    async fn delete_secret(&self, name: &str) -> Result<(), SecretStoreError>;
    /// The secret name for a stamp's credential (the configured prefix + the stamp id).
    fn credential_name(&self, stamp: &StampId) -> String;
}
