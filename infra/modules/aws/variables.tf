# ---------------------------------------------------------------------------------------------------------
# Naming and artifacts
# ---------------------------------------------------------------------------------------------------------

variable "name" {
  description = "Name prefix of every resource (functions are `<name>-collect-usage` and `<name>-register-stamp`)."
  type        = string
  default     = "azs-usage"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3-40 lower-case letters, digits or '-', starting with a letter."
  }
}

variable "collect_usage_zip_path" {
  description = "Path of the collect-usage Lambda zip built by `scripts/package.sh` (target/lambda/collect-usage/bootstrap.zip)."
  type        = string

  validation {
    condition     = endswith(var.collect_usage_zip_path, ".zip")
    error_message = "collect_usage_zip_path must point to a .zip file."
  }
}

variable "register_stamp_zip_path" {
  description = "Path of the register-stamp Lambda zip (target/lambda/register-stamp/bootstrap.zip)."
  type        = string

  validation {
    condition     = endswith(var.register_stamp_zip_path, ".zip")
    error_message = "register_stamp_zip_path must point to a .zip file."
  }
}

variable "architecture" {
  description = "Lambda architecture; must match how the zips were built: `x86_64` for `scripts/package.sh` (the default, what CI builds and tests), `arm64` for `scripts/package.sh --arm64` (Graviton; needs the aarch64 standard library, not tested here)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.architecture)
    error_message = "architecture must be \"arm64\" or \"x86_64\"."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------------------

variable "collect_usage_memory_mb" {
  description = "Memory of the collect-usage function in MB (CPU scales with it)."
  type        = number
  default     = 256

  validation {
    condition     = var.collect_usage_memory_mb >= 128 && var.collect_usage_memory_mb <= 10240
    error_message = "collect_usage_memory_mb must be between 128 and 10240."
  }
}

variable "collect_usage_timeout_seconds" {
  description = "Timeout of one collection run. The app stops starting windows 60 s before it (AZS_USAGE_TIME_BUDGET=platform)."
  type        = number
  default     = 900

  validation {
    condition     = var.collect_usage_timeout_seconds >= 120 && var.collect_usage_timeout_seconds <= 900
    error_message = "collect_usage_timeout_seconds must be between 120 and 900 (the Lambda maximum)."
  }
}

variable "collect_usage_reserved_concurrency" {
  description = "Reserved concurrency of collect-usage; null (default) reserves none. Overlapping runs are safe without it (each stamp is collected under a lease). 0 pauses collection. Reserving needs spare account concurrency: Lambda keeps 100 unreserved, so accounts at the new-account limit of 10 cannot reserve anything."
  type        = number
  default     = null

  validation {
    condition     = var.collect_usage_reserved_concurrency == null || try(var.collect_usage_reserved_concurrency >= 0 && floor(var.collect_usage_reserved_concurrency) == var.collect_usage_reserved_concurrency, false)
    error_message = "collect_usage_reserved_concurrency must be null or a whole number >= 0."
  }
}

variable "register_stamp_memory_mb" {
  description = "Memory of the register-stamp function in MB."
  type        = number
  default     = 128

  validation {
    condition     = var.register_stamp_memory_mb >= 128 && var.register_stamp_memory_mb <= 10240
    error_message = "register_stamp_memory_mb must be between 128 and 10240."
  }
}

variable "register_stamp_timeout_seconds" {
  description = "Timeout of one webhook request (`/stamps/{id}/test` contacts the stamp, so allow some time)."
  type        = number
  default     = 60

  validation {
    condition     = var.register_stamp_timeout_seconds >= 3 && var.register_stamp_timeout_seconds <= 900
    error_message = "register_stamp_timeout_seconds must be between 3 and 900."
  }
}

variable "register_stamp_reserved_concurrency" {
  description = "Reserved concurrency of register-stamp (caps what a burst of calls can cost); null (default) reserves none, which works on every account (see collect_usage_reserved_concurrency)."
  type        = number
  default     = null

  validation {
    condition     = var.register_stamp_reserved_concurrency == null || try(var.register_stamp_reserved_concurrency >= 0 && floor(var.register_stamp_reserved_concurrency) == var.register_stamp_reserved_concurrency, false)
    error_message = "register_stamp_reserved_concurrency must be null or a whole number >= 0."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Application settings (see shared/app/src/config.rs)
# ---------------------------------------------------------------------------------------------------------

variable "secret_prefix" {
  description = "Prefix of the Secrets Manager names that hold stamp credentials (AZS_USAGE_SECRET_PREFIX). The IAM policies are scoped to it."
  type        = string
  default     = "azs-usage/"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{2,100}$", var.secret_prefix))
    error_message = "secret_prefix must be 2-100 characters from A-Z a-z 0-9 / _ + = . @ -."
  }
}

variable "database_secret_name" {
  description = "Name of the Secrets Manager secret holding the database connection string (AZS_USAGE_DATABASE=secret:<this>). Terraform creates it empty; put the value with the CLI. Must not start with secret_prefix (the webhook may write there)."
  type        = string
  default     = "azs-usage-database"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.database_secret_name))
    error_message = "database_secret_name must use A-Z a-z 0-9 / _ + = . @ - only."
  }
}

