# azs-usage on Azure: one Linux Function App running the custom handler (`handler`) with three functions,
# collect-usage (timer, %COLLECT_SCHEDULE%), register-stamp (HTTP, authLevel function) and stamp-work (queue,
# queue.tf). Its system-assigned identity reads and writes stamp credentials in a Key Vault (RBAC) and signs
# in to the database (Azure SQL with Entra-only authentication, or PostgreSQL Flexible Server with Entra
# authentication, postgres.tf), so no password appears anywhere in this configuration.
#
# Plans: Flex Consumption (FC1, the default; azapi, see function_app_flex below), Elastic Premium or
# Dedicated (azurerm_linux_function_app). All of them take an optional subnet for VNet integration
# (network.tf), so the app reaches stamps on private networks. The package is a content-addressed blob: a
# changed build has a new name, so it always ships, and no deployment uses basic-auth publishing
# credentials. Role propagation is waited for (time_sleep) before anything the app does with its roles.
# Alerts are in alerts.tf, the workbook in dashboard.tf.

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

  # Derived names are always valid and globally distinct per name: a hash suffix keeps them unique when
  # the name is cut. Storage: 3-24 lower-case letters and digits. Key Vault: 3-24 letters, digits and
  # single hyphens, starting with a letter, ending with a letter or digit.
  name_hash            = substr(sha256(var.name), 0, 6)
  storage_account_name = coalesce(var.storage_account_name, "${substr(replace(var.name, "-", ""), 0, 16)}st${local.name_hash}")
  key_vault_name       = coalesce(var.key_vault_name, "${trimsuffix(substr(replace(var.name, "--", "-"), 0, 14), "-")}-kv-${local.name_hash}")

  flex_plan = var.plan_sku == "FC1"
  # Dedicated plans need Always On, or the timer never fires; Premium ignores it.
  dedicated_plan = !can(regex("^(FC1|EP[1-3])$", var.plan_sku))

  # functionTimeout and the app's time budget come from one variable: the app stops starting windows a
  # minute before the host would cancel the run (AzureFunctionsJobHost__functionTimeout overrides host.json).
  function_timeout = format("%02d:%02d:00", floor(var.function_timeout_minutes / 60), var.function_timeout_minutes % 60)
  time_budget      = "${var.function_timeout_minutes - 1}m"

  # The package's name is its content hash, so a changed build is a new blob and a new deployment.
  package_hash      = filesha256(var.package_path)
  package_blob_name = "azs-usage-${local.package_hash}.zip"
  package_url       = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.packages.name}/${local.package_blob_name}"

  # The server's name (not the resource) feeds the app settings: the server's admin may be the app's own
  # identity, and referencing the resource would be a cycle.
  sql_server_name   = "${var.name}-sql"
  sql_database_name = "azs-usage"
  database_connection_string = (
    var.create_sql_database
    ? "Server=tcp:${local.sql_server_name}.${var.sql_dns_suffix},1433;Database=${local.sql_database_name};Encrypt=True;TrustServerCertificate=False;Connection Timeout=30;"
    : var.create_postgres_database ? local.postgres_url : var.existing_database # postgres.tf
  )

  # The environment of both functions (shared/app/src/config.rs); checked by tests/infra-check.
  # FUNCTIONS_WORKER_RUNTIME=custom and AzureWebJobsStorage are written by the provider from
  # `use_custom_runtime` and `storage_account_*` (azurerm forbids setting FUNCTIONS_WORKER_RUNTIME here
  # when application_stack is set).
  app_settings = merge(
    {
      AZS_USAGE_DATABASE               = local.database_connection_string
      AZS_USAGE_DATABASE_AUTH          = "managed-identity"
      AZS_USAGE_SECRETS                = "azure-key-vault:${trimsuffix(azurerm_key_vault.this.vault_uri, "/")}"
      AZS_USAGE_SECRET_PREFIX          = var.secret_prefix
      AZS_USAGE_CONCURRENCY            = tostring(var.collect_concurrency)
      AZS_USAGE_SETTLE_DELAY           = var.settle_delay
      AZS_USAGE_MAX_SPAN_HOURS         = tostring(var.max_span_hours)
      AZS_USAGE_SUBSCRIBER_CONCURRENCY = tostring(var.subscriber_concurrency)
      AZS_USAGE_LOG                    = var.log_level
      AZS_USAGE_LOG_FORMAT             = "json"
      AZS_USAGE_TIME_BUDGET            = local.time_budget
      COLLECT_SCHEDULE                 = var.collect_schedule
      # The SSRF guard: the hosts a stamp's credential may be sent to (required; "*" is any https host).
      AZS_USAGE_ALLOWED_STAMP_HOSTS = var.allowed_stamp_hosts
      # host.json's functionTimeout, overridden from the same variable as the time budget.
      AzureFunctionsJobHost__functionTimeout = local.function_timeout
    },
    {
      # Adaptive sampling would drop `traces`, and every alert and the workbook read the metric lines
      # there (alerts.tf): traces, requests and exceptions are never sampled (overrides host.json).
      AzureFunctionsJobHost__logging__applicationInsights__samplingSettings__excludedTypes = "Request;Exception;Trace"
    },
    # Premium and Dedicated run the package straight from its blob, read with the app's identity
    # (WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID; without it the URL is fetched anonymously and fails).
    local.flex_plan ? {} : {
      WEBSITE_RUN_FROM_PACKAGE                     = local.package_url
      WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID = "SystemAssigned"
    },
    local.queue_app_settings, # queue.tf
  )
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
# Host storage (timer leases, host keys) and the package container. Holds nothing that cannot be
# recreated.
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_storage_account" "host" {
  #checkov:skip=CKV_AZURE_206:Host storage holds only timer leases, host keys and the build package, all recreated by the host or the next apply; geo-replication would buy nothing.
  #checkov:skip=CKV2_AZURE_40:Elastic Premium and Dedicated plans use key-based AzureWebJobsStorage and content share (Flex uses the app's identity); keys stay in Azure.
  #checkov:skip=CKV_AZURE_33:Queue service logging: the only queues are the stamp-work queues (queue.tf), whose messages hold stamp ids only; the worker logs every message it handles.
  #checkov:skip=CKV2_AZURE_1:Customer-managed keys for host storage that holds no customer data would add a key to manage for no gain; Microsoft-managed encryption applies.
  #checkov:skip=CKV2_AZURE_33:Private endpoints for host storage need a private DNS zone per service in the operator's network; VNet integration (subnet_id) covers the outbound path to the stamps, which is what this module must reach.
  #checkov:skip=CKV_AZURE_59:The Functions host and Terraform's package upload reach the account over its public endpoint unless the operator adds private endpoints; anonymous blob access is disabled separately.
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

