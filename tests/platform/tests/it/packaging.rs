//! What `scripts/package.sh` ships: the Lambda zips (runtime `provided.al2023` wants an executable named
//! `bootstrap`) and the Function App zip (the folder layout of the custom handler documentation).
//! scripts/test.sh packages its debug build (`scripts/package.sh --debug`); `.ci/run` runs these tests
//! again on the release packages. The glibc floors (2.34 on Lambda's al2023, 2.28 for the handler) are
//! a property of the release link: scripts/package.sh refuses a release binary that misses its floor.

use azs_platform_tests::artifact;
use serde_json::Value;
use std::io::Read;
use std::path::Path;

struct Entry {
    mode: Option<u32>,
    bytes: Vec<u8>,
}

fn read_zip(path: &Path) -> std::collections::BTreeMap<String, Entry> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut entries = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        entries.insert(file.name().to_owned(), Entry { mode: file.unix_mode(), bytes });
    }
    entries
}

fn is_executable(entry: &Entry) -> bool {
    entry.mode.is_some_and(|m| m & 0o111 == 0o111)
}

fn json(entry: &Entry) -> Value {
    serde_json::from_slice(&entry.bytes).expect("valid JSON")
}

#[test]
#[ignore = "needs scripts/package.sh; run by scripts/test.sh"]
fn each_lambda_zip_holds_one_executable_bootstrap() {
    for function in ["collect-usage", "register-stamp"] {
        let entries = read_zip(&artifact(&format!("lambda/{function}/bootstrap.zip")));

        assert_eq!(entries.keys().collect::<Vec<_>>(), ["bootstrap"], "{function}");
        let bootstrap = &entries["bootstrap"];
        assert!(
            is_executable(bootstrap),
            "{function}: bootstrap mode {:?}",
            bootstrap.mode.map(|m| format!("{m:o}"))
        );
        assert!(bootstrap.bytes.starts_with(b"\x7fELF"), "{function}: not an ELF executable");
    }
}

#[test]
#[ignore = "needs scripts/package.sh; run by scripts/test.sh"]
fn the_function_app_zip_is_the_documented_folder_with_an_executable_handler() {
    let entries = read_zip(&artifact("functionapp/azs-usage-functionapp.zip"));

    assert_eq!(
        entries.keys().collect::<Vec<_>>(),
        [
            "collect-usage/function.json",
            "handler",
            "host.json",
            "register-stamp/function.json",
            "stamp-work/function.json"
        ]
    );
    let host = json(&entries["host.json"]);
    assert_eq!(host["version"], "2.0");
    let executable = host["customHandler"]["description"]["defaultExecutablePath"].as_str().unwrap();
    assert_eq!(executable, "handler", "the binary's name (functions/azure, [[bin]] handler)");
    assert!(is_executable(&entries[executable]));
    assert!(entries[executable].bytes.starts_with(b"\x7fELF"));
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    // The queue trigger and outputs (stamp-work, the timer's stampWork) are not built into the host.
    assert_eq!(host["extensionBundle"]["id"], "Microsoft.Azure.Functions.ExtensionBundle");
    // Consumption's limit; the handler's default time budget (4m30s) is set below it.
    assert_eq!(host["functionTimeout"], "00:05:00");
}

#[test]
#[ignore = "needs scripts/package.sh; run by scripts/test.sh"]
fn the_timer_fires_on_the_app_setting_schedule_and_never_on_startup() {
    let entries = read_zip(&artifact("functionapp/azs-usage-functionapp.zip"));
    let function = json(&entries["collect-usage/function.json"]);

    let bindings = function["bindings"].as_array().unwrap();
    // The timer, and the queue output it fills only with AZS_USAGE_FAN_OUT=queue.
    assert_eq!(bindings.len(), 2);
    assert_eq!(bindings[1]["type"], "queue");
    assert_eq!(bindings[1]["direction"], "out");
    assert_eq!(bindings[0]["type"], "timerTrigger");
    assert_eq!(bindings[0]["direction"], "in");
    assert_eq!(bindings[0]["schedule"], "%COLLECT_SCHEDULE%");
    assert_eq!(bindings[0]["runOnStartup"], false);
    assert_eq!(bindings[0]["useMonitor"], true);
}

#[test]
#[ignore = "needs scripts/package.sh; run by scripts/test.sh"]
fn the_http_function_routes_every_webhook_path_to_the_handler() {
    let entries = read_zip(&artifact("functionapp/azs-usage-functionapp.zip"));
    let host = json(&entries["host.json"]);
    let function = json(&entries["register-stamp/function.json"]);

    // Forwarding needs exactly an httpTrigger and an http output.
    let bindings = function["bindings"].as_array().unwrap();
    let types: Vec<&str> = bindings.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["httpTrigger", "http"]);
    let trigger = &bindings[0];
    assert_eq!(trigger["authLevel"], "function");
    assert_eq!(bindings[1]["name"], "res", "the output binding the non-forwarded answer fills");
    let mut methods: Vec<&str> =
        trigger["methods"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    methods.sort();
    assert_eq!(methods, ["delete", "get", "patch", "post", "put"]);
    // The handler serves the webhook under /api/stamps...: the host's route prefix plus the route, whose
    // catch-all also matches /api/stamps itself (ASP.NET routing: a catch-all may be empty).
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    assert_eq!(trigger["route"], "stamps/{*path}");
}
