//! Reads the Terraform under `infra/` with hcl-rs so tests can check it against the application's
//! configuration (`azs_app::config::ENVIRONMENT`) and the packaged artifacts, without Terraform providers.
//!
//! This is no Terraform evaluator: it resolves just what the modules use for the checked values —
//! object literals, `local.*` and `var.*` (to their defaults), `merge(...)` and `cond ? a : b`.

pub mod azapi;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use hcl::expr::{ObjectKey, TemplateExpr, TraversalOperator};
pub use hcl::{Block, Body, Expression};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root exists")
}

pub fn infra_dir() -> PathBuf {
    repo_root().join("infra")
}

/// Every directory under `infra/` that holds `.tf` files: the modules and the examples.
pub fn all_modules() -> Vec<Module> {
    let mut dirs = BTreeSet::new();
    collect_tf_dirs(&infra_dir(), &mut dirs);
    assert!(!dirs.is_empty(), "no .tf files under {}", infra_dir().display());
    dirs.into_iter().map(|dir| Module::load(&dir)).collect()
}

fn collect_tf_dirs(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && !name.starts_with('.') {
            collect_tf_dirs(&path, out);
        } else if name.ends_with(".tf") {
            out.insert(dir.to_path_buf());
        }
    }
}

/// One Terraform module: all `.tf` files of one directory, parsed.
pub struct Module {
    pub dir: PathBuf,
    blocks: Vec<Block>,
}

impl Module {
    /// Loads `infra/<relative>`, e.g. `Module::infra("modules/aws")`.
    pub fn infra(relative: &str) -> Module {
        Module::load(&infra_dir().join(relative))
    }

