# No output carries a secret value: the database secret is exported by name/ARN only.

output "collect_usage_function_name" {
  description = "Name of the collect-usage Lambda function."
  value       = aws_lambda_function.collect_usage.function_name
}

output "collect_usage_function_arn" {
  description = "ARN of the collect-usage Lambda function."
  value       = aws_lambda_function.collect_usage.arn
}

output "register_stamp_function_name" {
  description = "Name of the register-stamp Lambda function."
  value       = aws_lambda_function.register_stamp.function_name
}

output "register_stamp_function_arn" {
  description = "ARN of the register-stamp Lambda function (grant callers lambda:InvokeFunctionUrl on it)."
  value       = aws_lambda_function.register_stamp.arn
}

output "webhook_url" {
  description = "Function URL of register-stamp (AWS_IAM: sign requests with SigV4, service `lambda`). Ends with `/`."
  value       = aws_lambda_function_url.register_stamp.function_url
}

output "http_api_endpoint" {
  description = "Endpoint of the optional HTTP API (null unless create_http_api); sign with service `execute-api`."
  value       = var.create_http_api ? aws_apigatewayv2_api.webhook[0].api_endpoint : null
}

output "database_secret_arn" {
  description = "ARN of the (initially empty) database connection secret; put the connection string into it."
  value       = aws_secretsmanager_secret.database.arn
}

output "database_secret_name" {
  description = "Name of the database connection secret."
  value       = aws_secretsmanager_secret.database.name
}

output "secret_prefix" {
  description = "Prefix of the stamp credential secrets."
  value       = var.secret_prefix
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue of failed or undeliverable collection runs."
  value       = aws_sqs_queue.dead_letter.url
}

output "kms_key_arn" {
  description = "ARN of the module's KMS key."
  value       = aws_kms_key.this.arn
}

output "schedule_arn" {
  description = "ARN of the EventBridge Scheduler schedule."
  value       = aws_scheduler_schedule.collect_usage.arn
}

output "webhook_caller_policy_arn" {
  description = "IAM policy to attach to callers in this account: lambda:InvokeFunctionUrl and lambda:InvokeFunction on register-stamp (both are required for Function URLs)."
  value       = aws_iam_policy.webhook_caller.arn
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify (the module's own unless alarm_topic_arn was given); subscribe the on-call to it."
  value       = local.alarm_topic_arn
}

output "alarm_names" {
  description = "CloudWatch alarms: stamp lag, failed runs, collector not running, dead letters (and stamp-work dead letters with fan_out_queue)."
  value       = [for alarm in aws_cloudwatch_metric_alarm.this : alarm.alarm_name]
}

output "functions_security_group_id" {
  description = "Security group the module created for the functions in VPC mode (null otherwise); allow it on the database's port (database_port)."
  value       = local.create_security_group ? aws_security_group.functions[0].id : null
}

output "collector_role_arn" {
  description = "Execution role of collect-usage (reads stamp credentials and the database secret)."
  value       = aws_iam_role.collector.arn
}

output "webhook_role_arn" {
  description = "Execution role of register-stamp (writes stamp credentials under the prefix, reads the database and token secrets)."
  value       = aws_iam_role.webhook.arn
}
