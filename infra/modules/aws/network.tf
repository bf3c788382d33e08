# VPC mode (vpc_subnet_ids set): the functions' security group, and optional interface endpoints for a VPC
# without a NAT gateway. What the functions connect to: the stamps' admin ARM and login endpoints (443),
# Secrets Manager (443), X-Ray (443, traces), the database (1433). Lambda's own service writes the logs
# and the dead letters, so no endpoint is needed for CloudWatch Logs or SQS.

data "aws_subnet" "first" {
  count = local.vpc_enabled ? 1 : 0
  id    = var.vpc_subnet_ids[0]
}

data "aws_vpc" "this" {
  count = local.vpc_enabled ? 1 : 0
  id    = data.aws_subnet.first[0].vpc_id
}

locals {
  create_security_group       = local.vpc_enabled && length(var.vpc_security_group_ids) == 0
  function_security_group_ids = local.create_security_group ? [aws_security_group.functions[0].id] : var.vpc_security_group_ids
  database_cidr_blocks        = local.vpc_enabled ? coalesce(var.database_cidr_blocks, [data.aws_vpc.this[0].cidr_block]) : []
}

resource "aws_security_group" "functions" {
  count       = local.create_security_group ? 1 : 0
  name        = "${var.name}-functions"
  description = "azs-usage functions: HTTPS to stamps and AWS APIs, SQL Server to the database; no inbound"
  vpc_id      = data.aws_vpc.this[0].id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each          = local.create_security_group ? toset(var.stamp_cidr_blocks) : toset([])
  security_group_id = aws_security_group.functions[0].id
  description       = "HTTPS: stamps (admin ARM, AD FS / Entra login) and AWS APIs"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "database" {
  for_each          = local.create_security_group ? toset(local.database_cidr_blocks) : toset([])
  security_group_id = aws_security_group.functions[0].id
  description       = "SQL Server: the billing database"
  ip_protocol       = "tcp"
  from_port         = 1433
  to_port           = 1433
  cidr_ipv4         = each.value
}

resource "aws_security_group" "endpoints" {
  count       = local.vpc_enabled && var.create_vpc_endpoints ? 1 : 0
  name        = "${var.name}-endpoints"
  description = "azs-usage interface endpoints: HTTPS from the VPC only"
  vpc_id      = data.aws_vpc.this[0].id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints" {
  count             = local.vpc_enabled && var.create_vpc_endpoints ? 1 : 0
  security_group_id = aws_security_group.endpoints[0].id
  description       = "HTTPS from the VPC (the functions)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = data.aws_vpc.this[0].cidr_block
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.vpc_enabled && var.create_vpc_endpoints ? toset(var.vpc_endpoint_services) : toset([])
  vpc_id              = data.aws_vpc.this[0].id
  service_name        = "com.amazonaws.${local.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.vpc_subnet_ids
  security_group_ids  = [aws_security_group.endpoints[0].id]
  private_dns_enabled = true
  tags                = merge(var.tags, { Name = "${var.name}-${each.value}" })
}
