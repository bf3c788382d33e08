# Alerts that page someone, all through one action group (var.action_group_id, or the module's own):
#   stamp lag        every collect-usage run writes one `azs-usage-metric {json}` line per stamp to its
#                    invocation Logs, which the host sends to Application Insights `traces`
#                    (shared/app/src/metrics.rs); the query parses exactly that shape.
#   stamp failed     the same lines with failed = 1.
#   stamp drift      the same lines' driftRows (only on the run that did the stamp's daily verify) > 0.
#   failed runs      collect-usage answers 500 when a stamp failed: a failed request in `requests`.
#   not running      the last collect-usage request is more than two hours old (timer stopped, app down);
#                    silent until the first run, so a new installation does not page before its first hour.
#   stamp work dead letters (fan_out_queue only, queue.tf) a stamp message that failed every attempt.
#
# The alerts differ only in their query and threshold, so they are one resource over a map keyed by the
# alert's name suffix (`<name>-<key>`). Per-stamp alerts split by the stampName dimension, so one alert
# fires per stamp.

locals {
  action_group_id = coalesce(var.action_group_id, try(azurerm_monitor_action_group.alerts[0].id, null))

  # The metric line: "azs-usage-metric " (17 characters) followed by a JSON object.
  metric_lines = <<-KQL
    traces
    | where message startswith "azs-usage-metric "
    | extend m = parse_json(substring(message, 17))
  KQL

  alerts = merge({
    "stamp-lag" = {
      description = "A stamp's collected usage is more than ${var.stamp_lag_threshold_seconds} s behind now. `azs-usage status` shows which; the collect-usage traces say why."
      severity    = 2
      frequency   = "PT1H"
      window      = "PT2H"
      query       = <<-KQL
        ${local.metric_lines}
        | summarize lag = max(todouble(m.watermarkLagSeconds)) by stampName = tostring(m.stampName)
      KQL
      aggregation = "Maximum"
      measure     = "lag"
      per_stamp   = true
      operator    = "GreaterThan"
      threshold   = var.stamp_lag_threshold_seconds
    }
    "stamp-drift" = {
      description = "The daily verify found stored usage rows that differ from what a stamp reports (missing, extra or changed). `azs-usage status` shows the counts; `azs-usage verify` over its lastVerified range shows the rows."
      severity    = 2
      frequency   = "PT1H"
      window      = "PT1H"
      query       = <<-KQL
        ${local.metric_lines}
        | where isnotnull(m.driftRows)
        | summarize drift = max(todouble(m.driftRows)) by stampName = tostring(m.stampName)
      KQL
      aggregation = "Maximum"
      measure     = "drift"
      per_stamp   = true
      operator    = "GreaterThan"
      threshold   = 0
    }
    "stamp-failed" = {
      description = "A stamp's collection failed (the timer retries it; the next hour retries again)."
      severity    = 2
      frequency   = "PT1H"
      window      = "PT1H"
      query       = <<-KQL
        ${local.metric_lines}
        | where toint(m.failed) == 1
        | summarize failures = count() by stampName = tostring(m.stampName)
      KQL
      aggregation = "Total"
      measure     = "failures"
      per_stamp   = true
      operator    = "GreaterThan"
      threshold   = 0
    }
    "collect-usage-failed" = {
      description = "collect-usage failed (a stamp failed, or the database or Key Vault was unreachable)."
      severity    = 2
      frequency   = "PT1H"
      window      = "PT1H"
      query       = <<-KQL
        requests
        | where operation_Name == "collect-usage" and success == false
      KQL
      aggregation = "Count"
      measure     = null
      per_stamp   = false
      operator    = "GreaterThan"
      threshold   = 0
    }
    "collect-usage-not-running" = {
      description = "collect-usage did not run for two hours: check the Function App, its timer and COLLECT_SCHEDULE."
      severity    = 1
      frequency   = "PT1H"
      # Counting runs in a 2-hour window paged from apply until the first run (no request yet is 0 < 1).
      # Instead: the newest run in two days, when it is older than two hours. With no run at all the
      # max is empty and nothing fires; after two silent days the alert resolves (it has paged by then).
      window      = "P2D"
      query       = <<-KQL
        requests
        | where operation_Name == "collect-usage"
        | summarize last_run = max(timestamp)
        | where last_run < ago(2h)
      KQL
      aggregation = "Count"
      measure     = null
      per_stamp   = false
      operator    = "GreaterThan"
      threshold   = 0
    }
  }, local.stamp_work_alerts)
}

resource "azurerm_monitor_action_group" "alerts" {
  count               = var.action_group_id == null ? 1 : 0
  name                = "${var.name}-alerts"
  resource_group_name = local.resource_group_name
  short_name          = "azsusage"
  tags                = var.tags

  dynamic "email_receiver" {
    for_each = var.alert_emails
    content {
      name                    = "email-${email_receiver.key}"
      email_address           = email_receiver.value
      use_common_alert_schema = true
    }
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "this" {
  for_each             = local.alerts
  name                 = "${var.name}-${each.key}"
  resource_group_name  = local.resource_group_name
  location             = var.location
  description          = each.value.description
  scopes               = [azurerm_application_insights.this.id]
  severity             = each.value.severity
  evaluation_frequency = each.value.frequency
  window_duration      = each.value.window
  tags                 = var.tags

  criteria {
    query                   = each.value.query
    time_aggregation_method = each.value.aggregation
    metric_measure_column   = each.value.measure
    threshold               = each.value.threshold
    operator                = each.value.operator

    dynamic "dimension" {
      for_each = each.value.per_stamp ? ["stampName"] : []
      content {
        name     = dimension.value
        operator = "Include"
        values   = ["*"]
      }
    }

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [local.action_group_id]
  }
}

# The alerts were separate resources before; these keep an applied installation's alerts in place.
moved {
  from = azurerm_monitor_scheduled_query_rules_alert_v2.stamp_lag
  to   = azurerm_monitor_scheduled_query_rules_alert_v2.this["stamp-lag"]
}

moved {
  from = azurerm_monitor_scheduled_query_rules_alert_v2.stamp_failed
  to   = azurerm_monitor_scheduled_query_rules_alert_v2.this["stamp-failed"]
}

moved {
  from = azurerm_monitor_scheduled_query_rules_alert_v2.collector_failed
  to   = azurerm_monitor_scheduled_query_rules_alert_v2.this["collect-usage-failed"]
}

moved {
  from = azurerm_monitor_scheduled_query_rules_alert_v2.collector_not_running
  to   = azurerm_monitor_scheduled_query_rules_alert_v2.this["collect-usage-not-running"]
}

moved {
  from = azurerm_monitor_scheduled_query_rules_alert_v2.stamp_work_dead_letters[0]
  to   = azurerm_monitor_scheduled_query_rules_alert_v2.this["stamp-work-dead-letters"]
}
