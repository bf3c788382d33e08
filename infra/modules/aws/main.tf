# azs-usage on AWS: two Lambda functions built by cargo-lambda (provided.al2023, handler `bootstrap`):
#   collect-usage   invoked hourly by EventBridge Scheduler with `{}`; fails the run when a stamp failed, so
#                   Lambda's async retries and the dead-letter queue see it (runs are idempotent).
#   register-stamp  the webhook (lambda_http) behind a Function URL with AWS_IAM auth.
# Stamp credentials live in Secrets Manager under var.secret_prefix, encrypted with the module's key; the
# database connection string in one secret whose value Terraform never sees.
# Alarms are in alarms.tf, the VPC security group and endpoints in network.tf.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id

  collector_name = "${var.name}-collect-usage"
  webhook_name   = "${var.name}-register-stamp"

  # Stamp secrets are created by the webhook at run time, so policies match them by name pattern.
  stamp_secrets_arn = "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.secret_prefix}*"

  vpc_enabled = length(var.vpc_subnet_ids) > 0

  # Secrets outside the stamp prefix that a role may read: neither role can write them, and the app
  # never uses them as a stamp credential (issue 12); the preconditions keep them out of the prefix.
  database_ca_secret_arns = aws_secretsmanager_secret.database_ca[*].arn
  api_token_secret_arns   = var.api_token_secret_name == null ? [] : ["arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.api_token_secret_name}-??????"]

  # The database: a connection string the operator puts into the DB secret (SQL Server, or PostgreSQL
  # with a password), or an RDS PostgreSQL URL without a password whose login is an IAM token the app
  # signs with its role (database_iam_auth; the URL's user holds rds_iam).
  database_iam_user = var.database_iam_auth == null ? null : regex("^postgres(?:ql)?://([^:@/]+)@", var.database_iam_auth.url)[0]
  database_environment = var.database_iam_auth == null ? {
    AZS_USAGE_DATABASE = "secret:${aws_secretsmanager_secret.database.name}"
    } : {
    AZS_USAGE_DATABASE      = var.database_iam_auth.url
    AZS_USAGE_DATABASE_AUTH = "aws-iam"
  }

  # The environment both functions read (shared/app/src/config.rs). The Needed::ByFunctions variables
  # are checked by tests/infra-check.
  function_environment = merge(
    local.database_environment,
    {
      AZS_USAGE_SECRETS                = "aws-secrets-manager"
      AZS_USAGE_SECRET_PREFIX          = var.secret_prefix
      AZS_USAGE_CONCURRENCY            = tostring(var.collect_concurrency)
      AZS_USAGE_SETTLE_DELAY           = var.settle_delay
      AZS_USAGE_MAX_SPAN_HOURS         = tostring(var.max_span_hours)
      AZS_USAGE_SUBSCRIBER_CONCURRENCY = tostring(var.subscriber_concurrency)
      AZS_USAGE_LOG                    = var.log_level
      AZS_USAGE_LOG_FORMAT             = "json"
      # The SSRF guard: the hosts a stamp's credential may be sent to (required; "*" is any https host).
      AZS_USAGE_ALLOWED_STAMP_HOSTS = var.allowed_stamp_hosts
      # Stamp credentials the webhook creates are encrypted with the module's key.
      AZS_USAGE_SECRET_KMS_KEY = aws_kms_key.this.arn
    },
    var.time_budget == null ? {} : { AZS_USAGE_TIME_BUDGET = var.time_budget },
    var.database_ca_bundle_pem == null ? {} : { AZS_USAGE_DATABASE_CA = "secret:${aws_secretsmanager_secret.database_ca[0].name}" },
    local.queue_environment, # queue.tf
  )
  # Only the webhook checks the API token; the collector has no reason to read it.
  webhook_environment = merge(
    local.function_environment,
    var.api_token_secret_name == null ? {} : { AZS_USAGE_API_TOKEN_SECRET = var.api_token_secret_name },
  )
}

# ---------------------------------------------------------------------------------------------------------
# Encryption: one customer-managed key for the DB secret, the log groups, the DLQ and the functions'
# environment.
# ---------------------------------------------------------------------------------------------------------

resource "aws_kms_key" "this" {
  description             = "azs-usage (${var.name}): secrets, logs, dead-letter queue, function environment"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days

  # A key policy's Resource "*" means "this key".
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        # CloudWatch alarms publish to the module's SNS topic, which this key encrypts.
        Sid       = "CloudWatchAlarmsPublishToEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsThisModulesLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*${var.name}*"
          }
        }
      },
    ]
  })

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# ---------------------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------------------

