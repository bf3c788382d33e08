# Alarms that page someone, all notifying one SNS topic (var.alarm_topic_arn, or the module's own):
#   stamp lag        the collector publishes AzsUsage/WatermarkLagSeconds per stamp after every run
#                    (CloudWatch Embedded Metric Format log lines, shared/app/src/metrics.rs); the alarm
#                    watches the maximum over all stamps (the metric without dimensions).
#   stamp drift      the daily scheduled verify found stored rows that differ from what a stamp reports
#                    (AzsUsage/DriftRows, published only by the run that verified; shared/app/src/metrics.rs).
#   failed runs      collect-usage fails its invocation when a stamp failed (AWS/Lambda Errors).
#   not running      no collect-usage invocation for two hours (schedule disabled, deleted, throttled): the
#                    alarm pages on its way to INSUFFICIENT_DATA (see below), not before the first run.
#   dead letters     anything in the dead-letter queue: a run that failed after every retry.
#   stamp work dead letters (fan_out_queue only, queue.tf) a stamp message that failed every attempt.
#
# Every alarm notifies ALARM and OK to the same topic and differs only in what it watches, so they are
# one resource over a map keyed by the alarm's name suffix (`<name>-<key>`).

locals {
  alarm_topic_arn = coalesce(var.alarm_topic_arn, try(aws_sns_topic.alarms[0].arn, null))

  alarms = merge({
    "stamp-lag" = {
      description = "A stamp's collected usage is more than ${var.stamp_lag_threshold_seconds} s behind now. `azs-usage status` shows which; the collect-usage log says why."
      namespace   = "AzsUsage"
      metric      = "WatermarkLagSeconds"
      # The maximum over all stamps: the metric without dimensions.
      dimensions = null
      statistic  = "Maximum"
      period     = 3600
      periods    = 1
      comparison = "GreaterThanThreshold"
      threshold  = var.stamp_lag_threshold_seconds
      # No data means no stamp was collected in the hour; the not-running alarm covers a silent
      # collector, and an installation without stamps yet must not page.
      missing_data = "notBreaching"
    }
    "stamp-drift" = {
      description = "The daily verify found stored usage rows that differ from what a stamp reports (missing, extra or changed). `azs-usage status` shows which stamp and the counts; `azs-usage verify` over its lastVerified range shows the rows."
      namespace   = "AzsUsage"
      metric      = "DriftRows"
      # The maximum over all stamps: the metric without dimensions.
      dimensions = null
      statistic  = "Maximum"
      period     = 3600
      periods    = 1
      comparison = "GreaterThanThreshold"
      threshold  = 0
      # Published once a day per stamp, by the run that verified: no data is no news.
      missing_data = "notBreaching"
    }
    "collect-usage-failed" = {
      description  = "collect-usage failed (a stamp failed, or the database or secret store was unreachable); Lambda retries it, but someone should look at the log."
      namespace    = "AWS/Lambda"
      metric       = "Errors"
      dimensions   = { FunctionName = aws_lambda_function.collect_usage.function_name }
      statistic    = "Sum"
      period       = 3600
      periods      = 1
      comparison   = "GreaterThanOrEqualToThreshold"
      threshold    = 1
      missing_data = "notBreaching"
    }
    "collect-usage-not-running" = {
      description = "collect-usage was not invoked for two hours: check the EventBridge Scheduler schedule and Lambda throttles."
      namespace   = "AWS/Lambda"
      metric      = "Invocations"
      dimensions  = { FunctionName = aws_lambda_function.collect_usage.function_name }
      statistic   = "Sum"
      period      = 3600
      periods     = 2
      comparison  = "LessThanThreshold"
      threshold   = 1
      # Lambda publishes no zero Invocations: an hour without a run is missing data, not 0. "breaching"
      # paged from apply until the first run (the function has no history), and "notBreaching" alone would
      # never page at all. So: "missing", and this alarm also notifies on INSUFFICIENT_DATA. A new alarm
      # starts there without a transition (no page); after the first run it is OK; two hours without a run
      # move it from OK to INSUFFICIENT_DATA, which pages. A disabled schedule never leaves the start state.
      missing_data      = "missing"
      insufficient_data = true
    }
    "dead-letters" = {
      description  = "A collection run failed after every retry and is in the dead-letter queue (${aws_sqs_queue.dead_letter.name})."
      namespace    = "AWS/SQS"
      metric       = "ApproximateNumberOfMessagesVisible"
      dimensions   = { QueueName = aws_sqs_queue.dead_letter.name }
      statistic    = "Maximum"
      period       = 300
      periods      = 1
      comparison   = "GreaterThanOrEqualToThreshold"
      threshold    = 1
      missing_data = "notBreaching"
    }
  }, local.stamp_work_alarms)
}

resource "aws_sns_topic" "alarms" {
  count             = var.alarm_topic_arn == null ? 1 : 0
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.this.arn
  tags              = var.tags
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each            = local.alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.periods
  comparison_operator = each.value.comparison
  threshold           = each.value.threshold
  treat_missing_data  = each.value.missing_data
  alarm_actions       = [local.alarm_topic_arn]
  ok_actions          = [local.alarm_topic_arn]
  # Only where missing data is the failure (collect-usage-not-running).
  insufficient_data_actions = try(each.value.insufficient_data, false) ? [local.alarm_topic_arn] : []
  tags                      = var.tags
}

# The alarms were separate resources before; these keep an applied installation's alarms in place.
moved {
  from = aws_cloudwatch_metric_alarm.stamp_lag
  to   = aws_cloudwatch_metric_alarm.this["stamp-lag"]
}

moved {
  from = aws_cloudwatch_metric_alarm.collector_errors
  to   = aws_cloudwatch_metric_alarm.this["collect-usage-failed"]
}

moved {
  from = aws_cloudwatch_metric_alarm.collector_not_running
  to   = aws_cloudwatch_metric_alarm.this["collect-usage-not-running"]
}

moved {
  from = aws_cloudwatch_metric_alarm.dead_letters
  to   = aws_cloudwatch_metric_alarm.this["dead-letters"]
}

moved {
  from = aws_cloudwatch_metric_alarm.stamp_work_dead_letters[0]
  to   = aws_cloudwatch_metric_alarm.this["stamp-work-dead-letters"]
}
