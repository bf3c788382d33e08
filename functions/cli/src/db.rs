//! `azs-usage db check [--json]`: the first command an operator runs against their own database. It
//! reports each finding ok / warning / fail with its fix, changes nothing (the trial commit is rolled
//! back), and exits 1 when anything failed.

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
}

pub async fn run(config: &AppConfig, command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Check { json } => {
            let check = azs_app::wiring::check_database(config).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&check)?);
            } else {
                say_inline!("{}", render(&check));
            }
            Ok(if check.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
    }
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
