# Per-stamp fan-out through SQS (AZS_USAGE_FAN_OUT=queue), off unless var.fan_out_queue:
#   the hourly collect-usage run enqueues one message per enabled stamp and returns;
#   stamp-worker (the same bootstrap) is invoked by an SQS event source mapping, one message per
#   invocation, at most var.stamp_worker_max_concurrency at a time (the estate's global bound: the
#   mapping's maximum_concurrency, which needs no reserved concurrency), collects
#   that stamp within its own timeout and enqueues a delayed continuation while the stamp is behind;
#   a message that failed var.stamp_work_max_attempts times is dead-lettered by the worker with its stamp
#   and error; SQS's redrive (one receive later) catches messages whose workers kept dying.
# The variables live here, not in variables.tf, so that the feature stays in one file.

variable "fan_out_queue" {
  description = "Collect each stamp in its own queue-triggered invocation (SQS) instead of all stamps in the hourly run."
  type        = bool
  default     = false
}

variable "stamp_worker_max_concurrency" {
  description = "Most stamp-worker invocations at once (event source mapping maximum_concurrency, 2-1000): the estate-wide bound on stamps collected in parallel."
  type        = number
  default     = 20

  validation {
    condition     = var.stamp_worker_max_concurrency >= 2 && var.stamp_worker_max_concurrency <= 1000
    error_message = "stamp_worker_max_concurrency must be from 2 to 1000 (SQS event source mapping limits)."
  }
}

variable "stamp_worker_memory_mb" {
  description = "Memory of the stamp-worker function (one stamp's hourly windows in flight)."
  type        = number
  default     = 256
}

variable "stamp_worker_timeout_seconds" {
  description = "Timeout of one stamp-worker invocation; its time budget is this less 60 s."
  type        = number
  default     = 900

  validation {
    condition     = var.stamp_worker_timeout_seconds >= 120 && var.stamp_worker_timeout_seconds <= 900
    error_message = "stamp_worker_timeout_seconds must be from 120 to 900."
  }
}

variable "stamp_work_max_attempts" {
  description = "Deliveries of one stamp message before the worker dead-letters it with its error (AZS_USAGE_MAX_ATTEMPTS)."
  type        = number
  default     = 3

  validation {
    condition     = var.stamp_work_max_attempts >= 1 && var.stamp_work_max_attempts <= 20
    error_message = "stamp_work_max_attempts must be from 1 to 20."
  }
}

variable "continuation_delay_seconds" {
  description = "Delay of a continuation message (a stamp still behind when its invocation's budget ran out), 0-900."
  type        = number
  default     = 30

  validation {
    condition     = var.continuation_delay_seconds >= 0 && var.continuation_delay_seconds <= 900
    error_message = "continuation_delay_seconds must be from 0 to 900 (SQS DelaySeconds)."
  }
}

locals {
  stamp_worker_name = "${var.name}-stamp-worker"

  # Merged into both functions' environment (main.tf): the timer enqueues, the worker collects.
  queue_environment = var.fan_out_queue ? {
    AZS_USAGE_FAN_OUT               = "queue"
    AZS_USAGE_STAMP_QUEUE_URL       = aws_sqs_queue.stamp_work[0].url
    AZS_USAGE_DEAD_LETTER_QUEUE_URL = aws_sqs_queue.stamp_work_dead_letter[0].url
    AZS_USAGE_CONTINUATION_DELAY    = "${var.continuation_delay_seconds}s"
    AZS_USAGE_MAX_ATTEMPTS          = tostring(var.stamp_work_max_attempts)
  } : {}
}

resource "aws_sqs_queue" "stamp_work_dead_letter" {
  count                             = var.fan_out_queue ? 1 : 0
  name                              = "${var.name}-stamp-work-dlq"
  message_retention_seconds         = var.dead_letter_retention_seconds
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 3600
  tags                              = var.tags
}

resource "aws_sqs_queue" "stamp_work" {
  count = var.fan_out_queue ? 1 : 0
  name  = "${var.name}-stamp-work"
  # How long a received message stays hidden, i.e. how soon a failed or killed worker's stamp is tried
  # again. SQS requires at least the function timeout for a Lambda trigger (a message must not return
  # while its worker still runs). AWS recommends six times the timeout to leave room for the event source
  # mapping's own retries when batches are throttled; with batch_size 1, no batching window and
  # maximum_concurrency below the account's limit that room is not needed, and 6 x 900 s made a failed
  # stamp wait 90 minutes for its next attempt. The worker's timeout plus a minute covers its shutdown and
  # the mapping's poll; a duplicate delivery is harmless anyway (the stamp's lease and fenced commits).
  visibility_timeout_seconds        = var.stamp_worker_timeout_seconds + 60
  message_retention_seconds         = 86400
  kms_master_key_id                 = aws_kms_key.this.arn
  kms_data_key_reuse_period_seconds = 3600
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.stamp_work_dead_letter[0].arn
    maxReceiveCount     = var.stamp_work_max_attempts + 1
  })
  tags = var.tags
}

