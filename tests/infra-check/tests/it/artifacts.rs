//! Terraform deploys exactly the artifacts the packaging step builds, with the runtime they need.

use infra_check::{Expression, Module, attribute, block, boolean, normalize, references_in, repo_root, text};
use std::path::Path;

/// The path a module argument like `"${path.root}/../../../target/x.zip"` points to, from `example`.
fn resolved_path(example: &Module, argument: &str) -> std::path::PathBuf {
    let (_, call) = example.module_calls().into_iter().next().expect("the example calls the module");
    let raw = attribute(call, argument).and_then(text).unwrap_or_else(|| panic!("{argument} is a string"));
    let relative = raw
        .replace("${path.root}", &example.dir.display().to_string())
        .replace("${path.module}", &example.dir.display().to_string());
    normalize(Path::new(&relative))
}

#[test]
fn both_lambda_functions_run_bootstrap_on_provided_al2023_x86_64_by_default() {
    let aws = Module::infra("modules/aws");
    for (name, function) in aws.resources("aws_lambda_function") {
        assert_eq!(
            attribute(function, "runtime").and_then(text).as_deref(),
            Some("provided.al2023"),
            "{name}"
        );
        assert_eq!(attribute(function, "handler").and_then(text).as_deref(), Some("bootstrap"), "{name}");
        let Some(Expression::Array(arch)) = attribute(function, "architectures") else {
            panic!("{name}: architectures")
        };
        let arch: Vec<String> = arch.iter().map(|a| a.to_string()).collect();
        assert_eq!(arch, ["var.architecture"], "{name}");
    }
    // The architecture scripts/package.sh builds and CI tests; arm64 stays an option.
    let default = attribute(aws.variable("architecture"), "default").and_then(text);
    assert_eq!(default.as_deref(), Some("x86_64"));
}

#[test]
fn each_lambda_function_deploys_its_own_zip_variable() {
    let aws = Module::infra("modules/aws");
    for (resource, variable) in
        [("collect_usage", "collect_usage_zip_path"), ("register_stamp", "register_stamp_zip_path")]
    {
        let function = aws.resource("aws_lambda_function", resource);
        let filename = attribute(function, "filename").map(|f| f.to_string());
        assert_eq!(filename.as_deref(), Some(format!("var.{variable}").as_str()), "{resource}.filename");
        let hash = attribute(function, "source_code_hash").map(|f| f.to_string()).unwrap_or_default();
        assert!(
            hash.contains(&format!("var.{variable}")),
            "{resource} redeploys when its zip changes: {hash}"
        );
    }
}

#[test]
fn aws_example_deploys_the_zips_cargo_lambda_builds() {
    let example = Module::infra("examples/aws");
    let root = repo_root();
    for (argument, function) in
        [("collect_usage_zip_path", "collect-usage"), ("register_stamp_zip_path", "register-stamp")]
    {
        assert_eq!(
            resolved_path(&example, argument),
            root.join("target/lambda").join(function).join("bootstrap.zip"),
            "{argument}"
        );
    }
}

#[test]
fn azure_example_deploys_the_function_app_zip() {
    let example = Module::infra("examples/azure");
    assert_eq!(
        resolved_path(&example, "package_path"),
        repo_root().join("target/functionapp/azs-usage-functionapp.zip")
    );
    // The package is uploaded as a blob named by its content hash, so a changed build is a new blob and a
    // new deployment; Premium/Dedicated run it from its URL, Flex gets it through OneDeploy.
    let azure = Module::infra("modules/azure");
    let blob = azure.resource("azurerm_storage_blob", "package");
    assert_eq!(attribute(blob, "source").map(|e| e.to_string()).as_deref(), Some("var.package_path"));
    let name = azure.resolve(attribute(blob, "name").expect("blob name")).to_string();
    let hash = azure.resolve(&"local.package_hash".parse().unwrap()).to_string();
    assert!(
        name.contains("local.package_hash") && hash == "filesha256(var.package_path)",
        "content-addressed name: {name} ({hash})"
    );
    let app = azure.resource("azurerm_linux_function_app", "this");
    assert!(attribute(app, "zip_deploy_file").is_none(), "no zip deploy (basic-auth publishing, Kudu)");
    let settings = azure.locals()["app_settings"].to_string();
    assert!(settings.contains("WEBSITE_RUN_FROM_PACKAGE = local.package_url"), "{settings}");
    // Premium/Dedicated fetch that URL with the app's identity, not anonymously.
    assert!(
        settings.contains("WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID = \"SystemAssigned\""),
        "{settings}"
    );
}