variable "allowed_stamp_hosts" {
  description = "Required. The stamp hosts the service may call (AZS_USAGE_ALLOWED_STAMP_HOSTS), its guard against server-side request forgery: a webhook caller names the admin ARM endpoint (and, through discovery, the login and token URLs) that the service then calls with the stamp's credential. Comma separated; each entry a host name (`azs.contoso.com`), a `*.suffix` wildcard (`*.azurestack.contoso.com`), an IP address or a CIDR block (`10.20.0.0/16`); a name not listed by name is allowed only when it resolves into a listed block. List the login host too (AD FS, or login.microsoftonline.com for Entra ID). `\"*\"` alone allows any https host, opting out of the host restriction: use it only when every webhook caller is trusted. Even with `\"*\"`, loopback, link-local (cloud metadata), unspecified and multicast addresses stay refused unless an address block in the list holds them."
  type        = string

  validation {
    condition     = length(compact([for entry in split(",", var.allowed_stamp_hosts) : trimspace(entry)])) > 0
    error_message = "allowed_stamp_hosts must name at least one stamp host, wildcard, address or CIDR block (e.g. \"*.azurestack.contoso.com, 10.20.0.0/16\"); an empty value would let the app call any https host. Set \"*\" to allow any host deliberately."
  }
}

variable "collect_concurrency" {
  description = "How many stamps one run collects at once (AZS_USAGE_CONCURRENCY)."
  type        = number
  default     = 8

  validation {
    condition     = var.collect_concurrency >= 1 && var.collect_concurrency <= 64
    error_message = "collect_concurrency must be between 1 and 64."
  }
}

variable "max_span_hours" {
  description = "Catch-up spans (AZS_USAGE_MAX_SPAN_HOURS): a stamp more than one hour behind pulls up to this many reported hours in one request chain, committed as one window; 1 pulls hour by hour."
  type        = number
  default     = 1

  validation {
    condition     = var.max_span_hours >= 1 && var.max_span_hours <= 24 && floor(var.max_span_hours) == var.max_span_hours
    error_message = "max_span_hours must be a whole number from 1 to 24."
  }
}

variable "subscriber_concurrency" {
  description = "Per-subscriber stamps: how many subscriberId queries of one window are in flight at once, per stamp (AZS_USAGE_SUBSCRIBER_CONCURRENCY)."
  type        = number
  default     = 8

  validation {
    condition     = var.subscriber_concurrency >= 1 && var.subscriber_concurrency <= 64 && floor(var.subscriber_concurrency) == var.subscriber_concurrency
    error_message = "subscriber_concurrency must be a whole number from 1 to 64."
  }
}

variable "settle_delay" {
  description = "How far behind now the last collected reported hour ends (AZS_USAGE_SETTLE_DELAY), e.g. `30m`, `1h`, `90m`."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+h)?([0-9]+m)?([0-9]+s)?$", var.settle_delay)) && var.settle_delay != ""
    error_message = "settle_delay must look like 1h, 30m, 90m or 1h30m."
  }
}

variable "time_budget" {
  description = "AZS_USAGE_TIME_BUDGET, e.g. `13m`. null leaves the app default (the Lambda deadline minus 60 s)."
  type        = string
  default     = null

  validation {
    condition     = var.time_budget == null || can(regex("^([0-9]+h)?([0-9]+m)?([0-9]+s)?$", var.time_budget))
    error_message = "time_budget must look like 13m or 14m30s."
  }
}

variable "log_level" {
  description = "AZS_USAGE_LOG: tracing EnvFilter syntax, e.g. `info` or `info,azs_azure_stack=debug`."
  type        = string
  default     = "info"
}

