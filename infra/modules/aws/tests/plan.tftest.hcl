# Plan logic of the module without AWS credentials: `terraform test` with a mocked provider (run by
# scripts/infra-check.sh). Computed attributes get fake values; these runs check what the module decides:
# defaults that deploy on a new account, names, IAM statements, preconditions and the alarm wiring.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_region" {
    defaults = { id = "eu-west-1", name = "eu-west-1" }
  }
  mock_data "aws_subnet" {
    defaults = { vpc_id = "vpc-0123456789abcdef0" }
  }
  # The real provider renders the documents; the mock only needs valid JSON (roles validate it).
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  # ARNs the provider validates when another resource takes them.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000" }
  }
  mock_resource "aws_sqs_queue" {
    defaults = { arn = "arn:aws:sqs:eu-west-1:123456789012:mock-dlq" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:eu-west-1:123456789012:mock-alarms" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mock-AbCdEf" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mock" }
  }
  mock_resource "aws_lambda_function" {
    defaults = {
      arn        = "arn:aws:lambda:eu-west-1:123456789012:function:mock"
      invoke_arn = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:123456789012:function:mock/invocations"
    }
  }
  mock_resource "aws_iam_policy" {
    defaults = { arn = "arn:aws:iam::123456789012:policy/mock" }
  }
  mock_data "aws_vpc" {
    defaults = { id = "vpc-0123456789abcdef0", cidr_block = "10.20.0.0/16" }
  }
}

# Every run below gets these (allowed_stamp_hosts is required); a run's own variables block adds to them.
variables {
  collect_usage_zip_path  = "tests/empty.zip"
  register_stamp_zip_path = "tests/empty.zip"
  allowed_stamp_hosts     = "*.azurestack.contoso.com, 10.20.0.0/16"
}

run "defaults_deploy_on_a_new_account" {
  command = apply

  # The architecture scripts/package.sh builds and CI tests.
  assert {
    condition     = aws_lambda_function.collect_usage.architectures == tolist(["x86_64"]) && aws_lambda_function.register_stamp.architectures == tolist(["x86_64"])
    error_message = "the default architecture must be x86_64"
  }
  # A new account's concurrency quota of 10 leaves nothing to reserve: no reservation by default.
  assert {
    condition     = aws_lambda_function.collect_usage.reserved_concurrent_executions == -1 && aws_lambda_function.register_stamp.reserved_concurrent_executions == -1
    error_message = "no reserved concurrency by default"
  }
  # Lambda's maximum event age is 21600 s.
  assert {
    condition     = aws_lambda_function_event_invoke_config.collect_usage.maximum_event_age_in_seconds <= 21600 && aws_lambda_function_event_invoke_config.collect_usage.maximum_retry_attempts == 2
    error_message = "event age within Lambda's limit, two retries"
  }
  assert {
    condition     = aws_lambda_function.collect_usage.function_name == "azs-usage-collect-usage" && aws_lambda_function.register_stamp.function_name == "azs-usage-register-stamp"
    error_message = "function names follow var.name"
  }
  # Stamp credentials are created under the module's key.
  assert {
    condition     = aws_lambda_function.register_stamp.environment[0].variables["AZS_USAGE_SECRET_KMS_KEY"] == aws_kms_key.this.arn && aws_lambda_function.collect_usage.environment[0].variables["AZS_USAGE_SECRET_KMS_KEY"] == aws_kms_key.this.arn
    error_message = "AZS_USAGE_SECRET_KMS_KEY must be the module's key"
  }
  assert {
    condition     = !contains(keys(aws_lambda_function.collect_usage.environment[0].variables), "AZS_USAGE_API_TOKEN_SECRET") && !contains(keys(aws_lambda_function.collect_usage.environment[0].variables), "AZS_USAGE_DATABASE_CA")
    error_message = "optional settings stay unset by default"
  }
  assert {
    condition     = length(aws_lambda_function.collect_usage.vpc_config) == 0 && length(aws_security_group.functions) == 0
    error_message = "no VPC unless subnets are given"
  }
}

