//! Every body the Azure module sends through azapi is checked against azapi's own embedded ARM type data
//! (a slice of it, `fixtures/azapi/`, with the provider version and path it came from), as azapi checks it
//! during `terraform validate`: no azapi binary runs here, and guessing a body from documentation is what
//! shipped a `onedeploy` body that validate refuses (Z-1).

use infra_check::azapi::{ResourceBody, TypeSlice};
use infra_check::{Expression, Module, attribute, block, text};

/// The `azapi_resource` blocks of a module, as the bodies azapi would validate.
fn resource_bodies(module: &Module) -> Vec<(String, ResourceBody)> {
    module
        .resources("azapi_resource")
        .into_iter()
        .map(|(name, body)| {
            let resource_type =
                attribute(body, "type").and_then(text).expect("azapi_resource.type is a string");
            (
                format!("azapi_resource.{name}"),
                ResourceBody {
                    resource_type,
                    body: attribute(body, "body").cloned().unwrap_or(Expression::Null),
                    name: attribute(body, "name").cloned(),
                    location: attribute(body, "location").cloned(),
                    tags: attribute(body, "tags").cloned(),
                    identity_type: block(body, "identity").and_then(|i| attribute(i, "type")).cloned(),
                },
            )
        })
        .collect()
}

fn slice_for(resource_type: &str) -> TypeSlice {
    TypeSlice::all().into_iter().find(|s| s.covers(resource_type)).unwrap_or_else(|| {
        panic!(
            "no type data for {resource_type} under tests/infra-check/fixtures/azapi: add the slice of azapi's \
             internal/azure/generated/.../types.json at the pinned version"
        )
    })
}

fn parse_resource(hcl: &str) -> ResourceBody {
    let body = hcl::parse(hcl).expect("valid HCL");
    let resource = &body.blocks().next().expect("a resource block").body;
    ResourceBody {
        resource_type: attribute(resource, "type").and_then(text).unwrap(),
        body: attribute(resource, "body").cloned().unwrap(),
        name: attribute(resource, "name").cloned(),
        location: None,
        tags: None,
        identity_type: None,
    }
}

#[test]
fn every_azapi_body_of_the_azure_module_fits_azapis_type_data() {
    // Given the Azure module's azapi resources
    let azure = Module::infra("modules/azure");
    let bodies = resource_bodies(&azure);
    assert!(!bodies.is_empty(), "the Flex app is an azapi_resource");
    for (address, resource) in bodies {
        // When each body is checked the way azapi checks it
        let errors = slice_for(&resource.resource_type).validate(&resource);
        // Then nothing is refused
        assert!(errors.is_empty(), "{address} ({}): {errors:#?}", resource.resource_type);
    }
}

#[test]
fn the_old_onedeploy_resource_body_is_refused_naming_properties() {
    // The body shipped before Z-1: `properties` under the `onedeploy` branch, which has none.
    let old = parse_resource(
        r#"
        resource "azapi_resource" "flex_package_deployment" {
          type      = "Microsoft.Web/sites/extensions@2024-04-01"
          name      = "onedeploy"
          parent_id = azapi_resource.function_app_flex[0].id
          body = {
            properties = {
              packageUri  = local.package_url
              remoteBuild = false
            }
          }
        }
        "#,
    );
    let errors = slice_for(&old.resource_type).validate(&old);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("`.properties` is not expected here"), "{errors:#?}");
    // The MSDeploy branch of the same type does take properties (not remoteBuild): the name decides.
    let msdeploy = ResourceBody { name: Some(Expression::String("MSDeploy".into())), ..old };
    let errors = slice_for(&msdeploy.resource_type).validate(&msdeploy);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("`.properties.remoteBuild` is not expected here"), "{errors:#?}");
}

#[test]
fn a_misspelled_or_read_only_property_deep_in_the_flex_body_is_refused_by_path() {
    let mut flex = parse_resource(
        r#"
        resource "azapi_resource" "flex" {
          type = "Microsoft.Web/sites@2024-04-01"
          name = "x"
          body = {
            kind = "functionapp,linux"
            properties = {
              serverFarmId = azurerm_service_plan.this.id
              defaultHostName = "x.azurewebsites.net"
              functionAppConfig = {
                runtime             = { name = "custom", verison = "1.0" }
                scaleAndConcurrency = { instanceMemoryMB = "2048" }
                deployment = { storage = { type = "blobContainer", authentication = { type = "SystemAssignedIdentity" } } }
              }
            }
          }
        }
        "#,
    );
    flex.location = Some(Expression::String("westeurope".into()));
    let errors = slice_for(&flex.resource_type).validate(&flex);
    let expected = [
        "`.properties.defaultHostName` is read-only",
        "`.properties.functionAppConfig.runtime.verison` is not expected here",
        "`.properties.functionAppConfig.scaleAndConcurrency.instanceMemoryMB` must be a number",
    ];
    for e in expected {
        assert!(errors.iter().any(|x| x.starts_with(e)), "missing {e:?} in {errors:#?}");
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn azapi_actions_send_only_the_documented_keys() {
    // azapi validates no action body (azapi_resource_action has no schema check), and the type data has no
    // entry for `extensions/onedeploy` or `restart`: the keys are held to ARM's OneDeploy request as
    // Microsoft's own templates send it (packageUri, remoteBuild, type; Azure/terraform-azurerm-avm-res-
    // web-site modules/extensions_zipdeploy, the Flex Consumption Bicep samples).
    let azure = Module::infra("modules/azure");
    let actions = azure.resources("azapi_resource_action");
    assert_eq!(actions.len(), 2, "the Flex OneDeploy and the Premium/Dedicated restart");
    for (name, action) in actions {
        let verb = attribute(action, "action").and_then(text).unwrap_or_default();
        let body = attribute(action, "body");
        match verb.as_str() {
            "extensions/onedeploy" => {
                let Some(Expression::Object(body)) = body else { panic!("{name}: body is an object") };
                let keys: Vec<String> = body.keys().map(|k| k.to_string()).collect();
                assert_eq!(keys, ["properties"], "{name}");
                let Some(Expression::Object(properties)) = body.values().next() else { panic!("{name}") };
                for key in properties.keys().map(|k| k.to_string()) {
                    assert!(["packageUri", "remoteBuild", "type"].contains(&key.as_str()), "{name}: {key}");
                }
            }
            "restart" => assert!(body.is_none(), "{name}: restart takes no body"),
            other => panic!("{name}: action {other} has no documented body here"),
        }
    }
}

#[test]
fn the_type_data_comes_from_the_azapi_versions_the_module_allows() {
    // The slice was taken at the releases the constraint admits (versions.tf: >= 2.9, < 2.13).
    let versions = std::fs::read_to_string(Module::infra("modules/azure").dir.join("versions.tf")).unwrap();
    assert!(
        versions.contains(r#"version = ">= 2.9, < 2.13""#),
        "azapi constraint changed: re-check the slices"
    );
    for slice in TypeSlice::all() {
        assert_eq!(slice.source["repository"], "Azure/terraform-provider-azapi", "{}", slice.file.display());
        let tags: Vec<&str> =
            slice.source["same_blob_at"].as_array().unwrap().iter().filter_map(|t| t.as_str()).collect();
        assert_eq!(tags, ["v2.9.0", "v2.10.0", "v2.11.0", "v2.12.0"], "{}", slice.file.display());
        assert!(slice.source["path"].as_str().unwrap().starts_with("internal/azure/generated/"));
    }
}
