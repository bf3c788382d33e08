terraform {
  # 1.9+: cross-variable references in validation blocks are not used, but `precondition`s and
  # optional object attributes are, and 1.9 is the oldest release still receiving fixes.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.100: aws_lambda_function_recursion_config (queue.tf). Validated and tested here with 5.100.0.
      version = ">= 5.100, < 7.0"
    }
  }
}
