# No output carries a secret: function keys and the Application Insights connection string stay in Azure.

output "resource_group_name" {
  description = "Resource group of the deployment."
  value       = local.resource_group_name
}

output "function_app_name" {
  description = "Name of the Function App."
  value       = azurerm_linux_function_app.this.name
}

output "function_app_hostname" {
  description = "Default host name of the Function App (`<name>.azurewebsites.net`)."
  value       = azurerm_linux_function_app.this.default_hostname
}

output "webhook_url" {
  description = "Base URL of register-stamp; add `?code=<function key>` (az functionapp function keys list ... --function-name register-stamp)."
  value       = "https://${azurerm_linux_function_app.this.default_hostname}/api/stamps"
}

output "principal_id" {
  description = "Object id of the Function App's system-assigned identity (create the SQL user for it when sql_admin_object_id is set)."
  value       = azurerm_linux_function_app.this.identity[0].principal_id
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