# Build packages, one blob per content hash. Private: the app reads them with its identity.
resource "azurerm_storage_container" "packages" {
  #checkov:skip=CKV2_AZURE_21:Blob read logging for a container of build packages would log every instance start; the storage account's defaults apply.
  name                  = "function-packages"
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

resource "azurerm_storage_blob" "package" {
  name                 = local.package_blob_name
  storage_container_id = azurerm_storage_container.packages.id # azurerm >= 4.77
  type                 = "Block"
  source               = var.package_path
  content_md5          = filemd5(var.package_path)
}

# Flex Consumption: the container the platform deploys the app's package from.
resource "azurerm_storage_container" "flex_deployment" {
  #checkov:skip=CKV2_AZURE_21:See the packages container.
  count                 = local.flex_plan ? 1 : 0
  name                  = "flex-deployment"
  storage_account_id    = azurerm_storage_account.host.id
  container_access_type = "private"
}

# ---------------------------------------------------------------------------------------------------------
# Key Vault for stamp credentials (RBAC authorization, no access policies).
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_key_vault" "this" {
  #checkov:skip=CKV_AZURE_109:Function Apps are not a trusted Azure service and Flex/Premium outbound addresses change, so a default-deny firewall would lock the app out unless the operator adds a private endpoint; access is by Entra RBAC only.
  #checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: every call is authenticated and authorized by RBAC.
  #checkov:skip=CKV2_AZURE_32:A private endpoint needs the operator's private DNS zone (privatelink.vaultcore.azure.net); left to the network owner.
  name                       = local.key_vault_name
  resource_group_name        = local.resource_group_name
  location                   = var.location
  tenant_id                  = data.azurerm_client_config.current.tenant_id
  sku_name                   = "standard"
  rbac_authorization_enabled = true # azurerm >= 4.42
  purge_protection_enabled   = true
  soft_delete_retention_days = 90

  network_acls {
    default_action = "Allow"
    bypass         = "AzureServices"
  }

  tags = var.tags
}

