//! The dashboards (infra/modules/aws/dashboard.tf, infra/modules/azure/dashboard.tf) and the Azure alert
//! queries read only names and shapes the functions actually write, so that a renamed metric or a changed
//! log line breaks this test instead of leaving an empty chart: the metric names and dimension of
//! `azs_app::metrics`, the JSON keys of its Application Insights line, and the outcome lines of
//! `azs_app::job`.

use std::collections::BTreeSet;

use azs_app::job::outcome_line;
use azs_app::metrics::{
    APP_INSIGHTS_PREFIX, DRIFT_ROWS, NAMESPACE, STAMP_DIMENSION, STAMP_FAILED, StampMetric, WATERMARK_LAG,
};
use azs_core::collect::StampSummary;
use azs_core::stamp::StampId;
use azs_core::status::{DriftCounts, RunOutcome};
use chrono::{Duration, TimeZone, Utc};
use infra_check::{Module, repo_root, text};

fn summary() -> StampSummary {
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 5, 0).unwrap();
    StampSummary {
        stamp_id: StampId("3f2a".into()),
        name: "eu-1".into(),
        outcome: RunOutcome::Succeeded,
        windows_planned: 3,
        windows_committed: 3,
        rows_written: 1200,
        duplicates: 0,
        unmapped_rows: 4,
        quarantined: 0,
        watermark: Some(now - Duration::hours(2)),
        drift: Some(DriftCounts { missing: 1, extra: 0, changed: 0 }),
        error: None,
        budget_ran_out: false,
    }
}

/// The quoted strings that follow each `marker` in a text.
fn strings_after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let start = rest.find('"')? + 1;
            let end = rest[start..].find('"')?;
            Some(rest[start..start + end].to_owned())
        })
        .collect()
}

/// `m.<key>` references of KQL over the parsed metric line.
fn metric_keys(kql: &str) -> BTreeSet<String> {
    kql.match_indices("m.")
        .filter(|(at, _)| !kql[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, _)| kql[at + 2..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .filter(|k: &String| !k.is_empty())
        .collect()
}

#[test]
fn the_cloudwatch_dashboard_reads_the_metrics_the_collector_publishes() {
    let aws = Module::infra("modules/aws");
    let locals = aws.locals();
    // One SEARCH per stamp metric, in the namespace and dimension the EMF lines declare.
    let search = text(&locals["stamp_metric"]).expect("stamp_metric is a string");
    assert!(search.contains(&format!("{{{NAMESPACE},{STAMP_DIMENSION}}}")), "{search}");
    let widgets = locals["dashboard_widgets"].to_string();
    let used: BTreeSet<String> = strings_after(&widgets, "local.stamp_metric").into_iter().collect();
    let published: BTreeSet<String> =
        [WATERMARK_LAG, STAMP_FAILED, DRIFT_ROWS].iter().map(|s| s.to_string()).collect();
    assert_eq!(used, published, "every AzsUsage metric on the dashboard, and only those");
    // Rows per hour come from the collector's "stamp done" line (shared/core/src/collect/stamp.rs), its
    // `rows` field inside the `stamp` span that carries stamp_name (opened in collect/mod.rs).
    let query = widgets.replace('\\', "");
    assert!(query.contains(r#"filter message = "stamp done""#) && query.contains("sum(rows)"), "{query}");
    assert!(widgets.contains("span.stamp_name"), "{widgets}");
    let collector = |room: &str| {
        let path = repo_root().join("shared/core/src/collect").join(room);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert!(
        collector("stamp.rs").contains(r#"rows = summary.rows_written, "stamp done""#),
        "the collector's done line changed"
    );
    assert!(
        collector("mod.rs")
            .contains(r#"info_span!("stamp", stamp_id = %stamp.id, stamp_name = %stamp.name)"#)
    );
}

#[test]
fn the_workbook_and_the_alerts_read_keys_the_metric_line_has() {
    // Given the line a real run writes for a stamp that was verified
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 5, 0).unwrap();
    let line = StampMetric::of(&summary(), now).app_insights_line();
    let json: serde_json::Value =
        serde_json::from_str(line.strip_prefix(APP_INSIGHTS_PREFIX).unwrap()).unwrap();
    let written: BTreeSet<String> = json.as_object().unwrap().keys().cloned().collect();
    // The queries cut the prefix by its length.
    let azure = Module::infra("modules/azure");
    let locals = azure.locals();
    let prefix = text(&locals["metric_lines"]).unwrap();
    assert!(prefix.contains(&format!("startswith \"{APP_INSIGHTS_PREFIX}\"")), "{prefix}");
    assert!(prefix.contains(&format!("substring(message, {})", APP_INSIGHTS_PREFIX.len())), "{prefix}");
    // Every m.<key> of the workbook and the alerts is a key of that line.
    let queries = format!("{}\n{}", locals["workbook_queries"], locals["alerts"]);
    let read = metric_keys(&queries);
    assert!(read.contains("watermarkLagSeconds") && read.contains("driftRows") && read.contains("failed"));
    let unknown: Vec<&String> = read.difference(&written).collect();
    assert!(unknown.is_empty(), "read but never written: {unknown:?} (the line has {written:?})");
}

#[test]
fn the_workbook_parses_the_rows_out_of_the_outcome_line_as_written() {
    // Given the outcome line of a stamp run (shared/app/src/job.rs)
    let line = outcome_line(&summary());
    // The workbook's `parse` pattern: its literal pieces must follow one another in the line.
    let azure = Module::infra("modules/azure");
    let rows = azure.locals()["workbook_queries"].to_string();
    let pattern =
        rows.split("parse message with stamp").nth(1).and_then(|p| p.split(" *").next()).expect("parse");
    let pieces: Vec<String> =
        strings_after(&pattern.replace("\\\"", "\""), "").into_iter().collect::<Vec<_>>();
    let _ = pieces;
    let literals: Vec<&str> = pattern.split('"').skip(1).step_by(2).collect();
    assert_eq!(literals, [" (", "): ", ", ", "/", " windows, ", " rows ("], "{pattern}");
    let mut rest = line.as_str();
    let mut fields = Vec::new();
    for literal in &literals {
        let at = rest.find(literal).unwrap_or_else(|| panic!("{literal:?} not in {line:?}"));
        fields.push(&rest[..at]);
        rest = &rest[at + literal.len()..];
    }
    // Then the stamp's name and its rows come out
    assert_eq!(fields[0], "eu-1");
    assert_eq!(fields[5], "1200", "{line}");
    // and the dead-letter queries match the worker's invocation line.
    let job = std::fs::read_to_string(repo_root().join("shared/app/src/job.rs")).unwrap();
    assert!(job.contains(r#"", dead-lettered: {}""#), "work_line's dead-letter text changed");
    assert!(rows.contains(r#"", dead-lettered: ""#), "{rows}");
}
