# azs-usage on Azure: one Linux Function App running the custom handler (`handler`) with two functions,
# collect-usage (timer, %COLLECT_SCHEDULE%) and register-stamp (HTTP, authLevel function). Its system-
# assigned identity reads and writes stamp credentials in a Key Vault (RBAC) and signs in to Azure SQL
# (Entra-only authentication), so no password appears anywhere in this configuration.

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "this" {
  count    = var.create_resource_group ? 1 : 0
  name     = var.resource_group_name
  location = var.location
  tags     = var.tags
}

data "azurerm_resource_group" "existing" {
  count = var.create_resource_group ? 0 : 1
  name  = var.resource_group_name
}

locals {
  resource_group_name = var.create_resource_group ? azurerm_resource_group.this[0].name : data.azurerm_resource_group.existing[0].name

  storage_account_name = coalesce(var.storage_account_name, substr("${replace(var.name, "-", "")}host", 0, 24))
  key_vault_name       = coalesce(var.key_vault_name, substr("${var.name}-kv", 0, 24))

  # Dedicated plans need Always On, or the timer never fires; Consumption and Premium reject/ignore it.
  dedicated_plan = !can(regex("^(Y1|EP[1-3])$", var.plan_sku))

  # The server's name (not the resource) feeds the app settings: the server's admin may be the app's own
  # identity, and referencing the resource would be a cycle.
  sql_server_name   = "${var.name}-sql"
  sql_database_name = "azs-usage"
  database_connection_string = (
    var.create_sql_database
    ? "Server=tcp:${local.sql_server_name}.${var.sql_dns_suffix},1433;Database=${local.sql_database_name};Encrypt=True;TrustServerCertificate=False;Connection Timeout=30;"
    : var.existing_database
  )

  # The environment of both functions (shared/app/src/config.rs); checked by tests/infra-check.
  # FUNCTIONS_WORKER_RUNTIME=custom and AzureWebJobsStorage are written by the provider from
  # `use_custom_runtime` and `storage_account_*` (azurerm forbids setting FUNCTIONS_WORKER_RUNTIME here
  # when application_stack is set).
  app_settings = merge(
    {
      AZS_USAGE_DATABASE       = local.database_connection_string
      AZS_USAGE_DATABASE_AUTH  = "managed-identity"
      AZS_USAGE_SECRETS        = "azure-key-vault:${trimsuffix(azurerm_key_vault.this.vault_uri, "/")}"
      AZS_USAGE_SECRET_PREFIX  = var.secret_prefix
      AZS_USAGE_CONCURRENCY    = tostring(var.collect_concurrency)
      AZS_USAGE_SETTLE_DELAY   = var.settle_delay
      AZS_USAGE_LOG            = var.log_level
      AZS_USAGE_LOG_FORMAT     = "json"
      COLLECT_SCHEDULE         = var.collect_schedule
      WEBSITE_RUN_FROM_PACKAGE = "1"
    },
    var.time_budget == null ? {} : { AZS_USAGE_TIME_BUDGET = var.time_budget },
  )
}

# ---------------------------------------------------------------------------------------------------------
# Host storage (timer leases, host keys). Holds nothing that cannot be recreated.
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_storage_account" "host" {
  #checkov:skip=CKV_AZURE_206:Host storage holds only timer leases and host keys, all recreated by the host; geo-replication would buy nothing.
  #checkov:skip=CKV2_AZURE_40:The Functions host on Linux Consumption needs key-based AzureWebJobsStorage and a key-based content share (Azure Files has no identity access there).
  #checkov:skip=CKV_AZURE_33:Queue service logging: the host uses no storage queues for our functions (HTTP and timer triggers only).
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys for host storage that holds no customer data would add a key to manage for no gain; Microsoft-managed encryption applies.
  #checkov:skip=CKV2_AZURE_33:Private endpoints need VNet integration, which Linux Consumption (the default plan) does not offer.
  #checkov:skip=CKV_AZURE_59:Public network access is required by the Consumption host (no VNet integration); anonymous blob access is disabled separately.
  name                            = local.storage_account_name
  resource_group_name             = local.resource_group_name
  location                        = var.location
  account_kind                    = "StorageV2"
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  https_traffic_only_enabled      = true
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = true
  public_network_access_enabled   = true

  blob_properties {
    delete_retention_policy {
      days = 7
    }
    container_delete_retention_policy {
      days = 7
    }
  }

  sas_policy {
    expiration_period = "01.00:00:00"
    expiration_action = "Log"
  }

  tags = var.tags
}

# ---------------------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_log_analytics_workspace" "this" {
  name                = "${var.name}-logs"
  resource_group_name = local.resource_group_name
  location            = var.location
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

resource "azurerm_application_insights" "this" {
  name                = "${var.name}-insights"
  resource_group_name = local.resource_group_name
  location            = var.location
  workspace_id        = azurerm_log_analytics_workspace.this.id
  application_type    = "other"
  tags                = var.tags
}

