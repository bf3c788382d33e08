//! The body check azapi runs during `terraform validate`, replayed against a slice of azapi's embedded ARM
//! type data (`fixtures/azapi/*.json`), so that an azapi body is checked where no azapi binary runs.
//!
//! It follows `internal/azure/types/*.go` of Azure/terraform-provider-azapi (v2.12.0): an object property the
//! type does not define is refused unless the type takes additional properties; a read-only property may
//! not be set; a required one must be; string literals and enums must match; a discriminated object picks
//! its branch by the discriminator's value. Like azapi's `schemaValidate`, the resource's `name`,
//! `location`, `tags` and `identity` arguments are part of the checked body, and a missing `location` or
//! `tags` is no error. What Terraform only knows at apply (references, function calls) is skipped, as
//! azapi skips unknown values; literals, objects, arrays, `for` expressions and both branches of a
//! conditional are checked.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hcl::expr::{Expression, ObjectKey, TemplateExpr};
use serde_json::Value;

const REQUIRED: u64 = 1;
const READ_ONLY: u64 = 2;

/// One slice of azapi's type data: the types reachable from some resource types, under their index in
/// the provider's `types.json`, and where the slice came from.
pub struct TypeSlice {
    pub file: PathBuf,
    pub source: Value,
    resources: BTreeMap<String, String>,
    types: BTreeMap<String, Value>,
}

/// The bodies azapi would send for one resource block: `body` plus the arguments azapi merges into it.
pub struct ResourceBody {
    pub resource_type: String,
    pub body: Expression,
    pub name: Option<Expression>,
    pub location: Option<Expression>,
    pub tags: Option<Expression>,
    pub identity_type: Option<Expression>,
}

