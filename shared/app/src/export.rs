//! The CSV export: one line per stored usage row, with the meter's published name and unit.

use azs_core::ports::{ExportFilter, StoreError, UsageLedger};
use azs_core::usage::normalize_meter_id;
use std::collections::HashMap;
use std::io::Write;
use std::sync::OnceLock;

pub const HEADER: &str = "stamp,reported_start,reported_end,subscription_id,billing_subscription_id,meter_id,meter_name,unit,usage_start,usage_end,quantity,resource_uri,location,tags,additional_info";

/// The published meter table (`meters.csv` of the Azure Stack Hub usage docs), keyed by normalised id.
pub fn meters() -> &'static HashMap<String, (String, String)> {
    static METERS: OnceLock<HashMap<String, (String, String)>> = OnceLock::new();
    METERS.get_or_init(|| {
        let mut reader = csv::Reader::from_reader(include_str!("../data/meters.csv").as_bytes());
        reader
            .records()
            .filter_map(Result::ok)
            .filter(|r| r.len() >= 4)
            .map(|r| (normalize_meter_id(&r[1]), (r[2].to_owned(), r[3].to_owned())))
            .collect()
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the CSV: {0}")]
    Write(String),
}

/// Writes the rows matching `filter` as CSV to `out`; returns how many rows were written.
pub async fn export_csv(
    ledger: &dyn UsageLedger,
    filter: &ExportFilter,
    out: impl Write + Send,
) -> Result<u64, ExportError> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(HEADER.split(',')).map_err(|e| ExportError::Write(e.to_string()))?;
    let time = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let meters = meters();
    let mut sink = |stored: azs_core::ports::StoredUsageRow| -> Result<(), String> {
        let row = &stored.row;
        let (name, unit) = meters
            .get(&normalize_meter_id(&row.meter_id))
            .map(|(n, u)| (n.as_str(), u.as_str()))
            .unwrap_or(("", ""));
        // Text cells come from stamps (and mappings from webhook callers); times and the quantity are
        // ours, and a negative quantity must stay a number.
        let text = crate::display::spreadsheet_safe;
        writer
            .write_record([
                stored.stamp_id.as_str(),
                &time(stored.window.start),
                &time(stored.window.end),
                &text(&row.subscription_id),
                &text(stored.billing_subscription_id.as_deref().unwrap_or("")),
                &text(&row.meter_id),
                name,
                unit,
                &time(row.usage_start),
                &time(row.usage_end),
                &row.quantity.to_string(),
                &text(&row.resource_uri),
                &text(&row.location),
                &text(row.tags.as_deref().unwrap_or("")),
                &text(row.additional_info.as_deref().unwrap_or("")),
            ])
            .map_err(|e| e.to_string())
    };
    let n = ledger.export_rows(filter, &mut sink).await?;
    writer.flush().map_err(|e| ExportError::Write(e.to_string()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_table_knows_hyphenless_network_meters_and_hyphenated_ones() {
        assert_eq!(
            meters()[&normalize_meter_id("F271A8A388C44D93956A063E1D2FA80B")].0,
            "Static IP Address Usage"
        );
        assert_eq!(
            meters()[&normalize_meter_id("fab6eb84-500b-4a09-a8ca-7358f8bbaea5")].1,
            "Virtual core hours"
        );
    }
}
