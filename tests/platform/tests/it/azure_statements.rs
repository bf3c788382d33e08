//! The timer's statement step end to end: the packaged Azure custom handler's timer (`POST
//! /collect-usage`, the Functions host's documented payload) collects a simulated stamp and then keeps
//! every mapped billing subscription's statements (`azs_app::job::keep_statements`), with a price book
//! and its assignment imported by the operator's `azs-usage` on the same database. What the timer kept
//! must be what `azs-usage statement show --json` computes for the same subscription and month, and
//! its log line must count what it kept.

use azs_platform_tests::{Handler, artifact, fixture, free_port};
use chrono::{DateTime, Datelike, Duration as Hours, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

const SECRET: &str = "statement-test-secret";

/// `azs-usage ARGS` (the workspace's debug build) on the handler's database and secret file.
fn cli(dir: &Path, db: &Path, args: &[&str]) -> Output {
    let out = azs_testkit::process::scrubbed(artifact("debug/azs-usage"))
        .env("AZS_USAGE_DATABASE", format!("sqlite:{}", db.display()))
        .env("AZS_USAGE_SECRETS", format!("file:{}", dir.join("secrets.json").display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("azs-usage runs");
    assert!(out.status.success(), "azs-usage {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A statement's JSON without `builtAt`, the one field that says when it was built.
fn content(mut statement: Value) -> Value {
    statement.as_object_mut().expect("a statement is an object").remove("builtAt");
    statement
}

/// (billing subscription, month) -> (state, document) of every statement in the database.
fn stored_statements(db: &Path) -> BTreeMap<(String, String), (String, Value)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt =
        conn.prepare("SELECT billing_subscription_id, month, state, body FROM statements").unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, serde_json::from_str(&r.get::<_, String>(3)?).unwrap())))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// The five counts of the timer's `statements kept` line (`statements: F finalised, A already final,
/// D current drafts, B blocked, X failed`).
fn counts(outcome: &str) -> [usize; 5] {
    let numbers: Vec<usize> = outcome
        .trim_start_matches("statements: ")
        .split(", ")
        .map(|part| part.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("{outcome}")))
        .collect();
    numbers.try_into().unwrap_or_else(|_| panic!("five counts in {outcome}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/package.sh --debug; run by scripts/test.sh"]
async fn the_timer_keeps_each_mapped_subscriptions_statements_as_statement_show_computes_them() {
    // Given a simulated stamp four hours behind, registered with the handler,
    let spec = StampSpec {
        tenants: 3,
        meters_per_tenant: 3,
        late_rows_per_window: 2,
        ..StampSpec::generated(29, 0, SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None })
    };
    let sim =
        Simulator::start(SimulatorConfig { seed: 29, page_size: 20, stamps: vec![spec] }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let env = [
        ("AZS_USAGE_DATABASE", format!("sqlite:{}", db.display())),
        ("AZS_USAGE_SECRETS", format!("file:{}", dir.path().join("secrets.json").display())),
        ("AZS_USAGE_ALLOWED_STAMP_HOSTS", "127.0.0.1".to_owned()),
        ("AZS_USAGE_TIME_BUDGET", "60s".to_owned()),
    ];
    let handler = Handler::start(&env).await.unwrap();
    let from = Utc::now().duration_trunc(Hours::hours(1)).unwrap() - Hours::hours(4);
    let stamp = sim.stamp(0);
    let registration = json!({
        "name": "statements-0",
        "adminSubscriptionId": stamp.admin_subscription_id(),
        "tenantId": stamp.tenant_id(),
        "applicationId": stamp.application_id(),
        "adminArmEndpoint": stamp.admin_arm_endpoint(),
        "applicationSecret": SECRET,
        "caCertificate": sim.ca_pem(),
        "collectFrom": from.to_rfc3339(),
    });
    let created = reqwest::Client::new()
        .post(format!("{}/api/stamps?verify=false", handler.base))
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let stamp_id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // two of its tenant subscriptions mapped to one customer and the third to another, and a book with
    // a price for every meter (and tax) assigned to everyone, by the operator's CLI on the same database
    let truth = stamp.ground_truth(from, from + Hours::hours(4));
    let tenants: BTreeSet<&str> = truth.iter().map(|r| r.subscription_id.as_str()).collect();
    assert_eq!(tenants.len(), 3, "every tenant has usage");
    let customers = ["cust-north", "cust-north", "cust-south"];
    for (tenant, customer) in tenants.iter().zip(customers) {
        cli(dir.path(), &db, &["mapping", "set", &stamp_id, tenant, customer]);
    }
    let meters: BTreeSet<String> = truth
        .iter()
        .map(|r| r.meter_id.chars().filter(|c| !"-{}".contains(*c)).collect::<String>().to_uppercase())
        .collect();
    let prices: Vec<Value> = meters
        .iter()
        .enumerate()
        .map(
            |(i, m)| json!({"meterId": m, "price": {"kind": "unit", "unitPrice": format!("0.0{}37", i + 1)}}),
        )
        .collect();
    let book = json!({"id": "timer-book", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "2020-01-01T00:00:00Z", "taxPercent": "19", "meters": prices}]});
    let book_file = dir.path().join("book.json");
    std::fs::write(&book_file, book.to_string()).unwrap();
    cli(dir.path(), &db, &["price-book", "import", book_file.to_str().unwrap()]);
    cli(dir.path(), &db, &["price-book", "assign", "timer-book", "--from", "2020-01-01T00:00:00Z"]);

    // When the timer fires
    let fired = Utc::now();
    let invocation = format!("statements-{}", free_port());
    let (status, body) = {
        let response = reqwest::Client::new()
            .post(format!("{}/collect-usage", handler.base))
            .header("X-Azure-Functions-InvocationId", &invocation)
            .json(&fixture("azure-functions-timer-request.json"))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["ReturnValue"]["stamps"][0]["rowsWritten"].as_u64().unwrap() > 0, "{body}");
    let kept = stored_statements(&db);

    // Then each customer has a statement for this month and last, every one drafted or made final
    // by the timer, and each is what `statement show --json` computes for the same month now
    let month = |t: DateTime<Utc>| t.format("%Y-%m").to_string();
    let first_of_month = fired.with_day(1).unwrap().duration_trunc(Hours::days(1)).unwrap();
    let (current, previous) = (month(fired), month(first_of_month - Hours::hours(1)));
    let expected: BTreeSet<(String, String)> = ["cust-north", "cust-south"]
        .iter()
        .flat_map(|c| [(c.to_string(), previous.clone()), (c.to_string(), current.clone())])
        .collect();
    assert_eq!(
        kept.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the timer answered {body}; the handler logged {:#?}",
        handler.process.stdout.lines()
    );
    let mut priced = 0;
    for ((customer, month), (state, statement)) in &kept {
        assert!(["draft", "final"].contains(&state.as_str()), "{customer} {month}: {state}");
        assert_eq!(statement["billingSubscriptionId"], customer.as_str());
        assert_eq!(statement["month"], month.as_str());
        let shown = cli(dir.path(), &db, &["statement", "show", customer, month, "--json"]);
        let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
        assert_eq!(content(shown), content(statement.clone()), "{customer} {month}");
        if !statement["lines"].as_array().unwrap().is_empty() {
            priced += 1;
            assert_eq!(statement["currency"]["code"], "EUR");
            let total: f64 = statement["total"].as_str().unwrap().parse().unwrap();
            assert!(total > 0.0, "{customer} {month}: {statement}");
        }
    }
    assert!(priced >= 2, "both customers' usage was rated: {kept:?}");

    // and the timer's log line for this invocation counts what it kept
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines: Vec<Value> = handler
        .process
        .stdout
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.to_string().contains(&invocation))
        .collect();
    let summary = lines
        .iter()
        .find(|l| l["message"] == "statements kept")
        .unwrap_or_else(|| panic!("no `statements kept` line: {lines:#?}"));
    let outcome = summary["outcome"].as_str().or(summary["fields"]["outcome"].as_str()).unwrap();
    let in_month =
        |m: &str, s: &str| kept.iter().filter(|((_, month), (state, _))| month == m && state == s).count();
    let [finalised, already_final, drafts, blocked, failed] = counts(outcome);
    assert_eq!(
        (finalised + already_final, drafts, blocked, failed),
        (in_month(&previous, "final"), in_month(&current, "draft"), in_month(&previous, "draft"), 0),
        "{outcome}"
    );
    // with a line of its own for each statement made final or still blocked, naming it
    let named: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "statement outcome")
        .filter_map(|l| l["outcome"].as_str())
        .collect();
    assert_eq!(named.len(), finalised + blocked, "{named:?}");
    for ((customer, month), _) in kept.iter().filter(|((_, m), _)| *m == previous) {
        assert!(named.iter().any(|l| l.starts_with(&format!("{customer} {month}: "))), "{named:?}");
    }
}
