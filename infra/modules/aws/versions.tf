terraform {
  # 1.9+: cross-variable references in validation blocks are not used, but `precondition`s and
  # optional object attributes are, and 1.9 is the oldest release still receiving fixes.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.50, < 7.0"
    }
  }
}
