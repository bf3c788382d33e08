# Azure Database for PostgreSQL Flexible Server (optional, create_postgres_database): Microsoft Entra
# authentication only (no password exists), a DBA group as the server's Entra administrator, and the app as
# a database principal of its managed identity (output postgres_app_user_statements says what to run once).
# With postgres_subnet_id the server has private access only: injected into that delegated subnet, its name
# resolved through a private DNS zone linked to the subnet's VNet (the app reaches it through its own VNet
# integration, subnet_id, in the same or a peered VNet). Without it the server is public, open to Azure
# services only, like the Azure SQL option.

variable "create_postgres_database" {
  description = "Create an Azure Database for PostgreSQL Flexible Server (Entra authentication only) instead of Azure SQL; set create_sql_database = false with it. sql_admin_object_id/sql_admin_login name its DBA group."
  type        = bool
  default     = false
}

variable "postgres_sku" {
  description = "SKU of the PostgreSQL Flexible Server, e.g. `B_Standard_B1ms` (burstable), `GP_Standard_D2ds_v5`."
  type        = string
  default     = "B_Standard_B2s"
}

variable "postgres_subnet_id" {
  description = "Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers for private access; null: public access limited to Azure services. The app must reach it through subnet_id (same VNet, or a peered one linked to the private DNS zone)."
  type        = string
  default     = null

  validation {
    condition     = var.postgres_subnet_id == null || can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$", var.postgres_subnet_id))
    error_message = "postgres_subnet_id must be a subnet's resource id (/subscriptions/.../virtualNetworks/<vnet>/subnets/<subnet>)."
  }
}

variable "postgres_private_access" {
  description = "Whether postgres_subnet_id is set, stated where Terraform can see it at plan. null (default): derived from postgres_subnet_id. Set true when postgres_subnet_id is only known after apply (a subnet created in the same configuration): whether the private DNS zone or the public firewall rule exists must be known at plan."
  type        = bool
  default     = null

  validation {
    condition     = var.postgres_private_access == null || var.postgres_private_access == (var.postgres_subnet_id != null)
    error_message = "postgres_private_access must be true exactly when postgres_subnet_id is set (or null: derived from postgres_subnet_id)."
  }
}

variable "postgres_dns_suffix" {
  description = "DNS suffix of Azure Database for PostgreSQL servers in this cloud (`postgres.database.azure.com` in the public cloud)."
  type        = string
  default     = "postgres.database.azure.com"
}

locals {
  postgres_server_name   = "${var.name}-pg"
  postgres_database_name = "azs_usage"
  # The app signs in as its managed identity, whose database principal carries the app's name; the password
  # is an Entra ID token the app asks for on every new connection (AZS_USAGE_DATABASE_AUTH=managed-identity).
  # The server's name, not the resource, as for Azure SQL. verify-full: the server's certificate chains to
  # public roots the app trusts.
  postgres_url = "postgres://${var.name}@${local.postgres_server_name}.${var.postgres_dns_suffix}:5432/${local.postgres_database_name}?sslmode=verify-full"
  # Known at plan even when postgres_subnet_id is not (a subnet created in the same apply): counts use it.
  postgres_private = var.postgres_private_access != null ? var.postgres_private_access : var.postgres_subnet_id != null
  # The VNet of the delegated subnet, for the private DNS zone's link.
  postgres_vnet_id = var.postgres_subnet_id == null ? null : regex("(?i)^(.*/virtualNetworks/[^/]+)/subnets/[^/]+$", var.postgres_subnet_id)[0]
}

resource "azurerm_private_dns_zone" "postgres" {
  count               = var.create_postgres_database && local.postgres_private ? 1 : 0
  name                = "${var.name}.private.${var.postgres_dns_suffix}"
  resource_group_name = local.resource_group_name
  tags                = var.tags
}

resource "azurerm_private_dns_zone_virtual_network_link" "postgres" {
  count                 = var.create_postgres_database && local.postgres_private ? 1 : 0
  name                  = "${var.name}-pg"
  private_dns_zone_name = azurerm_private_dns_zone.postgres[0].name
  resource_group_name   = local.resource_group_name
  virtual_network_id    = local.postgres_vnet_id
  registration_enabled  = false
  tags                  = var.tags
}

