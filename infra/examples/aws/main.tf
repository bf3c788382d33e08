# AWS deployment of azs-usage from the zips built in this repository (scripts/package.sh ->
# target/lambda/{collect-usage,register-stamp}/bootstrap.zip, x86_64). README.md walks from zero to the
# first collected hour.
#
# Optional parts, each off by default:
#   create_vpc            a VPC with two private subnets for the functions and a NAT gateway with a fixed
#                         public IP (output egress_ip: allow it in the stamps' firewalls)
#   create_rds_sql_server an RDS for SQL Server (Express) in those subnets, reachable only from the
#                         functions' security group, TLS checked against the RDS CA bundle you pass
#   create_rds_postgres   an RDS for PostgreSQL instead, the same way, with IAM database authentication:
#                         the functions sign in with their roles' tokens, no password anywhere

terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

variable "create_vpc" {
  description = "Put the functions in a new VPC with a NAT gateway (fixed egress IP for stamp firewalls)."
  type        = bool
  default     = false
}

variable "vpc_cidr" {
  description = "CIDR of the new VPC (create_vpc)."
  type        = string
  default     = "10.42.0.0/16"
}

variable "create_rds_sql_server" {
  description = "Create an RDS for SQL Server Express instance for the billing database (needs create_vpc)."
  type        = bool
  default     = false
}

variable "create_rds_postgres" {
  description = "Create an RDS for PostgreSQL instance with IAM database authentication for the billing database (needs create_vpc; not with create_rds_sql_server)."
  type        = bool
  default     = false
}

variable "rds_ca_bundle_path" {
  description = "Path of the RDS CA bundle of the region (curl -o rds-ca.pem https://truststore.pki.rds.amazonaws.com/REGION/REGION-bundle.pem), so the functions verify the server's TLS certificate. Needed with create_rds_sql_server."
  type        = string
  default     = null
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (confirm the subscription mail). null: subscribe yourself."
  type        = string
  default     = null
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:The example takes the first two zones of the region once; to pin them for good, replace local.azs with literal zone names.
  state = "available"
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, 2)
}

# ---------------------------------------------------------------------------------------------------------
# Network (create_vpc): private subnets for the functions and the database, one public subnet for the NAT.
# ---------------------------------------------------------------------------------------------------------

resource "aws_vpc" "this" {
  count                = var.create_vpc ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "azs-usage" }
}

# No rules: nothing may use the default security group.
resource "aws_default_security_group" "this" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
}

resource "aws_subnet" "private" {
  count             = var.create_vpc ? 2 : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index)
  tags              = { Name = "azs-usage-private-${count.index}" }
}

resource "aws_subnet" "public" {
  count             = var.create_vpc ? 1 : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[0]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 100)
  tags              = { Name = "azs-usage-public" }
}

resource "aws_internet_gateway" "this" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
}

resource "aws_eip" "nat" {
  count  = var.create_vpc ? 1 : 0
  domain = "vpc"
  tags   = { Name = "azs-usage-egress" }
}

resource "aws_nat_gateway" "this" {
  count         = var.create_vpc ? 1 : 0
  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  depends_on    = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this[0].id
  }
}

resource "aws_route_table_association" "public" {
  count          = var.create_vpc ? 1 : 0
  subnet_id      = aws_subnet.public[0].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table" "private" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this[0].id
  }
}

resource "aws_route_table_association" "private" {
  count          = var.create_vpc ? 2 : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}

resource "aws_flow_log" "this" {
  count                = var.create_vpc ? 1 : 0
  vpc_id               = aws_vpc.this[0].id
  traffic_type         = "REJECT"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow[0].arn
  iam_role_arn         = aws_iam_role.flow[0].arn
}

resource "aws_cloudwatch_log_group" "flow" {
  count             = var.create_vpc ? 1 : 0
  name              = "/azs-usage/vpc-flow"
  retention_in_days = 365
  kms_key_id        = module.azs_usage.kms_key_arn
}

resource "aws_iam_role" "flow" {
  count = var.create_vpc ? 1 : 0
  name  = "azs-usage-vpc-flow"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "vpc-flow-logs.amazonaws.com" } }]
  })
}

resource "aws_iam_role_policy" "flow" {
  count = var.create_vpc ? 1 : 0
  role  = aws_iam_role.flow[0].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"], Resource = "${aws_cloudwatch_log_group.flow[0].arn}:*" }]
  })
}

# ---------------------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------------------

module "azs_usage" {
  source = "../../modules/aws"

