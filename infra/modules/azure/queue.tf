# Per-stamp fan-out through a Storage Queue (AZS_USAGE_FAN_OUT=queue), off unless var.fan_out_queue.
# The Function App already ships the queue functions (functions/azure/app): the timer's `stampWork`
# output binding writes one message per enabled stamp to `azs-stamp-work`; `stamp-work` (queueTrigger)
# collects one stamp per message, writes a continuation while the stamp is behind, and on the last
# attempt writes a dead letter naming the stamp and the error to `azs-stamp-work-poison` (the queue the
# host itself moves messages to after host.json's maxDequeueCount). Queue names are fixed in function.json.
# Instances are bounded by app_scale_limit on Premium/Dedicated (flex_maximum_instance_count on Flex: the
# estate-wide bound) and host.json `queues.batchSize` (messages per instance). Continuations are not
# delayed: an output binding cannot set a visibility timeout (see functions/azure/src/queue.rs for why
# that is harmless). The variables live here so that the feature stays in one file.
#
# The package always ships stamp-work (one zip for every setting), so its queue and the identity's queue
# role exist whatever fan_out_queue says: without them the listener of every instance fails every few
# seconds (403 or 404 in the logs). An empty queue costs a few polling requests a minute; the timer only
# writes to it with AZS_USAGE_FAN_OUT=queue. (Disabling the function by app setting instead would need
# `AzureWebJobs.stamp-work.Disabled`, a name with a hyphen that Linux app settings do not reliably carry.)

variable "fan_out_queue" {
  description = "Collect each stamp in its own queue-triggered invocation instead of all stamps in the timer run."
  type        = bool
  default     = false
}

variable "stamp_worker_max_instances" {
  description = "Most Function App instances when fan_out_queue (app_scale_limit); each works host.json queues.batchSize (4) stamps at once."
  type        = number
  default     = 5

  validation {
    condition     = var.stamp_worker_max_instances >= 1 && var.stamp_worker_max_instances <= 200
    error_message = "stamp_worker_max_instances must be from 1 to 200."
  }
}

locals {
  # Merged into the app settings (main.tf). host.json's maxDequeueCount (4) is this plus one.
  queue_app_settings = var.fan_out_queue ? {
    AZS_USAGE_FAN_OUT      = "queue"
    AZS_USAGE_MAX_ATTEMPTS = "3"
  } : {}
}

resource "azurerm_storage_queue" "stamp_work" {
  for_each           = toset(["azs-stamp-work", "azs-stamp-work-poison"])
  name               = each.key
  storage_account_id = azurerm_storage_account.host.id
}

# Flex Consumption connects to host storage with the app's identity (AzureWebJobsStorage__accountName):
# the queue trigger and outputs need queue data rights there. Premium and Dedicated use the account key.
resource "azurerm_role_assignment" "app_queues" {
  count                = local.flex_plan ? 1 : 0
  scope                = azurerm_storage_account.host.id
  role_definition_name = "Storage Queue Data Contributor"
  principal_id         = local.principal_id
}

# The dead-letter alert joins the module's alerts (alerts.tf) when the queue exists. Storage queue
# metrics are per account, not per queue, so it reads the worker's own dead-letter log lines;
# a 5-minute window pages soon after.
locals {
  stamp_work_alerts = var.fan_out_queue ? {
    "stamp-work-dead-letters" = {
      description = "A stamp message was dead-lettered (azs-stamp-work-poison): the letter names the stamp and the error; the stamp's status shows it."
      severity    = 2
      frequency   = "PT5M"
      window      = "PT5M"
      # The worker's invocation line (shared/app/src/job.rs work_line: ", dead-lettered: <error>") is in the
      # Logs the host writes to traces; the tracing line "message dead-lettered" is matched too.
      query       = "traces | where message has \", dead-lettered: \" or message has \"message dead-lettered\""
      aggregation = "Count"
      measure     = null
      per_stamp   = false
      operator    = "GreaterThan"
      threshold   = 0
    }
  } : {}
}
