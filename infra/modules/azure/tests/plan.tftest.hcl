# Plan logic of the Azure module with mocked providers: each plan_sku, VNet integration, queue fan-out and
# PostgreSQL. Written for `terraform test` in infra/modules/azure, which needs the azurerm, azapi and time
# providers installed even to mock them: they are not mirrored on our machines, so scripts/infra-check.sh
# prints "NOT RUN" for this file. `command = plan` throughout: it checks the plan graph, the variables'
# validations and what the module decides, without values only a provider computes.

mock_provider "azurerm" {
  mock_data "azurerm_client_config" {
    defaults = {
      tenant_id       = "00000000-0000-0000-0000-000000000001"
      subscription_id = "00000000-0000-0000-0000-000000000002"
    }
  }
}

mock_provider "azapi" {}

mock_provider "time" {}

variables {
  name                = "azsusage-test"
  location            = "westeurope"
  resource_group_name = "azsusage-test-rg"
  package_path        = "tests/empty.zip"
  allowed_stamp_hosts = "*.azurestack.contoso.com"
  sql_admin_object_id = "00000000-0000-0000-0000-000000000003"
  sql_admin_login     = "azs-usage DBAs"
}

run "flex_consumption_by_default" {
  command = plan

  assert {
    condition     = length(azapi_resource.function_app_flex) == 1 && length(azurerm_linux_function_app.this) == 0
    error_message = "FC1 is the azapi Flex app"
  }
  assert {
    condition     = length(azapi_resource_action.flex_package_deployment) == 1 && azapi_resource_action.flex_package_deployment[0].action == "extensions/onedeploy" && azapi_resource_action.flex_package_deployment[0].method == "PUT"
    error_message = "the package ships through a OneDeploy action"
  }
  assert {
    condition     = length(azapi_resource_action.restart_after_roles) == 0
    error_message = "Flex needs no restart: the deployment restarts it"
  }
  assert {
    condition     = azapi_resource.function_app_flex[0].body.properties.functionAppConfig.runtime.name == "custom"
    error_message = "the custom handler runtime"
  }
  assert {
    condition     = toset(keys(azurerm_storage_queue.stamp_work)) == toset(["azs-stamp-work", "azs-stamp-work-poison"]) && length(azurerm_role_assignment.app_queues) == 1
    error_message = "the stamp-work listener always has its queues and role (Z-5)"
  }
  assert {
    condition     = azurerm_monitor_scheduled_query_rules_alert_v2.this["collect-usage-not-running"].window_duration == "P2D" && azurerm_monitor_scheduled_query_rules_alert_v2.this["collect-usage-not-running"].criteria[0].operator == "GreaterThan"
    error_message = "not-running pages on a stale last run, not before the first one"
  }
  assert {
    condition     = time_sleep.app_roles.create_duration == "300s"
    error_message = "the first apply waits for role propagation"
  }
  assert {
    condition     = length(azurerm_nat_gateway.egress) == 0 && length(azurerm_mssql_server.this) == 1 && length(azurerm_postgresql_flexible_server.this) == 0
    error_message = "no VNet, Azure SQL by default"
  }
}

run "elastic_premium" {
  command = plan
  variables {
    plan_sku = "EP1"
  }

  assert {
    condition     = length(azurerm_linux_function_app.this) == 1 && length(azapi_resource.function_app_flex) == 0 && length(azapi_resource_action.flex_package_deployment) == 0
    error_message = "EP1 is the azurerm app"
  }
  assert {
    condition     = azurerm_linux_function_app.this[0].app_settings["WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID"] == "SystemAssigned" && azurerm_linux_function_app.this[0].site_config[0].always_on == false
    error_message = "the package is read with the app's identity; Premium needs no Always On"
  }
  assert {
    condition     = length(azapi_resource_action.restart_after_roles) == 1 && azapi_resource_action.restart_after_roles[0].action == "restart"
    error_message = "the app restarts once its roles have propagated (Z-6)"
  }
}