#[test]
fn flex_ships_the_package_through_a_onedeploy_action_redone_for_every_build() {
    // An action, not a resource: azapi would read `onedeploy` back and delete it (azapi#486).
    let azure = Module::infra("modules/azure");
    assert!(
        azure.resources("azapi_resource").iter().all(|(name, _)| *name != "flex_package_deployment"),
        "the OneDeploy is an azapi_resource_action"
    );
    let deploy = azure.resource("azapi_resource_action", "flex_package_deployment");
    assert_eq!(attribute(deploy, "action").and_then(text).as_deref(), Some("extensions/onedeploy"));
    assert_eq!(attribute(deploy, "method").and_then(text).as_deref(), Some("PUT"));
    // OneDeploy pulls the URL itself: the blob's URL plus a read-only SAS, with the artifact type its API
    // requires (review R-6).
    let body = attribute(deploy, "body").expect("body").to_string();
    assert!(body.contains("type") && body.contains("\"zip\""), "{body}");
    assert!(
        body.contains("local.package_url")
            && body.contains("azurerm_storage_account_blob_container_sas.package"),
        "{body}"
    );
    let (_, sas) =
        azure.data_sources("azurerm_storage_account_blob_container_sas").into_iter().next().expect("a SAS");
    let permissions = block(sas, "permissions").expect("permissions");
    for (permission, granted) in [("read", true), ("write", false), ("delete", false), ("list", false)] {
        assert_eq!(attribute(permissions, permission).and_then(boolean), Some(granted), "SAS {permission}");
    }
    // Signed from the plan's own time, not a timestamp kept in the state: an apply that (re)creates the
    // action hours or days after the first one must not send an expired SAS (review R-1).
    for bound in ["start", "expiry"] {
        let value = attribute(sas, bound).expect(bound).to_string();
        assert!(value.contains("plantimestamp()"), "SAS {bound} = {value}");
    }
    // Retried while the roles propagate, and after the wait for them.
    let retry = attribute(deploy, "retry").expect("retry").to_string();
    for error in ["BlobUploadFailed", "RESPONSE 403"] {
        assert!(retry.contains(error), "retries {error}: {retry}");
    }
    let depends = attribute(deploy, "depends_on").expect("depends_on").to_string();
    assert!(depends.contains("time_sleep.app_roles"), "{depends}");
    // A new build deploys again: replaced with the package's content hash.
    let lifecycle = block(deploy, "lifecycle").expect("lifecycle");
    let triggers = attribute(lifecycle, "replace_triggered_by").expect("replaced per build").to_string();
    assert!(triggers.contains("terraform_data.package"), "{triggers}");
    // Only a new build redeploys: a re-signed SAS alone must not.
    let ignored = attribute(lifecycle, "ignore_changes").map(|e| e.to_string()).unwrap_or_default();
    assert!(ignored.contains("body"), "{ignored}");
    let input = attribute(azure.resource("terraform_data", "package"), "input").expect("input").to_string();
    assert_eq!(azure.resolve(&input.parse().unwrap()).to_string(), "filesha256(var.package_path)");
}

#[test]
fn the_function_app_is_created_after_its_subnet_has_egress() {
    // With subnet_id, the module's NAT gateway is attached before the app integrates the subnet: the host
    // starts with egress to its storage, and the two changes to the subnet do not race (review R-3).
    let azure = Module::infra("modules/azure");
    for (kind, name) in [("azapi_resource", "function_app_flex"), ("azurerm_linux_function_app", "this")] {
        let depends = attribute(azure.resource(kind, name), "depends_on").expect("depends_on").to_string();
        assert!(
            depends.contains("azurerm_subnet_nat_gateway_association.egress"),
            "{kind}.{name}: {depends}"
        );
    }
}

#[test]
fn no_count_waits_for_a_subnet_id_known_only_after_apply() {
    // A subnet created in the same configuration has an id only after apply, and `count` must be known at
    // plan: the NAT gateway and the PostgreSQL private-access resources count on flags that an operator can
    // state (vnet_integration, postgres_private_access) and that fall back to the id only when not stated
    // (review R-4).
    let azure = Module::infra("modules/azure");
    let locals = azure.locals();
    let counted = [
        ("azurerm_public_ip", "egress"),
        ("azurerm_nat_gateway", "egress"),
        ("azurerm_nat_gateway_public_ip_association", "egress"),
        ("azurerm_subnet_nat_gateway_association", "egress"),
        ("azurerm_private_dns_zone", "postgres"),
        ("azurerm_private_dns_zone_virtual_network_link", "postgres"),
        ("azurerm_postgresql_flexible_server_firewall_rule", "azure_services"),
    ];
    let flags =
        [("vnet_integration", "var.vnet_integration"), ("postgres_private", "var.postgres_private_access")];
    for (kind, name) in counted {
        let count = attribute(azure.resource(kind, name), "count").expect("count");
        let mut references = references_in(count);
        for local in references.clone().iter().filter_map(|r| r.strip_prefix("local.")) {
            if flags.iter().any(|(flag, _)| *flag == local) {
                continue;
            }
            references.extend(locals.get(local).map(references_in).unwrap_or_default());
        }
        for id in ["var.subnet_id", "var.postgres_subnet_id"] {
            assert!(!references.iter().any(|r| r == id), "{kind}.{name} counts on {id}: {references:?}");
        }
    }
    for (flag, variable) in flags {
        let definition = locals.get(flag).unwrap_or_else(|| panic!("local.{flag}")).to_string();
        assert!(
            definition.starts_with(&format!("{variable} != null ? {variable} :")),
            "local.{flag} = {definition}"
        );
    }
}

#[test]
fn the_postgres_database_is_created_after_its_entra_administrator() {
    // Created before the server has an administrator, a database is owned by azuresu and nobody can grant
    // the app rights in it (azurerm#27895); after it, the DBA group owns it (review R-5).
    let azure = Module::infra("modules/azure");
    let database = azure.resource("azurerm_postgresql_flexible_server_database", "this");
    let depends = attribute(database, "depends_on").expect("depends_on").to_string();
    assert!(
        depends.contains("azurerm_postgresql_flexible_server_active_directory_administrator.dba"),
        "{depends}"
    );
}