# ---------------------------------------------------------------------------------------------------------
# Function App
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_service_plan" "this" {
  #checkov:skip=CKV_AZURE_212:Flex Consumption (the default) scales from zero and takes no minimum instance count; an hourly collector does not need a failover instance.
  #checkov:skip=CKV_AZURE_225:Zone redundancy is not worth it for an hourly, retryable batch job.
  name                = "${var.name}-plan"
  resource_group_name = local.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = var.plan_sku
  tags                = var.tags

  lifecycle {
    precondition {
      condition     = var.create_sql_database || var.create_postgres_database || var.existing_database != null
      error_message = "Set existing_database when neither create_sql_database nor create_postgres_database is true."
    }
  }
}

# Flex Consumption with the custom runtime through azapi (Microsoft.Web/sites, functionAppConfig). azurerm's
# azurerm_function_app_flex_consumption accepts runtime_name = "custom" since 4.21, but it ships a package
# only through zip deploy with basic-auth publishing credentials (zip_deploy_file), which this module never
# turns on; azapi maps the ARM API one to one, and its body is checked against azapi's own type data by
# tests/infra-check (azapi_schema.rs). Host storage and the deployment container are reached with the app's
# identity.
resource "azapi_resource" "function_app_flex" {
  count     = local.flex_plan ? 1 : 0
  type      = "Microsoft.Web/sites@2024-04-01"
  name      = var.name
  parent_id = local.resource_group_id
  location  = var.location
  tags      = var.tags

  identity {
    type = "SystemAssigned"
  }

  body = {
    kind = "functionapp,linux"
    properties = {
      serverFarmId           = azurerm_service_plan.this.id
      httpsOnly              = true
      virtualNetworkSubnetId = var.subnet_id
      siteConfig = {
        minTlsVersion    = "1.2"
        scmMinTlsVersion = "1.2"
        ftpsState        = "Disabled"
        http20Enabled    = true
        appSettings = [for k, v in merge(local.app_settings, {
          AzureWebJobsStorage__accountName      = azurerm_storage_account.host.name
          APPLICATIONINSIGHTS_CONNECTION_STRING = azurerm_application_insights.this.connection_string
        }) : { name = k, value = v }]
      }
      functionAppConfig = {
        runtime = { name = "custom", version = "1.0" }
        deployment = {
          storage = {
            type           = "blobContainer"
            value          = "${azurerm_storage_account.host.primary_blob_endpoint}${azurerm_storage_container.flex_deployment[0].name}"
            authentication = { type = "SystemAssignedIdentity" }
          }
        }
        scaleAndConcurrency = {
          instanceMemoryMB     = var.flex_instance_memory_mb
          maximumInstanceCount = var.flex_maximum_instance_count
        }
      }
    }
  }

  response_export_values = ["properties.defaultHostName"]

  # The integrated subnet gets its NAT gateway first (network.tf): the host starts with egress to its storage,
  # and the association's read-modify-write of the subnet does not race the app's own change to it.
  depends_on = [azurerm_subnet_nat_gateway_association.egress]
}

# Ships the content-addressed blob to the Flex app: ARM's OneDeploy extension (PUT sites/{app}/extensions/
# onedeploy; Entra-authenticated, no basic-auth publishing), as an action, the way Microsoft's verified module
# does (Azure/terraform-azurerm-avm-res-web-site, modules/extensions_zipdeploy). It is no resource: azapi
# would read `onedeploy` back and delete it on the next build (azapi#486), and the resource schema of the
# onedeploy branch has no `properties` at all (Z-1). OneDeploy fetches packageUri itself, anonymously, so the
# URL carries a short-lived read-only SAS of the packages container, signed at the plan that ships it;
# it then writes the package into the deployment container with the app's identity, which is why it waits
# for that role (time_sleep.app_roles) and retries what a role still propagating answers.
# The SAS window starts at the plan's own time (plantimestamp), not at a timestamp kept in the state: an
# apply that creates the action (a new build, or a rerun after a failed first deployment, however much
# later) always sends a SAS that is valid now. Fifteen minutes back against clock skew, three hours ahead
# (inside the account's one-day sas_policy); apply a saved plan within that time. Later plans sign a new SAS,
# which the action ignores (ignore_changes = [body]) until the next build.
data "azurerm_storage_account_blob_container_sas" "package" {
  count             = local.flex_plan ? 1 : 0
  connection_string = azurerm_storage_account.host.primary_connection_string
  container_name    = azurerm_storage_container.packages.name
  https_only        = true
  start             = timeadd(plantimestamp(), "-15m")
  expiry            = timeadd(plantimestamp(), "3h")

  permissions {
    read   = true
    add    = false
    create = false
    write  = false
    delete = false
    list   = false
  }
}

