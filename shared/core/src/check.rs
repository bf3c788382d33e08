//! `db check`: what each store reports about the database it is pointed at, in one shape for both,
//! so an operator (and a first real-server run) gets one list of findings, each with its fix.
//!
//! A store fills a [`DatabaseCheck`] with [`CheckItem`]s; the worst item decides the overall status.
//! The probe stamp and row are what both stores' trial commit writes (inside a transaction that is
//! rolled back), so the trial exercises the same columns a real window does.

use crate::stamp::{Stamp, StampConnection, StampId, UsageQueryMode};
use crate::usage::UsageRow;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One finding's verdict. Ordered: the worst of a list is its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warning,
    Fail,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Fail => "fail",
        }
    }
}

/// One thing checked: what was found and, unless it is fine, the fix in one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckItem {
    /// A stable, kebab-case key (`server-version`, `trial-commit`, ...): scripts may match on it.
    pub name: &'static str,
    pub status: CheckStatus,
    /// What was found, in one line. Never a secret.
    pub detail: String,
    /// What to do about it, in one line; absent when the item is ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl CheckItem {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: CheckStatus::Ok, detail: detail.into(), fix: None }
    }

    pub fn warning(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: CheckStatus::Warning, detail: detail.into(), fix: Some(fix.into()) }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, status: CheckStatus::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

/// Everything `db check` found about one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseCheck {
    /// `sqlite` or `sqlserver`.
    pub store: &'static str,
    /// Where: a file path, or `host:port` and database. Never credentials.
    pub target: String,
    /// The worst status among the items (`ok` when there are none).
    pub status: CheckStatus,
    pub items: Vec<CheckItem>,
}

impl DatabaseCheck {
    pub fn new(store: &'static str, target: impl Into<String>, items: Vec<CheckItem>) -> Self {
        let status = items.iter().map(|i| i.status).max().unwrap_or(CheckStatus::Ok);
        Self { store, target: target.into(), status, items }
    }

    pub fn failed(&self) -> bool {
        self.status == CheckStatus::Fail
    }
}

/// The stamp the trial commit registers (and rolls back). Its id is fresh on every call, so a trial
/// never collides with a real stamp or another trial.
pub fn probe_stamp(now: DateTime<Utc>) -> Stamp {
    let hour = trial_hour();
    Stamp {
        id: StampId::new_random(),
        name: "azs-usage db check (rolled back)".into(),
        connection: StampConnection {
            admin_subscription_id: uuid::Uuid::new_v4().to_string(),
            tenant_id: uuid::Uuid::new_v4().to_string(),
            application_id: uuid::Uuid::new_v4().to_string(),
            certificate_thumbprint: None,
            admin_arm_endpoint: format!(
                "https://adminmanagement.{}.db-check.invalid",
                uuid::Uuid::new_v4().simple()
            ),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: false,
            ca_certificate_pem: None,
        },
        credential_secret_name: "azs-usage/db-check".into(),
        enabled: false,
        collect_from: hour,
        query_mode: UsageQueryMode::AllTenants,
        created_at: now,
    }
}

/// The hour the probe's one-row window covers.
pub fn trial_hour() -> DateTime<Utc> {
    "2026-01-01T00:00:00Z".parse().expect("a valid time")
}

/// The probe window's one row: a documented meter with tags and additional info, as the API sends them.
pub fn probe_row() -> UsageRow {
    let start = trial_hour();
    UsageRow {
        subscription_id: "8E8CD5A6-05B6-4B9D-9B5A-4E8F3C1D2A10".into(),
        meter_id: "6DAB500F-A4FD-49C4-956D-229BB9C8C793".into(),
        usage_start: start,
        usage_end: start + chrono::Duration::hours(1),
        quantity: "2.4000000000".parse().expect("a valid quantity"),
        resource_uri: "/subscriptions/8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10/resourceGroups/db-check/providers/Microsoft.Compute/virtualMachines/probe".into(),
        location: "local".into(),
        tags: Some(r#"{"purpose":"db check"}"#.into()),
        additional_info: Some(r#"{"ServiceType":"Standard_A1"}"#.into()),
    }
}

/// The quarantined row of `db check`'s trial commit: the quarantine is written in the same transaction
/// as the window, so the trial proves the store can write it too.
pub fn probe_quarantined_row() -> crate::quarantine::QuarantinedRow {
    let why = crate::quarantine::Unrepresentable {
        field: "properties.quantity",
        rule: "a probe written by db check and rolled back".into(),
    };
    crate::quarantine::QuarantinedRow::new(crate::quarantine::reconstructed_json(&probe_row()), &why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_item_decides_and_fixes_are_left_out_when_ok() {
        let check = DatabaseCheck::new(
            "sqlite",
            "x.db",
            vec![CheckItem::ok("a", "fine"), CheckItem::warning("b", "meh", "do this")],
        );
        assert_eq!(check.status, CheckStatus::Warning);
        assert!(!check.failed());
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(json["status"], "warning");
        assert!(json["items"][0].get("fix").is_none());
        assert_eq!(json["items"][1]["fix"], "do this");
        assert!(DatabaseCheck::new("sqlite", "x", vec![CheckItem::fail("c", "no", "yes")]).failed());
        assert_eq!(DatabaseCheck::new("sqlite", "x", vec![]).status, CheckStatus::Ok);
    }
}