# The SSRF guard reaches every function that calls stamps: the collector, the webhook and (queue.tf) the
# stamp worker, verbatim.
run "allowed_stamp_hosts_reach_every_function" {
  command = apply
  variables {
    allowed_stamp_hosts = "adminmanagement.east.contoso.com, *.azurestack.contoso.com, 10.20.0.0/16"
    fan_out_queue       = true
  }

  assert {
    condition     = aws_lambda_function.collect_usage.environment[0].variables["AZS_USAGE_ALLOWED_STAMP_HOSTS"] == "adminmanagement.east.contoso.com, *.azurestack.contoso.com, 10.20.0.0/16"
    error_message = "the collector must get AZS_USAGE_ALLOWED_STAMP_HOSTS"
  }
  assert {
    condition     = aws_lambda_function.register_stamp.environment[0].variables["AZS_USAGE_ALLOWED_STAMP_HOSTS"] == "adminmanagement.east.contoso.com, *.azurestack.contoso.com, 10.20.0.0/16"
    error_message = "the webhook must get AZS_USAGE_ALLOWED_STAMP_HOSTS"
  }
  assert {
    condition     = aws_lambda_function.stamp_worker[0].environment[0].variables["AZS_USAGE_ALLOWED_STAMP_HOSTS"] == "adminmanagement.east.contoso.com, *.azurestack.contoso.com, 10.20.0.0/16"
    error_message = "the stamp worker must get AZS_USAGE_ALLOWED_STAMP_HOSTS"
  }
}

# "*" is a deliberate opt-out and passes through unchanged (the app still refuses special addresses).
run "allowed_stamp_hosts_star_is_passed_through" {
  command = plan
  variables {
    allowed_stamp_hosts = "*"
  }

  assert {
    condition     = aws_lambda_function.register_stamp.environment[0].variables["AZS_USAGE_ALLOWED_STAMP_HOSTS"] == "*"
    error_message = "\"*\" reaches the webhook as is"
  }
}

# Unset or empty, the app would call any https host: the module refuses an empty list.
run "empty_allowed_stamp_hosts_is_refused" {
  command = plan
  variables {
    allowed_stamp_hosts = ""
  }
  expect_failures = [var.allowed_stamp_hosts]
}

run "blank_allowed_stamp_hosts_is_refused" {
  command = plan
  variables {
    allowed_stamp_hosts = "  , , "
  }
  expect_failures = [var.allowed_stamp_hosts]
}

run "alarms_notify_the_module_topic" {
  command = apply

  assert {
    condition     = length(aws_sns_topic.alarms) == 1 && aws_sns_topic.alarms[0].kms_master_key_id == aws_kms_key.this.arn
    error_message = "without alarm_topic_arn the module creates an encrypted topic"
  }
  assert {
    condition = length(aws_cloudwatch_metric_alarm.this) == 5 && alltrue([for a in values(aws_cloudwatch_metric_alarm.this) :
    a.alarm_actions == toset([aws_sns_topic.alarms[0].arn]) && a.ok_actions == toset([aws_sns_topic.alarms[0].arn])])
    error_message = "every alarm notifies the topic on ALARM and OK"
  }
  # The metric the collector publishes (shared/app/src/metrics.rs: NAMESPACE, WATERMARK_LAG), as the
  # maximum over all stamps (the EMF dimension set without dimensions).
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["stamp-lag"].namespace == "AzsUsage" && aws_cloudwatch_metric_alarm.this["stamp-lag"].metric_name == "WatermarkLagSeconds" && aws_cloudwatch_metric_alarm.this["stamp-lag"].statistic == "Maximum" && length(coalesce(aws_cloudwatch_metric_alarm.this["stamp-lag"].dimensions, {})) == 0
    error_message = "the lag alarm watches AzsUsage/WatermarkLagSeconds, Maximum, no dimensions"
  }
  # The drift the scheduled verify publishes (shared/app/src/metrics.rs: DRIFT_ROWS): any row differing.
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["stamp-drift"].namespace == "AzsUsage" && aws_cloudwatch_metric_alarm.this["stamp-drift"].metric_name == "DriftRows" && aws_cloudwatch_metric_alarm.this["stamp-drift"].statistic == "Maximum" && aws_cloudwatch_metric_alarm.this["stamp-drift"].threshold == 0 && aws_cloudwatch_metric_alarm.this["stamp-drift"].comparison_operator == "GreaterThanThreshold" && aws_cloudwatch_metric_alarm.this["stamp-drift"].treat_missing_data == "notBreaching"
    error_message = "the drift alarm fires on any AzsUsage/DriftRows above 0 and treats the days between verifies as no news"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["stamp-lag"].threshold == 10800 && aws_cloudwatch_metric_alarm.this["stamp-lag"].comparison_operator == "GreaterThanThreshold"
    error_message = "the lag threshold defaults to 3 h"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["collect-usage-failed"].dimensions["FunctionName"] == "azs-usage-collect-usage" && aws_cloudwatch_metric_alarm.this["collect-usage-failed"].metric_name == "Errors"
    error_message = "failed invocations of collect-usage"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["dead-letters"].dimensions["QueueName"] == aws_sqs_queue.dead_letter.name && aws_cloudwatch_metric_alarm.this["dead-letters"].threshold == 1
    error_message = "dead-letter depth of the module's queue"
  }
  # A-3: no page from apply until the first run, a page when runs stop (OK -> INSUFFICIENT_DATA).
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["collect-usage-not-running"].treat_missing_data == "missing" && aws_cloudwatch_metric_alarm.this["collect-usage-not-running"].insufficient_data_actions == toset([aws_sns_topic.alarms[0].arn])
    error_message = "a collector that stops running must page through INSUFFICIENT_DATA, and missing data before the first run must not breach"
  }
  assert {
    condition     = alltrue([for k, a in aws_cloudwatch_metric_alarm.this : k == "collect-usage-not-running" || (length(a.insufficient_data_actions) == 0 && a.treat_missing_data != "breaching")])
    error_message = "no other alarm pages on missing data"
  }
}