  collect_usage_zip_path  = "${path.root}/../../../target/lambda/collect-usage/bootstrap.zip"
  register_stamp_zip_path = "${path.root}/../../../target/lambda/register-stamp/bootstrap.zip"

  # Required: the only hosts the service calls with a stamp's credential (AZS_USAGE_ALLOWED_STAMP_HOSTS),
  # its guard against webhook callers naming URLs (SSRF). Replace with your stamps' admin ARM and AD FS
  # hosts or address blocks; Entra ID stamps also need login.microsoftonline.com (or their cloud's login
  # host). "*" allows any https host (no host restriction; loopback, link-local/metadata, unspecified and
  # multicast addresses stay refused): prefer a list.
  allowed_stamp_hosts = "*.azurestack.contoso.com, 10.20.0.0/16"

  vpc_subnet_ids         = var.create_vpc ? aws_subnet.private[*].id : []
  database_ca_bundle_pem = var.rds_ca_bundle_path == null ? null : file(var.rds_ca_bundle_path)

  # RDS for PostgreSQL: the functions log in as local.postgres_app_user with IAM tokens; the URL carries
  # no password, and verify-full checks the server against the RDS CA bundle above.
  database_port = local.database_port
  database_iam_auth = var.create_rds_postgres ? {
    url            = "postgres://${local.postgres_app_user}@${aws_db_instance.postgres[0].address}:5432/${local.postgres_database}?sslmode=verify-full"
    db_resource_id = aws_db_instance.postgres[0].resource_id
  } : null
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == null ? 0 : 1
  topic_arn = module.azs_usage.alarm_topic_arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# ---------------------------------------------------------------------------------------------------------
# RDS for SQL Server (create_rds_sql_server): reachable only from the functions' security group. The
# master password is managed by RDS in Secrets Manager (never in the Terraform state).
# ---------------------------------------------------------------------------------------------------------

locals {
  create_rds        = var.create_rds_sql_server || var.create_rds_postgres
  database_port     = var.create_rds_postgres ? 5432 : 1433
  postgres_database = "azs_usage"
  postgres_app_user = "azs_usage"
}

resource "aws_db_subnet_group" "this" {
  count      = local.create_rds ? 1 : 0
  name       = "azs-usage"
  subnet_ids = aws_subnet.private[*].id

  lifecycle {
    precondition {
      condition     = var.create_vpc && var.rds_ca_bundle_path != null
      error_message = "create_rds_sql_server and create_rds_postgres need create_vpc = true and rds_ca_bundle_path (the RDS CA bundle of the region)."
    }
    precondition {
      condition     = !(var.create_rds_sql_server && var.create_rds_postgres)
      error_message = "Choose one database: create_rds_sql_server or create_rds_postgres."
    }
  }
}

resource "aws_security_group" "database" {
  count       = local.create_rds ? 1 : 0
  name        = "azs-usage-database"
  description = "azs-usage billing database: its port from the functions only"
  vpc_id      = aws_vpc.this[0].id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_functions" {
  count                        = local.create_rds ? 1 : 0
  security_group_id            = aws_security_group.database[0].id
  description                  = "The billing database from the azs-usage functions"
  ip_protocol                  = "tcp"
  from_port                    = local.database_port
  to_port                      = local.database_port
  referenced_security_group_id = module.azs_usage.functions_security_group_id
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_157:SQL Server Express has no Multi-AZ; usage can be re-collected from the stamps. Use sqlserver-se with multi_az for production.
  #checkov:skip=CKV_AWS_118:Enhanced monitoring needs an extra role; CloudWatch's standard RDS metrics apply.
  #checkov:skip=CKV_AWS_161:RDS for SQL Server does not support IAM database authentication.
  #checkov:skip=CKV_AWS_353:Performance Insights is not available for SQL Server Express.
  #checkov:skip=CKV_AWS_354:Performance Insights is not enabled (see CKV_AWS_353).
  count                               = var.create_rds_sql_server ? 1 : 0
  identifier                          = "azs-usage"
  engine                              = "sqlserver-ex"
  instance_class                      = "db.t3.small"
  allocated_storage                   = 20
  storage_encrypted                   = true
  kms_key_id                          = module.azs_usage.kms_key_arn
  username                            = "azsadmin"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = module.azs_usage.kms_key_arn
  db_subnet_group_name                = aws_db_subnet_group.this[0].name
  vpc_security_group_ids              = [aws_security_group.database[0].id]
  publicly_accessible                 = false
  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  auto_minor_version_upgrade          = true
  enabled_cloudwatch_logs_exports     = ["error", "agent"]
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "azs-usage-final"
  iam_database_authentication_enabled = false
}

# ---------------------------------------------------------------------------------------------------------
# RDS for PostgreSQL (create_rds_postgres): IAM database authentication, TLS required, reachable only from
# the functions' security group. The master password is managed by RDS in Secrets Manager; the app never
# uses it (it logs in as postgres_app_user with IAM tokens; output postgres_app_user_statements).
# ---------------------------------------------------------------------------------------------------------

resource "aws_db_parameter_group" "postgres" {
  count  = var.create_rds_postgres ? 1 : 0
  name   = "azs-usage-postgres17"
  family = "postgres17"

  # Refuse unencrypted connections (the app always asks verify-full); log connections for the audit trail.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
}

resource "aws_db_instance" "postgres" {
  #checkov:skip=CKV_AWS_157:Single-AZ keeps the example cheap; usage can be re-collected from the stamps. Set multi_az = true for production.
  #checkov:skip=CKV_AWS_118:Enhanced monitoring needs an extra role; CloudWatch's standard RDS metrics apply.
  #checkov:skip=CKV_AWS_353:Performance Insights is not offered on db.t4g.micro/small; enable it with a larger instance class.
  #checkov:skip=CKV_AWS_354:Performance Insights is not enabled (see CKV_AWS_353).
  count                               = var.create_rds_postgres ? 1 : 0
  identifier                          = "azs-usage-postgres"
  engine                              = "postgres"
  engine_version                      = "17"
  instance_class                      = "db.t4g.small"
  allocated_storage                   = 20
  storage_type                        = "gp3"
  storage_encrypted                   = true
  kms_key_id                          = module.azs_usage.kms_key_arn
  db_name                             = local.postgres_database
  username                            = "azsadmin"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = module.azs_usage.kms_key_arn
  iam_database_authentication_enabled = true
  parameter_group_name                = aws_db_parameter_group.postgres[0].name
  db_subnet_group_name                = aws_db_subnet_group.this[0].name
  vpc_security_group_ids              = [aws_security_group.database[0].id]
  publicly_accessible                 = false
  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  auto_minor_version_upgrade          = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "azs-usage-postgres-final"
}

output "webhook_url" {
  description = "Function URL of register-stamp (SigV4, service `lambda`)."
  value       = module.azs_usage.webhook_url
}

output "webhook_caller_policy_arn" {
  description = "Attach to the IAM users/roles that register stamps."
  value       = module.azs_usage.webhook_caller_policy_arn
}

output "database_secret_name" {
  description = "Secret to put the database connection string into."
  value       = module.azs_usage.database_secret_name
}

output "dead_letter_queue_url" {
  description = "Dead-letter queue of failed collection runs."
  value       = module.azs_usage.dead_letter_queue_url
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms."
  value       = module.azs_usage.alarm_topic_arn
}

output "egress_ip" {
  description = "Public IP the functions use towards stamps and the internet (create_vpc); allow it in the stamps' firewalls."
  value       = var.create_vpc ? aws_eip.nat[0].public_ip : null
}

output "rds_endpoint" {
  description = "Host name of the RDS SQL Server (create_rds_sql_server)."
  value       = var.create_rds_sql_server ? aws_db_instance.this[0].address : null
}

output "rds_master_secret_arn" {
  description = "Secret RDS manages with the master password (create_rds_sql_server or create_rds_postgres)."
  value = (
    var.create_rds_sql_server ? aws_db_instance.this[0].master_user_secret[0].secret_arn
    : var.create_rds_postgres ? aws_db_instance.postgres[0].master_user_secret[0].secret_arn : null
  )
}

output "postgres_endpoint" {
  description = "Host name of the RDS PostgreSQL instance (create_rds_postgres)."
  value       = var.create_rds_postgres ? aws_db_instance.postgres[0].address : null
}

output "postgres_app_user_statements" {
  description = "SQL to run once as the master user (create_rds_postgres): the app's IAM-authenticated login and its rights; the app creates and migrates its tables."
  value = var.create_rds_postgres ? join("\n", [
    "CREATE USER ${local.postgres_app_user};",
    "GRANT rds_iam TO ${local.postgres_app_user};",
    "GRANT CONNECT, TEMPORARY ON DATABASE ${local.postgres_database} TO ${local.postgres_app_user};",
    "GRANT USAGE, CREATE ON SCHEMA public TO ${local.postgres_app_user};",
  ]) : null
}