resource "azapi_resource_action" "flex_package_deployment" {
  count       = local.flex_plan ? 1 : 0
  type        = "Microsoft.Web/sites@2024-04-01"
  resource_id = azapi_resource.function_app_flex[0].id
  action      = "extensions/onedeploy"
  method      = "PUT"

  # ARM's OneDeploy request (azapi does not validate action bodies; tests/infra-check holds this one to
  # the documented keys). type = "zip": OneDeploy's artifact type, which its API requires (the verified
  # module sends it since it moved to OneDeploy, Azure/terraform-azurerm-avm-res-web-site#270; Flex's
  # publish endpoint takes type=zip too). remoteBuild = false: the zip already holds the Linux handler
  # executable.
  body = {
    properties = {
      packageUri  = "${local.package_url}${data.azurerm_storage_account_blob_container_sas.package[0].sas}"
      type        = "zip"
      remoteBuild = false
    }
  }

  # Synchronous refusals while the app's roles propagate or the platform still configures the new app.
  retry = {
    error_message_regex = [
      "BlobUploadFailed",
      "AuthorizationPermissionMismatch",
      "AuthorizationFailure",
      "RESPONSE 403",
      "Cannot modify this site because another operation is in progress",
    ]
    interval_seconds     = 15
    max_interval_seconds = 60
  }

  timeouts {
    create = "30m"
    update = "30m"
  }

  lifecycle {
    # A new build deploys again (a replacement sends the whole new body). Other body changes are ignored,
    # as in the verified module: a re-signed SAS (a rotated account key) must not redeploy the same build.
    replace_triggered_by = [terraform_data.package]
    ignore_changes       = [body]
  }

  depends_on = [azurerm_storage_blob.package, time_sleep.app_roles]
}

# The package's content hash as a resource, so that other resources can be replaced when it changes.
resource "terraform_data" "package" {
  input = local.package_hash
}

# Elastic Premium and Dedicated.
resource "azurerm_linux_function_app" "this" {
  #checkov:skip=CKV_AZURE_221:Public network access serves the webhook to callers outside Azure; requests are authenticated with function keys.
  count                       = local.flex_plan ? 0 : 1
  name                        = var.name
  resource_group_name         = local.resource_group_name
  location                    = var.location
  service_plan_id             = azurerm_service_plan.this.id
  storage_account_name        = azurerm_storage_account.host.name
  storage_account_access_key  = azurerm_storage_account.host.primary_access_key
  functions_extension_version = "~4"
  https_only                  = true
  builtin_logging_enabled     = false
  virtual_network_subnet_id   = var.subnet_id
  app_settings                = local.app_settings

  identity {
    type = "SystemAssigned"
  }

  site_config {
    always_on                              = local.dedicated_plan
    app_scale_limit                        = var.fan_out_queue ? var.stamp_worker_max_instances : null # queue.tf
    application_insights_connection_string = azurerm_application_insights.this.connection_string
    ftps_state                             = "Disabled"
    http2_enabled                          = true
    minimum_tls_version                    = "1.2"
    scm_minimum_tls_version                = "1.2"
    vnet_route_all_enabled                 = var.subnet_id != null

    application_stack {
      use_custom_runtime = true
    }
  }

  tags = var.tags

  # The NAT gateway first, as for the Flex app.
  depends_on = [azurerm_storage_blob.package, azurerm_subnet_nat_gateway_association.egress]
}

