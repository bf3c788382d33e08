//! The environment Terraform gives the functions is the one the application reads
//! (`azs_app::config::ENVIRONMENT`), on both clouds.

use azs_app::config::{DatabaseAuth, ENVIRONMENT, Needed};
use infra_check::{Module, attribute, block, boolean, text};

fn names(needed: Needed) -> Vec<&'static str> {
    ENVIRONMENT.iter().filter(|v| v.needed == needed).map(|v| v.name).collect()
}

fn lambda_environments(aws: &Module) -> Vec<(String, infra_check::Expression)> {
    let functions = aws.resources("aws_lambda_function");
    assert_eq!(functions.len(), 3, "expected collect_usage, register_stamp and stamp_worker (queue.tf)");
    functions
        .into_iter()
        .map(|(name, body)| {
            let variables = block(body, "environment")
                .and_then(|env| attribute(env, "variables"))
                .unwrap_or_else(|| panic!("aws_lambda_function.{name} has no environment.variables"));
            (name.to_owned(), variables.clone())
        })
        .collect()
}

/// Both app resources (Flex through azapi, Premium/Dedicated through azurerm) take `local.app_settings`.
fn function_app_settings(azure: &Module) -> infra_check::Expression {
    let app = azure.resource("azurerm_linux_function_app", "this");
    let settings = attribute(app, "app_settings").expect("the function app has app_settings");
    assert_eq!(settings.to_string(), "local.app_settings");
    let flex = attribute(azure.resource("azapi_resource", "function_app_flex"), "body").unwrap().to_string();
    assert!(flex.contains("merge(local.app_settings"), "the Flex app gets the same settings: {flex}");
    azure.resolve(settings)
}

#[test]
fn every_variable_the_functions_need_is_set_on_both_lambda_functions() {
    // Given the AWS module
    let aws = Module::infra("modules/aws");
    // When reading each Lambda function's environment
    for (function, variables) in lambda_environments(&aws) {
        let keys = aws.certain_keys(&variables);
        // Then every Needed::ByFunctions variable is set unconditionally
        for name in names(Needed::ByFunctions) {
            assert!(
                keys.contains(name),
                "aws_lambda_function.{function} does not set {name}; it sets {keys:?}"
            );
        }
    }
}

#[test]
fn every_variable_the_functions_need_is_set_in_the_function_app_settings() {
    let azure = Module::infra("modules/azure");
    let keys = azure.certain_keys(&function_app_settings(&azure));
    for name in names(Needed::ByFunctions).into_iter().chain(names(Needed::OnAzureOnly)) {
        assert!(keys.contains(name), "the Function App's app_settings do not set {name}; they set {keys:?}");
    }
}

#[test]
fn terraform_sets_no_application_variable_the_code_does_not_know() {
    // A typo (AZS_USAGE_SECRET_PREFIXES) would silently leave the default in force.
    let known: Vec<&str> = ENVIRONMENT.iter().map(|v| v.name).collect();
    let aws = Module::infra("modules/aws");
    let azure = Module::infra("modules/azure");
    let mut set: Vec<String> =
        lambda_environments(&aws).iter().flat_map(|(_, v)| aws.possible_keys(v)).collect();
    set.extend(azure.possible_keys(&function_app_settings(&azure)));
    for name in set.iter().filter(|n| n.starts_with("AZS_USAGE_") || n.as_str() == "COLLECT_SCHEDULE") {
        assert!(
            known.contains(&name.as_str()),
            "{name} is set by Terraform but not read by the app (config.rs)"
        );
    }
}

#[test]
fn every_database_auth_terraform_sets_is_one_the_app_reads() {
    let aws = Module::infra("modules/aws");
    let azure = Module::infra("modules/azure");
    let mut values: Vec<String> = lambda_environments(&aws)
        .iter()
        .flat_map(|(_, v)| aws.possible_entries(v, "AZS_USAGE_DATABASE_AUTH"))
        .map(|v| text(&v).unwrap_or_else(|| panic!("AWS: AZS_USAGE_DATABASE_AUTH is a literal, not {v}")))
        .collect();
    values.extend(
        azure.possible_entries(&function_app_settings(&azure), "AZS_USAGE_DATABASE_AUTH").iter().map(|v| {
            text(v).unwrap_or_else(|| panic!("Azure: AZS_USAGE_DATABASE_AUTH is a literal, not {v}"))
        }),
    );
    assert!(values.contains(&"aws-iam".to_owned()), "RDS IAM authentication is wired: {values:?}");
    for value in values {
        assert!(
            DatabaseAuth::SETTINGS.iter().any(|(name, _)| *name == value),
            "AZS_USAGE_DATABASE_AUTH = {value:?} is not a value the app reads (config.rs)"
        );
    }
}