# ---------------------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------------------

variable "schedule_expression" {
  description = "EventBridge Scheduler expression of collect-usage. Keep the minute equal to the Azure COLLECT_SCHEDULE (`0 5 * * * *`)."
  type        = string
  default     = "cron(5 * * * ? *)"

  validation {
    condition     = can(regex("^(cron\\(.+\\)|rate\\(.+\\))$", var.schedule_expression))
    error_message = "schedule_expression must be cron(...) or rate(...)."
  }
}

variable "schedule_timezone" {
  description = "Time zone of schedule_expression."
  type        = string
  default     = "UTC"
}

variable "schedule_enabled" {
  description = "Whether the collection schedule is ENABLED (false creates it DISABLED)."
  type        = bool
  default     = true
}

variable "schedule_retry_attempts" {
  description = "How often EventBridge Scheduler retries an invocation it could not deliver (throttled by the reserved concurrency, service errors)."
  type        = number
  default     = 10

  validation {
    condition     = var.schedule_retry_attempts >= 0 && var.schedule_retry_attempts <= 185
    error_message = "schedule_retry_attempts must be between 0 and 185."
  }
}

variable "schedule_max_event_age_seconds" {
  description = "How long a scheduled invocation is retried (by Scheduler, and by Lambda for a failed run) before it goes to the dead-letter queue. An hour: the next run catches up anyway. Lambda's maximum event age is 21600 s, so that is the limit for both."
  type        = number
  default     = 3600

  validation {
    condition     = var.schedule_max_event_age_seconds >= 60 && var.schedule_max_event_age_seconds <= 21600
    error_message = "schedule_max_event_age_seconds must be between 60 and 21600 (Lambda's maximum event age)."
  }
}

variable "collect_usage_retry_attempts" {
  description = "Lambda asynchronous retries of a FAILED collect-usage run (runs are idempotent) before the event goes to the dead-letter queue."
  type        = number
  default     = 2

  validation {
    condition     = var.collect_usage_retry_attempts >= 0 && var.collect_usage_retry_attempts <= 2
    error_message = "collect_usage_retry_attempts must be 0, 1 or 2."
  }
}

