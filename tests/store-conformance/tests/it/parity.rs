//! No silent gaps between stores. Every check we can run without SQL Server passes a store method that
//! answers with a constant (the SQL Server store's `tombstone()` answered `Ok(None)` for a release, and
//! its conformance case could only fail on a real server). So this reads the stores' sources and the
//! port traits and fails, here, when:
//! - a store leaves a port method at the trait's default where the SQLite store (the reference) has its
//!   own, unless [`DELIBERATE_DEFAULTS`] says why;
//! - a store answers a port method with a constant (`Ok(None)`, `Ok(Vec::new())`, `Ok(())`, ...),
//!   `todo!()`/`unimplemented!()`, or ignores every argument (`_name`), where the SQLite store does
//!   not;
//! - a store's conformance test runs less than every case, or a case is written but never listed;
//!   the same for rating's ports (`PriceBookStore`, `StatementStore`) and their cases.

use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The reference store and the others held to it.
const REFERENCE: &str = "shared/store-sqlite";
const STORES: &[&str] = &["shared/store-sqlserver", "shared/store-postgres"];

/// Rating's ports: a store keeps them beside `Store`, not inside it.
const RATING_PORTS: &[&str] = &["PriceBookStore", "StatementStore"];

/// Port methods a store may leave at the trait's default although the reference overrides them: the
/// default is a complete implementation, the override only a faster one.
const DELIBERATE_DEFAULTS: &[(&str, &str, &str)] = &[(
    "shared/store-sqlserver",
    "UsageLedger::stored_windows",
    "the default reads the stamp's rows and quarantine through export_rows and quarantine, which is \
     correct; SQLite answers from its index. An index-only answer on SQL Server (usage_windows) would \
     also list windows committed empty, which the default does not",
)];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A port trait's methods: name -> whether the trait gives it a default body.
type Port = BTreeMap<String, bool>;

/// Where the traits `Store` is made of are declared.
const PORT_FILES: &[&str] =
    &["shared/core/src/ports/store.rs", "shared/core/src/audit.rs", "shared/core/src/rating/ports.rs"];

/// The traits `Store` and `RatingStore` are made of (and their supertraits), from [`PORT_FILES`].
fn store_ports() -> BTreeMap<String, Port> {
    let files: Vec<syn::File> = PORT_FILES.iter().map(|f| parse(&root().join(f))).collect();
    let traits: BTreeMap<String, &syn::ItemTrait> = files
        .iter()
        .flat_map(|file| &file.items)
        .filter_map(|i| match i {
            syn::Item::Trait(t) => Some((t.ident.to_string(), t)),
            _ => None,
        })
        .collect();
    let supertraits = |t: &syn::ItemTrait| -> Vec<String> {
        t.supertraits
            .iter()
            .filter_map(|b| match b {
                syn::TypeParamBound::Trait(t) => t.path.segments.last().map(|s| s.ident.to_string()),
                _ => None,
            })
            .filter(|name| traits.contains_key(name))
            .collect()
    };
    let mut ports = BTreeMap::new();
    let mut pending = supertraits(traits["Store"]);
    pending.extend(supertraits(traits["RatingStore"]));
    while let Some(name) = pending.pop() {
        let t = traits[&name];
        pending.extend(supertraits(t));
        let methods = t
            .items
            .iter()
            .filter_map(|i| match i {
                syn::TraitItem::Fn(f) => Some((f.sig.ident.to_string(), f.default.is_some())),
                _ => None,
            })
            .collect();
        ports.insert(name, methods);
    }
    ports
}

/// One store's implementation of a port method.
struct Method {
    file: PathBuf,
    /// Why its body looks like a stand-in, if it does.
    stub: Option<String>,
}

