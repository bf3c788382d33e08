//! `azs-usage verify` and the hour-by-hour difference `reprocess` prints: what is stored against what
//! the stamp reports now.

use anyhow::{Result, bail};
use azs_app::wiring::Services;
use azs_core::drift::HourDrift;
use azs_core::stamp::StampId;

/// The stamp an operator named, by id or by name.
pub async fn stamp_named(services: &Services, id_or_name: &str) -> Result<StampId> {
    let stamps = services.store.list_stamps().await?;
    if let Some(s) = stamps.iter().find(|s| s.id.as_str() == id_or_name) {
        return Ok(s.id.clone());
    }
    let named: Vec<_> = stamps.iter().filter(|s| s.name == id_or_name).collect();
    match named.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => bail!("--stamp: no stamp has the id or name {id_or_name:?}"),
        _ => bail!("--stamp: {} stamps are named {id_or_name:?}; give the id", named.len()),
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
