# The example's optional paths must plan, with a mocked provider (run by scripts/infra-check.sh, which puts
# empty zips where the example expects the build: target/lambda/*/bootstrap.zip of the scratch copy).
# `command = plan` on purpose: with mocks, values computed by the provider stay unknown at plan exactly as
# they would against AWS, which is what broke the VPC path (A-1: a for_each over the CIDR of a VPC created
# in the same apply).

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"] }
  }
  mock_data "aws_region" {
    defaults = { id = "eu-west-1", name = "eu-west-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

run "default_plans" {
  command = plan

  assert {
    condition     = length(aws_vpc.this) == 0 && length(aws_db_instance.this) == 0
    error_message = "nothing optional by default"
  }
}

# A-1: the README's VPC + NAT + RDS for SQL Server path.
run "vpc_nat_and_rds_sql_server_plan" {
  command = plan
  variables {
    create_vpc            = true
    create_rds_sql_server = true
    rds_ca_bundle_path    = "tests/rds-ca.pem"
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1 && length(aws_subnet.private) == 2
    error_message = "a NAT gateway and two private subnets"
  }
  assert {
    condition     = aws_db_instance.this[0].engine == "sqlserver-ex" && aws_vpc_security_group_ingress_rule.database_from_functions[0].from_port == 1433
    error_message = "SQL Server reachable on 1433 from the functions"
  }
}

run "vpc_only_plans" {
  command = plan
  variables {
    create_vpc = true
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 1
    error_message = "the NAT gateway gives the functions a fixed egress address"
  }
}

# Issue 29: RDS for PostgreSQL with IAM database authentication next to the SQL Server option.
run "vpc_nat_and_rds_postgres_plan" {
  command = plan
  variables {
    create_vpc          = true
    create_rds_postgres = true
    rds_ca_bundle_path  = "tests/rds-ca.pem"
  }

  assert {
    condition     = aws_db_instance.postgres[0].engine == "postgres" && aws_db_instance.postgres[0].iam_database_authentication_enabled && !aws_db_instance.postgres[0].publicly_accessible
    error_message = "a private PostgreSQL instance with IAM database authentication"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.database_from_functions[0].from_port == 5432 && length(aws_db_instance.this) == 0
    error_message = "PostgreSQL reachable on 5432 from the functions, and no SQL Server"
  }
  assert {
    condition     = one([for p in aws_db_parameter_group.postgres[0].parameter : p.value if p.name == "rds.force_ssl"]) == "1"
    error_message = "the server refuses unencrypted connections"
  }
}

run "both_databases_are_refused" {
  command = plan
  variables {
    create_vpc            = true
    create_rds_postgres   = true
    create_rds_sql_server = true
    rds_ca_bundle_path    = "tests/rds-ca.pem"
  }
  expect_failures = [aws_db_subnet_group.this]
}
