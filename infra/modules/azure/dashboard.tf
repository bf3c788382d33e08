# One Azure Monitor workbook (`<name> operations`, on the Application Insights resource) for the operator:
# per stamp, how far behind it is, the rows committed per hour, failed runs, drift and dead letters. It reads
# only what the functions write to `traces` through the invocations' Logs:
#   the metric lines of shared/app/src/metrics.rs, `azs-usage-metric {json}` (stampName,
#     watermarkLagSeconds, failed, driftRows), one per stamp and run, as the alerts do (alerts.tf);
#   the outcome lines of shared/app/src/job.rs (outcome_line: `<stamp> (<id>): <outcome>, c/p windows, N rows
#     (...)`, written by the in-process timer run; a queue worker's line, work_line, carries no row count, so
#     with fan_out_queue the rows chart stays empty) and work_line's `, dead-lettered: <error>`;
#   `requests` of collect-usage.
# tests/infra-check (dashboards.rs) ties these names and shapes to the code that writes them.

locals {
  workbook_queries = {
    lag          = <<-KQL
      ${local.metric_lines}
      | where isnotnull(m.watermarkLagSeconds)
      | summarize hours_behind = max(todouble(m.watermarkLagSeconds)) / 3600.0 by bin(timestamp, 1h), stamp = tostring(m.stampName)
      | render timechart
    KQL
    rows         = <<-KQL
      traces
      | where message has " windows, " and message has " rows ("
      | parse message with stamp " (" stampId "): " outcome ", " committed "/" planned " windows, " rows:long " rows (" *
      | where isnotempty(stamp)
      | summarize rows = sum(rows) by bin(timestamp, 1h), stamp
      | render columnchart
    KQL
    failed       = <<-KQL
      ${local.metric_lines}
      | where toint(m.failed) == 1
      | summarize failed_runs = count() by bin(timestamp, 1h), stamp = tostring(m.stampName)
      | render columnchart
    KQL
    drift        = <<-KQL
      ${local.metric_lines}
      | where isnotnull(m.driftRows)
      | summarize drift_rows = max(todouble(m.driftRows)) by bin(timestamp, 1d), stamp = tostring(m.stampName)
      | render columnchart
    KQL
    dead_letters = <<-KQL
      traces
      | where message has ", dead-lettered: " or message has "message dead-lettered"
      | summarize dead_letters = count() by bin(timestamp, 1h)
      | render columnchart
    KQL
    runs         = <<-KQL
      requests
      | where operation_Name == "collect-usage"
      | summarize runs = count(), failed = countif(success == false) by bin(timestamp, 1h)
      | render timechart
    KQL
  }

  workbook_titles = {
    lag          = "Lag per stamp (hours behind now; alert above ${var.stamp_lag_threshold_seconds / 3600} h)"
    rows         = "Rows committed per hour, per stamp"
    failed       = "Failed stamp runs per hour"
    drift        = "Drift per stamp (rows differing at the daily verify)"
    dead_letters = "Dead letters (stamps that failed every attempt; fan_out_queue)"
    runs         = "collect-usage runs and failures"
  }
}

resource "azurerm_application_insights_workbook" "operations" {
  # A workbook's name is a GUID; derived from the installation's name, so it stays the same across applies.
  name                = uuidv5("url", "https://azs-usage/workbooks/${var.name}")
  resource_group_name = local.resource_group_name
  location            = var.location
  display_name        = "${var.name} operations"
  source_id           = lower(azurerm_application_insights.this.id)
  category            = "workbook"
  tags                = var.tags

  data_json = jsonencode({
    version = "Notebook/1.0"
    items = concat(
      [{
        type    = 1
        content = { json = "## azs-usage: ${var.name}\nPer stamp, from the functions' traces. `azs-usage status` shows the same from the database." }
      }],
      [for key in ["lag", "rows", "failed", "drift", "dead_letters", "runs"] : {
        type = 3
        name = key
        content = {
          version      = "KqlItem/1.0"
          title        = local.workbook_titles[key]
          query        = local.workbook_queries[key]
          size         = 0
          timeContext  = { durationMs = 604800000 } # 7 days
          queryType    = 0                          # Application Insights (Logs)
          resourceType = "microsoft.insights/components"
        }
      }],
    )
    "$schema" = "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json"
  })
}

output "workbook_id" {
  description = "Azure Monitor workbook of the installation (lag, rows per hour, failures, drift, dead letters per stamp)."
  value       = azurerm_application_insights_workbook.operations.id
}