/// A store's port methods: "Trait::method" -> how it is implemented.
fn implemented(store: &str, ports: &BTreeMap<String, Port>) -> BTreeMap<String, Method> {
    let mut methods = BTreeMap::new();
    for file in rust_files(&root().join(store).join("src")) {
        for item in parse(&file).items {
            let syn::Item::Impl(block) = item else { continue };
            let Some((_, path, _)) = &block.trait_ else { continue };
            let port = path.segments.last().unwrap().ident.to_string();
            if !ports.contains_key(&port) {
                continue;
            }
            for item in &block.items {
                if let syn::ImplItem::Fn(f) = item {
                    let name = format!("{port}::{}", f.sig.ident);
                    methods.insert(name, Method { file: file.clone(), stub: stand_in(f) });
                }
            }
        }
    }
    methods
}

/// Bodies that answer without doing anything, as their tokens print.
const CONSTANT_ANSWERS: &[&str] = &[
    "Ok (None)",
    "Ok (())",
    "Ok (Vec :: new ())",
    "Ok (vec ! [])",
    "Ok (Default :: default ())",
    "Ok (false)",
    "Ok (true)",
    "Ok (0)",
];

/// Why `f` looks like a stand-in rather than an implementation, if it does.
fn stand_in(f: &syn::ImplItemFn) -> Option<String> {
    let statements = &f.block.stmts;
    if let [only] = statements.as_slice() {
        let text = only.to_token_stream().to_string();
        let text = text.trim_end_matches(';').trim();
        if CONSTANT_ANSWERS.contains(&text) {
            return Some(format!("its body is only `{text}`"));
        }
        for never in ["todo !", "unimplemented !", "panic !"] {
            if text.starts_with(never) {
                return Some(format!("its body is `{text}`"));
            }
        }
    }
    let arguments: Vec<String> = f
        .sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(t) => Some(t.pat.to_token_stream().to_string()),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    if !arguments.is_empty() && arguments.iter().all(|a| a.starts_with('_')) {
        return Some(format!("it ignores every argument ({})", arguments.join(", ")));
    }
    None
}

/// Every gap between `store` and the reference, as one line each.
fn gaps(store: &str) -> Vec<String> {
    let ports = store_ports();
    let reference = implemented(REFERENCE, &ports);
    let other = implemented(store, &ports);
    let mut gaps = Vec::new();
    for (port, methods) in &ports {
        for (method, has_default) in methods {
            let name = format!("{port}::{method}");
            let Some(reference_method) = reference.get(&name) else {
                continue; // the reference uses the default too
            };
            match other.get(&name) {
                None if *has_default => {
                    if !DELIBERATE_DEFAULTS.iter().any(|(s, m, _)| *s == store && *m == name) {
                        gaps.push(format!(
                            "{store}: {name} is left at the trait's default, which {REFERENCE} overrides \
                             (implement it, or list it in DELIBERATE_DEFAULTS with the reason)"
                        ));
                    }
                }
                None => gaps.push(format!("{store}: {name} is not implemented")),
                Some(m) => {
                    if let (Some(why), None) = (&m.stub, &reference_method.stub) {
                        gaps.push(format!(
                            "{store}: {name} in {} answers with a stand-in ({why}); {REFERENCE} implements it",
                            m.file.strip_prefix(root()).unwrap_or(&m.file).display()
                        ));
                    }
                }
            }
        }
    }
    gaps
}

#[test]
fn every_store_implements_every_port_method_the_sqlite_store_implements() {
    let ports = store_ports();
    assert!(ports.contains_key("StampRegistry") && ports.contains_key("UsageLedger"), "{ports:?}");
    assert!(ports["StampRegistry"].contains_key("tombstone"));
    assert!(ports.contains_key("AuditTrail") && ports.contains_key("AuditedMappingStore"), "{ports:?}");
    assert!(RATING_PORTS.iter().all(|p| ports.contains_key(*p)), "{ports:?}");
    assert!(ports["StatementStore"].contains_key("verify_history"));
    let mut all = Vec::new();
    for store in STORES {
        all.extend(gaps(store));
    }
    assert!(all.is_empty(), "silent gaps between stores:\n{}", all.join("\n"));
}

#[test]
fn deliberate_defaults_name_real_methods_with_a_default() {
    let ports = store_ports();
    for (store, name, why) in DELIBERATE_DEFAULTS {
        let (port, method) = name.split_once("::").unwrap();
        assert_eq!(ports.get(port).and_then(|m| m.get(method)), Some(&true), "{name}");
        assert!(STORES.contains(store) && !why.is_empty());
        assert!(!implemented(store, &ports).contains_key(*name), "{store} implements {name} now: unlist it");
    }
}

