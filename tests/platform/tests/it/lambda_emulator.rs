//! Both Lambda functions under cargo-lambda's Runtime API emulator (`scripts/lambda-watch.sh`), on
//! Secrets Manager (moto) and SQLite, against a simulated stamp: the path an operator's registration
//! and the hourly schedule take in AWS.

use azs_platform_tests::{
    LambdaWatch, assert_same_rows, expected_usage_rows, fixture, free_port, moto_url, stored_usage_rows,
};
use chrono::{DateTime, Duration as Hours, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::json;
use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec};

const SECRET: &str = "sim-application-secret";
#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn a_stamp_registered_through_the_function_url_is_collected_by_the_scheduled_function() {
    // Given a simulated stamp, moto, an empty database and both functions under the emulator.
    let auth = SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None };
    let sim = Simulator::start(SimulatorConfig {
        seed: 11,
        stamps: vec![StampSpec::generated(11, 0, auth)],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let prefix = format!("azs-usage-platform-{}/", std::process::id());
    let watch = LambdaWatch::start(&[
        ("AZS_USAGE_TEST_MOTO_URL", moto_url().unwrap()),
        ("AZS_USAGE_DATABASE", format!("sqlite:{}", db.display())),
        ("AZS_USAGE_SECRET_PREFIX", prefix),
        ("AZS_USAGE_TIME_BUDGET", "5m".to_owned()),
    ])
    .unwrap();
    let stamp = sim.stamp(0);
    let collect_from: DateTime<Utc> = Utc::now().duration_trunc(Hours::hours(1)).unwrap() - Hours::hours(4);

    // When an operator registers it through the Function URL (verified, trusting the stamp's CA)...
    let registration = json!({
        "name": "sim-eu-1",
        "adminSubscriptionId": stamp.admin_subscription_id(),
        "tenantId": stamp.tenant_id(),
        "applicationId": stamp.application_id(),
        "adminArmEndpoint": stamp.admin_arm_endpoint(),
        "applicationSecret": SECRET,
        "caCertificate": sim.ca_pem(),
        "collectFrom": collect_from.to_rfc3339(),
    });
    let (status, created) = watch.post("/lambda-url/register-stamp/stamps?verify=true", &registration).await;
    assert_eq!(status, StatusCode::CREATED, "{created}\n{}", watch.log());

    // ...and EventBridge fires the schedule rule.
    let (status, summary) =
        watch.invoke("collect-usage", &fixture("aws-eventbridge-scheduled-event.json")).await;

    // Then every reported hour since collectFrom is stored, exactly as the stamp serves it.
    assert_eq!(status, StatusCode::OK, "{summary}\n{}", watch.log());
    let outcome = &summary["stamps"][0];
    assert_eq!(outcome["outcome"], "succeeded", "{summary}");
    let watermark: DateTime<Utc> = outcome["watermark"].as_str().unwrap().parse().unwrap();
    assert!(watermark > collect_from, "{summary}");
    let truth = stamp.ground_truth(collect_from, watermark);
    let expected = expected_usage_rows(&truth);
    assert_eq!(outcome["rowsWritten"], truth.len() as u64, "{summary}");
    assert_same_rows("sim-eu-1", &stored_usage_rows(&db), &expected);

    // And a stamp that cannot be reached fails the invocation, naming the stamp.
    let down = json!({
        "name": "sim-down",
        "adminSubscriptionId": "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f",
        "tenantId": stamp.tenant_id(),
        "applicationId": stamp.application_id(),
        "adminArmEndpoint": format!("https://127.0.0.1:{}", free_port()),
        "applicationSecret": SECRET,
        // Not the default (the month's first hour), which leaves nothing to pull early on the 1st.
        "collectFrom": collect_from.to_rfc3339(),
    });
    let (status, _) = watch.post("/lambda-url/register-stamp/stamps?verify=false", &down).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, failure) = watch.invoke("collect-usage", &json!({})).await;
    assert_eq!(failure["errorType"], "StampsFailed", "{failure}");
    let message = failure["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("collection failed for 1 of 2 stamps: sim-down ("), "{message}");
    assert!(!failure.to_string().contains(SECRET));
}
