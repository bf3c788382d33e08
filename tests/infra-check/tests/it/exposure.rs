//! Nothing is public without authentication, and no secret value passes through Terraform.

use infra_check::{
    Module, all_modules, attribute, blocks, boolean, is_secret_variable, reads_secret_value, references_in,
    text,
};
use std::collections::BTreeSet;

#[test]
fn function_url_requires_aws_iam() {
    let aws = Module::infra("modules/aws");
    let urls = aws.resources("aws_lambda_function_url");
    assert!(!urls.is_empty(), "register-stamp has a Function URL");
    for (name, url) in urls {
        assert_eq!(attribute(url, "authorization_type").and_then(text).as_deref(), Some("AWS_IAM"), "{name}");
    }
    for (name, permission) in aws.resources("aws_lambda_permission") {
        if let Some(auth) = attribute(permission, "function_url_auth_type") {
            assert_eq!(text(auth).as_deref(), Some("AWS_IAM"), "aws_lambda_permission.{name}");
        }
    }
}

#[test]
fn http_api_routes_require_iam() {
    let aws = Module::infra("modules/aws");
    for (name, route) in aws.resources("aws_apigatewayv2_route") {
        assert_eq!(
            attribute(route, "authorization_type").and_then(text).as_deref(),
            Some("AWS_IAM"),
            "{name}"
        );
    }
}

#[test]
fn no_secret_variable_has_a_default() {
    for module in all_modules() {
        for (name, body) in module.variables() {
            if is_secret_variable(name, body) {
                assert!(
                    attribute(body, "default").is_none(),
                    "{}: variable {name} holds a secret and has a default",
                    module.name()
                );
            }
        }
    }
}

#[test]
fn no_output_exposes_a_secret_value_unless_sensitive() {
    for module in all_modules() {
        let secret_variables: BTreeSet<String> = module
            .variables()
            .into_iter()
            .filter(|(n, b)| is_secret_variable(n, b))
            .map(|(n, _)| n.to_owned())
            .collect();
        for (name, output) in module.outputs() {
            let sensitive = attribute(output, "sensitive").and_then(boolean).unwrap_or(false);
            let value = attribute(output, "value").expect("outputs have a value");
            let secrets: Vec<String> = references_in(value)
                .into_iter()
                .filter(|r| reads_secret_value(r, &secret_variables))
                .collect();
            assert!(sensitive || secrets.is_empty(), "{}: output {name} exposes {secrets:?}", module.name());
        }
    }
}

#[test]
fn terraform_never_writes_a_secret_value() {
    // The DB connection string (AWS) is put by the operator; Azure needs no password at all. The only
    // value Terraform writes is the database's CA bundle: public certificates.
    for module in all_modules() {
        for kind in ["azurerm_key_vault_secret", "random_password"] {
            assert!(
                module.resources(kind).is_empty(),
                "{}: {kind} would put a secret in the state",
                module.name()
            );
        }
        for (name, version) in module.resources("aws_secretsmanager_secret_version") {
            let value = attribute(version, "secret_string").map(|v| v.to_string()).unwrap_or_default();
            assert_eq!(
                (name, value.as_str()),
                ("database_ca", "var.database_ca_bundle_pem"),
                "{}: aws_secretsmanager_secret_version.{name} would put a secret in the state",
                module.name()
            );
        }
    }
}

#[test]
fn lambda_roles_reach_only_the_stamp_prefix_and_the_secrets_they_need() {
    let aws = Module::infra("modules/aws");
    let prefix = aws.locals().get("stamp_secrets_arn").and_then(text).expect("stamp_secrets_arn");
    assert!(prefix.ends_with(":secret:${var.secret_prefix}*"), "scoped by ARN pattern: {prefix}");
    let readable = [
        "local.stamp_secrets_arn",
        "aws_secretsmanager_secret.database.arn",
        "local.database_ca_secret_arns",
        "local.api_token_secret_arns",
    ];
    for document in ["collector", "webhook"] {
        let (_, policy) = aws
            .data_sources("aws_iam_policy_document")
            .into_iter()
            .find(|(n, _)| *n == document)
            .expect(document);
        for statement in blocks(policy, "statement") {
            let actions = attribute(statement, "actions").map(|a| a.to_string()).unwrap_or_default();
            let resources = attribute(statement, "resources").expect("resources");
            let deny = attribute(statement, "effect").and_then(text).as_deref() == Some("Deny");
            assert!(!resources.to_string().contains("\"*\""), "{document}: wildcard resource in {resources}");
            assert!(!actions.contains(":*\""), "{document}: wildcard action in {actions}");
            if !actions.contains("secretsmanager:") || deny {
                continue;
            }
            let targets: Vec<String> =
                references_in(resources).into_iter().filter(|r| !r.starts_with("var.")).collect();
            for target in &targets {
                assert!(
                    readable.iter().any(|r| target.starts_with(r)),
                    "{document}: secretsmanager on {target}"
                );
            }
            // Writing is for stamp credentials only, under the prefix.
            let writes = actions.contains("Create") || actions.contains("Put") || actions.contains("Delete");
            if writes {
                assert_eq!(targets, ["local.stamp_secrets_arn"], "{document}: writes beyond the prefix");
            }
            // The collector never sees the webhook's API token.
            if document == "collector" {
                assert!(!targets.iter().any(|t| t.contains("api_token")), "collector reads the API token");
            }
        }
    }
}
