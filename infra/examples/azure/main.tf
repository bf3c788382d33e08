# Azure deployment of azs-usage from the Function App zip built in this repository
# (scripts/package.sh -> target/functionapp/azs-usage-functionapp.zip), on Flex Consumption, with a new
# resource group `<name>-rg`, an Azure SQL database administered by a DBA group, and alerts e-mailed to
# alert_emails. README.md walks from zero to the first collected hour.

terraform {
  required_version = ">= 1.9"

  # The module's constraints (its versions.tf says why each bound).
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.77, < 5.0"
    }
    azapi = {
      source  = "Azure/azapi"
      version = ">= 2.9, < 2.13"
    }
    time = {
      source  = "hashicorp/time"
      version = ">= 0.9, < 1.0"
    }
  }
}

provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

provider "azapi" {
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
  description = "Azure region (one that offers Flex Consumption)."
  type        = string
  default     = "westeurope"
}

variable "sql_admin_group_object_id" {
  description = "Object id of the Entra group of DBAs that administers the Azure SQL server."
  type        = string
}

variable "sql_admin_group_name" {
  description = "Display name of that group."
  type        = string
}

variable "subnet_id" {
  description = "Optional subnet (delegated to Microsoft.App/environments) for VNet integration, to reach stamps on private networks. The module attaches a NAT gateway to it for egress (output egress_ip)."
  type        = string
  default     = null
}

variable "database" {
  description = "The billing database the example creates: \"azure-sql\" (default) or \"postgres\" (Azure Database for PostgreSQL Flexible Server). Both take Entra ID logins only."
  type        = string
  default     = "azure-sql"

  validation {
    condition     = contains(["azure-sql", "postgres"], var.database)
    error_message = "database must be \"azure-sql\" or \"postgres\"."
  }
}

variable "alert_emails" {
  description = "Who gets the alerts (stamp lag, failed runs, collector not running)."
  type        = list(string)
  default     = []
}

module "azs_usage" {
  source = "../../modules/azure"

  name                = var.name
  location            = var.location
  resource_group_name = "${var.name}-rg"
  package_path        = "${path.root}/../../../target/functionapp/azs-usage-functionapp.zip"
  subnet_id           = var.subnet_id
  sql_admin_object_id = var.sql_admin_group_object_id
  sql_admin_login     = var.sql_admin_group_name
  alert_emails        = var.alert_emails

  create_sql_database      = var.database == "azure-sql"
  create_postgres_database = var.database == "postgres"

  # Required: the only hosts the service calls with a stamp's credential (AZS_USAGE_ALLOWED_STAMP_HOSTS),
  # its guard against webhook callers naming URLs (SSRF). Replace with your stamps' admin ARM and AD FS
  # hosts or address blocks; Entra ID stamps also need login.microsoftonline.com (or their cloud's login
  # host). "*" allows any https host (no host restriction; loopback, link-local/metadata, unspecified and
  # multicast addresses stay refused): prefer a list.
  allowed_stamp_hosts = "*.azurestack.contoso.com, 10.20.0.0/16"
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

output "sql_server_fqdn" {
  description = "Azure SQL server."
  value       = module.azs_usage.sql_server_fqdn
}

output "sql_app_user_statements" {
  description = "T-SQL to run once as a member of the DBA group (database = azure-sql)."
  value       = module.azs_usage.sql_app_user_statements
}

output "postgres_server_fqdn" {
  description = "PostgreSQL Flexible Server (database = postgres)."
  value       = module.azs_usage.postgres_server_fqdn
}

output "postgres_app_user_statements" {
  description = "SQL to run once as a member of the DBA group (database = postgres)."
  value       = module.azs_usage.postgres_app_user_statements
}

output "resource_group_name" {
  description = "Resource group of the deployment."
  value       = module.azs_usage.resource_group_name
}

output "egress_ip" {
  description = "Outbound address of the app with subnet_id (allow it in stamp firewalls)."
  value       = module.azs_usage.egress_ip
}

output "workbook_id" {
  description = "The operations workbook (Application Insights > Workbooks)."
  value       = module.azs_usage.workbook_id
}
