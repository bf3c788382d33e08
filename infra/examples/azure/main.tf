# Minimal Azure deployment of azs-usage from the Function App zip built in this repository
# (target/functionapp/azs-usage-functionapp.zip).

terraform {
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.0, < 5.0"
    }
  }
}

provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

variable "subscription_id" {
  description = "Azure subscription to deploy into."
  type        = string
}

variable "name" {
  description = "Globally unique name of the Function App (`<name>.azurewebsites.net`)."
  type        = string
}

variable "location" {
  description = "Azure region."
  type        = string
  default     = "westeurope"
}

module "azs_usage" {
  source = "../../modules/azure"

  name                = var.name
  location            = var.location
  resource_group_name = "${var.name}-rg"
  package_path        = "${path.root}/../../../target/functionapp/azs-usage-functionapp.zip"
}

output "function_app_name" {
  description = "Name of the Function App."
  value       = module.azs_usage.function_app_name
}

output "webhook_url" {
  description = "Base URL of register-stamp (append ?code=<function key>)."
  value       = module.azs_usage.webhook_url
}

output "key_vault_uri" {
  description = "Key Vault holding stamp credentials."
  value       = module.azs_usage.key_vault_uri
}