# The operator's dashboard: lag, rows per hour, failures, drift and dead letters (names tied to
# shared/app/src/metrics.rs by tests/infra-check dashboards.rs).
run "the_dashboard_shows_every_stamp_figure" {
  command = apply

  assert {
    condition     = aws_cloudwatch_dashboard.this.dashboard_name == "azs-usage" && length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets) == 5
    error_message = "one dashboard with five widgets"
  }
  assert {
    condition     = strcontains(aws_cloudwatch_dashboard.this.dashboard_body, "SEARCH('{AzsUsage,Stamp} MetricName=\\\"WatermarkLagSeconds\\\"', 'Maximum', 3600)")
    error_message = "lag per stamp through SEARCH over the Stamp dimension"
  }
  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets[4].properties.metrics) == 1
    error_message = "without fan-out, one dead-letter queue"
  }
}

run "alarms_notify_a_given_topic" {
  command = apply
  variables {
    alarm_topic_arn             = "arn:aws:sns:eu-west-1:123456789012:oncall"
    stamp_lag_threshold_seconds = 7200
  }

  assert {
    condition     = length(aws_sns_topic.alarms) == 0 && aws_cloudwatch_metric_alarm.this["stamp-lag"].alarm_actions == toset(["arn:aws:sns:eu-west-1:123456789012:oncall"])
    error_message = "a given topic replaces the module's"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["stamp-lag"].threshold == 7200
    error_message = "the threshold variable reaches the alarm"
  }
}

run "least_privilege_per_role" {
  command = apply
  variables {
    api_token_secret_name  = "azs-usage-api-token"
    database_ca_bundle_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
  }
  override_resource {
    target = aws_secretsmanager_secret.database_ca
    values = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:azs-usage-database-ca-XyZ123" }
  }

  # The collector only reads.
  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.collector.statement : alltrue([for a in s.actions : !startswith(a, "secretsmanager:") || a == "secretsmanager:GetSecretValue"])])
    error_message = "the collector must not write secrets"
  }
  assert {
    condition     = !anytrue([for s in data.aws_iam_policy_document.collector.statement : anytrue([for r in s.resources : strcontains(r, "azs-usage-api-token")])])
    error_message = "the collector must not read the API token"
  }
  # The webhook writes only under the prefix.
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.webhook.statement :
    s.resources == toset(["arn:aws:secretsmanager:eu-west-1:123456789012:secret:azs-usage/*"]) if s.sid == "ManageStampCredentials"])
    error_message = "stamp credential writes are limited to secret:<prefix>*"
  }
  # ...and is denied any write to the database, CA and token secrets.
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.webhook.statement :
      s.effect == "Deny" && contains(s.actions, "secretsmanager:PutSecretValue") && contains(s.actions, "secretsmanager:DeleteSecret")
      && contains(s.resources, aws_secretsmanager_secret.database.arn) && contains(s.resources, aws_secretsmanager_secret.database_ca[0].arn)
    && contains(s.resources, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:azs-usage-api-token-??????")])
    error_message = "the webhook must be denied writes to the database, CA and token secrets"
  }
  assert {
    condition     = aws_lambda_function.register_stamp.environment[0].variables["AZS_USAGE_API_TOKEN_SECRET"] == "azs-usage-api-token" && !contains(keys(aws_lambda_function.collect_usage.environment[0].variables), "AZS_USAGE_API_TOKEN_SECRET")
    error_message = "only the webhook gets the API token setting"
  }
  assert {
    condition     = aws_lambda_function.collect_usage.environment[0].variables["AZS_USAGE_DATABASE_CA"] == "secret:azs-usage-database-ca" && aws_secretsmanager_secret_version.database_ca[0].secret_string == "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    error_message = "the CA bundle is a secret both functions read"
  }
}

