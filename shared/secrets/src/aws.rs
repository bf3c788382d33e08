//! Secrets in AWS Secrets Manager, one secret (a `SecretString`) per name.

use crate::redact;
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use azs_core::ports::{SecretStore, SecretStoreError};
use azs_core::{Secret, StampId};

/// A Secrets Manager client and the prefix of our secrets' names.
#[derive(Debug, Clone)]
pub struct AwsSecretsManagerStore {
    client: Client,
    prefix: String,
    /// The key CreateSecret names; `None` leaves Secrets Manager's default (`aws/secretsmanager`).
    kms_key_id: Option<String>,
}

impl AwsSecretsManagerStore {
    /// `config` is built once per process by the caller (region, credentials, endpoint, retries and
    /// timeouts all come from it), e.g. [`crate::connect`] or a test pointing at moto.
    pub fn new(config: &aws_config::SdkConfig, prefix: impl Into<String>) -> Self {
        Self { client: Client::new(config), prefix: prefix.into(), kms_key_id: None }
    }

    /// New secrets are encrypted with `kms_key_id` (the deployment's customer-managed key), so that
    /// stamp credentials are under the same key policy as the rest of the deployment.
    pub fn with_kms_key(mut self, kms_key_id: Option<String>) -> Self {
        self.kms_key_id = kms_key_id;
        self
    }
}

#[async_trait]
impl SecretStore for AwsSecretsManagerStore {
    /// CreateSecret; when the name exists, PutSecretValue (a new version becomes AWSCURRENT).
    async fn put_secret(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError> {
        let created = self
            .client
            .create_secret()
            .name(name)
            .secret_string(value.expose())
            .set_kms_key_id(self.kms_key_id.clone())
            .description("azs-usage: an Azure Stack Hub stamp's service principal credential")
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_exists_exception()) => self
                .client
                .put_secret_value()
                .secret_id(name)
                .secret_string(value.expose())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("PutSecretValue", name, e, Some(value))),
            Err(e) => Err(classify("CreateSecret", name, e, Some(value))),
        }
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SecretStoreError> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => match out.secret_string {
                Some(value) => Ok(Some(Secret::new(value))),
                None => Err(SecretStoreError::Refused(format!(
                    "Secrets Manager secret {name} holds binary data, not a string; it was not written by azs-usage"
                ))),
            },
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(classify("GetSecretValue", name, e, None)),
        }
    }

    /// DeleteSecret with `ForceDeleteWithoutRecovery`. Without it the secret would wait 7-30 days in
    /// "scheduled for deletion", still holding a deleted stamp's working credential, and meanwhile
    /// CreateSecret with the same name fails, so the stamp could not be registered again under it.
    async fn delete_secret(&self, name: &str) -> Result<(), SecretStoreError> {
        match self.client.delete_secret().secret_id(name).force_delete_without_recovery(true).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(classify("DeleteSecret", name, e, None)),
        }
    }

    fn credential_name(&self, stamp: &StampId) -> String {
        format!("{}{}", self.prefix, stamp)
    }
}

/// Throttling, server errors and anything that never got an answer may pass: `Unavailable`. Access
/// denied, validation and other client errors need someone to act: `Refused`. The messages carry the
/// operation, the secret's name and AWS's code and text, with the value (if AWS ever echoed it) masked.
fn classify<E>(op: &str, name: &str, err: SdkError<E>, secret: Option<&Secret>) -> SecretStoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = |detail: String| redact(&format!("Secrets Manager {op} {name}: {detail}"), secret);
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("unknown error");
            let text = ctx.err().message().unwrap_or("");
            let detail = message(format!("HTTP {status} {code}: {text}"));
            let throttled = matches!(
                code,
                "ThrottlingException" | "Throttling" | "TooManyRequestsException" | "RequestLimitExceeded"
            );
            if throttled || status == 429 || status >= 500 {
                SecretStoreError::Unavailable(detail)
            } else {
                SecretStoreError::Refused(detail)
            }
        }
        SdkError::ConstructionFailure(_) => {
            SecretStoreError::Refused(message(DisplayErrorContext(&err).to_string()))
        }
        // Timeouts, connection failures, unreadable answers.
        _ => SecretStoreError::Unavailable(message(DisplayErrorContext(&err).to_string())),
    }
}
