# Egress of the integrated subnet (subnet_id). With VNet integration every outbound call of the app (Key
# Vault, host storage, Entra ID, the database, stamps on public addresses) leaves through the VNet, and
# subnets of new VNets have no default outbound access: without a NAT gateway (or a firewall route, or
# private endpoints plus DNS for every service) the host cannot even reach its storage. With
# subnet_egress = "nat-gateway" (the default) the module attaches a NAT gateway with a static public IP,
# which is also the fixed address stamp firewalls can allow (output egress_ip).

locals {
  # Known at plan even when subnet_id is not (a subnet created in the same apply): counts depend on it.
  vnet_integration   = var.vnet_integration != null ? var.vnet_integration : var.subnet_id != null
  create_nat_gateway = local.vnet_integration && var.subnet_egress == "nat-gateway"
}

resource "azurerm_public_ip" "egress" {
  count               = local.create_nat_gateway ? 1 : 0
  name                = "${var.name}-egress"
  resource_group_name = local.resource_group_name
  location            = var.location
  allocation_method   = "Static"
  sku                 = "Standard"
  tags                = var.tags
}

resource "azurerm_nat_gateway" "egress" {
  count                   = local.create_nat_gateway ? 1 : 0
  name                    = "${var.name}-egress"
  resource_group_name     = local.resource_group_name
  location                = var.location
  sku_name                = "Standard"
  idle_timeout_in_minutes = 4
  tags                    = var.tags
}

resource "azurerm_nat_gateway_public_ip_association" "egress" {
  count                = local.create_nat_gateway ? 1 : 0
  nat_gateway_id       = azurerm_nat_gateway.egress[0].id
  public_ip_address_id = azurerm_public_ip.egress[0].id
}

# The subnet is the operator's (same region and subscription as the module); only the association is ours.
resource "azurerm_subnet_nat_gateway_association" "egress" {
  count          = local.create_nat_gateway ? 1 : 0
  subnet_id      = var.subnet_id
  nat_gateway_id = azurerm_nat_gateway.egress[0].id
}
