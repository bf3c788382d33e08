# No output carries a secret: function keys and the Application Insights connection string stay in Azure.

output "resource_group_name" {
  description = "Resource group of the deployment."
  value       = local.resource_group_name
}

output "function_app_name" {
  description = "Name of the Function App."
  value       = local.function_app_name
}

output "function_app_hostname" {
  description = "Default host name of the Function App (`<name>.azurewebsites.net`)."
  value       = local.function_app_hostname
}

output "webhook_url" {
  description = "Base URL of register-stamp; add `?code=<function key>` (az functionapp function keys list ... --function-name register-stamp)."
  value       = "https://${local.function_app_hostname}/api/stamps"
}

output "principal_id" {
  description = "Object id of the Function App's system-assigned identity."
  value       = local.principal_id
}

output "key_vault_uri" {
  description = "URI of the Key Vault holding stamp credentials."
  value       = azurerm_key_vault.this.vault_uri
}

output "sql_server_fqdn" {
  description = "Host name of the Azure SQL server (null when create_sql_database is false)."
  value       = var.create_sql_database ? azurerm_mssql_server.this[0].fully_qualified_domain_name : null
}

output "sql_database_name" {
  description = "Name of the Azure SQL database (null when create_sql_database is false)."
  value       = var.create_sql_database ? azurerm_mssql_database.this[0].name : null
}

output "package_blob_url" {
  description = "The content-addressed package the app runs (its name is the zip's SHA-256)."
  value       = local.package_url
}

output "sql_app_user_statements" {
  description = "T-SQL a member of the DBA group (sql_admin_object_id) runs once in the database, so that the app signs in as a contained user with only the rights it needs (null when create_sql_database is false)."
  value = var.create_sql_database ? join("\n", [
    "CREATE USER [${local.function_app_name}] FROM EXTERNAL PROVIDER;",
    "ALTER ROLE db_datareader ADD MEMBER [${local.function_app_name}];",
    "ALTER ROLE db_datawriter ADD MEMBER [${local.function_app_name}];",
    "ALTER ROLE db_ddladmin ADD MEMBER [${local.function_app_name}]; -- the app creates and migrates its tables",
  ]) : null
}

output "postgres_server_fqdn" {
  description = "Host name of the PostgreSQL Flexible Server (null unless create_postgres_database)."
  value       = var.create_postgres_database ? azurerm_postgresql_flexible_server.this[0].fqdn : null
}

output "postgres_app_user_statements" {
  description = "SQL a member of the DBA group (sql_admin_object_id) runs once, signed in with an Entra ID token: the first statement in database `postgres`, the others in `azs_usage` (null unless create_postgres_database). The app then creates and migrates its tables."
  value = var.create_postgres_database ? join("\n", [
    "-- in database postgres:",
    "SELECT * FROM pgaadauth_create_principal('${local.function_app_name}', false, false);",
    "-- in database ${local.postgres_database_name}:",
    "GRANT CONNECT, TEMPORARY ON DATABASE ${local.postgres_database_name} TO \"${local.function_app_name}\";",
    "GRANT USAGE, CREATE ON SCHEMA public TO \"${local.function_app_name}\";",
  ]) : null
}

output "egress_ip" {
  description = "Static public IP of the NAT gateway the module attached to subnet_id (subnet_egress = \"nat-gateway\"): allow it in stamp firewalls. null otherwise."
  value       = local.create_nat_gateway ? azurerm_public_ip.egress[0].ip_address : null
}

output "action_group_id" {
  description = "Action group the alerts notify."
  value       = local.action_group_id
}
