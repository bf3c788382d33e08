//! What the CLI prints: a table or a few lines per result for an operator's terminal, or the result
//! as JSON (`--json`). Every line goes through the terminal filter (`say!`, see `terminal.rs`).

use crate::{say, say_inline};
use anyhow::{Context, Result};
use azs_app::registrar::{ConnectionReport, StampView};
use azs_core::check::{CheckStatus, DatabaseCheck};
use azs_core::collect::{ReprocessReport, RunSummary};
use azs_core::drift::HourDrift;
use azs_core::mapping::{SubscriptionMapping, UnmappedSubscription};
use azs_core::quarantine::QuarantineEntry;

/// `--json`: the value, pretty-printed.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The run summary: one line per stamp.
pub fn print_summary(summary: &RunSummary) {
    say!(
        "{:<24} {:<10} {:>9} {:>10} {:>9} {:>11}  watermark / error",
        "stamp",
        "outcome",
        "windows",
        "rows",
        "unmapped",
        "quarantined"
    );
    for s in &summary.stamps {
        let tail = match (&s.error, s.watermark) {
            (Some(e), _) => e.clone(),
            (None, Some(w)) => w.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            (None, None) => String::new(),
        };
        say!(
            "{:<24} {:<10} {:>4}/{:<4} {:>10} {:>9} {:>11}  {tail}",
            truncate(&s.name, 24),
            s.outcome.as_str(),
            s.windows_committed,
            s.windows_planned,
            s.rows_written,
            s.unmapped_rows,
            s.quarantined
        );
    }
}

/// `status`: where each stamp's collection stands.
pub fn print_status(views: &[StampView]) {
    say!(
        "{:<36}  {:<20} {:<20} {:>8} {:<10} {:>8} {:>8} {:>11} {:>10} {:<17} {:>13}  last run / error",
        "id",
        "name",
        "watermark",
        "lag",
        "outcome",
        "rows",
        "unmapped",
        "quarantined",
        "duplicates",
        "verified",
        "drift m/e/c"
    );
    let now = chrono::Utc::now();
    for v in views {
        let Some(s) = &v.status else { continue };
        let last = s
            .last_run_finished
            .or(s.last_run_started)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "never".into());
        // The same lag the functions publish for the alarms (azs_app::metrics).
        let lag = (now - s.watermark).num_seconds().max(0);
        say!(
            "{:<36}  {:<20} {:<20} {:>8} {:<10} {:>8} {:>8} {:>11} {:>10} {:<17} {:>13}  {}{}",
            v.stamp.id,
            truncate(&v.stamp.name, 20),
            s.watermark.format("%Y-%m-%dT%H:%M:%SZ"),
            format!("{}h{:02}m", lag / 3600, lag % 3600 / 60),
            s.outcome.as_str(),
            s.rows_written,
            s.unmapped_rows,
            s.quarantined_rows,
            s.duplicate_rows,
            s.last_verified
                .map(|v| v.at.format("%Y-%m-%dT%H:%MZ").to_string())
                .unwrap_or_else(|| "never".into()),
            s.drift.map(|d| format!("{}/{}/{}", d.missing, d.extra, d.changed)).unwrap_or_else(|| "-".into()),
            last,
            s.last_error.as_ref().map(|e| format!(" / {e}")).unwrap_or_default()
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n - 1).chain(['…']).collect() }
}

/// `stamp list`: one line per stamp.
pub fn print_stamps(views: &[StampView]) {
    for v in views {
        let state = if v.stamp.enabled { "enabled" } else { "disabled" };
        say!("{}  {:<24} {:<8} {}", v.stamp.id, v.stamp.name, state, v.stamp.connection.admin_arm_endpoint);
    }
}

/// `stamp show`: the status line, then the connection (never the credential, only its secret's name).
pub fn print_stamp(view: &StampView) {
    print_status(std::slice::from_ref(view));
    let c = &view.stamp.connection;
    say!("admin ARM endpoint   {}", c.admin_arm_endpoint);
    say!("admin subscription   {}", c.admin_subscription_id);
    say!("tenant               {}", c.tenant_id);
    say!("application          {}", c.application_id);
    say!("AD FS                {}", c.is_adfs);
    say!(
        "audience             {}",
        c.token_request_resource_url.as_deref().unwrap_or("(discovered at run time)")
    );
    say!(
        "authority            {}",
        c.authority_endpoint_url.as_deref().unwrap_or("(discovered at run time)")
    );
    say!("credential secret    {}", view.stamp.credential_secret_name);
}

/// `stamp test`: what each stage of the connection answered.
pub fn print_connection_report(report: &ConnectionReport) {
    say!(
        "discovery ok: {} ({})",
        report.endpoints.login_endpoint,
        if report.endpoints.is_adfs { "AD FS" } else { "Azure AD" }
    );
    say!("token ok: audience {}", report.endpoints.audience);
    say!("usage ok: {} rows in {} page(s) for {}", report.rows, report.pages, report.window);
    for w in &report.warnings {
        say!("warning: {w}");
    }
}

/// `unmapped`: one line per tenant subscription with usage and no mapping.
pub fn print_unmapped(list: &[UnmappedSubscription]) {
    if list.is_empty() {
        say!("every subscription with usage is mapped");
        return;
    }
    say!("{:<38} {:<38} {:>8}  last usage", "stamp", "subscription", "rows");
    for u in list {
        let last = u.last_usage.map(|t| t.to_rfc3339()).unwrap_or_default();
        say!("{:<38} {:<38} {:>8}  {last}", u.stamp_id, u.external_subscription_id, u.rows);
    }
}

