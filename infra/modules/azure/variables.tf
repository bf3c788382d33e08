# ---------------------------------------------------------------------------------------------------------
# Placement and naming
# ---------------------------------------------------------------------------------------------------------

variable "name" {
  description = "Name of the Function App (also `<name>.azurewebsites.net`) and prefix of the other resources. Globally unique."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lower-case letters, digits or '-', starting with a letter."
  }
}

variable "location" {
  description = "Azure region, e.g. `westeurope`."
  type        = string
}

variable "resource_group_name" {
  description = "Resource group to deploy into."
  type        = string
}

variable "create_resource_group" {
  description = "Create resource_group_name (true) or use an existing one (false)."
  type        = bool
  default     = true
}

variable "storage_account_name" {
  description = "Name of the Function App's host storage account (3-24 lower-case letters and digits, globally unique). null derives it from name."
  type        = string
  default     = null

  validation {
    condition     = var.storage_account_name == null || can(regex("^[a-z0-9]{3,24}$", var.storage_account_name))
    error_message = "storage_account_name must be 3-24 lower-case letters and digits."
  }
}

variable "key_vault_name" {
  description = "Name of the Key Vault holding stamp credentials (3-24 characters, globally unique). null derives it from name."
  type        = string
  default     = null

  validation {
    condition     = var.key_vault_name == null || can(regex("^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", var.key_vault_name))
    error_message = "key_vault_name must be 3-24 letters, digits or '-', starting with a letter."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Function App
# ---------------------------------------------------------------------------------------------------------

variable "package_path" {
  description = "Path of the Function App zip (target/functionapp/azs-usage-functionapp.zip: host.json, handler, collect-usage/, register-stamp/)."
  type        = string

  validation {
    condition     = endswith(var.package_path, ".zip")
    error_message = "package_path must point to a .zip file."
  }
}

variable "plan_sku" {
  description = "App Service plan SKU: FC1 (Flex Consumption, the default: custom handlers, VNet integration, long timeouts, scale to zero), EP1-EP3 (Elastic Premium) or a Dedicated Linux SKU (B*, S*, P*v2/v3/mv3; Always On is turned on). Linux Consumption (Y1) is not offered: Microsoft retires it on 2028-09-30, it has no VNet integration, and package deployment there is fragile for custom handlers."
  type        = string
  default     = "FC1"

  validation {
    condition     = can(regex("^(FC1|EP[1-3]|B[1-3]|S[1-3]|P[0-3]v[23]|P[1-5]mv3)$", var.plan_sku))
    error_message = "plan_sku must be FC1, EP1-EP3 or a Dedicated Linux SKU (B1-B3, S1-S3, P0v3-P3v3, P1v2-P3v2, P1mv3-P5mv3)."
  }
}

variable "subnet_id" {
  description = "Subnet for VNet integration (outbound), so the app reaches stamps on private networks; null: no VNet integration. Flex Consumption needs a subnet delegated to Microsoft.App/environments, Premium/Dedicated one delegated to Microsoft.Web/serverFarms. All outbound traffic then leaves through the VNet, so the subnet needs egress to the internet (Key Vault, storage, Entra ID, public stamps): see subnet_egress."
  type        = string
  default     = null

  validation {
    condition     = var.subnet_id == null || can(regex("(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft.Network/virtualNetworks/[^/]+/subnets/[^/]+$", var.subnet_id))
    error_message = "subnet_id must be a subnet's resource id (/subscriptions/.../resourceGroups/.../providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>)."
  }
}

variable "vnet_integration" {
  description = "Whether subnet_id is set, stated where Terraform can see it at plan. null (default): derived from subnet_id. Set true when subnet_id is only known after apply (a subnet created in the same configuration): whether the module creates its NAT gateway must be known at plan, or the plan fails with \"Invalid count argument\"."
  type        = bool
  default     = null

  validation {
    condition     = var.vnet_integration == null || var.vnet_integration == (var.subnet_id != null)
    error_message = "vnet_integration must be true exactly when subnet_id is set (or null: derived from subnet_id)."
  }
}

variable "subnet_egress" {
  description = "How the integrated subnet (subnet_id) reaches the internet. \"nat-gateway\" (default): the module creates a NAT gateway with a static public IP and attaches it to the subnet (output egress_ip: allow it in stamp firewalls). \"existing\": the subnet already has egress (your NAT gateway, a firewall route, or private endpoints plus DNS for storage, Key Vault and the database); new VNets have no default outbound access, and without egress the app cannot start. Ignored without subnet_id."
  type        = string
  default     = "nat-gateway"

  validation {
    condition     = contains(["nat-gateway", "existing"], var.subnet_egress)
    error_message = "subnet_egress must be \"nat-gateway\" (the module attaches one) or \"existing\" (the subnet already has egress)."
  }
}

variable "function_timeout_minutes" {
  description = "functionTimeout of the host (app setting AzureFunctionsJobHost__functionTimeout) and, one minute less, the app's time budget (AZS_USAGE_TIME_BUDGET): one number so they cannot drift apart. Flex and Premium default to 30 min."
  type        = number
  default     = 30

  validation {
    condition     = var.function_timeout_minutes >= 2 && var.function_timeout_minutes <= 240 && floor(var.function_timeout_minutes) == var.function_timeout_minutes
    error_message = "function_timeout_minutes must be a whole number from 2 to 240."
  }
}

variable "flex_instance_memory_mb" {
  description = "Flex Consumption instance memory (2048 or 4096)."
  type        = number
  default     = 2048

  validation {
    condition     = contains([512, 2048, 4096], var.flex_instance_memory_mb)
    error_message = "flex_instance_memory_mb must be 512, 2048 or 4096."
  }
}

variable "flex_maximum_instance_count" {
  description = "Flex Consumption scale-out limit (1-1000). With fan_out_queue it is the only cap on concurrent stamp workers, each holding database connections: keep it under the database's worker limit (Azure SQL S0: 60 concurrent workers; each instance works host.json queues.batchSize = 4 stamps)."
  type        = number
  default     = 10

  validation {
    condition     = var.flex_maximum_instance_count >= 1 && var.flex_maximum_instance_count <= 1000 && floor(var.flex_maximum_instance_count) == var.flex_maximum_instance_count
    error_message = "flex_maximum_instance_count must be a whole number from 1 to 1000."
  }
}

variable "role_propagation_seconds" {
  description = "How long the first apply waits after assigning the app's roles (storage, queues, Key Vault) before the package deployment (Flex) or the restart that mounts the package (Premium/Dedicated). Role assignments take minutes to propagate; later applies do not wait."
  type        = number
  default     = 300

  validation {
    condition     = var.role_propagation_seconds >= 0 && var.role_propagation_seconds <= 1800
    error_message = "role_propagation_seconds must be from 0 to 1800."
  }
}

variable "collect_schedule" {
  description = "NCRONTAB (6 fields, seconds first) of the collect-usage timer, app setting COLLECT_SCHEDULE. Keep the minute equal to the AWS schedule (`cron(5 * * * ? *)`)."
  type        = string
  default     = "0 5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.collect_schedule))) == 6
    error_message = "collect_schedule must have six space-separated fields (second minute hour day month weekday)."
  }
}

variable "secret_prefix" {
  description = "Prefix of the Key Vault secret names holding stamp credentials (AZS_USAGE_SECRET_PREFIX). Key Vault names allow only letters, digits and '-'."
  type        = string
  default     = "azs-usage-"

  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,60}$", var.secret_prefix))
    error_message = "secret_prefix must be letters, digits or '-'."
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
  description = "How far behind now the last collected reported hour ends (AZS_USAGE_SETTLE_DELAY), e.g. `30m`, `1h`."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+h)?([0-9]+m)?([0-9]+s)?$", var.settle_delay)) && var.settle_delay != ""
    error_message = "settle_delay must look like 1h, 30m, 90m or 1h30m."
  }
}

