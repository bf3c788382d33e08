# Alarms that page someone, all notifying one SNS topic (var.alarm_topic_arn, or the module's own):
#   stamp lag        the collector publishes AzsUsage/WatermarkLagSeconds per stamp after every run
#                    (CloudWatch Embedded Metric Format log lines, shared/app/src/metrics.rs); the alarm
#                    watches the maximum over all stamps (the metric without dimensions).
#   failed runs      collect-usage fails its invocation when a stamp failed (AWS/Lambda Errors).
#   not running      no collect-usage invocation for two hours (schedule disabled, deleted, throttled).
#   dead letters     anything in the dead-letter queue: a run that failed after every retry.

locals {
  alarm_topic_arn = coalesce(var.alarm_topic_arn, try(aws_sns_topic.alarms[0].arn, null))
}

resource "aws_sns_topic" "alarms" {
  count             = var.alarm_topic_arn == null ? 1 : 0
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_cloudwatch_metric_alarm" "stamp_lag" {
  alarm_name          = "${var.name}-stamp-lag"
  alarm_description   = "A stamp's collected usage is more than ${var.stamp_lag_threshold_seconds} s behind now. `azs-usage status` shows which; the collect-usage log says why."
  namespace           = "AzsUsage"
  metric_name         = "WatermarkLagSeconds"
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.stamp_lag_threshold_seconds
  # No data means no stamp was collected in the hour; the not-running alarm covers a silent collector,
  # and an installation without stamps yet must not page.
  treat_missing_data = "notBreaching"
  alarm_actions      = [local.alarm_topic_arn]
  ok_actions         = [local.alarm_topic_arn]
  tags               = var.tags
}

resource "aws_cloudwatch_metric_alarm" "collector_errors" {
  alarm_name          = "${var.name}-collect-usage-failed"
  alarm_description   = "collect-usage failed (a stamp failed, or the database or secret store was unreachable); Lambda retries it, but someone should look at the log."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.collect_usage.function_name }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alarm_topic_arn]
  ok_actions          = [local.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "collector_not_running" {
  alarm_name          = "${var.name}-collect-usage-not-running"
  alarm_description   = "collect-usage was not invoked for two hours: check the EventBridge Scheduler schedule and Lambda throttles."
  namespace           = "AWS/Lambda"
  metric_name         = "Invocations"
  dimensions          = { FunctionName = aws_lambda_function.collect_usage.function_name }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 2
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = var.schedule_enabled ? "breaching" : "notBreaching"
  alarm_actions       = [local.alarm_topic_arn]
  ok_actions          = [local.alarm_topic_arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "A collection run failed after every retry and is in the dead-letter queue (${aws_sqs_queue.dead_letter.name})."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letter.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [local.alarm_topic_arn]
  ok_actions          = [local.alarm_topic_arn]
  tags                = var.tags
}
