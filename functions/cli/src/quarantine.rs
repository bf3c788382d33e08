//! `azs-usage quarantine list`: rows the stamps sent that the store cannot hold exactly, kept verbatim
//! (see `azs_core::quarantine`). `--json` is the export: every entry with the row's raw JSON.

use anyhow::Result;
use azs_app::wiring::Services;
use azs_core::quarantine::QuarantineEntry;
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum QuarantineCommand {
    /// Quarantined rows, oldest window first per stamp: stamp, reported window, field and reason (with
    /// --json also the row as the stamp sent it).
    List {
        /// Only this stamp (id or name).
        #[arg(long)]
        stamp: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(services: &Services, command: QuarantineCommand) -> Result<()> {
    match command {
        QuarantineCommand::List { stamp, json } => {
            let stamp = stamp.map(azs_core::StampId);
            let entries =
                services.administration().quarantine.list(stamp.as_ref()).await.map_err(crate::explain)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print(&entries);
            }
        }
    }
    Ok(())
}

fn print(entries: &[QuarantineEntry]) {
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