locals {
  resource_group_id     = var.create_resource_group ? azurerm_resource_group.this[0].id : data.azurerm_resource_group.existing[0].id
  function_app_name     = var.name
  function_app_hostname = local.flex_plan ? azapi_resource.function_app_flex[0].output.properties.defaultHostName : azurerm_linux_function_app.this[0].default_hostname
  principal_id          = local.flex_plan ? azapi_resource.function_app_flex[0].identity[0].principal_id : azurerm_linux_function_app.this[0].identity[0].principal_id
}

# One identity for both functions: they are one Function App (one package, one handler executable), and
# App Service gives a system-assigned identity per app, not per function. Officer (read + write) because
# register-stamp writes credentials; see the README for a two-app split with Secrets User for the collector.
resource "azurerm_role_assignment" "app_key_vault" {
  scope                = azurerm_key_vault.this.id
  role_definition_name = "Key Vault Secrets Officer"
  principal_id         = local.principal_id
}

# The app reads its package and (Flex) keeps timer leases and host keys in blobs with its identity.
resource "azurerm_role_assignment" "app_storage" {
  scope                = azurerm_storage_account.host.id
  role_definition_name = local.flex_plan ? "Storage Blob Data Owner" : "Storage Blob Data Reader"
  principal_id         = local.principal_id
}

# A new role assignment takes minutes to reach the services that enforce it (Microsoft documents up to ten).
# Until then the app's first package pull (Premium/Dedicated), the OneDeploy upload into the deployment
# container (Flex, BlobUploadFailedException), its queue listener and Key Vault calls answer 403. Everything
# that needs the roles waits here once; later applies do not wait unless an assignment is replaced.
resource "time_sleep" "app_roles" {
  create_duration = "${var.role_propagation_seconds}s"
  triggers = {
    roles = join(",", concat(
      [azurerm_role_assignment.app_storage.id, azurerm_role_assignment.app_key_vault.id],
      azurerm_role_assignment.app_queues[*].id, # queue.tf
    ))
  }

  # With VNet integration the app has no egress until the NAT gateway is attached (network.tf); the app
  # itself depends on the association too.
  depends_on = [azurerm_subnet_nat_gateway_association.egress]
}

# Premium and Dedicated: the app started with WEBSITE_RUN_FROM_PACKAGE before its identity could read the
# blob, and an app that failed to mount its package stays without functions until it restarts. This
# restarts it once the roles have propagated (again when an assignment is replaced); a new build changes the
# app setting, which restarts the app by itself.
resource "azapi_resource_action" "restart_after_roles" {
  count       = local.flex_plan ? 0 : 1
  type        = "Microsoft.Web/sites@2024-04-01"
  resource_id = azurerm_linux_function_app.this[0].id
  action      = "restart"
  method      = "POST"

  retry = {
    error_message_regex = ["Cannot modify this site because another operation is in progress"]
  }

  lifecycle {
    replace_triggered_by = [time_sleep.app_roles]
  }

  depends_on = [time_sleep.app_roles]
}

# ---------------------------------------------------------------------------------------------------------
# Azure SQL (optional): Entra-only authentication. A DBA group administers the server; the app is a
# contained database user (outputs.sql_app_user_statements says what to run once).
# ---------------------------------------------------------------------------------------------------------

resource "azurerm_mssql_server" "this" {
  #checkov:skip=CKV_AZURE_113:Flex and Premium apps have no fixed outbound address unless the operator adds a NAT gateway to the subnet; access is limited to Azure services by the firewall rule and to Entra principals by authentication.
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
    login_username              = var.sql_admin_login
    object_id                   = var.sql_admin_object_id
    tenant_id                   = data.azurerm_client_config.current.tenant_id
    azuread_authentication_only = true
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.sql_admin_object_id != null && var.sql_admin_login != null
      error_message = "Set sql_admin_object_id and sql_admin_login (an Entra group of DBAs): people must be able to sign in to the billing database; the app becomes a contained user."
    }
  }
}

# 0.0.0.0-0.0.0.0 is Azure's "allow Azure services" rule: the app's outbound addresses are not fixed.
resource "azurerm_mssql_firewall_rule" "azure_services" {
  #checkov:skip=CKV2_AZURE_34:The "Azure services" rule (0.0.0.0) is how an app without a fixed outbound address reaches the server; logins are Entra-only (no passwords to guess). With subnet_id, replace it with a private endpoint.
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