# The connection string is put by the operator (`aws secretsmanager put-secret-value`), never by Terraform,
# so it never lands in the state file.
resource "aws_secretsmanager_secret" "database" {
  #checkov:skip=CKV2_AWS_57:The connection string belongs to the database operator, who rotates it with the database; there is no rotation Lambda for a third-party SQL Server.
  name        = var.database_secret_name
  description = "azs-usage database connection string (AZS_USAGE_DATABASE=secret:${var.database_secret_name})"
  kms_key_id  = aws_kms_key.this.arn
  tags        = var.tags

  lifecycle {
    precondition {
      condition     = !startswith(var.database_secret_name, var.secret_prefix)
      error_message = "database_secret_name must not start with secret_prefix: the webhook can overwrite and delete secrets under the prefix."
    }
    precondition {
      condition     = var.api_token_secret_name == null || !startswith(coalesce(var.api_token_secret_name, "-"), var.secret_prefix)
      error_message = "api_token_secret_name must not start with secret_prefix: the webhook can overwrite and delete secrets under the prefix."
    }
  }
}

# The database's CA bundle (public certificates, so Terraform may hold the value), for a SQL Server whose
# certificate does not chain to the system roots, such as RDS.
resource "aws_secretsmanager_secret" "database_ca" {
  #checkov:skip=CKV2_AWS_57:Public CA certificates, replaced by Terraform when the bundle changes; nothing to rotate.
  count       = var.database_ca_bundle_pem == null ? 0 : 1
  name        = "${var.database_secret_name}-ca"
  description = "azs-usage database CA bundle (AZS_USAGE_DATABASE_CA=secret:${var.database_secret_name}-ca)"
  kms_key_id  = aws_kms_key.this.arn
  tags        = var.tags
}

resource "aws_secretsmanager_secret_version" "database_ca" {
  count         = var.database_ca_bundle_pem == null ? 0 : 1
  secret_id     = aws_secretsmanager_secret.database_ca[0].id
  secret_string = var.database_ca_bundle_pem
}

# ---------------------------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "collector" {
  name              = "/aws/lambda/${local.collector_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "webhook" {
  name              = "/aws/lambda/${local.webhook_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

# ---------------------------------------------------------------------------------------------------------
# Dead-letter queue: schedule events Scheduler could not deliver, and runs that failed after Lambda's
# asynchronous retries.
# ---------------------------------------------------------------------------------------------------------

resource "aws_sqs_queue" "dead_letter" {
  name                              = "${var.name}-collect-usage-dlq"
  message_retention_seconds         = var.dead_letter_retention_seconds
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 3600
  tags                              = var.tags
}

# ---------------------------------------------------------------------------------------------------------
# IAM: one role per function, least privilege.
# ---------------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "collector" {
  name               = "${local.collector_name}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

resource "aws_iam_role" "webhook" {
  name               = "${local.webhook_name}-role"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "collector" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.collector.arn}:*"]
  }
  # Reads only: stamp credentials to sign in to the stamps, the connection string (and CA) to reach
  # the database. It writes no secret and never sees the API token.
  statement {
    sid       = "ReadStampCredentialsAndDatabase"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([local.stamp_secrets_arn, aws_secretsmanager_secret.database.arn], local.database_ca_secret_arns)
  }
  statement {
    sid       = "UseModuleKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
  statement {
    sid       = "DeadLetterFailedRuns"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }
}

data "aws_iam_policy_document" "webhook" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.webhook.arn}:*"]
  }
  statement {
    sid = "ManageStampCredentials"
    actions = [
      "secretsmanager:CreateSecret",
      "secretsmanager:PutSecretValue",
      "secretsmanager:GetSecretValue",
      "secretsmanager:DeleteSecret",
      "secretsmanager:DescribeSecret",
      "secretsmanager:TagResource",
    ]
    resources = [local.stamp_secrets_arn]
  }
  # The connection string (and CA) to reach the database, the API token to check callers. These are
  # outside the prefix, so the webhook can read but never overwrite or delete them, and the app never
  # accepts them as a stamp credential.
  statement {
    sid       = "ReadDatabaseAndApiToken"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([aws_secretsmanager_secret.database.arn], local.database_ca_secret_arns, local.api_token_secret_arns)
  }
  # Belt and braces: whatever policies are added later, the webhook cannot change those secrets.
  statement {
    sid    = "NeverWriteDatabaseOrTokenSecrets"
    effect = "Deny"
    actions = [
      "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecret",
      "secretsmanager:DeleteSecret",
      "secretsmanager:RestoreSecret",
      "secretsmanager:PutResourcePolicy",
    ]
    resources = concat([aws_secretsmanager_secret.database.arn], local.database_ca_secret_arns, local.api_token_secret_arns)
  }
  statement {
    sid       = "UseModuleKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "collector" {
  name   = "collect-usage"
  role   = aws_iam_role.collector.id
  policy = data.aws_iam_policy_document.collector.json
}