resource "azurerm_postgresql_flexible_server" "this" {
  #checkov:skip=CKV_AZURE_136:Geo-redundant backups double the storage cost; usage can be re-collected from the stamps, and the backup is kept 7 days in the region.
  #checkov:skip=CKV2_AZURE_57:Private access is by VNet injection (postgres_subnet_id), not a private endpoint; without a subnet the server is open to Azure services only and every login is an Entra ID token.
  count                         = var.create_postgres_database ? 1 : 0
  name                          = local.postgres_server_name
  resource_group_name           = local.resource_group_name
  location                      = var.location
  version                       = "17"
  sku_name                      = var.postgres_sku
  storage_mb                    = 32768
  auto_grow_enabled             = true
  backup_retention_days         = 7
  delegated_subnet_id           = var.postgres_subnet_id
  private_dns_zone_id           = try(azurerm_private_dns_zone.postgres[0].id, null)
  public_network_access_enabled = !local.postgres_private

  # Entra ID only: with password authentication off there is no administrator login or password at all
  # (azurerm refuses them at creation).
  authentication {
    active_directory_auth_enabled = true
    password_auth_enabled         = false
    tenant_id                     = data.azurerm_client_config.current.tenant_id
  }

  tags = var.tags

  lifecycle {
    # Azure picks an availability zone when none is given; a later plan must not try to move it.
    ignore_changes = [zone]
    precondition {
      condition     = !(var.create_postgres_database && var.create_sql_database)
      error_message = "Choose one database: create_postgres_database = true needs create_sql_database = false."
    }
    precondition {
      condition     = var.sql_admin_object_id != null && var.sql_admin_login != null
      error_message = "Set sql_admin_object_id and sql_admin_login (an Entra group of DBAs): they administer the PostgreSQL server; the app becomes a database principal."
    }
  }

  depends_on = [azurerm_private_dns_zone_virtual_network_link.postgres]
}

resource "azurerm_postgresql_flexible_server_active_directory_administrator" "dba" {
  count               = var.create_postgres_database ? 1 : 0
  server_name         = azurerm_postgresql_flexible_server.this[0].name
  resource_group_name = local.resource_group_name
  tenant_id           = data.azurerm_client_config.current.tenant_id
  object_id           = var.sql_admin_object_id
  principal_name      = var.sql_admin_login
  principal_type      = "Group"
}

# After the Entra administrator: a database created through the API before the server has an administrator is
# owned by the service's own azuresu, and then nobody can grant the app CONNECT or CREATE on its public schema
# (postgres_app_user_statements fails, and the app cannot create its tables). Created after it, the database
# belongs to the DBA group. Both resources lock the server, so without this the order was random
# (hashicorp/terraform-provider-azurerm#27895; Microsoft's Bicep AVM module fixed it the same way, #3596).
resource "azurerm_postgresql_flexible_server_database" "this" {
  count     = var.create_postgres_database ? 1 : 0
  name      = local.postgres_database_name
  server_id = azurerm_postgresql_flexible_server.this[0].id
  charset   = "UTF8"
  collation = "en_US.utf8"

  depends_on = [azurerm_postgresql_flexible_server_active_directory_administrator.dba]
}

# 0.0.0.0 is Azure's "allow Azure services" rule, as for Azure SQL: the app has no fixed outbound address
# without a NAT gateway. Only for public access.
resource "azurerm_postgresql_flexible_server_firewall_rule" "azure_services" {
  #checkov:skip=CKV2_AZURE_26:The "Azure services" rule (0.0.0.0) is how an app without a fixed outbound address reaches a public server; every login is an Entra ID token (password authentication is off). With postgres_subnet_id there is no public access and no rule.
  count            = var.create_postgres_database && !local.postgres_private ? 1 : 0
  name             = "AllowAzureServices"
  server_id        = azurerm_postgresql_flexible_server.this[0].id
  start_ip_address = "0.0.0.0"
  end_ip_address   = "0.0.0.0"
}
