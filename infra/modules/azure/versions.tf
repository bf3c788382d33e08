terraform {
  # 1.9: cross-variable references in validations and preconditions; terraform_data and
  # replace_triggered_by are older.
  required_version = ">= 1.9"

  # Upper bounds are the releases the arguments were read against (infra/README.md, "Provider versions").
  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.77: azurerm_storage_blob.storage_container_id (4.46: azurerm_storage_queue.storage_account_id;
      # 4.42: azurerm_key_vault.rbac_authorization_enabled). Checked up to 4.81.0; 5.x removes arguments.
      version = ">= 4.77, < 5.0"
    }
    # The Flex Consumption app, its package deployment and the Premium/Dedicated restart (main.tf). 2.9:
    # the embedded Microsoft.Web@2024-04-01 types that tests/infra-check/fixtures/azapi holds (unchanged to
    # 2.12.0); azapi_resource_action.retry exists since 2.0.
    azapi = {
      source  = "Azure/azapi"
      version = ">= 2.9, < 2.13"
    }
    # time_sleep (role propagation).
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }
}
