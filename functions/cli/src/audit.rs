//! `azs-usage audit list`: who changed which stamp or mapping, when, and which fields from what to
//! what (see `azs_core::audit`); `--json` prints the records as `GET /audit` answers them. Also the
//! CLI's own caller identity, [`operator`], which every change it makes is recorded under.

use anyhow::{Context, Result};
use azs_app::audit::AuditFilter;
use azs_app::wiring::Services;
use azs_core::StampId;
use azs_core::audit::{Actor, AuditRecord, FieldChange};
use azs_usage::model::AuditCommand;
use chrono::{DateTime, Utc};

/// Who the CLI's changes are recorded as: `cli:<OS user>`. The CLI opens the database itself, so this
/// is the operator's account name as the OS reports it, not an identity a platform verified.
pub(crate) fn operator() -> Actor {
    let user = ["USER", "LOGNAME", "USERNAME"].iter().find_map(|name| std::env::var(name).ok());
    Actor::new(&format!("cli:{}", user.as_deref().unwrap_or("unknown")))
}

pub(crate) async fn run(services: &Services, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::List { stamp, since, json } => {
            let since = since
                .map(|s| {
                    DateTime::parse_from_rfc3339(s.trim()).map(|t| t.with_timezone(&Utc)).with_context(|| {
                        format!("--since {s:?} must be an RFC 3339 time such as 2026-12-01T00:00:00Z")
                    })
                })
                .transpose()?;
            let filter = AuditFilter { stamp: stamp.map(StampId), since };
            let entries = services.audit().all(&filter).await.map_err(crate::dispatch::explain)?;
            let records: Vec<AuditRecord> = entries.into_iter().map(|e| e.record).collect();
            if json {
                say!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                print(&records);
            }
        }
    }
    Ok(())
}

fn print(records: &[AuditRecord]) {
    if records.is_empty() {
        say!("no recorded changes");
        return;
    }
    for r in records {
        let subscription =
            r.subscription.as_deref().map(|s| format!(" subscription {s}")).unwrap_or_default();
        say!(
            "{}  {:<15} {} ({}){subscription}  by {}",
            r.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            r.action,
            r.stamp_name,
            r.stamp_id,
            r.actor
        );
        for change in &r.changes {
            say!("    {}", field_line(change));
        }
    }
}

fn field_line(change: &FieldChange) -> String {
    if change.secret {
        return format!("{}: changed (secret, not recorded)", change.field);
    }
    let value = |v: &Option<serde_json::Value>| match v {
        None => "-".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    format!("{}: {} -> {}", change.field, value(&change.old), value(&change.new))
}
