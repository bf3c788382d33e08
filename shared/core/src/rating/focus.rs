//! Statements as FOCUS 1.2 rows (the FinOps Open Cost and Usage Specification), CSV, so FinOps tools
//! load what the operator invoices.
//!
//! One row per statement line, fee and tax, with the statement's rounded amounts: the `BilledCost`
//! of a statement's rows adds up to its total. How our model maps onto FOCUS:
//!
//! - the operator is the `BillingAccount`, `Provider` and `InvoiceIssuer` ([`FocusIssuer`]);
//!   Microsoft, whose software runs on the stamp, is the `Publisher`; each billing subscription is a
//!   `SubAccount` and each statement an invoice (`InvoiceId` = `{billing subscription}/{month}`);
//!   `BillingPeriodStart`/`End` is always the statement's month, the period invoiced;
//! - `ChargeCategory`: `Usage` for this month's usage, `Purchase` for its fees (`ChargeFrequency`
//!   `Recurring` or `One-Time`, `SkuId` `monthly-fee` or `one-time-fee`), `Tax` for the tax on its
//!   own amounts;
//! - a correction of a finalised (invoiced) month is `Adjustment` with `ChargeClass` `Correction`,
//!   its `ChargePeriod` in the corrected month, `x_CorrectsMonth` naming it: late usage (the
//!   corrected hours), and a confirmed rerate's usage, fee and tax differences (the corrected
//!   month; negative where a price went down). A tax difference is an `Adjustment` too, not `Tax`
//!   (FOCUS allows either with `ChargeClass` `Correction`): every correction sits under one
//!   category, and `ServiceName` `Tax` still tells it apart. FOCUS 1.2 wants `ConsumedQuantity`/`ConsumedUnit`
//!   null on every row that is not `Usage`, so corrections carry none; a rerate's difference is no
//!   unit price (FOCUS unit prices are never negative), so its unit prices are null, its
//!   `PricingQuantity` the quantity re-priced; fee and tax differences have no `PricingQuantity`;
//!   a tax difference has no SKU;
//! - `ListCost`/`ListUnitPrice` are the parent book's prices before a markup or discount,
//!   `BilledCost`, `EffectiveCost` and `ContractedCost` what the statement charges;
//! - `SkuId` is the meter id, `SkuPriceId` the book lineage, meter and price component;
//!   `RegionId`/`RegionName` the rows' location; `x_StampId`, `x_Book`, `x_CorrectsMonth` and
//!   `x_StatementState` carry what FOCUS has no column for.

use super::rerate::{carried_tax, taxed_base};
use super::statement::{FeeKind, Statement, StatementLine, StatementState};
use crate::spreadsheet::csv_field;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Who issues the statements, as FOCUS names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FocusIssuer {
    pub billing_account_id: String,
    pub billing_account_name: String,
    /// `ProviderName` and `InvoiceIssuerName`: the operator.
    pub name: String,
}

/// The `BillingAccountId` when the operator names none.
pub const DEFAULT_BILLING_ACCOUNT_ID: &str = "azs-usage";
/// The `BillingAccountName`, `ProviderName` and `InvoiceIssuerName` when the operator names none.
pub const DEFAULT_ISSUER: &str = "Azure Stack Hub operator";

impl FocusIssuer {
    /// The issuer as the CLI's `--billing-account-id` and `--issuer` (and the webhook's
    /// `billingAccountId` and `issuer`) name it: the operator's name is also the account's.
    pub fn new(billing_account_id: String, issuer: String) -> FocusIssuer {
        FocusIssuer { billing_account_id, billing_account_name: issuer.clone(), name: issuer }
    }
}

/// What the export knows of a meter: `../shared/reference/meters.csv`'s columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterInfo {
    pub resource_provider: String,
    pub name: String,
    pub unit: String,
}

/// Meters by normalised id.
#[derive(Debug, Clone, Default)]
pub struct MeterCatalog(HashMap<String, MeterInfo>);

impl MeterCatalog {
    /// The catalogue from `meters.csv` text (`resource_provider,meter_id,meter_name,unit,notes`,
    /// fields quoted where they hold commas).
    pub fn from_csv(text: &str) -> MeterCatalog {
        let mut meters = HashMap::new();
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let fields = split_csv_line(line);
            if let [provider, id, name, unit, ..] = fields.as_slice() {
                meters.insert(
                    crate::usage::normalize_meter_id(id),
                    MeterInfo { resource_provider: provider.clone(), name: name.clone(), unit: unit.clone() },
                );
            }
        }
        MeterCatalog(meters)
    }

    pub fn get(&self, meter_id: &str) -> Option<&MeterInfo> {
        self.0.get(meter_id)
    }
}

/// The fields of one CSV line (quotes and doubled quotes understood; no line breaks inside fields).
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().expect("one field").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// The columns, in order: FOCUS 1.2's, then ours (`x_`).
pub const COLUMNS: &[&str] = &[
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_StampId",
    "x_Book",
    "x_CorrectsMonth",
    "x_StatementState",
];

/// One FOCUS row, by column name; absent columns are null (empty in CSV).
type Row = HashMap<&'static str, String>;