run "function_url_callers_get_both_permissions" {
  command = apply
  variables {
    webhook_invoker_principals = ["210987654321"]
  }

  assert {
    condition     = aws_lambda_permission.function_url["210987654321"].action == "lambda:InvokeFunctionUrl" && aws_lambda_permission.function_url["210987654321"].function_url_auth_type == "AWS_IAM"
    error_message = "lambda:InvokeFunctionUrl for each principal"
  }
  assert {
    condition     = aws_lambda_permission.function_url_invoke["210987654321"].action == "lambda:InvokeFunction"
    error_message = "lambda:InvokeFunction for each principal (required since October 2025)"
  }
  assert {
    condition     = toset(data.aws_iam_policy_document.webhook_caller.statement[0].actions) == toset(["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"])
    error_message = "the caller policy grants both actions"
  }
  assert {
    condition     = aws_lambda_function_url.register_stamp.authorization_type == "AWS_IAM"
    error_message = "the Function URL requires SigV4"
  }
}

run "vpc_mode_gets_a_security_group_and_endpoints" {
  command = apply
  variables {
    vpc_subnet_ids       = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
    create_vpc_endpoints = true
  }

  assert {
    condition     = length(aws_security_group.functions) == 1 && aws_lambda_function.collect_usage.vpc_config[0].security_group_ids == toset([aws_security_group.functions[0].id])
    error_message = "the functions get the module's security group"
  }
  assert {
    condition     = aws_vpc_security_group_egress_rule.database["vpc"].from_port == 1433 && aws_vpc_security_group_egress_rule.database["vpc"].cidr_ipv4 == "10.20.0.0/16" && aws_vpc_security_group_egress_rule.https["0.0.0.0/0"].from_port == 443
    error_message = "egress: 1433 to the VPC, 443 to the stamps"
  }
  assert {
    condition     = toset(keys(aws_vpc_endpoint.interface)) == toset(["secretsmanager", "xray"]) && aws_vpc_endpoint.interface["secretsmanager"].service_name == "com.amazonaws.eu-west-1.secretsmanager"
    error_message = "interface endpoints for what the functions call"
  }
  assert {
    condition     = length(aws_iam_role_policy_attachment.vpc) == 2
    error_message = "both roles may manage their network interfaces"
  }
}

run "the_database_secret_may_not_live_under_the_stamp_prefix" {
  command = plan
  variables {
    database_secret_name = "azs-usage/database"
  }
  expect_failures = [aws_secretsmanager_secret.database]
}

run "the_api_token_may_not_live_under_the_stamp_prefix" {
  command = plan
  variables {
    api_token_secret_name = "azs-usage/token"
  }
  expect_failures = [aws_secretsmanager_secret.database]
}

run "event_age_beyond_lambdas_maximum_is_refused" {
  command = plan
  variables {
    schedule_max_event_age_seconds = 86400
  }
  expect_failures = [var.schedule_max_event_age_seconds]
}

run "a_ca_bundle_that_is_not_pem_is_refused" {
  command = plan
  variables {
    database_ca_bundle_pem = "not a certificate"
  }
  expect_failures = [var.database_ca_bundle_pem]
}

