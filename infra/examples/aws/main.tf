# Minimal AWS deployment of azs-usage from the artifacts built in this repository
# (`cargo lambda build --release --arm64 --output-format zip`).

terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.50, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-west-1"
}

module "azs_usage" {
  source = "../../modules/aws"

  collect_usage_zip_path  = "${path.root}/../../../target/lambda/collect-usage/bootstrap.zip"
  register_stamp_zip_path = "${path.root}/../../../target/lambda/register-stamp/bootstrap.zip"
}

output "webhook_url" {
  description = "Function URL of register-stamp (SigV4, service `lambda`)."
  value       = module.azs_usage.webhook_url
}

output "database_secret_name" {
  description = "Secret to put the database connection string into."
  value       = module.azs_usage.database_secret_name
}

output "dead_letter_queue_url" {
  description = "Dead-letter queue of failed collection runs."
  value       = module.azs_usage.dead_letter_queue_url
}
