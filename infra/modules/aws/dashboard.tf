# One CloudWatch dashboard (`<name>`) for the operator: per stamp, how far behind it is, the rows it
# committed per hour, failed runs, drift and dead letters. It reads only what the functions emit:
#   the EMF metrics of shared/app/src/metrics.rs (namespace AzsUsage, dimension Stamp: WatermarkLagSeconds,
#     StampFailed, DriftRows), one object per stamp and run;
#   the collector's JSON log line "stamp done" (shared/core/src/collect.rs: fields outcome, windows, rows,
#     in the span `stamp` with stamp_name), written by collect-usage and, with fan_out_queue, stamp-worker
#     to the same log group;
#   AWS/Lambda and AWS/SQS metrics of the module's own function and queues.
# tests/infra-check (dashboards.rs) ties every AzsUsage name here to metrics.rs.

locals {
  # SEARCH gives one line per stamp without knowing the stamps; the period is the collection's hour.
  stamp_metric = "SEARCH('{AzsUsage,Stamp} MetricName=\"%s\"', '%s', %d)"

  dashboard_dead_letter_queues = concat(
    [aws_sqs_queue.dead_letter.name],
    aws_sqs_queue.stamp_work_dead_letter[*].name, # queue.tf
  )

  dashboard_widgets = [
    {
      type = "metric", x = 0, y = 0, width = 12, height = 6
      properties = {
        title   = "Lag per stamp (seconds behind now; alarm above ${var.stamp_lag_threshold_seconds})"
        region  = local.region
        view    = "timeSeries"
        metrics = [[{ expression = format(local.stamp_metric, "WatermarkLagSeconds", "Maximum", 3600), id = "lag", label = "" }]]
        annotations = {
          horizontal = [{ label = "stamp-lag alarm", value = var.stamp_lag_threshold_seconds }]
        }
        yAxis = { left = { min = 0 } }
      }
    },
    {
      type = "log", x = 12, y = 0, width = 12, height = 6
      properties = {
        title  = "Rows committed per hour, per stamp (\"stamp done\" log lines)"
        region = local.region
        view   = "table"
        query  = "SOURCE '${aws_cloudwatch_log_group.collector.name}' | filter message = \"stamp done\" | stats sum(rows) as rows by bin(1h) as hour, span.stamp_name as stamp | sort hour desc"
      }
    },
    {
      type = "metric", x = 0, y = 6, width = 12, height = 6
      properties = {
        title  = "Failed stamp runs per hour, and failed collect-usage invocations"
        region = local.region
        view   = "timeSeries"
        stat   = "Sum"
        period = 3600
        metrics = [
          [{ expression = format(local.stamp_metric, "StampFailed", "Sum", 3600), id = "failed", label = "" }],
          ["AWS/Lambda", "Errors", "FunctionName", aws_lambda_function.collect_usage.function_name, { label = "collect-usage errors" }],
        ]
        yAxis = { left = { min = 0 } }
      }
    },
    {
      type = "metric", x = 12, y = 6, width = 12, height = 6
      properties = {
        title   = "Drift per stamp (rows differing at the daily verify)"
        region  = local.region
        view    = "timeSeries"
        metrics = [[{ expression = format(local.stamp_metric, "DriftRows", "Maximum", 86400), id = "drift", label = "" }]]
        yAxis   = { left = { min = 0 } }
      }
    },
    {
      type = "metric", x = 0, y = 12, width = 24, height = 6
      properties = {
        title   = "Dead letters (runs that failed every retry; with fan_out_queue, stamps that failed every attempt)"
        region  = local.region
        view    = "timeSeries"
        stat    = "Maximum"
        period  = 300
        metrics = [for queue in local.dashboard_dead_letter_queues : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue]]
        yAxis   = { left = { min = 0 } }
      }
    },
  ]
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the installation (lag, rows per hour, failures, drift, dead letters per stamp)."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}
