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