resource "aws_iam_role_policy" "webhook" {
  name   = "register-stamp"
  role   = aws_iam_role.webhook.id
  policy = data.aws_iam_policy_document.webhook.json
}

# RDS IAM authentication (database_iam_auth): both functions sign in to PostgreSQL as the URL's user with
# a token of their own role, so each role may connect as that one database user only.
data "aws_iam_policy_document" "database_iam" {
  count = var.database_iam_auth == null ? 0 : 1
  statement {
    sid       = "ConnectAsTheAppsDatabaseUser"
    actions   = ["rds-db:connect"]
    resources = ["arn:${local.partition}:rds-db:${local.region}:${local.account_id}:dbuser:${var.database_iam_auth.db_resource_id}/${local.database_iam_user}"]
  }
}

resource "aws_iam_role_policy" "database_iam" {
  for_each = var.database_iam_auth == null ? {} : { collector = aws_iam_role.collector.id, webhook = aws_iam_role.webhook.id }
  name     = "database-iam-auth"
  role     = each.value
  policy   = data.aws_iam_policy_document.database_iam[0].json
}

# X-Ray and VPC networking need Resource "*" by design; AWS's managed policies are the narrowest form.
resource "aws_iam_role_policy_attachment" "xray" {
  for_each   = { collector = aws_iam_role.collector.name, webhook = aws_iam_role.webhook.name }
  role       = each.value
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

resource "aws_iam_role_policy_attachment" "vpc" {
  for_each   = local.vpc_enabled ? { collector = aws_iam_role.collector.name, webhook = aws_iam_role.webhook.name } : {}
  role       = each.value
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

# ---------------------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------------------

resource "aws_lambda_function" "collect_usage" {
  #checkov:skip=CKV_AWS_272:cargo-lambda zips are not signed and no AWS Signer profile exists for this project; the artifact comes from the lead's build.
  function_name                  = local.collector_name
  description                    = "azs-usage: collect Azure Stack Hub usage from every registered stamp"
  role                           = aws_iam_role.collector.arn
  filename                       = var.collect_usage_zip_path
  source_code_hash               = filebase64sha256(var.collect_usage_zip_path)
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  memory_size                    = var.collect_usage_memory_mb
  timeout                        = var.collect_usage_timeout_seconds
  reserved_concurrent_executions = coalesce(var.collect_usage_reserved_concurrency, -1)
  kms_key_arn                    = aws_kms_key.this.arn

  environment {
    variables = local.function_environment
  }

  tracing_config {
    mode = "Active"
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dead_letter.arn
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.collector.name
  }

  dynamic "vpc_config" {
    for_each = local.vpc_enabled ? [1] : []
    content {
      subnet_ids         = var.vpc_subnet_ids
      security_group_ids = local.function_security_group_ids
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(var.vpc_security_group_ids) == 0 || length(var.vpc_subnet_ids) > 0
      error_message = "vpc_security_group_ids needs vpc_subnet_ids (the functions are only in a VPC when subnets are given)."
    }
  }

  depends_on = [aws_iam_role_policy.collector, aws_iam_role_policy_attachment.vpc]
}

# Lambda's own retries of a failed asynchronous run; what still fails lands in the dead-letter queue.
resource "aws_lambda_function_event_invoke_config" "collect_usage" {
  function_name                = aws_lambda_function.collect_usage.function_name
  maximum_retry_attempts       = var.collect_usage_retry_attempts
  maximum_event_age_in_seconds = var.schedule_max_event_age_seconds
}

resource "aws_lambda_function" "register_stamp" {
  #checkov:skip=CKV_AWS_272:cargo-lambda zips are not signed and no AWS Signer profile exists for this project; the artifact comes from the lead's build.
  #checkov:skip=CKV_AWS_116:register-stamp is only invoked synchronously (Function URL / HTTP API); the caller sees the error, a dead-letter queue would never receive anything.
  function_name                  = local.webhook_name
  description                    = "azs-usage: webhook to register stamps and subscription mappings"
  role                           = aws_iam_role.webhook.arn
  filename                       = var.register_stamp_zip_path
  source_code_hash               = filebase64sha256(var.register_stamp_zip_path)
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  memory_size                    = var.register_stamp_memory_mb
  timeout                        = var.register_stamp_timeout_seconds
  reserved_concurrent_executions = coalesce(var.register_stamp_reserved_concurrency, -1)
  kms_key_arn                    = aws_kms_key.this.arn

  environment {
    variables = local.webhook_environment
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.webhook.name
  }

  dynamic "vpc_config" {
    for_each = local.vpc_enabled ? [1] : []
    content {
      subnet_ids         = var.vpc_subnet_ids
      security_group_ids = local.function_security_group_ids
    }
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.webhook, aws_iam_role_policy_attachment.vpc]
}

# ---------------------------------------------------------------------------------------------------------
# Webhook exposure: a Function URL that only SigV4-signed callers can use. Since October 2025 a caller
# of a new Function URL needs BOTH lambda:InvokeFunctionUrl and lambda:InvokeFunction.
# ---------------------------------------------------------------------------------------------------------

resource "aws_lambda_function_url" "register_stamp" {
  function_name      = aws_lambda_function.register_stamp.function_name
  authorization_type = "AWS_IAM"
  invoke_mode        = "BUFFERED"
}

resource "aws_lambda_permission" "function_url" {
  for_each               = toset(var.webhook_invoker_principals)
  statement_id           = "InvokeFunctionUrl-${substr(sha256(each.value), 0, 12)}"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.register_stamp.function_name
  principal              = each.value
  function_url_auth_type = "AWS_IAM"
}

resource "aws_lambda_permission" "function_url_invoke" {
  for_each      = toset(var.webhook_invoker_principals)
  statement_id  = "InvokeFunction-${substr(sha256(each.value), 0, 12)}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.register_stamp.function_name
  principal     = each.value
}

# What a caller in this account attaches to call the webhook: both actions, on this function only.
data "aws_iam_policy_document" "webhook_caller" {
  statement {
    sid       = "CallRegisterStampFunctionUrl"
    actions   = ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]
    resources = [aws_lambda_function.register_stamp.arn]
  }
}

resource "aws_iam_policy" "webhook_caller" {
  name        = "${local.webhook_name}-caller"
  description = "Call the azs-usage webhook (${local.webhook_name}) through its Function URL"
  policy      = data.aws_iam_policy_document.webhook_caller.json
  tags        = var.tags
}

# Optional HTTP API with IAM authorization in front of the same function (same routes).
resource "aws_apigatewayv2_api" "webhook" {
  count         = var.create_http_api ? 1 : 0
  name          = local.webhook_name
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "webhook" {
  count                  = var.create_http_api ? 1 : 0
  api_id                 = aws_apigatewayv2_api.webhook[0].id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.register_stamp.invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "webhook" {
  for_each           = var.create_http_api ? toset(["ANY /stamps", "ANY /stamps/{proxy+}"]) : toset([])
  api_id             = aws_apigatewayv2_api.webhook[0].id
  route_key          = each.value
  authorization_type = "AWS_IAM"
  target             = "integrations/${aws_apigatewayv2_integration.webhook[0].id}"
}

resource "aws_cloudwatch_log_group" "http_api" {
  count             = var.create_http_api ? 1 : 0
  name              = "/aws/apigateway/${local.webhook_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_apigatewayv2_stage" "webhook" {
  count       = var.create_http_api ? 1 : 0
  api_id      = aws_apigatewayv2_api.webhook[0].id
  name        = "$default"
  auto_deploy = true

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.http_api[0].arn
    format = jsonencode({
      requestId = "$context.requestId", ip = "$context.identity.sourceIp", caller = "$context.identity.caller",
      user      = "$context.identity.userArn", routeKey = "$context.routeKey", status = "$context.status",
      latency   = "$context.integrationLatency"
    })
  }

  tags = var.tags
}

resource "aws_lambda_permission" "http_api" {
  count         = var.create_http_api ? 1 : 0
  statement_id  = "InvokeFromHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.register_stamp.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.webhook[0].execution_arn}/*/*"
}

# ---------------------------------------------------------------------------------------------------------
# Schedule: EventBridge Scheduler invokes collect-usage with `{}`.
# ---------------------------------------------------------------------------------------------------------

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-scheduler-role"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeCollector"
    actions   = ["lambda:InvokeFunction"]
    resources = [aws_lambda_function.collect_usage.arn, "${aws_lambda_function.collect_usage.arn}:*"]
  }
  statement {
    sid       = "DeadLetterUndeliveredEvents"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }
  statement {
    sid       = "EncryptDeadLetters"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-collect-usage"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "collect_usage" {
  name                         = local.collector_name
  description                  = "azs-usage: hourly usage collection"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = var.schedule_timezone
  state                        = var.schedule_enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = aws_kms_key.this.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.collect_usage.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode({})

    retry_policy {
      maximum_retry_attempts       = var.schedule_retry_attempts
      maximum_event_age_in_seconds = var.schedule_max_event_age_seconds
    }

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }
  }
}