# ---------------------------------------------------------------------------------------------------------
# Key Vault for stamp credentials (RBAC authorization, no access policies).
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_109:The Function App on Consumption has no fixed outbound addresses and Functions are not a trusted Azure service, so a default-deny firewall would lock it out; access is by Entra RBAC only.
  #checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: public network access is needed by the Consumption-hosted app; every call is authenticated and authorized by RBAC.
  #checkov:skip=CKV2_AZURE_32:Private endpoints need VNet integration, which Linux Consumption (the default plan) does not offer.
  name                       = local.key_vault_name
  resource_group_name        = local.resource_group_name
  location                   = var.location
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  enable_rbac_authorization  = true
  purge_protection_enabled   = true
  soft_delete_retention_days = 90

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }

  tags = var.tags
}

# One identity for both functions: they are one Function App (one package, one handler executable), and
# App Service gives a system-assigned identity per app, not per function. Officer (read + write) because
# register-stamp writes credentials; see the README for a two-app split with Secrets User for the collector.
resource "azurerm_role_assignment" "app_key_vault" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = azurerm_linux_function_app.this.identity[0].principal_id
}

# ---------------------------------------------------------------------------------------------------------
# Function App
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_service_plan" "this" {
  #checkov:skip=CKV_AZURE_212:Consumption (the default) scales from zero and takes no minimum instance count; an hourly collector does not need a failover instance.
  #checkov:skip=CKV_AZURE_225:Zone redundancy needs Premium v3/Elastic Premium with 3+ instances; not worth it for an hourly, retryable batch job.
  name                = "${var.name}-plan"
  resource_group_name = local.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = var.plan_sku
  tags                = var.tags
}

resource "azurerm_linux_function_app" "this" {
  #checkov:skip=CKV_AZURE_221:Public network access serves the webhook to callers outside Azure; requests are authenticated with function keys.
  name                        = var.name
  resource_group_name         = local.resource_group_name
  location                    = var.location
  service_plan_id             = azurerm_service_plan.this.id
  storage_account_name        = azurerm_storage_account.host.name
  storage_account_access_key  = azurerm_storage_account.host.primary_access_key
  functions_extension_version = "~4"
  https_only                  = true
  builtin_logging_enabled     = false
  zip_deploy_file             = var.package_path
  app_settings                = local.app_settings

  identity {
    type = "SystemAssigned"
  }

  site_config {
    always_on                              = local.dedicated_plan
    application_insights_connection_string = azurerm_application_insights.this.connection_string
    ftps_state                             = "Disabled"
    http2_enabled                          = true
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"

    application_stack {
      use_custom_runtime = true
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.create_sql_database || var.existing_database != null
      error_message = "Set existing_database when create_sql_database is false."
    }
  }
}

# ---------------------------------------------------------------------------------------------------------
# Azure SQL (optional): Entra-only authentication, the app signs in with its managed identity.
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_mssql_server" "this" {
  #checkov:skip=CKV_AZURE_113:The Consumption-hosted app has no fixed outbound addresses or VNet; access is limited to Azure services by the firewall rule and to Entra principals by authentication.
  #checkov:skip=CKV_AZURE_23:Server auditing to Log Analytics is left to the operator's policy (it needs a diagnostic setting per workspace); Entra-only auth already attributes every login.
  #checkov:skip=CKV_AZURE_24:Audit retention: see CKV_AZURE_23.
  #checkov:skip=CKV2_AZURE_2:Vulnerability assessment needs Microsoft Defender for SQL, a subscription-level purchase this module does not make.
  #checkov:skip=CKV2_AZURE_45:Vulnerability assessment needs Microsoft Defender for SQL, a subscription-level purchase this module does not make.
  count                         = var.create_sql_database ? 1 : 0
  name                          = local.sql_server_name
  resource_group_name           = local.resource_group_name
  location                      = var.location
  version                       = "12.0"
  minimum_tls_version           = "1.2"
  public_network_access_enabled = true

  azuread_administrator {
    login_username              = var.sql_admin_object_id == null ? var.name : coalesce(var.sql_admin_login, "azs-usage-admins")
    object_id                   = coalesce(var.sql_admin_object_id, azurerm_linux_function_app.this.identity[0].principal_id)
    tenant_id                   = data.azurerm_client_config.current.tenant_id
    azuread_authentication_only = true
  }

  tags = var.tags
}

# 0.0.0.0-0.0.0.0 is Azure's "allow Azure services" rule: Consumption apps have no fixed outbound address.
resource "azurerm_mssql_firewall_rule" "azure_services" {
  #checkov:skip=CKV2_AZURE_34:The "Azure services" rule (0.0.0.0) is the only way a Consumption app, with no fixed outbound address or VNet, reaches the server; logins are Entra-only (no passwords to guess).
  count            = var.create_sql_database ? 1 : 0
  name             = "AllowAzureServices"
  server_id        = azurerm_mssql_server.this[0].id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "0.0.0.0"
}

resource "azurerm_mssql_database" "this" {
  #checkov:skip=CKV_AZURE_224:A ledger database keeps a history row for every update, which the collector's idempotent replays would grow; tamper evidence is not needed for usage that can be re-collected from the stamps.
  #checkov:skip=CKV_AZURE_229:Zone redundancy is not offered on the default S0 tier; the data can be re-collected from the stamps.
  count     = var.create_sql_database ? 1 : 0
  name      = local.sql_database_name
  server_id = azurerm_mssql_server.this[0].id
  sku_name  = var.sql_sku
  tags      = var.tags
}
