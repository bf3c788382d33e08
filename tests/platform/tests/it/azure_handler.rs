//! The Azure custom handler as the Functions host runs it: the packaged `handler` executable started
//! alone with `FUNCTIONS_CUSTOMHANDLER_PORT`, sent the host's documented requests (fixtures from the
//! custom handler documentation and the host's source). Microsoft's advice for testing a custom handler
//! without the host, which cannot be installed here.

use azs_platform_tests::{Handler, fixture, free_port, median};
use chrono::{Duration as Hours, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tempfile::TempDir;

/// A handler on an empty SQLite database and an empty file secret store.
async fn handler_with_empty_store() -> (Handler, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AZS_USAGE_DATABASE", format!("sqlite:{}", dir.path().join("usage.db").display())),
        ("AZS_USAGE_SECRETS", format!("file:{}", dir.path().join("secrets.json").display())),
        ("AZS_USAGE_ALLOWED_STAMP_HOSTS", "127.0.0.1".to_owned()),
        ("AZS_USAGE_TIME_BUDGET", "60s".to_owned()),
    ];
    (Handler::start(&env).await.unwrap(), dir)
}

async fn invoke(handler: &Handler, path: &str, invocation_id: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", handler.base))
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .header("X-Azure-Functions-HostVersion", "4.1046.100.1")
        .json(body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The host's timer payload with the timer value re-encoded: as an object, or as JSON text (older hosts).
fn timer_request(fixture_name: &str, value_as_text: bool) -> Value {
    let mut request = fixture(fixture_name);
    let timer = match &request["Data"]["timer"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        object => object.clone(),
    };
    request["Data"]["timer"] = if value_as_text { Value::String(timer.to_string()) } else { timer };
    request
}

/// A registration the webhook accepts without verification; `endpoint` is the stamp's admin ARM URL.
/// `collectFrom` is given so that there is a settled hour to pull whatever the clock says: by default a
/// new stamp starts at the month's first hour, which left nothing to pull (and nothing to fail) in the
/// first hour of a month.
fn registration(name: &str, endpoint: &str) -> Value {
    let collect_from = Utc::now().duration_trunc(Hours::hours(1)).unwrap() - Hours::hours(3);
    json!({
        "name": name,
        "adminSubscriptionId": "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f",
        "tenantId": "4de154de-f8a8-4017-af41-df619da68155",
        "applicationId": "11111111-2222-3333-4444-555555555555",
        "adminArmEndpoint": endpoint,
        "applicationSecret": "not-a-real-secret",
        "collectFrom": collect_from.to_rfc3339(),
    })
}

/// An https URL on a port where nothing listens.
fn closed_endpoint() -> String {
    format!("https://127.0.0.1:{}", free_port())
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort();
    keys
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn the_readiness_probe_is_answered_before_anything_slow_is_built() {
    let (handler, dir) = handler_with_empty_store().await;
    println!("handler: first 200 on GET / {:?} after spawn", handler.ready_after);
    // Nothing was built yet: the database file appears with the first invocation.
    assert!(!dir.path().join("usage.db").exists());
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn cold_start_to_first_handled_request_median_of_ten() {
    let timer = timer_request("azure-functions-timer-request.json", false);
    let (mut ready, mut first_timer) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let (handler, _dir) = handler_with_empty_store().await;
        ready.push(handler.ready_after);
        // The first invocation also builds the services (SQLite with its migrations, the secret store).
        let (status, _) = invoke(&handler, "/collect-usage", "cold", &timer).await;
        assert_eq!(status, StatusCode::OK);
        first_timer.push(handler.spawned.elapsed());
    }
    println!(
        "handler cold start, median of 10: spawn -> first 200 on GET / {:?}; spawn -> first timer invocation answered {:?}",
        median(&mut ready),
        median(&mut first_timer)
    );
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn every_timer_payload_shape_runs_a_collection_and_answers_outputs_logs_and_return_value() {
    let (handler, _dir) = handler_with_empty_store().await;
    for (name, as_text) in [
        ("azure-functions-timer-request.json", false),
        ("azure-functions-timer-request.json", true),
        ("azure-functions-timer-request-first-run.json", true),
        ("azure-functions-timer-request-first-run.json", false),
    ] {
        let (status, body) =
            invoke(&handler, "/collect-usage", "timer-1", &timer_request(name, as_text)).await;

        assert_eq!(status, StatusCode::OK, "{name} (value as text: {as_text}): {body}");
        assert_eq!(keys(&body), ["Logs", "Outputs", "ReturnValue"]);
        assert_eq!(body["Outputs"], json!({}));
        assert_eq!(body["Logs"], json!(["no enabled stamps to collect"]));
        assert_eq!(body["ReturnValue"], json!({ "stamps": [] }));
    }
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn a_malformed_timer_payload_still_runs_the_collection() {
    let (handler, _dir) = handler_with_empty_store().await;
    let odd =
        json!({"Data": {"timer": {"ScheduleStatus": {"Last": "yesterday", "Next": 7}, "New": true}}, "X": 1});

    let (status, body) = invoke(&handler, "/collect-usage", "timer-odd", &odd).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ReturnValue"], json!({ "stamps": [] }));
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn a_forwarded_registration_is_served_by_the_webhook_under_api() {
    let (handler, _dir) = handler_with_empty_store().await;
    let client = reqwest::Client::new();

    let created = client
        .post(format!("{}/api/stamps?verify=false", handler.base))
        .header("X-Azure-Functions-InvocationId", "forwarded-1")
        .json(&registration("stamp-eu-1", &closed_endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/api/stamps/"), "{location}");

    let fetched = client.get(format!("{}{location}", handler.base)).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    let unknown = client.get(format!("{}/api/elsewhere", handler.base)).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn a_stamp_that_cannot_be_reached_fails_the_timer_invocation() {
    let (handler, _dir) = handler_with_empty_store().await;
    let created = reqwest::Client::new()
        .post(format!("{}/api/stamps?verify=false", handler.base))
        .json(&registration("stamp-down", &closed_endpoint()))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let timer = timer_request("azure-functions-timer-request.json", false);
    let (status, body) = invoke(&handler, "/collect-usage", "timer-down", &timer).await;

    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(keys(&body), ["Logs", "Outputs", "ReturnValue"]);
    // Per stamp: one summary line, and one metric line that the Application Insights alerts query.
    let logs: Vec<&str> = body["Logs"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    let (metrics, summaries): (Vec<&str>, Vec<&str>) =
        logs.iter().partition(|l| l.starts_with("azs-usage-metric "));
    assert_eq!(summaries.len(), 1, "one summary line per stamp: {logs:?}");
    assert!(summaries[0].starts_with("stamp-down ("), "{logs:?}");
    assert!(summaries[0].contains(": failed,"), "{logs:?}");
    assert_eq!(metrics.len(), 1, "one metric line per stamp: {logs:?}");
    let metric: Value = serde_json::from_str(&metrics[0]["azs-usage-metric ".len()..]).unwrap();
    assert_eq!(
        (metric["stampName"].as_str(), metric["outcome"].as_str()),
        (Some("stamp-down"), Some("failed"))
    );
    assert_eq!(body["ReturnValue"]["stamps"][0]["outcome"], "failed");
    assert!(!body.to_string().contains("not-a-real-secret"), "a secret reached the answer: {body}");
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn a_non_forwarded_http_invocation_is_answered_in_the_output_binding_shape() {
    let (handler, _dir) = handler_with_empty_store().await;
    let documented = fixture("azure-functions-http-response.json");

    // The new host's payload, carrying a valid registration (the fixture's own body is incomplete).
    let mut request = fixture("azure-functions-http-request.json");
    request["Data"]["req"]["Url"] = json!("https://example-app.azurewebsites.net/api/stamps?verify=false");
    request["Data"]["req"]["Body"] = json!(registration("stamp-eu-1", &closed_endpoint()).to_string());
    let (status, body) = invoke(&handler, "/register-stamp", "http-new-host", &request).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(keys(&body), keys(&documented));
    assert_eq!(keys(&body["Outputs"]), ["res"]);
    let res = &body["Outputs"]["res"];
    assert_eq!(keys(res), keys(&documented["Outputs"]["res"]));
    assert_eq!((res["statusCode"].as_str(), res["status"].as_str()), (Some("201"), Some("201")));
    let created: Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    assert_eq!(created["name"], "stamp-eu-1");
    assert!(res["headers"]["location"].as_str().unwrap().starts_with("/api/stamps/"));
    assert_eq!(body["Logs"], json!(["POST /api/stamps -> 201"]));
    assert_eq!(body["ReturnValue"], Value::Null);

    // The fixture as the host sends it: an incomplete registration is the webhook's 400, delivered.
    let (status, body) =
        invoke(&handler, "/register-stamp", "http-fixture", &fixture("azure-functions-http-request.json"))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["Outputs"]["res"]["statusCode"], "400");

    // The old host: `Query` as JSON text, no `Body`.
    let (status, body) = invoke(
        &handler,
        "/register-stamp",
        "http-old-host",
        &fixture("azure-functions-http-request-old-host.json"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let res = &body["Outputs"]["res"];
    assert_eq!(keys(res), keys(&documented["Outputs"]["res"]));
    assert_eq!(res["statusCode"], "200");
    let listed: Value = serde_json::from_str(res["body"].as_str().unwrap()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "the stamp registered above: {listed}");
    assert_eq!(body["Logs"], json!(["GET /api/stamps -> 200"]));
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn every_log_line_of_an_invocation_names_its_invocation_id() {
    let (handler, _dir) = handler_with_empty_store().await;
    let timer = timer_request("azure-functions-timer-request.json", false);

    invoke(&handler, "/collect-usage", "7c9e6679-7425-40de-944b-e07fc1f90ae7", &timer).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let lines = handler.process.stdout.lines();
    let ours: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.to_string().contains("7c9e6679-7425-40de-944b-e07fc1f90ae7"))
        .collect();
    let messages: Vec<&str> = ours.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"invocation received"), "{lines:#?}");
    assert!(messages.contains(&"timer fired"), "{lines:#?}");
    assert!(messages.contains(&"invocation answered"), "{lines:#?}");
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn a_broken_configuration_fails_each_invocation_with_the_reason_and_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AZS_USAGE_DATABASE", format!("sqlite:{}", dir.path().join("usage.db").display())),
        ("AZS_USAGE_SECRETS", "vault-of-my-own".to_owned()),
    ];
    let handler = Handler::start(&env).await.unwrap();
    let timer = timer_request("azure-functions-timer-request.json", false);

    for attempt in ["first", "second"] {
        let (status, body) = invoke(&handler, "/collect-usage", attempt, &timer).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        let log = body["Logs"][0].as_str().unwrap();
        assert!(log.starts_with("cannot start:") && log.contains("AZS_USAGE_SECRETS"), "{log}");
    }
    let forwarded = reqwest::get(format!("{}/api/stamps", handler.base)).await.unwrap();
    assert_eq!(forwarded.status(), StatusCode::SERVICE_UNAVAILABLE);
}
