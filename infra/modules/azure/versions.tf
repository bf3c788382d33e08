terraform {
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source = "hashicorp/azurerm"
      # 4.9: azurerm_storage_container.storage_account_id.
      version = ">= 4.9, < 5.0"
    }
    # Only for the Flex Consumption app and its package deployment (custom runtime; see main.tf).
    azapi = {
      source  = "Azure/azapi"
      version = ">= 2.0, < 3.0"
    }
  }
}
