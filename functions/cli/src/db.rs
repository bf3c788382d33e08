//! `azs-usage db check [--json]`: the first command an operator runs against their own database. It
//! reports each finding ok / warning / fail with its fix, changes nothing (the trial commit is rolled
//! back), and exits 1 when anything failed. `azs-usage db smoke [--json]`: each T-SQL construct the SQL
//! Server store depends on, run once and rolled back, one line each (ok, or the server's error).

use anyhow::Result;
use azs_app::config::AppConfig;
use azs_core::check::{CheckStatus, DatabaseCheck};
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum DbCommand {
    /// Check the configured database: version, collations, row versioning, session options, schema
    /// version, permissions, and a trial commit that is rolled back. Exit 1 when an item fails.
    Check {
        #[arg(long)]
        json: bool,
    },
    /// Run each T-SQL construct the SQL Server store depends on once, inside a transaction that is
    /// rolled back (RCSI and compatibility level, sp_getapplock, CONVERT(binary(16), ..., 2), OPENJSON,
    /// MERGE_WINDOW on a scratch stamp): one line each, ok or the server's error number and text.
    /// Exit 1 when one fails. SQLite needs none.
    Smoke {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &AppConfig, command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Check { json } => {
            let check = azs_app::wiring::check_database(config).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&check)?);
            } else {
                say_inline!("{}", render(&check));
                if check.store == "sqlserver" {
                    say!(
                        "next: `azs-usage db smoke` runs each T-SQL construct the store uses once, rolled back"
                    );
                }
            }
            Ok(if check.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        DbCommand::Smoke { json } => {
            let smoke = azs_app::wiring::smoke_database(config).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&smoke)?);
            } else {
                say_inline!("{}", render_smoke(&smoke));
            }
            Ok(if smoke.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
}

/// One line per construct: ok, or the server's error number and text.
fn render_smoke(smoke: &DatabaseCheck) -> String {
    let mut out = format!("{} database {} smoke (rolled back)\n", smoke.store, smoke.target);
    for item in &smoke.items {
        out.push_str(&format!("{:<8} {:<24} {}\n", item.status.as_str(), item.name, item.detail));
    }
    out
}

/// One line per item, its fix indented below it, then the verdict.
fn render(check: &DatabaseCheck) -> String {
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