run "dedicated" {
  command = plan
  variables {
    plan_sku = "P1v3"
  }

  assert {
    condition     = azurerm_linux_function_app.this[0].site_config[0].always_on == true && length(azapi_resource_action.restart_after_roles) == 1
    error_message = "Dedicated plans need Always On for the timer"
  }
}

run "linux_consumption_is_refused" {
  command = plan
  variables {
    plan_sku = "Y1"
  }
  expect_failures = [var.plan_sku]
}

run "vnet_integration_gets_a_nat_gateway" {
  command = plan
  variables {
    subnet_id = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/functions"
  }

  assert {
    condition     = length(azurerm_nat_gateway.egress) == 1 && azurerm_subnet_nat_gateway_association.egress[0].subnet_id == var.subnet_id
    error_message = "the integrated subnet gets egress (Z-7)"
  }
  assert {
    condition     = azapi_resource.function_app_flex[0].body.properties.virtualNetworkSubnetId == var.subnet_id
    error_message = "the Flex app is integrated into the subnet"
  }
}

run "vnet_integration_with_existing_egress" {
  command = plan
  variables {
    plan_sku      = "EP2"
    subnet_id     = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/functions"
    subnet_egress = "existing"
  }

  assert {
    condition     = length(azurerm_nat_gateway.egress) == 0 && azurerm_linux_function_app.this[0].site_config[0].vnet_route_all_enabled == true
    error_message = "no NAT gateway when the subnet already has egress; all traffic through the VNet"
  }
}

run "a_subnet_that_is_no_subnet_id_is_refused" {
  command = plan
  variables {
    subnet_id = "functions"
  }
  expect_failures = [var.subnet_id]
}

run "queue_fan_out" {
  command = plan
  variables {
    fan_out_queue               = true
    flex_maximum_instance_count = 15
  }

  assert {
    condition     = one([for s in azapi_resource.function_app_flex[0].body.properties.siteConfig.appSettings : s.value if s.name == "AZS_USAGE_FAN_OUT"]) == "queue"
    error_message = "the timer enqueues one message per stamp"
  }
  assert {
    condition     = azapi_resource.function_app_flex[0].body.properties.functionAppConfig.scaleAndConcurrency.maximumInstanceCount == 15
    error_message = "flex_maximum_instance_count caps the workers (and the database's connections)"
  }
  assert {
    condition     = contains(keys(azurerm_monitor_scheduled_query_rules_alert_v2.this), "stamp-work-dead-letters")
    error_message = "dead letters page"
  }
}

run "flex_instance_count_above_1000_is_refused" {
  command = plan
  variables {
    flex_maximum_instance_count = 1001
  }
  expect_failures = [var.flex_maximum_instance_count]
}

run "postgres_with_private_access" {
  command = plan
  variables {
    create_sql_database      = false
    create_postgres_database = true
    postgres_subnet_id       = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/postgres"
  }

  assert {
    condition     = azurerm_postgresql_flexible_server.this[0].authentication[0].password_auth_enabled == false && azurerm_postgresql_flexible_server.this[0].public_network_access_enabled == false
    error_message = "Entra only, private access"
  }
  assert {
    condition     = azurerm_private_dns_zone_virtual_network_link.postgres[0].virtual_network_id == "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vnet" && length(azurerm_postgresql_flexible_server_firewall_rule.azure_services) == 0
    error_message = "the private DNS zone is linked to the subnet's VNet; no firewall rule"
  }
  assert {
    condition     = one([for s in azapi_resource.function_app_flex[0].body.properties.siteConfig.appSettings : s.value if s.name == "AZS_USAGE_DATABASE"]) == "postgres://azsusage-test@azsusage-test-pg.postgres.database.azure.com:5432/azs_usage?sslmode=verify-full"
    error_message = "the app signs in as its identity, verifying the server"
  }
}

run "two_databases_are_refused" {
  command = plan
  variables {
    create_postgres_database = true
  }
  expect_failures = [azurerm_postgresql_flexible_server.this]
}
