//! The metric lines a real collection run publishes for alarms: one CloudWatch Embedded Metric Format
//! object per stamp (checked against the EMF specification, not against our own writer) and the
//! Application Insights line the Azure alert queries parse (checked against the query in
//! infra/modules/azure/alerts.tf).
//!
//! Real parts: SQLite file store, file secret store, the stamp client against two simulated stamps, one
//! healthy and one whose usage pages are broken so that its run fails.

use azs_app::config::{self, AppConfig};
use azs_app::metrics::{self, APP_INSIGHTS_PREFIX, NAMESPACE, STAMP_FAILED, WATERMARK_LAG};
use azs_app::wiring::Services;
use azs_core::Secret;
use azs_core::collect::{RunRequest, RunSummary, Silent};
use azs_core::registration::StampRegistration;
use azs_core::status::RunOutcome;
use azs_core::window::floor_hour;
use chrono::{Duration, Utc};
use serde_json::Value;
use stamp_sim::{Fault, SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::sync::Arc;

const SECRET: &str = "metrics-test-secret";
const HOURS: i64 = 3;

/// Runs one collection over a healthy stamp and a broken one; returns the summary.
async fn a_run_with_one_failed_stamp() -> (RunSummary, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite:{}", dir.path().join("usage.db").display());
    let secrets = format!("file:{}", dir.path().join("secrets.json").display());
    let config = AppConfig::from_lookup(|name| match name {
        config::DATABASE => Some(database.clone()),
        config::SECRETS => Some(secrets.clone()),
        // The simulated stamps listen on loopback, which the outbound policy admits only when named.
        config::ALLOWED_STAMP_HOSTS => Some("127.0.0.1".into()),
        _ => None,
    })
    .unwrap();
    let services = Services::build(&config).await.unwrap();
    let auth = || SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None };
    let sim = Simulator::start(SimulatorConfig {
        seed: 15,
        page_size: 50,
        stamps: vec![StampSpec::generated(15, 0, auth()), StampSpec::generated(15, 1, auth())],
    })
    .await
    .unwrap();
    let collect_from = floor_hour(Utc::now()) - Duration::hours(HOURS + 1);
    for (i, name) in ["healthy", "broken"].iter().enumerate() {
        let handle = sim.stamp(i);
        let registration = StampRegistration {
            name: Some((*name).into()),
            admin_subscription_id: Some(handle.admin_subscription_id()),
            tenant_id: Some(handle.tenant_id()),
            application_id: Some(handle.application_id()),
            admin_arm_endpoint: Some(handle.admin_arm_endpoint()),
            is_adfs: Some(false),
            application_secret: Some(Secret::new(SECRET)),
            ca_certificate: Some(sim.ca_pem()),
            collect_from: Some(collect_from.to_rfc3339()),
            ..Default::default()
        };
        services.registrar.register(registration, false, &azs_core::audit::Actor::new("test")).await.unwrap();
    }
    sim.stamp(1).inject(Fault::MalformedPage { count: 10_000 });
    let summary = services.collector.run(RunRequest::default(), Arc::new(Silent)).await.unwrap();
    (summary, dir)
}