variable "log_level" {
  description = "AZS_USAGE_LOG: tracing EnvFilter syntax."
  type        = string
  default     = "info"
}

variable "log_retention_days" {
  description = "Retention of the Log Analytics workspace behind Application Insights."
  type        = number
  default     = 90

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be between 30 and 730."
  }
}

# ---------------------------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------------------------

variable "create_sql_database" {
  description = "Create an Azure SQL server and database with Entra-only authentication. false: set create_postgres_database (postgres.tf) or existing_database."
  type        = bool
  default     = true
}

variable "existing_database" {
  description = "An existing database WITHOUT credentials (the app signs in with its managed identity), used when neither create_sql_database nor create_postgres_database: an ADO.NET connection string of Azure SQL, or `postgres://<app name>@<server>.postgres.database.azure.com:5432/<db>?sslmode=verify-full`."
  type        = string
  default     = null

  validation {
    condition     = var.existing_database == null || !can(regex("(?i)(password|pwd)\\s*=|^postgres(ql)?://[^/@]*:[^/@]*@", var.existing_database))
    error_message = "existing_database must not contain a password (no Password=/Pwd=, no user:password@ in a postgres URL): the app authenticates with its managed identity."
  }
}

variable "sql_admin_object_id" {
  description = "Object id of the Entra group of DBAs that administers the SQL server or the PostgreSQL server (required with create_sql_database or create_postgres_database). The app is a database user of its managed identity: run output sql_app_user_statements (or postgres_app_user_statements) once as a member of that group."
  type        = string
  default     = null
}

variable "sql_admin_login" {
  description = "Display name of the sql_admin_object_id group (required with create_sql_database or create_postgres_database)."
  type        = string
  default     = null
}

variable "sql_sku" {
  description = "SKU of the Azure SQL database, e.g. `Basic`, `S0`, `GP_S_Gen5_1` (serverless)."
  type        = string
  default     = "S0"
}

variable "sql_dns_suffix" {
  description = "DNS suffix of Azure SQL servers in this cloud (`database.windows.net` in the public cloud)."
  type        = string
  default     = "database.windows.net"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------------------------------------

variable "action_group_id" {
  description = "Azure Monitor action group the alerts notify. null (default): the module creates one that e-mails alert_emails."
  type        = string
  default     = null
}

variable "alert_emails" {
  description = "E-mail addresses of the module's action group (used when action_group_id is null)."
  type        = list(string)
  default     = []
}

variable "stamp_lag_threshold_seconds" {
  description = "Alert when a stamp's watermark is further than this behind now (default 3 h: the settle delay plus two missed hours)."
  type        = number
  default     = 10800

  validation {
    condition     = var.stamp_lag_threshold_seconds >= 3600
    error_message = "stamp_lag_threshold_seconds must be at least 3600: a healthy stamp is always about the settle delay behind."
  }
}
