//! Both clouds collect at the same minute, and the Azure timer takes its schedule from the app setting.

use infra_check::{Module, attribute, block, number, repo_root, text};
use serde_json::Value;

fn azure_collect_schedule() -> String {
    let azure = Module::infra("modules/azure");
    let settings = azure.locals()["app_settings"].clone();
    let schedule = azure.entry(&settings, "COLLECT_SCHEDULE").expect("COLLECT_SCHEDULE is set");
    text(&azure.resolve(&schedule)).expect("COLLECT_SCHEDULE has a literal default")
}

fn aws_schedule_expression() -> String {
    let aws = Module::infra("modules/aws");
    let schedule = aws.resource("aws_scheduler_schedule", "collect_usage");
    let expr = attribute(schedule, "schedule_expression").expect("schedule_expression");
    text(&aws.resolve(expr)).expect("schedule_expression has a literal default")
}

/// Reads `functions/azure/app/<path>`, or says why the check is skipped (the packaging step may not have
/// written its Function App folder yet).
fn function_app_json(path: &str) -> Option<Value> {
    let file = repo_root().join("functions/azure/app").join(path);
    match std::fs::read_to_string(&file) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))),
        Err(_) => {
            println!("SKIPPED: {} does not exist yet (written by the packaging step)", file.display());
            None
        }
    }
}

#[test]
fn azure_default_schedule_is_a_six_field_ncrontab_at_second_zero() {
    let schedule = azure_collect_schedule();
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(fields.len(), 6, "NCRONTAB has six fields (seconds first): {schedule}");
    assert!(fields.iter().all(|f| f.chars().all(|c| c.is_ascii_digit() || "*/,-".contains(c))), "{schedule}");
    assert_eq!(fields[0], "0", "fire once, at second 0: {schedule}");
    assert_eq!(schedule, "0 5 * * * *");
}

#[test]
fn aws_and_azure_collect_at_the_same_minute_and_hours() {
    let aws = aws_schedule_expression();
    let inner = aws
        .strip_prefix("cron(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("cron(...) expected: {aws}"));
    let aws_fields: Vec<&str> = inner.split_whitespace().collect();
    assert_eq!(aws_fields.len(), 6, "AWS cron has six fields (minute first, year last): {aws}");
    let azure = azure_collect_schedule();
    let azure_fields: Vec<&str> = azure.split_whitespace().collect();
    assert_eq!(
        (aws_fields[0], aws_fields[1]),
        (azure_fields[1], azure_fields[2]),
        "minute and hour of {aws} vs {azure}"
    );
}

#[test]
fn scheduler_invokes_collect_usage_with_retries_and_an_encrypted_dead_letter_queue() {
    let aws = Module::infra("modules/aws");
    let schedule = aws.resource("aws_scheduler_schedule", "collect_usage");
    let target = block(schedule, "target").expect("target");
    assert_eq!(
        attribute(target, "arn").map(|e| e.to_string()).as_deref(),
        Some("aws_lambda_function.collect_usage.arn")
    );
    assert_eq!(attribute(target, "input").map(|e| e.to_string()).as_deref(), Some("jsonencode({})"));
    let retry = block(target, "retry_policy").expect("retry_policy");
    let attempts = aws.resolve(attribute(retry, "maximum_retry_attempts").expect("maximum_retry_attempts"));
    assert!(number(&attempts).is_some_and(|n| n > 0), "retries by default");
    let dlq = block(target, "dead_letter_config").and_then(|d| attribute(d, "arn")).map(|e| e.to_string());
    assert_eq!(dlq.as_deref(), Some("aws_sqs_queue.dead_letter.arn"));
    let queue = aws.resource("aws_sqs_queue", "dead_letter");
    assert!(attribute(queue, "kms_master_key_id").is_some(), "the dead-letter queue is encrypted");
    // Failed runs (not only undeliverable ones) reach the queue through Lambda's async retries.
    let function = aws.resource("aws_lambda_function", "collect_usage");
    let function_dlq =
        block(function, "dead_letter_config").and_then(|d| attribute(d, "target_arn")).map(|e| e.to_string());
    assert_eq!(function_dlq.as_deref(), Some("aws_sqs_queue.dead_letter.arn"));
}

#[test]
fn no_function_reserves_concurrency_by_default_so_a_new_account_can_deploy() {
    // A new account's quota of 10 leaves nothing to reserve (Lambda keeps 100 unreserved), and overlapping
    // runs are safe: each stamp is collected under a lease. terraform test checks the resolved -1.
    let aws = Module::infra("modules/aws");
    for variable in ["collect_usage_reserved_concurrency", "register_stamp_reserved_concurrency"] {
        let default = attribute(aws.variable(variable), "default").map(|e| e.to_string());
        assert_eq!(default.as_deref(), Some("null"), "{variable}");
    }
    for (name, function) in aws.resources("aws_lambda_function") {
        let reserved = attribute(function, "reserved_concurrent_executions").expect("reserved concurrency");
        assert!(reserved.to_string().contains("-1"), "{name}: null must mean unreserved (-1): {reserved}");
    }
}

#[test]
fn timer_function_reads_its_schedule_from_the_collect_schedule_setting() {
    let Some(function) = function_app_json("collect-usage/function.json") else { return };
    let bindings = function["bindings"].as_array().expect("bindings");
    let timer = bindings.iter().find(|b| b["type"] == "timerTrigger").expect("a timerTrigger binding");
    assert_eq!(timer["schedule"], "%COLLECT_SCHEDULE%");
}

#[test]
fn http_function_serves_the_stamps_routes_with_a_function_key() {
    let Some(function) = function_app_json("register-stamp/function.json") else { return };
    let bindings = function["bindings"].as_array().expect("bindings");
    let trigger = bindings.iter().find(|b| b["type"] == "httpTrigger").expect("an httpTrigger binding");
    assert_eq!(trigger["authLevel"], "function");
    assert_eq!(trigger["route"], "stamps/{*path}");
    assert!(bindings.iter().any(|b| b["type"] == "http" && b["direction"] == "out"), "an http out binding");
}

#[test]
fn host_runs_the_handler_executable() {
    let Some(host) = function_app_json("host.json") else { return };
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "handler");
}

#[test]
fn a_failed_timer_run_is_retried_as_often_as_on_aws() {
    let Some(function) = function_app_json("collect-usage/function.json") else { return };
    let aws = Module::infra("modules/aws");
    let aws_retries = attribute(aws.variable("collect_usage_retry_attempts"), "default").and_then(number);
    let retry = &function["retry"];
    assert_eq!(retry["strategy"], "fixedDelay");
    assert_eq!(retry["maxRetryCount"].as_i64(), aws_retries, "Azure retries a failed run like Lambda does");
}

#[test]
fn the_host_timeout_and_the_time_budget_come_from_one_variable() {
    let azure = Module::infra("modules/azure");
    let settings = azure.locals()["app_settings"].clone();
    let timeout = azure.entry(&settings, "AzureFunctionsJobHost__functionTimeout").expect("functionTimeout");
    let budget = azure.entry(&settings, "AZS_USAGE_TIME_BUDGET").expect("time budget");
    // `entry` follows the locals: both are computed from the one variable.
    let (timeout, budget) = (timeout.to_string(), budget.to_string());
    assert!(timeout.contains("var.function_timeout_minutes"), "functionTimeout = {timeout}");
    assert!(budget.contains("var.function_timeout_minutes - 1"), "a minute's reserve: {budget}");
}
