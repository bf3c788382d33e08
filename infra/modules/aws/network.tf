# VPC mode (vpc_subnet_ids set): the functions' security group, and optional interface endpoints for a VPC
# without a NAT gateway. What the functions connect to: the stamps' admin ARM and login endpoints (443),
# Secrets Manager (443), X-Ray (443, traces), the database (database_port: 1433 SQL Server, 5432
# PostgreSQL). Lambda's own service writes the logs and the dead letters, so no endpoint is needed for
# CloudWatch Logs or SQS.

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
  # Keyed by what is known at plan: the given blocks, or "vpc" for the VPC's own block. The VPC's CIDR comes
  # from a data source that, when the subnets are created in the same apply (examples/aws create_vpc), is
  # only known at apply, and for_each keys must be known at plan.
  database_egress = !local.vpc_enabled ? {} : (
    var.database_cidr_blocks != null
    ? { for cidr in var.database_cidr_blocks : cidr => cidr }
    : { vpc = data.aws_vpc.this[0].cidr_block }
  )
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
  for_each          = local.create_security_group ? local.database_egress : {}
  security_group_id = aws_security_group.functions[0].id
  description       = "The billing database (SQL Server or PostgreSQL)"
  ip_protocol       = "tcp"
  from_port         = var.database_port
  to_port           = var.database_port
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