#[test]
fn the_stand_in_check_has_teeth() {
    let stubbed: syn::ImplItemFn = syn::parse_quote! {
        async fn tombstone(&self, _connection: &StampConnection) -> Result<Option<Tombstone>, StoreError> {
            Ok(None)
        }
    };
    assert_eq!(stand_in(&stubbed).as_deref(), Some("its body is only `Ok (None)`"));
    let ignoring: syn::ImplItemFn = syn::parse_quote! {
        async fn release(&self, _stamp: &StampId, _owner: &str) -> Result<(), StoreError> {
            tracing::debug!("nothing to do");
            Ok(())
        }
    };
    assert!(stand_in(&ignoring).unwrap().contains("ignores every argument"));
    let pending: syn::ImplItemFn = syn::parse_quote! {
        async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError> { todo!() }
    };
    assert!(stand_in(&pending).is_some());
    let real: syn::ImplItemFn = syn::parse_quote! {
        async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError> {
            let Some(key) = stamp_key(id) else { return Ok(None) };
            self.run("get_stamp", |s| lookup(s, key)).await
        }
    };
    assert_eq!(stand_in(&real), None);
}

/// The `name` of every `pub async fn name(` in the conformance cases' sources.
fn written_cases() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in rust_files(&root().join("tests/store-conformance/src/cases")) {
        for item in parse(&file).items {
            if let syn::Item::Fn(f) = item
                && matches!(f.vis, syn::Visibility::Public(_))
                && f.sig.asyncness.is_some()
            {
                names.insert(f.sig.ident.to_string());
            }
        }
    }
    names
}

/// The `name` of every `async fn name(store: Arc<dyn RatingUnderTest>)` in the rating cases' source.
fn written_rating_cases() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for item in parse(&root().join("tests/store-conformance/src/rating.rs")).items {
        if let syn::Item::Fn(f) = item
            && f.sig.asyncness.is_some()
            && f.sig.inputs.iter().any(|a| a.to_token_stream().to_string().contains("dyn RatingUnderTest"))
        {
            names.insert(f.sig.ident.to_string());
        }
    }
    names
}

#[test]
fn every_written_case_is_listed_and_every_store_runs_the_whole_list() {
    let listed: BTreeSet<String> = azs_store_conformance::cases().iter().map(|c| c.name.to_owned()).collect();
    let written = written_cases();
    let unlisted: Vec<_> = written.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "cases written but not in cases::all(), so no store runs them: {unlisted:?}"
    );
    assert!(
        listed.contains("removing_a_stamp_leaves_a_tombstone_with_its_watermark_that_registering_consumes")
    );
    let rating_listed: BTreeSet<String> =
        azs_store_conformance::rating::rating_cases().iter().map(|c| c.name.to_owned()).collect();
    let rating_written = written_rating_cases();
    assert!(rating_written.len() >= 5, "{rating_written:?}");
    let unlisted: Vec<_> = rating_written.difference(&rating_listed).collect();
    assert!(
        unlisted.is_empty(),
        "rating cases written but not in rating_cases(), so no store runs them: {unlisted:?}"
    );

    for store in std::iter::once(&REFERENCE).chain(STORES) {
        let path = root().join(store).join("tests/it/conformance.rs");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // run_rating runs every case of rating_cases().
        assert!(
            text.contains("azs_store_conformance::rating::run_rating("),
            "{store} does not run the rating cases"
        );
        // run_all runs every case of cases(); a store that picked cases itself (run_case, cases()) could
        // leave one out.
        assert!(text.contains("azs_store_conformance::run_all("), "{store} does not run every case");
        assert!(text.contains("azs_store_conformance::assert_all_passed("), "{store} does not check them");
        for partial in ["run_case(", "cases()"] {
            assert!(!text.contains(partial), "{store} picks its own cases ({partial}): run them all");
        }
    }
}