    pub fn load(dir: &Path) -> Module {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "tf"))
            .collect();
        files.sort();
        let mut blocks = Vec::new();
        for file in files {
            let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            let body =
                hcl::parse(&text).unwrap_or_else(|e| panic!("{} is not valid HCL: {e}", file.display()));
            blocks.extend(body.blocks().cloned());
        }
        Module { dir: dir.to_path_buf(), blocks }
    }

    /// A short name for messages: the path below `infra/`.
    pub fn name(&self) -> String {
        self.dir.strip_prefix(infra_dir()).unwrap_or(&self.dir).display().to_string()
    }

    fn blocks_of(&self, kind: &str) -> Vec<&Block> {
        self.blocks.iter().filter(|b| b.identifier.as_str() == kind).collect()
    }

    /// `resource "<type>" "<name>"` blocks of one type, as (name, body).
    pub fn resources(&self, resource_type: &str) -> Vec<(&str, &Body)> {
        self.blocks_of("resource")
            .into_iter()
            .filter(|b| label(b, 0) == Some(resource_type))
            .map(|b| (label(b, 1).unwrap_or(""), &b.body))
            .collect()
    }

    pub fn resource(&self, resource_type: &str, name: &str) -> &Body {
        self.resources(resource_type)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("{}: no resource {resource_type}.{name}", self.name()))
    }

    /// `data "<type>" "<name>"` blocks of one type, as (name, body).
    pub fn data_sources(&self, data_type: &str) -> Vec<(&str, &Body)> {
        self.blocks_of("data")
            .into_iter()
            .filter(|b| label(b, 0) == Some(data_type))
            .map(|b| (label(b, 1).unwrap_or(""), &b.body))
            .collect()
    }

    /// `variable` blocks as (name, body).
    pub fn variables(&self) -> Vec<(&str, &Body)> {
        self.blocks_of("variable").into_iter().map(|b| (label(b, 0).unwrap_or(""), &b.body)).collect()
    }

    pub fn variable(&self, name: &str) -> &Body {
        self.variables()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, body)| body)
            .unwrap_or_else(|| panic!("{}: no variable {name}", self.name()))
    }

    /// `output` blocks as (name, body).
    pub fn outputs(&self) -> Vec<(&str, &Body)> {
        self.blocks_of("output").into_iter().map(|b| (label(b, 0).unwrap_or(""), &b.body)).collect()
    }

    /// `module` calls as (name, body).
    pub fn module_calls(&self) -> Vec<(&str, &Body)> {
        self.blocks_of("module").into_iter().map(|b| (label(b, 0).unwrap_or(""), &b.body)).collect()
    }

    pub fn locals(&self) -> BTreeMap<String, Expression> {
        self.blocks_of("locals")
            .into_iter()
            .flat_map(|b| b.body.attributes().map(|a| (a.key.as_str().to_owned(), a.expr.clone())))
            .collect()
    }

    /// Follows `local.X` and `var.X` (to its default) until something else is reached.
    pub fn resolve(&self, expr: &Expression) -> Expression {
        let mut current = expr.clone();
        for _ in 0..16 {
            let next = match reference(&current) {
                Some(r) if r.len() == 2 && r[0] == "local" => self.locals().get(&r[1]).cloned(),
                Some(r) if r.len() == 2 && r[0] == "var" => self
                    .variables()
                    .into_iter()
                    .find(|(n, _)| *n == r[1])
                    .and_then(|(_, body)| attribute(body, "default").cloned()),
                _ => None,
            };
            match next {
                Some(next) => current = unparenthesize(next),
                None => return current,
            }
        }
        current
    }

    /// The keys an object-valued expression certainly has, whatever the variables are: for
    /// `merge(...)` the union of its arguments, for `c ? a : b` the keys both branches have.
    pub fn certain_keys(&self, expr: &Expression) -> BTreeSet<String> {
        match self.resolve(expr) {
            Expression::Object(object) => object.keys().filter_map(object_key).collect(),
            Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
                call.args.iter().flat_map(|a| self.certain_keys(a)).collect()
            }
            Expression::Conditional(c) => {
                let t = self.certain_keys(&c.true_expr);
                let f = self.certain_keys(&c.false_expr);
                t.intersection(&f).cloned().collect()
            }
            _ => BTreeSet::new(),
        }
    }

    /// Every key an object-valued expression may have (both branches of conditionals).
    pub fn possible_keys(&self, expr: &Expression) -> BTreeSet<String> {
        match self.resolve(expr) {
            Expression::Object(object) => object.keys().filter_map(object_key).collect(),
            Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
                call.args.iter().flat_map(|a| self.possible_keys(a)).collect()
            }
            Expression::Conditional(c) => {
                let mut keys = self.possible_keys(&c.true_expr);
                keys.extend(self.possible_keys(&c.false_expr));
                keys
            }
            _ => BTreeSet::new(),
        }
    }

    /// Every value `key` may take in an object-valued expression: through `merge(...)` arguments and both
    /// branches of conditionals.
    pub fn possible_entries(&self, expr: &Expression, key: &str) -> Vec<Expression> {
        match self.resolve(expr) {
            Expression::Object(object) => object
                .iter()
                .filter(|(k, _)| object_key(k).as_deref() == Some(key))
                .map(|(_, v)| self.resolve(v))
                .collect(),
            Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
                call.args.iter().flat_map(|a| self.possible_entries(a, key)).collect()
            }
            Expression::Conditional(c) => {
                let mut values = self.possible_entries(&c.true_expr, key);
                values.extend(self.possible_entries(&c.false_expr, key));
                values
            }
            _ => Vec::new(),
        }
    }

    /// The value of `key` in an object-valued expression, when it is set unconditionally (the last
    /// `merge` argument that sets it wins, as in Terraform).
    pub fn entry(&self, expr: &Expression, key: &str) -> Option<Expression> {
        match self.resolve(expr) {
            Expression::Object(object) => object
                .iter()
                .find(|(k, _)| object_key(k).as_deref() == Some(key))
                .map(|(_, v)| self.resolve(v)),
            Expression::FuncCall(call) if call.name.name.as_str() == "merge" => {
                call.args.iter().rev().find_map(|a| self.entry(a, key))
            }
            _ => None,
        }
    }
}

fn label(block: &Block, index: usize) -> Option<&str> {
    block.labels.get(index).map(|l| l.as_str())
}

fn object_key(key: &ObjectKey) -> Option<String> {
    match key {
        ObjectKey::Identifier(id) => Some(id.as_str().to_owned()),
        ObjectKey::Expression(e) => text(e),
        _ => None,
    }
}

fn unparenthesize(expr: Expression) -> Expression {
    match expr {
        Expression::Parenthesis(inner) => unparenthesize(*inner),
        other => other,
    }
}

/// The attribute `name` of a body.
pub fn attribute<'a>(body: &'a Body, name: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key.as_str() == name).map(|a| &a.expr)
}

/// Every nested block `name` of a body.
pub fn blocks<'a>(body: &'a Body, name: &str) -> Vec<&'a Body> {
    body.blocks().filter(|b| b.identifier.as_str() == name).map(|b| &b.body).collect()
}