run "queue_fan_out_wires_a_bounded_stamp_worker" {
  command = apply

  variables {
    fan_out_queue                = true
    stamp_worker_max_concurrency = 16
    continuation_delay_seconds   = 45
  }

  # Both functions read the same queue settings: the timer enqueues, the worker collects.
  assert {
    condition     = aws_lambda_function.collect_usage.environment[0].variables["AZS_USAGE_FAN_OUT"] == "queue" && aws_lambda_function.stamp_worker[0].environment[0].variables["AZS_USAGE_CONTINUATION_DELAY"] == "45s"
    error_message = "queue fan-out settings reach both functions"
  }
  # The estate-wide bound is the mapping's maximum_concurrency; no reserved concurrency (new accounts have none to give).
  assert {
    condition     = aws_lambda_event_source_mapping.stamp_work[0].scaling_config[0].maximum_concurrency == 16 && aws_lambda_event_source_mapping.stamp_work[0].batch_size == 1 && aws_lambda_function.stamp_worker[0].reserved_concurrent_executions == -1
    error_message = "one stamp per invocation, bounded by maximum_concurrency, nothing reserved"
  }
  # A message is not redelivered while its first worker may still run; SQS's redrive comes after our named dead letter.
  assert {
    condition     = aws_sqs_queue.stamp_work[0].visibility_timeout_seconds >= aws_lambda_function.stamp_worker[0].timeout && aws_sqs_queue.stamp_work[0].visibility_timeout_seconds <= aws_lambda_function.stamp_worker[0].timeout + 120 && jsondecode(aws_sqs_queue.stamp_work[0].redrive_policy).maxReceiveCount == var.stamp_work_max_attempts + 1
    error_message = "visibility timeout and redrive follow the worker's timeout and attempts"
  }
  # The dashboard charts both dead-letter queues.
  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets[4].properties.metrics) == 2
    error_message = "the dead-letter widget shows the stamp-work dead-letter queue too"
  }
  # A-2: continuations to its own queue are no runaway loop.
  assert {
    condition     = aws_lambda_function_recursion_config.stamp_worker[0].recursive_loop == "Allow" && aws_lambda_function_recursion_config.stamp_worker[0].function_name == aws_lambda_function.stamp_worker[0].function_name
    error_message = "the stamp worker's self-continuations must not be stopped by recursive-loop detection"
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.this["stamp-work-dead-letters"].alarm_actions == toset([aws_sns_topic.alarms[0].arn])
    error_message = "a dead-lettered stamp notifies the module's alarm topic"
  }
}

# Issue 29: RDS PostgreSQL with IAM authentication: the URL without a password, AZS_USAGE_DATABASE_AUTH =
# aws-iam, and rds-db:connect for exactly that database user on both roles.
run "postgres_with_iam_auth_signs_in_with_the_roles" {
  command = apply
  variables {
    vpc_subnet_ids = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
    database_port  = 5432
    database_iam_auth = {
      url            = "postgres://azs_usage@azs-usage.abc.eu-west-1.rds.amazonaws.com:5432/azs_usage?sslmode=verify-full"
      db_resource_id = "db-ABCDEFGHIJKLMNOP"
    }
  }

  assert {
    condition     = aws_lambda_function.collect_usage.environment[0].variables["AZS_USAGE_DATABASE_AUTH"] == "aws-iam" && aws_lambda_function.register_stamp.environment[0].variables["AZS_USAGE_DATABASE"] == "postgres://azs_usage@azs-usage.abc.eu-west-1.rds.amazonaws.com:5432/azs_usage?sslmode=verify-full"
    error_message = "both functions get the URL and aws-iam"
  }
  assert {
    condition     = toset(keys(aws_iam_role_policy.database_iam)) == toset(["collector", "webhook"])
    error_message = "both roles may connect"
  }
  assert {
    condition     = aws_vpc_security_group_egress_rule.database["vpc"].from_port == 5432
    error_message = "egress to PostgreSQL's port"
  }
}

run "a_postgres_url_with_a_password_is_refused" {
  command = plan
  variables {
    database_iam_auth = {
      url            = "postgres://azs_usage:hunter2@db.example:5432/azs_usage?sslmode=verify-full"
      db_resource_id = "db-ABCDEFGHIJKLMNOP"
    }
  }
  expect_failures = [var.database_iam_auth]
}
