//! One behaviour, three stores: the same specification runs against each.

use crate::common::{aws_config_for, behaves_like_a_secret_store, moto_url, unique_prefix};
use crate::keyvault_double::KeyVaultDouble;
use azs_secrets::{AwsSecretsManagerStore, FileSecretStore};

#[tokio::test]
async fn the_file_store_behaves_like_a_secret_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::new(dir.path().join("secrets.json"), "azs-usage/");
    behaves_like_a_secret_store(&store, "azs-usage/").await;
}

#[tokio::test]
async fn the_aws_secrets_manager_store_behaves_like_a_secret_store() {
    let Some(url) = moto_url("the_aws_secrets_manager_store_behaves_like_a_secret_store") else { return };
    let prefix = unique_prefix();
    let store = AwsSecretsManagerStore::new(&aws_config_for(&url).await, prefix.clone());
    behaves_like_a_secret_store(&store, &prefix).await;
}

#[tokio::test]
async fn the_key_vault_store_behaves_like_a_secret_store() {
    let vault = KeyVaultDouble::start().await;
    let prefix = unique_prefix();
    behaves_like_a_secret_store(&vault.store(&prefix), &prefix).await;
    assert_eq!(vault.secret_names(), Vec::<String>::new(), "everything was deleted");
    assert_eq!(vault.deleted_names(), Vec::<String>::new(), "and purged");
}
