//! The packaged Lambda `bootstrap` executables started directly against a minimal Runtime API (the
//! three calls a function makes: next invocation, response, error), as Lambda starts them in a fresh
//! sandbox. Measures a cold start: spawn to the first invocation's response, services built included
//! (SQLite and the file secret store: no network in the measurement).

use azs_platform_tests::runtime_api::{self, Outcome};
use azs_platform_tests::{artifact, fixture, median, spawn};
use serde_json::{Value, json};
use std::io::Read;
use std::time::{Duration, Instant};

/// The `bootstrap` inside a packaged zip, extracted as Lambda extracts it.
fn extract_bootstrap(function: &str, into: &std::path::Path) -> std::path::PathBuf {
    let zip = std::fs::File::open(artifact(&format!("lambda/{function}/bootstrap.zip"))).unwrap();
    let mut archive = zip::ZipArchive::new(zip).unwrap();
    let mut entry = archive.by_name("bootstrap").unwrap();
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).unwrap();
    let path = into.join(format!("{function}-bootstrap"));
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// One cold start: spawn `bootstrap`, hand it `event`, return what it answered and how long it took.
async fn cold_start(bootstrap: &std::path::Path, function: &str, event: Value) -> (Outcome, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let (api_address, mut outcomes) = runtime_api::serve_one(event).await;
    let env = [
        ("AWS_LAMBDA_RUNTIME_API", api_address),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/26/[$LATEST]0123456789".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{function}")),
        ("AZS_USAGE_DATABASE", format!("sqlite:{}", dir.path().join("usage.db").display())),
        ("AZS_USAGE_SECRETS", format!("file:{}", dir.path().join("secrets.json").display())),
        ("AZS_USAGE_ALLOWED_STAMP_HOSTS", "127.0.0.1".to_owned()),
    ];
    let started = Instant::now();
    let _process = spawn(bootstrap, &env).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), outcomes.recv()).await.unwrap().unwrap();
    (outcome, started.elapsed())
}

/// Ten cold starts of the packaged `function`, each handed `event`; returns each start's response and
/// prints the median time to it.
async fn ten_cold_starts(function: &str, event: Value) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = extract_bootstrap(function, dir.path());
    let (mut responses, mut samples) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        match cold_start(&bootstrap, function, event.clone()).await {
            (Outcome::Response(response), took) => {
                responses.push(response);
                samples.push(took);
            }
            (Outcome::Error(e), _) => panic!("{function}: the invocation failed: {e}"),
        }
    }
    println!(
        "{function} bootstrap cold start (spawn -> first response), median of 10: {:?}",
        median(&mut samples)
    );
    responses
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn the_collect_usage_bootstrap_answers_an_eventbridge_event_with_the_run_summary() {
    for summary in ten_cold_starts("collect-usage", fixture("aws-eventbridge-scheduled-event.json")).await {
        assert_eq!(summary, json!({ "stamps": [] }));
    }
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn the_register_stamp_bootstrap_serves_a_function_url_request_with_the_webhook() {
    // The documented request: POST /stamps with an incomplete registration.
    for response in ten_cold_starts("register-stamp", fixture("aws-function-url-request.json")).await {
        assert_eq!(response["statusCode"], 400, "{response}");
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()), "field errors: {body}");
    }
}