/// The FOCUS CSV of `statements` (header, then one row per line, fee and tax).
pub fn focus_csv(statements: &[Statement], issuer: &FocusIssuer, meters: &MeterCatalog) -> String {
    focus_csv_within(statements, issuer, meters, usize::MAX).0
}

/// The FOCUS CSV of the first of `statements` that fit in `budget` bytes, whole statements only,
/// and how many those are: a page of the export that a response limit bounds (Lambda's 6 MB). The
/// first statement is always held, whatever its size, so that a next page starts past it.
pub fn focus_csv_within(
    statements: &[Statement],
    issuer: &FocusIssuer,
    meters: &MeterCatalog,
    budget: usize,
) -> (String, usize) {
    let mut out = String::new();
    out.push_str(&COLUMNS.join(","));
    out.push_str("\r\n");
    let mut held = 0;
    for statement in statements {
        let mut records = String::new();
        for row in focus_rows(statement, issuer, meters) {
            let fields: Vec<String> = COLUMNS
                .iter()
                .map(|c| csv_field(row.get(c).map_or("", String::as_str)).into_owned())
                .collect();
            records.push_str(&fields.join(","));
            records.push_str("\r\n");
        }
        if held > 0 && out.len() + records.len() > budget {
            break;
        }
        out.push_str(&records);
        held += 1;
    }
    (out, held)
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The FOCUS rows of one statement.
pub fn focus_rows(statement: &Statement, issuer: &FocusIssuer, meters: &MeterCatalog) -> Vec<Row> {
    let currency = statement.currency.as_ref().map_or(String::new(), |c| c.code.clone());
    let state = match statement.state {
        StatementState::Draft => "draft",
        StatementState::Final { .. } => "final",
    };
    let common = |category: &str| -> Row {
        let mut row = Row::new();
        for (column, value) in [
            ("BillingAccountId", issuer.billing_account_id.clone()),
            ("BillingAccountName", issuer.billing_account_name.clone()),
            ("BillingAccountType", "Operator".to_owned()),
            ("BillingCurrency", currency.clone()),
            ("PricingCurrency", currency.clone()),
            ("BillingPeriodStart", time(statement.month.start())),
            ("BillingPeriodEnd", time(statement.month.end())),
            ("ChargeCategory", category.to_owned()),
            ("InvoiceId", format!("{}/{}", statement.billing_subscription_id, statement.month)),
            ("InvoiceIssuerName", issuer.name.clone()),
            ("ProviderName", issuer.name.clone()),
            ("PublisherName", "Microsoft".to_owned()),
            ("SubAccountId", statement.billing_subscription_id.clone()),
            ("SubAccountName", statement.billing_subscription_id.clone()),
            ("SubAccountType", "Billing Subscription".to_owned()),
            ("x_StatementState", state.to_owned()),
        ] {
            row.insert(column, value);
        }
        row
    };
    let costs = |row: &mut Row, billed: Decimal, list: Decimal| {
        for column in ["BilledCost", "EffectiveCost", "ContractedCost", "PricingCurrencyEffectiveCost"] {
            row.insert(column, billed.to_string());
        }
        row.insert("ListCost", list.to_string());
    };
    let prices = |row: &mut Row, unit: Decimal, list: Decimal| {
        row.insert("ContractedUnitPrice", unit.to_string());
        row.insert("PricingCurrencyContractedUnitPrice", unit.to_string());
        row.insert("ListUnitPrice", list.to_string());
        row.insert("PricingCurrencyListUnitPrice", list.to_string());
    };

    let mut rows = Vec::new();
    for line in &statement.lines {
        let mut row = common(if line.corrects.is_some() { "Adjustment" } else { "Usage" });
        usage_columns(&mut row, line, meters);
        costs(&mut row, line.amount, line.list_amount);
        if !line.price_correction {
            prices(&mut row, line.unit_price, line.list_unit_price);
        }
        rows.push(row);
    }
    for fee in &statement.fees {
        let mut row = common(if fee.corrects.is_some() { "Adjustment" } else { "Purchase" });
        let (frequency, sku, meter) = match fee.kind {
            FeeKind::Monthly => ("Recurring", "monthly-fee", "Monthly fee"),
            FeeKind::OneTime => ("One-Time", "one-time-fee", "One-time fee"),
        };
        row.insert("ChargeFrequency", frequency.to_owned());
        row.insert("ChargePeriodStart", time(fee.from));
        row.insert("ChargePeriodEnd", time(fee.to));
        row.insert("ServiceCategory", "Other".to_owned());
        row.insert("ServiceName", "Azure Stack Hub subscription".to_owned());
        row.insert("SkuId", sku.to_owned());
        row.insert("SkuMeter", meter.to_owned());
        row.insert("x_Book", fee.book.clone());
        costs(&mut row, fee.amount, fee.amount);
        if let Some(month) = fee.corrects {
            row.insert("ChargeClass", "Correction".to_owned());
            row.insert("ChargeDescription", format!("{meter}, price correction of {month}: {}", fee.book));
            row.insert("x_CorrectsMonth", month.to_string());
            rows.push(row);
            continue;
        }
        let (description, quantity, unit, unit_price) = match fee.kind {
            FeeKind::Monthly => (
                format!("Monthly fee, {} of {} hours, {}", fee.active_hours, fee.month_hours, fee.book),
                Decimal::from(fee.active_hours),
                "Hours",
                fee.fee / Decimal::from(fee.month_hours),
            ),
            FeeKind::OneTime => (format!("One-time fee, {}", fee.book), Decimal::ONE, "Units", fee.fee),
        };
        row.insert("ChargeDescription", description);
        row.insert("PricingCategory", "Standard".to_owned());
        row.insert("PricingQuantity", quantity.to_string());
        row.insert("PricingUnit", unit.to_owned());
        row.insert("SkuPriceId", format!("{}/{sku}", fee.book));
        prices(&mut row, unit_price, unit_price);
        rows.push(row);
    }
    let tax_row = |category: &str, description: String, from, to, amount: Decimal| {
        let mut row = common(category);
        row.insert("ChargeFrequency", "Recurring".to_owned());
        row.insert("ChargeDescription", description);
        row.insert("ChargePeriodStart", time(from));
        row.insert("ChargePeriodEnd", time(to));
        row.insert("ServiceCategory", "Other".to_owned());
        row.insert("ServiceName", "Tax".to_owned());
        costs(&mut row, amount, amount);
        row
    };
    let own_tax = statement.tax - carried_tax(statement);
    if own_tax != Decimal::ZERO {
        let description = format!("Tax {} % of {}", statement.tax_percent, taxed_base(statement));
        rows.push(tax_row("Tax", description, statement.month.start(), statement.month.end(), own_tax));
    }
    for rerate in &statement.rerates {
        let Some(tax) = &rerate.tax else { continue };
        let month = rerate.month;
        let description = format!(
            "Tax correction of {month}: {} % of {} -> {} % of {}",
            tax.final_tax_percent, tax.final_taxed, tax.tax_percent, tax.corrected_taxed
        );
        let mut row = tax_row("Adjustment", description, month.start(), month.end(), tax.difference);
        row.insert("ChargeClass", "Correction".to_owned());
        row.insert("x_CorrectsMonth", month.to_string());
        rows.push(row);
    }
    rows
}

fn usage_columns(row: &mut Row, line: &StatementLine, meters: &MeterCatalog) {
    let meter = meters.get(&line.meter_id);
    let meter_name = meter.map_or(line.meter_id.as_str(), |m| m.name.as_str());
    let unit = meter.map_or("Units", |m| m.unit.as_str());
    let provider = meter.map_or("Other", |m| m.resource_provider.as_str());
    let mut description = format!("{meter_name} ({}) on {}, {}", line.component, line.stamp_id, line.book);
    if let Some(reason) = &line.zero_reason {
        let _ = write!(description, ", zero-rated: {reason}");
    }
    let pricing_unit = line.pricing_unit.clone().unwrap_or_else(|| unit.to_owned());
    match line.corrects {
        Some(month) => {
            if line.price_correction {
                let _ = write!(description, ", price correction of {month}");
            } else {
                let _ = write!(description, ", late usage of {month}");
            }
            row.insert("ChargeClass", "Correction".to_owned());
            row.insert("x_CorrectsMonth", month.to_string());
        }
        None => {
            row.insert("ConsumedQuantity", line.consumed_quantity.to_string());
            row.insert("ConsumedUnit", unit.to_owned());
        }
    }
    row.insert("ChargeDescription", description);
    row.insert("ChargeFrequency", "Usage-Based".to_owned());
    row.insert("ChargePeriodStart", time(line.usage_from));
    row.insert("ChargePeriodEnd", time(line.usage_to));
    row.insert("PricingCategory", "Standard".to_owned());
    row.insert("PricingQuantity", line.pricing_quantity.to_string());
    row.insert("PricingUnit", pricing_unit);
    row.insert("RegionId", line.location.clone());
    row.insert("RegionName", line.location.clone());
    row.insert("ServiceCategory", service_category(provider).to_owned());
    row.insert("ServiceName", format!("Azure Stack Hub {provider}"));
    row.insert("SkuId", line.meter_id.clone());
    row.insert("SkuMeter", meter_name.to_owned());
    // A price correction's difference is no price of any price list: no SkuPriceId (nor details).
    if !line.price_correction {
        row.insert(
            "SkuPriceDetails",
            serde_json::json!({ "x_PriceComponent": line.component.to_string() }).to_string(),
        );
        row.insert("SkuPriceId", format!("{}/{}/{}", line.book, line.meter_id, line.component));
    }
    row.insert("x_StampId", line.stamp_id.to_string());
    row.insert("x_Book", line.book.clone());
}

/// FOCUS's `ServiceCategory` for a meter's resource provider.
fn service_category(resource_provider: &str) -> &'static str {
    match resource_provider {
        "Compute" => "Compute",
        "Network" => "Networking",
        "Storage" | "Managed Disks" => "Storage",
        "SQL RP" | "MySQL RP" => "Databases",
        "App Service" => "Web",
        "Key Vault" => "Security",
        _ => "Other",
    }
}