variable "dead_letter_retention_seconds" {
  description = "How long failed schedule events stay in the dead-letter queue."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dead_letter_retention_seconds >= 60 && var.dead_letter_retention_seconds <= 1209600
    error_message = "dead_letter_retention_seconds must be between 60 and 1209600 (14 days)."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Webhook exposure
# ---------------------------------------------------------------------------------------------------------

variable "webhook_invoker_principals" {
  description = "Extra AWS principals (account IDs or IAM ARNs, e.g. of another account) allowed to call the register-stamp Function URL: each gets lambda:InvokeFunctionUrl and lambda:InvokeFunction (both are needed for Function URLs created since October 2025). Principals of this account only need the policy in output webhook_caller_policy_arn."
  type        = list(string)
  default     = []
}

variable "create_http_api" {
  description = "Also put an API Gateway HTTP API (routes `/stamps` and `/stamps/{proxy+}`, IAM authorization) in front of register-stamp."
  type        = bool
  default     = false
}

# ---------------------------------------------------------------------------------------------------------
# Network, logs, encryption, tags
# ---------------------------------------------------------------------------------------------------------

variable "vpc_subnet_ids" {
  description = "Private subnets to attach both functions to (empty: no VPC). The functions reach the stamps (admin ARM, AD FS/Entra login: HTTPS), Secrets Manager and X-Ray (a NAT gateway, or create_vpc_endpoints) and the database (database_port). Use two or more subnets in different AZs."
  type        = list(string)
  default     = []
}

variable "vpc_security_group_ids" {
  description = "Security groups of the functions when vpc_subnet_ids is set. Empty (default): the module creates one that allows only HTTPS to stamp_cidr_blocks and database_port to database_cidr_blocks (output functions_security_group_id, for the database's ingress rule)."
  type        = list(string)
  default     = []
}

variable "stamp_cidr_blocks" {
  description = "Where the module's function security group may connect on 443: the stamps' admin ARM and login endpoints, plus AWS APIs through a NAT. 0.0.0.0/0 (default) when AWS APIs go through a NAT gateway; with create_vpc_endpoints and privately routed stamps, list only the stamps' networks and the VPC."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "database_iam_auth" {
  description = "RDS or Aurora PostgreSQL with IAM database authentication (AZS_USAGE_DATABASE_AUTH=aws-iam): `url` is `postgres://<user>@<host>:5432/<database>?sslmode=verify-full` with no password (the app signs an IAM token as the URL's user, who must hold the rds_iam role; set database_ca_bundle_pem to the region's RDS CA bundle for verify-full), `db_resource_id` the instance's or cluster's resource id (`db-...`/`cluster-...`) for the rds-db:connect policy. null (default): the connection string is read from the database_secret_name secret."
  type = object({
    url            = string
    db_resource_id = string
  })
  default = null

  validation {
    condition     = var.database_iam_auth == null || can(regex("^postgres(ql)?://[^:@/]+@[^/@]+/[^?]+\\?(.*&)?sslmode=verify-full(&.*)?$", var.database_iam_auth.url))
    error_message = "database_iam_auth.url must be postgres://<user>@<host>:<port>/<database>?sslmode=verify-full, without a password (the login is an IAM token)."
  }
}

variable "database_cidr_blocks" {
  description = "Where the module's function security group may connect on database_port. null (default): the VPC's CIDR block."
  type        = list(string)
  default     = null
}

variable "database_port" {
  description = "Port of the billing database the function security group may reach: 1433 (SQL Server, default) or 5432 (PostgreSQL)."
  type        = number
  default     = 1433

  validation {
    condition     = var.database_port >= 1 && var.database_port <= 65535 && floor(var.database_port) == var.database_port
    error_message = "database_port must be a TCP port (1-65535)."
  }
}

variable "create_vpc_endpoints" {
  description = "Create interface VPC endpoints (private DNS) in vpc_subnet_ids for vpc_endpoint_services, for VPCs without a NAT gateway. The stamps still need a route (VPN, Direct Connect, Transit Gateway, or a NAT for internet-facing stamps)."
  type        = bool
  default     = false
}

variable "vpc_endpoint_services" {
  description = "Services that get an interface endpoint when create_vpc_endpoints is true: what the functions call (Secrets Manager; X-Ray for traces)."
  type        = list(string)
  default     = ["secretsmanager", "xray"]
}

# ---------------------------------------------------------------------------------------------------------
# Database TLS, webhook token, alarms
# ---------------------------------------------------------------------------------------------------------

variable "database_ca_bundle_pem" {
  description = "PEM certificates the database's TLS certificate chains to, when they are not in the system roots: for RDS for SQL Server the region's bundle from https://truststore.pki.rds.amazonaws.com/REGION/REGION-bundle.pem (the global bundle is larger than a secret can hold). Public data: stored in a secret (AZS_USAGE_DATABASE_CA=secret:<name>), which the app writes to a file for the SQL Server client. null: system roots only."
  type        = string
  default     = null

  validation {
    condition     = var.database_ca_bundle_pem == null || try(strcontains(var.database_ca_bundle_pem, "-----BEGIN CERTIFICATE-----") && length(var.database_ca_bundle_pem) <= 65536, false)
    error_message = "database_ca_bundle_pem must be PEM text with at least one -----BEGIN CERTIFICATE----- block and at most 65536 characters (a Secrets Manager value's limit)."
  }
}

variable "api_token_secret_name" {
  description = "Optional Secrets Manager secret holding the webhook's API token (AZS_USAGE_API_TOKEN_SECRET), checked in addition to IAM. Only register-stamp may read it. Must not start with secret_prefix. null: IAM only."
  type        = string
  default     = null

  validation {
    condition     = var.api_token_secret_name == null || can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.api_token_secret_name))
    error_message = "api_token_secret_name must use A-Z a-z 0-9 / _ + = . @ - only."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic the alarms notify (ALARM and OK). null (default): the module creates one, encrypted with its key (output alarm_topic_arn; subscribe your on-call to it)."
  type        = string
  default     = null
}

variable "stamp_lag_threshold_seconds" {
  description = "Alarm when any stamp's watermark is further than this behind now (the collector publishes it after every run as AzsUsage/WatermarkLagSeconds). Default 3 h: the settle delay (1 h) plus two missed hours."
  type        = number
  default     = 10800

  validation {
    condition     = var.stamp_lag_threshold_seconds >= 3600
    error_message = "stamp_lag_threshold_seconds must be at least 3600: a healthy stamp is always about the settle delay behind."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (also the HTTP API access logs)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, ...)."
  }
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the module's KMS key is deleted after destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}