data "aws_iam_policy_document" "stamp_queue" {
  count = var.fan_out_queue ? 1 : 0
  statement {
    sid       = "SendStampWork"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.stamp_work[0].arn, aws_sqs_queue.stamp_work_dead_letter[0].arn]
  }
  statement {
    sid       = "ConsumeStampWork"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.stamp_work[0].arn]
  }
}

# Both functions run as the collector role: the timer sends, the worker consumes and sends.
resource "aws_iam_role_policy" "stamp_queue" {
  count  = var.fan_out_queue ? 1 : 0
  name   = "stamp-queue"
  role   = aws_iam_role.collector.id
  policy = data.aws_iam_policy_document.stamp_queue[0].json
}

resource "aws_lambda_function" "stamp_worker" {
  #checkov:skip=CKV_AWS_272:cargo-lambda zips are not signed and no AWS Signer profile exists for this project; the artifact comes from the lead's build.
  #checkov:skip=CKV_AWS_116:an SQS-triggered function's failures go to the source queue's redrive dead-letter queue, not an async DLQ.
  count            = var.fan_out_queue ? 1 : 0
  function_name    = local.stamp_worker_name
  description      = "azs-usage: collect one stamp per SQS message (queue fan-out)"
  role             = aws_iam_role.collector.arn
  filename         = var.collect_usage_zip_path
  source_code_hash = filebase64sha256(var.collect_usage_zip_path)
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = [var.architecture]
  memory_size      = var.stamp_worker_memory_mb
  timeout          = var.stamp_worker_timeout_seconds
  # Nothing reserved (a new account's quota of 10 has none to give): the mapping's maximum_concurrency bounds it.
  reserved_concurrent_executions = -1
  kms_key_arn                    = aws_kms_key.this.arn

  environment {
    variables = local.function_environment
  }

  tracing_config {
    mode = "Active"
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

  depends_on = [aws_iam_role_policy.collector, aws_iam_role_policy.stamp_queue, aws_iam_role_policy_attachment.vpc]
}

# A continuation the worker sends to its own queue carries the invocation's trace header, so Lambda's
# recursive-loop detection would stop the chain after about 16 hops and drop (dead-letter) a stamp that
# needs more. The loop is intended and bounded: a stamp is continued only while it is behind.
resource "aws_lambda_function_recursion_config" "stamp_worker" {
  count          = var.fan_out_queue ? 1 : 0
  function_name  = aws_lambda_function.stamp_worker[0].function_name
  recursive_loop = "Allow"
}

resource "aws_lambda_event_source_mapping" "stamp_work" {
  count            = var.fan_out_queue ? 1 : 0
  event_source_arn = aws_sqs_queue.stamp_work[0].arn
  function_name    = aws_lambda_function.stamp_worker[0].arn
  # One stamp per invocation: each gets the whole timeout as its budget.
  batch_size              = 1
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.stamp_worker_max_concurrency
  }
}

# The dead-letter alarm joins the module's alarms (alarms.tf) when the queue exists.
locals {
  stamp_work_alarms = var.fan_out_queue ? {
    "stamp-work-dead-letters" = {
      description  = "A stamp message was dead-lettered: its body names the stamp and the error; the stamp's status shows it."
      namespace    = "AWS/SQS"
      metric       = "ApproximateNumberOfMessagesVisible"
      dimensions   = { QueueName = aws_sqs_queue.stamp_work_dead_letter[0].name }
      statistic    = "Maximum"
      period       = 300
      periods      = 1
      comparison   = "GreaterThanThreshold"
      threshold    = 0
      missing_data = "notBreaching"
    }
  } : {}
}

output "stamp_work_queue_url" {
  description = "The SQS queue of per-stamp work (null unless fan_out_queue)."
  value       = var.fan_out_queue ? aws_sqs_queue.stamp_work[0].url : null
}

output "stamp_work_dead_letter_queue_url" {
  description = "The dead-letter queue of stamp work (null unless fan_out_queue)."
  value       = var.fan_out_queue ? aws_sqs_queue.stamp_work_dead_letter[0].url : null
}