/// The first nested block `name` of a body.
pub fn block<'a>(body: &'a Body, name: &str) -> Option<&'a Body> {
    body.blocks().find(|b| b.identifier.as_str() == name).map(|b| &b.body)
}

/// The text of a string literal or of a quoted template (interpolations kept as `${...}`).
pub fn text(expr: &Expression) -> Option<String> {
    match expr {
        Expression::String(s) => Some(s.clone()),
        Expression::TemplateExpr(t) => match t.as_ref() {
            TemplateExpr::QuotedString(s) => Some(s.clone()),
            TemplateExpr::Heredoc(h) => Some(h.template.clone()),
        },
        Expression::Parenthesis(inner) => text(inner),
        _ => None,
    }
}

pub fn boolean(expr: &Expression) -> Option<bool> {
    match expr {
        Expression::Bool(b) => Some(*b),
        _ => None,
    }
}

pub fn number(expr: &Expression) -> Option<i64> {
    match expr {
        Expression::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// `a.b.c` as `["a", "b", "c"]` when the expression is a plain reference (no index or splat).
pub fn reference(expr: &Expression) -> Option<Vec<String>> {
    match expr {
        Expression::Variable(v) => Some(vec![v.as_str().to_owned()]),
        Expression::Traversal(t) => {
            let mut parts = reference(&t.expr)?;
            for op in &t.operators {
                match op {
                    TraversalOperator::GetAttr(id) => parts.push(id.as_str().to_owned()),
                    _ => return None,
                }
            }
            Some(parts)
        }
        Expression::Parenthesis(inner) => reference(inner),
        _ => None,
    }
}

/// Every reference an expression reads, rendered as `a.b[0].c`-like dotted text (index and splat
/// operators become `[]`/`*`), including those inside templates, calls and operators.
pub fn references_in(expr: &Expression) -> Vec<String> {
    let mut out = Vec::new();
    walk_references(expr, &mut out);
    out
}

fn walk_references(expr: &Expression, out: &mut Vec<String>) {
    match expr {
        Expression::Variable(v) => out.push(v.as_str().to_owned()),
        Expression::Traversal(t) => {
            let mut inner = Vec::new();
            walk_references(&t.expr, &mut inner);
            let mut suffix = String::new();
            for op in &t.operators {
                match op {
                    TraversalOperator::GetAttr(id) => {
                        suffix.push('.');
                        suffix.push_str(id.as_str());
                    }
                    TraversalOperator::Index(index) => {
                        walk_references(index, out);
                        suffix.push_str("[]");
                    }
                    TraversalOperator::LegacyIndex(_) => suffix.push_str("[]"),
                    _ => suffix.push_str(".*"),
                }
            }
            match inner.len() {
                1 => out.push(format!("{}{suffix}", inner[0])),
                _ => out.extend(inner),
            }
        }
        Expression::TemplateExpr(t) => {
            // Interpolations are HCL expressions: parse each `${...}` and walk it.
            let source = t.to_string();
            for piece in source.split("${").skip(1) {
                if let Some(end) = piece.find('}')
                    && let Ok(inner) = piece[..end].trim().parse::<Expression>()
                {
                    walk_references(&inner, out);
                }
            }
        }
        Expression::Array(items) => items.iter().for_each(|e| walk_references(e, out)),
        Expression::Object(object) => object.values().for_each(|e| walk_references(e, out)),
        Expression::FuncCall(call) => call.args.iter().for_each(|e| walk_references(e, out)),
        Expression::Parenthesis(inner) => walk_references(inner, out),
        Expression::Conditional(c) => {
            walk_references(&c.cond_expr, out);
            walk_references(&c.true_expr, out);
            walk_references(&c.false_expr, out);
        }
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => walk_references(&u.expr, out),
            hcl::expr::Operation::Binary(b) => {
                walk_references(&b.lhs_expr, out);
                walk_references(&b.rhs_expr, out);
            }
        },
        Expression::ForExpr(f) => {
            walk_references(&f.collection_expr, out);
            if let Some(k) = &f.key_expr {
                walk_references(k, out);
            }
            walk_references(&f.value_expr, out);
        }
        _ => {}
    }
}

/// Variables whose value is a secret: marked `sensitive`, or named after one
/// (`..._password`, `..._secret`, `..._key`, `..._token`, `..._credentials`, `..._connection_string`).
/// `secret_prefix`, `kms_key_arn` or `database_secret_name` are names *of* secrets, not secrets.
pub fn is_secret_variable(name: &str, body: &Body) -> bool {
    const SECRET_SUFFIXES: &[&str] =
        &["password", "secret", "key", "token", "credential", "credentials", "connection_string"];
    let sensitive = attribute(body, "sensitive").and_then(boolean).unwrap_or(false);
    let lower = name.to_ascii_lowercase();
    sensitive || SECRET_SUFFIXES.iter().any(|s| lower == *s || lower.ends_with(&format!("_{s}")))
}

/// Whether a reference (as rendered by [`references_in`]) reads a secret value: a key, password,
/// connection string or secret payload of a resource, or a secret variable.
pub fn reads_secret_value(reference: &str, secret_variables: &BTreeSet<String>) -> bool {
    const SECRET_ATTRIBUTES: &[&str] = &[
        "password",
        "secret_string",
        "secret_binary",
        "secret_value",
        "primary_access_key",
        "secondary_access_key",
        "primary_connection_string",
        "secondary_connection_string",
        "primary_blob_connection_string",
        "connection_string",
        "instrumentation_key",
        "primary_key",
        "secondary_key",
        "default_function_key",
        "master_key",
        "access_key",
        "private_key",
        "private_key_pem",
        "result",
        "value",
    ];
    const SECRET_RESOURCES: &[&str] = &[
        "aws_secretsmanager_secret_version",
        "azurerm_key_vault_secret",
        "azurerm_function_app_host_keys",
        "random_password",
        "tls_private_key",
        "aws_iam_access_key",
    ];
    let parts: Vec<&str> = reference.split('.').map(|p| p.trim_end_matches("[]")).collect();
    if parts.first() == Some(&"var") {
        return parts.get(1).is_some_and(|v| secret_variables.contains(*v));
    }
    let resource_type = if parts.first() == Some(&"data") { parts.get(1) } else { parts.first() };
    if resource_type.is_some_and(|t| SECRET_RESOURCES.contains(t)) {
        return true;
    }
    // `value`/`result` are secret only on the secret resources above.
    parts.iter().skip(2).any(|p| SECRET_ATTRIBUTES.contains(p) && *p != "value" && *p != "result")
}

/// Lexically normalizes `a/b/../c` to `a/c` (the artifacts need not exist yet, so no canonicalize).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_from(text: &str) -> Module {
        let body = hcl::parse(text).unwrap();
        Module { dir: PathBuf::from("inline"), blocks: body.blocks().cloned().collect() }
    }

    #[test]
    fn certain_keys_follow_locals_and_merge_but_not_one_sided_conditionals() {
        let m = module_from(
            r#"
            variable "x" { default = null }
            locals {
              base = { A = "1", "B" = var.x }
              env  = merge(local.base, var.x == null ? {} : { C = "3" }, { D = "4" })
            }
            "#,
        );
        let env: Expression = "local.env".parse().unwrap();
        let keys: Vec<_> = m.certain_keys(&env).into_iter().collect();
        assert_eq!(keys, ["A", "B", "D"]);
        assert!(m.possible_keys(&env).contains("C"));
        assert_eq!(m.entry(&env, "D").as_ref().and_then(text).as_deref(), Some("4"));
    }

    #[test]
    fn an_output_reading_a_storage_key_inside_a_template_is_seen_as_secret() {
        let m = module_from(
            r#"output "conn" { value = "key=${azurerm_storage_account.host.primary_access_key};x" }"#,
        );
        let (_, body) = m.outputs()[0];
        let refs = references_in(attribute(body, "value").unwrap());
        assert_eq!(refs, ["azurerm_storage_account.host.primary_access_key"]);
        assert!(reads_secret_value(&refs[0], &BTreeSet::new()));
    }

    #[test]
    fn names_of_secrets_are_not_secrets_but_passwords_are() {
        let plain = hcl::parse("x = 1").unwrap();
        assert!(!is_secret_variable("secret_prefix", &plain));
        assert!(!is_secret_variable("database_secret_name", &plain));
        assert!(!is_secret_variable("kms_key_arn", &plain));
        assert!(is_secret_variable("sql_admin_password", &plain));
        assert!(is_secret_variable("api_key", &plain));
        assert!(is_secret_variable("database_connection_string", &plain));
    }
}