#[test]
fn lambda_functions_read_the_database_from_secrets_manager_or_sign_in_with_iam() {
    let aws = Module::infra("modules/aws");
    for (function, variables) in lambda_environments(&aws) {
        let secrets = aws.entry(&variables, "AZS_USAGE_SECRETS").as_ref().and_then(text);
        assert_eq!(secrets.as_deref(), Some("aws-secrets-manager"), "{function}");
        // Either the DB secret (the default) or, with database_iam_auth, the URL without a password.
        let databases: Vec<String> = aws
            .possible_entries(&variables, "AZS_USAGE_DATABASE")
            .iter()
            .map(|v| text(v).unwrap_or_else(|| v.to_string()))
            .collect();
        assert_eq!(
            databases,
            ["secret:${aws_secretsmanager_secret.database.name}", "var.database_iam_auth.url"],
            "{function}: AZS_USAGE_DATABASE must name the DB connection secret, or be the IAM-auth URL"
        );
        let prefix = aws.entry(&variables, "AZS_USAGE_SECRET_PREFIX").expect("prefix is set");
        assert_eq!(
            text(&aws.resolve(&prefix)).as_deref(),
            Some("azs-usage/"),
            "{function}: AWS default prefix"
        );
        let format = aws.entry(&variables, "AZS_USAGE_LOG_FORMAT").as_ref().and_then(text);
        assert_eq!(format.as_deref(), Some("json"), "{function}");
    }
}

#[test]
fn function_app_uses_key_vault_and_its_managed_identity_for_the_database() {
    let azure = Module::infra("modules/azure");
    let settings = function_app_settings(&azure);
    let secrets = azure.entry(&settings, "AZS_USAGE_SECRETS").as_ref().and_then(text).unwrap_or_default();
    assert!(secrets.starts_with("azure-key-vault:"), "AZS_USAGE_SECRETS = {secrets}");
    assert!(secrets.contains("azurerm_key_vault.this.vault_uri"), "points at the module's vault: {secrets}");
    let auth = azure.entry(&settings, "AZS_USAGE_DATABASE_AUTH").as_ref().and_then(text);
    assert_eq!(auth.as_deref(), Some("managed-identity"));
    let prefix = azure.entry(&settings, "AZS_USAGE_SECRET_PREFIX").expect("prefix is set");
    assert_eq!(text(&azure.resolve(&prefix)).as_deref(), Some("azs-usage-"), "Key Vault default prefix");
    let format = azure.entry(&settings, "AZS_USAGE_LOG_FORMAT").as_ref().and_then(text);
    assert_eq!(format.as_deref(), Some("json"));
}

#[test]
fn function_app_runs_the_custom_handler_with_host_storage() {
    // azurerm writes FUNCTIONS_WORKER_RUNTIME=custom from `use_custom_runtime` and AzureWebJobsStorage from
    // `storage_account_*`; it forbids FUNCTIONS_WORKER_RUNTIME in app_settings next to application_stack.
    let azure = Module::infra("modules/azure");
    let flex = attribute(azure.resource("azapi_resource", "function_app_flex"), "body").unwrap().to_string();
    assert!(flex.contains("name = \"custom\""), "Flex runs the custom runtime: {flex}");
    assert!(flex.contains("AzureWebJobsStorage__accountName"), "Flex host storage by identity: {flex}");
    let app = azure.resource("azurerm_linux_function_app", "this");
    let stack =
        block(app, "site_config").and_then(|s| block(s, "application_stack")).expect("application_stack");
    assert_eq!(attribute(stack, "use_custom_runtime").and_then(boolean), Some(true));
    assert!(attribute(app, "storage_account_name").is_some(), "host storage (AzureWebJobsStorage) is set");
    assert!(
        attribute(app, "storage_account_access_key").is_some()
            || attribute(app, "storage_uses_managed_identity").is_some()
    );
    assert!(!azure.possible_keys(&function_app_settings(&azure)).contains("FUNCTIONS_WORKER_RUNTIME"));
    let identity = block(app, "identity").and_then(|i| attribute(i, "type")).and_then(text);
    assert_eq!(identity.as_deref(), Some("SystemAssigned"));
}

#[test]
fn azure_postgres_signs_in_with_the_apps_identity_only() {
    // Given the PostgreSQL option of the Azure module (postgres.tf)
    let azure = Module::infra("modules/azure");
    // The URL names the app's managed identity (its principal carries the app's name), no password, and
    // verifies the server's certificate.
    let url = text(&azure.resolve(&"local.postgres_url".parse().unwrap())).unwrap_or_default();
    assert!(url.starts_with("postgres://${var.name}@"), "{url}");
    assert!(url.ends_with("?sslmode=verify-full") && !url.contains(":${"), "{url}");
    let settings = function_app_settings(&azure);
    let database = azure.possible_entries(&settings, "AZS_USAGE_DATABASE");
    assert!(database.iter().any(|d| d.to_string().contains("local.postgres_url")), "{database:?}");
    // The server takes Entra ID tokens only: no administrator login or password exists.
    let server = azure.resource("azurerm_postgresql_flexible_server", "this");
    let auth = block(server, "authentication").expect("authentication block");
    assert_eq!(attribute(auth, "password_auth_enabled").and_then(boolean), Some(false));
    assert_eq!(attribute(auth, "active_directory_auth_enabled").and_then(boolean), Some(true));
    assert!(
        attribute(server, "administrator_login").is_none()
            && attribute(server, "administrator_password").is_none()
    );
}
