//! `azs-usage mapping import STAMP FILE`: a CSV of `externalSubscriptionId,billingSubscriptionId`
//! (header optional) set all or nothing. Every line is checked before anything is written, and every
//! bad line is reported at once; the mappings then go to the store in one transaction.

use anyhow::{Context, Result};
use azs_app::mapper::{MappingLine, SubscriptionMapper};
use azs_app::registrar::RegistrationError;
use azs_core::ValidationErrors;
use azs_core::mapping::SubscriptionMapping;
use azs_core::stamp::StampId;
use std::path::Path;

/// Imports `file` for `stamp`; returns how many mappings were set and how many rows they back-filled.
pub async fn import(
    mapper: &SubscriptionMapper,
    stamp: &StampId,
    file: &Path,
) -> Result<(usize, u64), RegistrationError> {
    let (lines, mut errors) =
        read_lines(file).map_err(|e| RegistrationError::Unavailable(format!("{e:#}")))?;
    if !errors.is_empty() {
        // The file's shape is wrong somewhere: still name every line that breaks a mapping rule, with
        // the same rules the registrar applies, so one pass over the file shows every problem.
        for line in &lines {
            if let Err(e) = SubscriptionMapping::validated(
                stamp,
                &line.external_subscription_id,
                &line.billing_subscription_id,
                chrono::Utc::now(),
            ) {
                for f in e.0 {
                    errors.push(format!("line {}: {}", line.line, f.field), f.rule);
                }
            }
        }
        errors.0.sort_by_key(|f| line_number(&f.field));
        return Err(RegistrationError::Invalid(errors));
    }
    let backfilled = mapper.import_mappings(stamp, &lines, &crate::audit::operator()).await?;
    Ok((lines.len(), backfilled))
}

/// The lines with two columns, and an error for every line without.
fn read_lines(file: &Path) -> Result<(Vec<MappingLine>, ValidationErrors)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("reading {}", file.display()))?;
    let mut lines = Vec::new();
    let mut errors = ValidationErrors::default();
    for (i, record) in reader.records().enumerate() {
        let number = i + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {number}"), format!("is not CSV: {e}"));
                continue;
            }
        };
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if number == 1 && record[0].eq_ignore_ascii_case("externalSubscriptionId") {
            continue;
        }
        if record.len() != 2 {
            errors.push(
                format!("line {number}"),
                "must have 2 columns: externalSubscriptionId,billingSubscriptionId",
            );
            continue;
        }
        lines.push(MappingLine {
            line: number,
            external_subscription_id: record[0].to_owned(),
            billing_subscription_id: record[1].to_owned(),
        });
    }
    Ok((lines, errors))
}

fn line_number(field: &str) -> usize {
    field
        .trim_start_matches("line ")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