/// Checks one log line against the EMF specification
/// (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
/// a JSON object with `_aws.Timestamp` (epoch milliseconds) and `_aws.CloudWatchMetrics` (directives
/// with a Namespace, Dimensions as arrays of at most 30 keys that name string members of the root, and
/// at most 100 Metrics whose Name is a number member of the root and whose Unit is a CloudWatch unit).
fn assert_valid_emf(line: &str) -> Value {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    assert!(!line.contains('\n'), "one line per object");
    let root: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let aws = root["_aws"].as_object().unwrap_or_else(|| panic!("no _aws object: {line}"));
    let timestamp = aws["Timestamp"].as_i64().expect("Timestamp is an integer");
    let now_ms = Utc::now().timestamp_millis();
    assert!((now_ms - timestamp).abs() < 60_000, "Timestamp is epoch milliseconds of now: {timestamp}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics is an array");
    assert!(!directives.is_empty());
    for directive in directives {
        let namespace = directive["Namespace"].as_str().expect("Namespace is a string");
        assert!((1..=255).contains(&namespace.len()));
        for set in directive["Dimensions"].as_array().expect("Dimensions is an array") {
            let keys = set.as_array().expect("a dimension set is an array");
            assert!(keys.len() <= 30);
            for key in keys {
                let key = key.as_str().expect("dimension keys are strings");
                assert!(root[key].is_string(), "dimension {key} must be a string member of the root");
            }
        }
        let metrics = directive["Metrics"].as_array().expect("Metrics is an array");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for metric in metrics {
            let name = metric["Name"].as_str().expect("Name is a string");
            assert!((1..=255).contains(&name.len()));
            assert!(root[name].is_number(), "metric {name} must be a number member of the root: {line}");
            if let Some(unit) = metric.get("Unit") {
                assert!(UNITS.contains(&unit.as_str().unwrap()), "unit {unit}");
            }
        }
    }
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_publishes_one_valid_emf_line_per_stamp_with_its_lag_and_outcome() {
    let started = Utc::now();
    let (summary, _dir) = a_run_with_one_failed_stamp().await;
    let outcome = |name: &str| summary.stamps.iter().find(|s| s.name == name).unwrap().outcome;
    assert_eq!(outcome("healthy"), RunOutcome::Succeeded);
    assert_eq!(outcome("broken"), RunOutcome::Failed);

    let now = Utc::now();
    let run_seconds = (now - started).num_seconds() + 1;
    let mut out = Vec::new();
    metrics::write_emf(&mut out, &summary, now).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");

    for line in lines {
        let emf = assert_valid_emf(line);
        assert_eq!(emf["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        let lag = emf[WATERMARK_LAG].as_i64().expect("the lag is published");
        match emf["Stamp"].as_str().unwrap() {
            // Collected up to the settled hour: the lag is the settle delay (1 h) plus this hour so far,
            // and the run's own seconds when the hour turned during it.
            "healthy" => {
                assert_eq!(emf[STAMP_FAILED], 0);
                assert_eq!(emf["Outcome"], "succeeded");
                assert!((3600..=7200 + run_seconds).contains(&lag), "{lag}");
            }
            // Nothing committed: the watermark is still where collection started.
            "broken" => {
                assert_eq!(emf[STAMP_FAILED], 1);
                assert_eq!(emf["Outcome"], "failed");
                assert!(lag >= (HOURS + 1) * 3600, "{lag}");
            }
            other => panic!("unexpected stamp {other}"),
        }
    }
}

/// What the Azure alert query does with a `traces` message (infra/modules/azure/alerts.tf):
/// `where message startswith "azs-usage-metric "`, `parse_json(substring(message, 17))`, then
/// `todouble(m.watermarkLagSeconds)`, `toint(m.failed)` by `tostring(m.stampName)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_publishes_the_application_insights_shape_the_alert_queries_parse() {
    let (summary, _dir) = a_run_with_one_failed_stamp().await;
    let lines = metrics::app_insights_lines(&summary, Utc::now());
    assert_eq!(lines.len(), 2);
    assert_eq!(APP_INSIGHTS_PREFIX.len(), 17, "the queries cut the JSON at offset 17");

    let alerts =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/modules/azure/alerts.tf"))
            .unwrap();
    for needle in [
        "startswith \"azs-usage-metric \"",
        "substring(message, 17)",
        "m.watermarkLagSeconds",
        "m.failed",
        "m.driftRows",
        "m.stampName",
    ] {
        assert!(alerts.contains(needle), "alerts.tf no longer queries {needle}");
    }

    for line in &lines {
        assert!(line.starts_with(APP_INSIGHTS_PREFIX));
        let m: Value = serde_json::from_str(&line[17..]).unwrap();
        let lag = m["watermarkLagSeconds"].as_f64().expect("a number todouble() reads");
        let failed = m["failed"].as_i64().expect("an integer toint() reads");
        match m["stampName"].as_str().unwrap() {
            "healthy" => assert!(failed == 0 && lag < 3.0 * 3600.0, "{line}"),
            "broken" => assert!(failed == 1 && lag >= 4.0 * 3600.0, "{line}"),
            other => panic!("unexpected stamp {other}"),
        }
        assert!(m["stampId"].is_string() && m["outcome"].is_string());
        // null unless the run verified the stamp; a number todouble() reads when it did.
        assert!(m.get("driftRows").is_some_and(|d| d.is_null() || d.is_u64()), "{line}");
    }
}
