//! `azs-usage verify` and the hour-by-hour difference `reprocess` prints: what is stored against what
//! the stamp reports now.

use azs_core::drift::HourDrift;

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