impl TypeSlice {
    pub fn load(file: &Path) -> TypeSlice {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let resources = json["resources"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: no resources", file.display()))
            .iter()
            .map(|(name, index)| (name.to_ascii_lowercase(), index.to_string()))
            .collect();
        let types = json["types"]
            .as_object()
            .unwrap_or_else(|| panic!("{}: no types", file.display()))
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        TypeSlice { file: file.to_path_buf(), source: json["source"].clone(), resources, types }
    }

    /// Every slice under `tests/infra-check/fixtures/azapi/`.
    pub fn all() -> Vec<TypeSlice> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/azapi");
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|f| TypeSlice::load(f)).collect()
    }

    pub fn covers(&self, resource_type: &str) -> bool {
        self.resources.contains_key(&resource_type.to_ascii_lowercase())
    }

    /// The violations azapi would report for this body, each naming its path (`.properties.x`).
    pub fn validate(&self, resource: &ResourceBody) -> Vec<String> {
        let index = self.resources.get(&resource.resource_type.to_ascii_lowercase()).unwrap_or_else(|| {
            panic!("{} holds no type data for {}", self.file.display(), resource.resource_type)
        });
        let resource_type = &self.types[index];
        let body_ref = resource_type["body"]["$ref"].as_str().expect("a resource type has a body");
        let Expression::Object(mut body) = unparen(resource.body.clone()) else {
            return Vec::new(); // not an object literal: unknown until apply
        };
        let injected = [("name", &resource.name), ("location", &resource.location), ("tags", &resource.tags)];
        for (key, value) in injected {
            if let Some(value) = value {
                body.insert(ObjectKey::Identifier(hcl::Identifier::unchecked(key)), value.clone());
            }
        }
        if let Some(identity) = &resource.identity_type {
            let mut object = hcl::Object::new();
            object.insert(ObjectKey::Identifier(hcl::Identifier::unchecked("type")), identity.clone());
            body.insert(
                ObjectKey::Identifier(hcl::Identifier::unchecked("identity")),
                Expression::Object(object),
            );
        }
        let mut errors = Vec::new();
        self.check(body_ref, &Expression::Object(body), "", &mut errors);
        errors.retain(|e| !e.contains("`.location` is required") && !e.contains("`.tags` is required"));
        errors
    }

    fn resolve(&self, reference: &str) -> &Value {
        let index = reference.strip_prefix("#/").unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        self.types.get(index).unwrap_or_else(|| {
            panic!("{}: type #{index} is missing from the slice (regenerate it)", self.file.display())
        })
    }

    fn check(&self, reference: &str, value: &Expression, path: &str, errors: &mut Vec<String>) {
        let value = unparen(value.clone());
        match &value {
            Expression::Null => return,
            // Both branches may be sent.
            Expression::Conditional(c) => {
                self.check(reference, &c.true_expr, path, errors);
                self.check(reference, &c.false_expr, path, errors);
                return;
            }
            _ => {}
        }
        let schema = self.resolve(reference);
        match schema["$type"].as_str().unwrap_or("") {
            "ObjectType" => self.check_object(schema, None, &value, path, errors),
            "DiscriminatedObjectType" => self.check_discriminated(schema, &value, path, errors),
            "ArrayType" => {
                let item = schema["itemType"]["$ref"].as_str().expect("itemType");
                match &value {
                    Expression::Array(items) => {
                        for (i, v) in items.iter().enumerate() {
                            self.check(item, v, &format!("{path}.{i}"), errors);
                        }
                    }
                    Expression::ForExpr(f) if f.key_expr.is_none() => {
                        self.check(item, &f.value_expr, &format!("{path}.*"), errors);
                    }
                    other if is_literal(other) => errors.push(format!("`{path}` must be an array")),
                    _ => {}
                }
            }
            "StringLiteralType" => {
                let expected = schema["value"].as_str().unwrap_or("");
                if let Some(actual) = literal_string(&value)
                    && actual != expected
                {
                    errors.push(format!("`{path}` is invalid, expected {expected:?} but got {actual:?}"));
                } else if literal_string(&value).is_none() && is_literal(&value) {
                    errors.push(format!("`{path}` must be the string {expected:?}"));
                }
            }
            "UnionType" => {
                let options: Vec<&str> = schema["elements"]
                    .as_array()
                    .expect("union elements")
                    .iter()
                    .filter_map(|e| e["$ref"].as_str())
                    .collect();
                if !is_literal(&value) {
                    return;
                }
                let fits = options.iter().any(|option| {
                    let mut trial = Vec::new();
                    self.check(option, &value, path, &mut trial);
                    trial.is_empty()
                });
                if !fits {
                    let literals: Vec<&str> =
                        options.iter().filter_map(|o| self.resolve(o)["value"].as_str()).collect();
                    errors.push(format!("`{path}` is invalid, expected one of {literals:?}"));
                }
            }
            "StringType" if is_literal(&value) && literal_string(&value).is_none() => {
                errors.push(format!("`{path}` must be a string"));
            }
            "IntegerType" if is_literal(&value) && !matches!(value, Expression::Number(_)) => {
                errors.push(format!("`{path}` must be a number"));
            }
            "BooleanType" if is_literal(&value) && !matches!(value, Expression::Bool(_)) => {
                errors.push(format!("`{path}` must be a boolean"));
            }
            // AnyType and anything this slice does not model: no check, as in azapi.
            _ => {}
        }
    }

    /// An object: its own properties plus, for a discriminated branch, the base properties.
    fn check_object(
        &self,
        schema: &Value,
        base: Option<&serde_json::Map<String, Value>>,
        value: &Expression,
        path: &str,
        errors: &mut Vec<String>,
    ) {
        let Expression::Object(object) = value else {
            if is_literal(value) {
                errors.push(format!("`{path}` must be an object"));
            }
            return;
        };
        let empty = serde_json::Map::new();
        let own = schema["properties"].as_object().unwrap_or(&empty);
        let properties: BTreeMap<&String, &Value> = own.iter().chain(base.unwrap_or(&empty).iter()).collect();
        let additional = schema["additionalProperties"]["$ref"].as_str();
        let mut present = Vec::new();
        for (key, v) in object.iter() {
            let Some(key) = key_text(key) else { continue };
            let child = format!("{path}.{key}");
            present.push(key.clone());
            match properties.get(&key) {
                Some(def) => {
                    let flags = def["flags"].as_u64().unwrap_or(0);
                    if flags & READ_ONLY != 0 {
                        if flags & REQUIRED == 0 {
                            errors.push(format!("`{child}` is read-only and must not be set"));
                        }
                        continue;
                    }
                    if let Some(r) = def["type"]["$ref"].as_str() {
                        self.check(r, v, &child, errors);
                    }
                }
                None => match additional {
                    Some(r) => self.check(r, v, &child, errors),
                    None => {
                        let allowed: Vec<String> = properties.keys().map(|k| format!("{path}.{k}")).collect();
                        errors
                            .push(format!("`{child}` is not expected here; allowed: {}", allowed.join(", ")));
                    }
                },
            }
        }
        for (key, def) in &properties {
            let flags = def["flags"].as_u64().unwrap_or(0);
            if flags & REQUIRED != 0 && flags & READ_ONLY == 0 && !present.contains(key) {
                errors.push(format!("`{path}.{key}` is required, but no definition was found"));
            }
        }
    }

    fn check_discriminated(&self, schema: &Value, value: &Expression, path: &str, errors: &mut Vec<String>) {
        let Expression::Object(object) = value else {
            if is_literal(value) {
                errors.push(format!("`{path}` must be an object"));
            }
            return;
        };
        let discriminator = schema["discriminator"].as_str().expect("discriminator");
        let chosen = object.iter().find(|(k, _)| key_text(k).as_deref() == Some(discriminator));
        let Some((_, chosen)) = chosen else {
            errors.push(format!("`{path}.{discriminator}` is required, but no definition was found"));
            return;
        };
        let Some(branch) = literal_string(&unparen(chosen.clone())) else { return };
        let elements = schema["elements"].as_object().expect("elements");
        let Some(element) = elements.get(&branch).and_then(|e| e["$ref"].as_str()) else {
            let options: Vec<&String> = elements.keys().collect();
            errors.push(format!(
                "`{path}.{discriminator}` is invalid, expected one of {options:?} but got {branch:?}"
            ));
            return;
        };
        self.check_object(self.resolve(element), schema["baseProperties"].as_object(), value, path, errors);
    }
}

fn unparen(expr: Expression) -> Expression {
    match expr {
        Expression::Parenthesis(inner) => unparen(*inner),
        other => other,
    }
}

/// A value Terraform knows without evaluating anything.
fn is_literal(expr: &Expression) -> bool {
    match expr {
        Expression::Bool(_) | Expression::Number(_) | Expression::String(_) => true,
        Expression::Array(_) | Expression::Object(_) => true,
        Expression::TemplateExpr(_) => literal_string(expr).is_some(),
        _ => false,
    }
}

/// The text of a string without interpolations.
fn literal_string(expr: &Expression) -> Option<String> {
    match expr {
        Expression::String(s) => Some(s.clone()),
        Expression::TemplateExpr(t) => match t.as_ref() {
            TemplateExpr::QuotedString(s) if !s.contains("${") => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn key_text(key: &ObjectKey) -> Option<String> {
    match key {
        ObjectKey::Identifier(id) => Some(id.as_str().to_owned()),
        ObjectKey::Expression(e) => literal_string(e),
        _ => None,
    }
}
