# Alerts that page someone, all through one action group (var.action_group_id, or the module's own):
#   stamp lag        every collect-usage run writes one `azs-usage-metric {json}` line per stamp to its
#                    invocation Logs, which the host sends to Application Insights `traces`
#                    (shared/app/src/metrics.rs); the query parses exactly that shape.
#   stamp failed     the same lines with failed = 1.
#   failed runs      collect-usage answers 500 when a stamp failed: a failed request in `requests`.
#   not running      no collect-usage request for two hours (timer stopped, app down).

locals {
  action_group_id = coalesce(var.action_group_id, try(azurerm_monitor_action_group.alerts[0].id, null))

  # The metric line: "azs-usage-metric " (17 characters) followed by a JSON object.
  metric_lines = <<-KQL
    traces
    | where message startswith "azs-usage-metric "
    | extend m = parse_json(substring(message, 17))
  KQL
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

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "stamp_lag" {
  name                 = "${var.name}-stamp-lag"
  resource_group_name  = local.resource_group_name
  location             = var.location
  description          = "A stamp's collected usage is more than ${var.stamp_lag_threshold_seconds} s behind now. `azs-usage status` shows which; the collect-usage traces say why."
  scopes               = [azurerm_application_insights.this.id]
  severity             = 2
  evaluation_frequency = "PT1H"
  window_duration      = "PT2H"
  tags                 = var.tags

  criteria {
    query                   = <<-KQL
      ${local.metric_lines}
      | summarize lag = max(todouble(m.watermarkLagSeconds)) by stampName = tostring(m.stampName)
    KQL
    time_aggregation_method = "Maximum"
    metric_measure_column   = "lag"
    threshold               = var.stamp_lag_threshold_seconds
    operator                = "GreaterThan"

    dimension {
      name     = "stampName"
      operator = "Include"
      values   = ["*"]
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

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "stamp_failed" {
  name                 = "${var.name}-stamp-failed"
  resource_group_name  = local.resource_group_name
  location             = var.location
  description          = "A stamp's collection failed (the timer retries it; the next hour retries again)."
  scopes               = [azurerm_application_insights.this.id]
  severity             = 2
  evaluation_frequency = "PT1H"
  window_duration      = "PT1H"
  tags                 = var.tags

  criteria {
    query                   = <<-KQL
      ${local.metric_lines}
      | where toint(m.failed) == 1
      | summarize failures = count() by stampName = tostring(m.stampName)
    KQL
    time_aggregation_method = "Total"
    metric_measure_column   = "failures"
    threshold               = 0
    operator                = "GreaterThan"

    dimension {
      name     = "stampName"
      operator = "Include"
      values   = ["*"]
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

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "collector_failed" {
  name                 = "${var.name}-collect-usage-failed"
  resource_group_name  = local.resource_group_name
  location             = var.location
  description          = "collect-usage failed (a stamp failed, or the database or Key Vault was unreachable)."
  scopes               = [azurerm_application_insights.this.id]
  severity             = 2
  evaluation_frequency = "PT1H"
  window_duration      = "PT1H"
  tags                 = var.tags

  criteria {
    query                   = <<-KQL
      requests
      | where operation_Name == "collect-usage" and success == false
    KQL
    time_aggregation_method = "Count"
    threshold               = 0
    operator                = "GreaterThan"

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [local.action_group_id]
  }
}

resource "azurerm_monitor_scheduled_query_rules_alert_v2" "collector_not_running" {
  name                 = "${var.name}-collect-usage-not-running"
  resource_group_name  = local.resource_group_name
  location             = var.location
  description          = "collect-usage did not run for two hours: check the Function App, its timer and COLLECT_SCHEDULE."
  scopes               = [azurerm_application_insights.this.id]
  severity             = 1
  evaluation_frequency = "PT1H"
  window_duration      = "PT2H"
  tags                 = var.tags

  criteria {
    query                   = <<-KQL
      requests
      | where operation_Name == "collect-usage"
    KQL
    time_aggregation_method = "Count"
    threshold               = 1
    operator                = "LessThan"

    failing_periods {
      minimum_failing_periods_to_trigger_alert = 1
      number_of_evaluation_periods             = 1
    }
  }

  action {
    action_groups = [local.action_group_id]
  }
}