/// `mapping list`: one line per mapping.
pub fn print_mappings(list: &[SubscriptionMapping]) {
    for m in list {
        say!("{}  {} -> {}", m.stamp_id, m.external_subscription_id, m.billing_subscription_id);
    }
}

/// `reprocess`: the hours that differ, then what was (or on a dry run, would be) written.
pub fn print_reprocess(report: &ReprocessReport) {
    print_hours(&report.hours);
    if report.dry_run {
        let (added, removed, changed) = report.totals();
        say!("dry run: nothing written (+{added} -{removed} ~{changed} rows over the range)");
    } else {
        let summary = &report.summary;
        say!(
            "reprocessed {} hour(s) of {}: {} rows now stored for the range ({} unmapped)",
            summary.windows_committed,
            summary.name,
            summary.rows_written,
            summary.unmapped_rows
        );
    }
}

/// `verify`: the hours, then the verdict.
pub fn print_verify(hours: &[HourDrift]) {
    print_hours(hours);
    if hours.iter().all(HourDrift::is_equal) {
        say!("stored rows equal what the stamp reports");
    } else {
        say!("stored rows differ from what the stamp reports");
    }
}

/// `db check` and `db smoke` as text.
pub fn print_check(check: &DatabaseCheck, smoke: bool) {
    if smoke {
        say_inline!("{}", smoke_text(check));
    } else {
        say_inline!("{}", check_text(check));
        if check.store == "sqlserver" {
            say!("next: `azs-usage db smoke` runs each T-SQL construct the store uses once, rolled back");
        }
    }
}

/// One line per hour that differs, then one per tenant subscription and meter within it.
pub fn print_hours(hours: &[HourDrift]) {
    for hour in hours {
        let (added, removed, changed) = hour.totals();
        if hour.is_equal() {
            say!("{}  equal ({} rows)", hour.window, hour.stored_rows);
            continue;
        }
        say!(
            "{}  stored {} reported {}: +{added} added, -{removed} removed, ~{changed} changed",
            hour.window,
            hour.stored_rows,
            hour.reported_rows
        );
        for line in &hour.lines {
            say!(
                "    {:<38} {:<38} +{} -{} ~{}  quantity {}{}",
                line.subscription_id,
                line.meter_id,
                line.added,
                line.removed,
                line.changed,
                if line.quantity_delta.is_sign_negative() { "" } else { "+" },
                line.quantity_delta
            );
        }
    }
}

/// `quarantine list`: one line per quarantined row (`--json` also has the row as the stamp sent it).
pub fn print_quarantine(entries: &[QuarantineEntry]) {
    if entries.is_empty() {
        say!("no quarantined rows");
        return;
    }
    say!("{:<36}  {:<20}  reason", "stamp", "reported window");
    for e in entries {
        say!("{:<36}  {:<20}  {}", e.stamp_id, e.window.start.format("%Y-%m-%dT%H:%M:%SZ"), e.reason);
    }
    say!(
        "\n{} quarantined row(s); `quarantine list --json` shows each row as the stamp sent it",
        entries.len()
    );
}

/// One line per construct: ok, or the server's error number and text.
fn smoke_text(smoke: &DatabaseCheck) -> String {
    let mut out = format!("{} database {} smoke (rolled back)\n", smoke.store, smoke.target);
    for item in &smoke.items {
        out.push_str(&format!("{:<8} {:<24} {}\n", item.status.as_str(), item.name, item.detail));
    }
    out
}

/// One line per item, its fix indented below it, then the verdict.
fn check_text(check: &DatabaseCheck) -> String {
    let mut out = format!("{} database {}\n", check.store, check.target);
    for item in &check.items {
        out.push_str(&format!("{:<8} {:<20} {}\n", item.status.as_str(), item.name, item.detail));
        if let Some(fix) = &item.fix {
            out.push_str(&format!("{:<29} fix: {fix}\n", ""));
        }
    }
    out.push_str(match check.status {
        CheckStatus::Ok => "database ready\n",
        CheckStatus::Warning => "database usable; see the warnings above\n",
        CheckStatus::Fail => "database NOT ready: fix the failed items above\n",
    });
    out
}

/// The seed's `/ExportToCsv`: the registered connection, without secrets.
pub fn write_connection_csv(path: &std::path::Path, view: &StampView) -> Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("creating {}", path.display()))?;
    let c = &view.stamp.connection;
    w.write_record([
        "id",
        "name",
        "adminSubscriptionId",
        "tenantId",
        "applicationId",
        "certificateThumbprint",
        "adminArmEndpoint",
        "tokenRequestResourceUrl",
        "authorityEndpointUrl",
        "isAdfs",
        "enabled",
        "collectFrom",
        "credentialSecretName",
    ])?;
    // The name and the URLs are a webhook caller's text: escaped like the export's cells.
    let cells = [
        view.stamp.id.as_str(),
        &view.stamp.name,
        &c.admin_subscription_id,
        &c.tenant_id,
        &c.application_id,
        c.certificate_thumbprint.as_deref().unwrap_or(""),
        &c.admin_arm_endpoint,
        c.token_request_resource_url.as_deref().unwrap_or(""),
        c.authority_endpoint_url.as_deref().unwrap_or(""),
        &c.is_adfs.to_string(),
        &view.stamp.enabled.to_string(),
        &view.stamp.collect_from.to_rfc3339(),
        &view.stamp.credential_secret_name,
    ];
    w.write_record(cells.map(azs_app::display::spreadsheet_safe).iter().map(|c| c.as_ref()))?;
    w.flush()?;
    Ok(())
}
