//! `azs-usage price-book ...` and `azs-usage statement ...`: price books, who rates with which, and
//! monthly statements (see `azs_core::rating` and `azs_app::rating`). Kept in the configured store.

use anyhow::{Context, Result, bail};
use azs_app::config::AppConfig;
use azs_app::rating::{Finalised, StatementService, meter_catalog, open_rating_store};
use azs_app::statement_pass::Covered;
use azs_app::wiring::Services;
use azs_core::rating::book::{BookVersion, PriceBook};
use azs_core::rating::book_csv::{books_from_csv, books_to_csv};
use azs_core::rating::focus::{FocusIssuer, focus_csv};
use azs_core::rating::html::statement_html;
use azs_core::rating::margin::MarginReport;
use azs_core::rating::rerate::TAX_RULE;
use azs_core::rating::statement_csv::statement_csv;
use azs_core::rating::{Assignment, Month, Statement, StatementSettings};
use azs_usage::model::{PriceBookCommand, StatementCommand};
use chrono::Utc;
use std::process::ExitCode;

pub(crate) async fn price_book(config: &AppConfig, command: PriceBookCommand) -> Result<ExitCode> {
    let store = open_rating_store(config).await?;
    match command {
        PriceBookCommand::Import { file } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
                let books = books_from_csv(&text).map_err(|errors| {
                    let lines: Vec<String> =
                        errors.0.iter().map(|f| format!("  {}: {}", f.field, f.rule)).collect();
                    anyhow::anyhow!("{} is invalid:\n{}", file.display(), lines.join("\n"))
                })?;
                for book in &books {
                    let added = store.add_book_versions(book).await?;
                    say!("{}: {added} version(s) added, {} in the file", book.id, book.versions.len());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let books: Vec<PriceBook> = match serde_json::from_str::<serde_json::Value>(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?
            {
                list @ serde_json::Value::Array(_) => serde_json::from_value(list),
                one => serde_json::from_value(one).map(|b| vec![b]),
            }
            .with_context(|| format!("{} is not a price book (or a list of them)", file.display()))?;
            let mut valid = Vec::new();
            for (i, book) in books.into_iter().enumerate() {
                let id = book.id.clone();
                match book.validated() {
                    Ok(book) => valid.push(book),
                    Err(errors) => {
                        let lines: Vec<String> =
                            errors.0.iter().map(|f| format!("  {}: {}", f.field, f.rule)).collect();
                        bail!("price book {i} ({id:?}) is invalid:\n{}", lines.join("\n"));
                    }
                }
            }
            for book in &valid {
                let added = store.add_book_versions(book).await?;
                say!("{}: {added} version(s) added, {} in the file", book.id, book.versions.len());
            }
        }
        PriceBookCommand::Export { csv } => {
            let books = store.price_books().await?;
            if csv {
                print!("{}", books_to_csv(&books));
            } else {
                println!("{}", serde_json::to_string_pretty(&books)?);
            }
        }
        PriceBookCommand::List { json } => {
            let books = store.price_books().await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&books)?);
            } else if books.is_empty() {
                say!("no price books");
            } else {
                say!("{:<24} {:<8} {:>8}  {:<20}", "BOOK", "CURRENCY", "VERSIONS", "LATEST FROM");
                for b in &books {
                    let latest = b.versions.last().map(|v| v.effective_from.to_rfc3339()).unwrap_or_default();
                    say!("{:<24} {:<8} {:>8}  {:<20}", b.id, b.currency.code, b.versions.len(), latest);
                }
            }
        }
        PriceBookCommand::Show { book, version, json } => {
            let book = find(&store.price_books().await?, &book)?;
            match version {
                Some(n) => {
                    let v = version_of(&book, n)?;
                    if json {
                        say!("{}", serde_json::to_string_pretty(v)?);
                    } else {
                        print_version(&book, v);
                    }
                }
                None if json => say!("{}", serde_json::to_string_pretty(&book)?),
                None => {
                    say!("{} ({})", book.id, book.currency.code);
                    for v in &book.versions {
                        say!(
                            "  version {} from {}: {} meters{}",
                            v.version,
                            v.effective_from.to_rfc3339(),
                            v.meters.len(),
                            v.parent
                                .as_ref()
                                .map(|p| format!(", {} % over {}", p.adjustment_percent, p.book_id))
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
        PriceBookCommand::Diff { book, from, to } => {
            let book = find(&store.price_books().await?, &book)?;
            let (old, new) = (version_of(&book, from)?, version_of(&book, to)?);
            for line in azs_app::rating::book_diff(old, new) {
                say!("{line}");
            }
        }
        PriceBookCommand::Assign { book, subscription, from } => {
            let assignment =
                Assignment { billing_subscription_id: subscription, book_id: book, effective_from: from }
                    .validated()
                    .map_err(|errors| anyhow::anyhow!("invalid assignment: {errors}"))?;
            if find(&store.price_books().await?, &assignment.book_id).is_err() {
                bail!("bookId: no price book {:?} is stored (import it first)", assignment.book_id);
            }
            store.set_assignment(&assignment).await?;
            say!(
                "{} rates with {} from {}",
                assignment.billing_subscription_id.as_deref().unwrap_or("every billing subscription"),
                assignment.book_id,
                assignment.effective_from.to_rfc3339()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn find(books: &[PriceBook], id: &str) -> Result<PriceBook> {
    books.iter().find(|b| b.id == id).cloned().with_context(|| format!("no price book {id:?}"))
}

fn version_of(book: &PriceBook, n: u32) -> Result<&BookVersion> {
    book.versions
        .iter()
        .find(|v| v.version == n)
        .with_context(|| format!("price book {:?} has no version {n}", book.id))
}

fn print_version(book: &PriceBook, v: &BookVersion) {
    say!(
        "{} version {} ({}), from {}",
        book.id,
        v.version,
        book.currency.code,
        v.effective_from.to_rfc3339()
    );
    if let Some(p) = &v.parent {
        say!("  {} % over {} (inherited meters; its own prices below)", p.adjustment_percent, p.book_id);
    }
    for (label, value) in
        [("monthly fee", v.monthly_fee), ("one-time fee", v.one_time_fee), ("tax %", v.tax_percent)]
    {
        if let Some(value) = value {
            say!("  {label}: {value}");
        }
    }
    for m in &v.meters {
        say!("  {} {}", m.meter_id, serde_json::to_string(&m.price).unwrap_or_default());
    }
}

pub(crate) async fn statement(services: &Services, command: StatementCommand) -> Result<ExitCode> {
    let service = StatementService {
        store: services.store.clone(),
        rating: open_rating_store(&services.config).await?,
        settings: StatementSettings::default(),
    };
    let now = Utc::now();
    match command {
        StatementCommand::List { month, json } => {
            let statements = service.rating.statements(month).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&statements)?);
            } else if statements.is_empty() {
                say!("no statements");
            } else {
                say!(
                    "{:<32} {:<8} {:<6} {:>14} {:<4} {:>8}",
                    "BILLING SUBSCRIPTION",
                    "MONTH",
                    "STATE",
                    "TOTAL",
                    "",
                    "BLOCKERS"
                );
                for s in &statements {
                    say!(
                        "{:<32} {:<8} {:<6} {:>14} {:<4} {:>8}",
                        s.billing_subscription_id,
                        s.month.to_string(),
                        if s.is_final() { "final" } else { "draft" },
                        s.total.to_string(),
                        s.currency.as_ref().map_or("", |c| c.code.as_str()),
                        s.blockers.len()
                    );
                }
            }
        }
        StatementCommand::Focus { month, csv, billing_account_id, issuer } => {
            let statements = service.rating.statements(month).await?;
            let issuer = FocusIssuer::new(billing_account_id, issuer);
            let text = focus_csv(&statements, &issuer, &meter_catalog());
            std::fs::write(&csv, text).with_context(|| format!("writing {}", csv.display()))?;
            say!("{} statement(s) written to {} as FOCUS 1.2", statements.len(), csv.display());
        }
        StatementCommand::Show { billing_subscription_id, month, json, html, csv, margin } => {
            let s = service.refresh(&billing_subscription_id, month, now).await?;
            for (file, format, text) in
                [(html, "HTML", statement_html as fn(&Statement) -> String), (csv, "CSV", statement_csv)]
            {
                if let Some(file) = file {
                    std::fs::write(&file, text(&s)).with_context(|| format!("writing {}", file.display()))?;
                    say_error!("written as {format} to {}", file.display());
                }
            }
            if margin {
                let view = azs_app::margin::margin_of_statement(&service, &s).await?;
                if json {
                    say!("{}", serde_json::to_string_pretty(&view)?);
                } else {
                    let (sub, currency) = (&view.billing_subscription_id, &view.report.currency.code);
                    say!("margin of {sub} {month} ({}, {currency})", view.state);
                    print_margin(&view.report);
                }
            } else {
                print_statement(&s, json)?;
            }
        }
        StatementCommand::Rerate { billing_subscription_id, month, dry_run, json } => {
            let (rerate, corrected) = service.rerate(&billing_subscription_id, month, !dry_run, now).await?;
            if json {
                say!("{}", serde_json::to_string_pretty(&rerate)?);
            } else {
                say!(
                    "{} {}: the books as they are now differ from the final statement by {} before tax, {} with tax",
                    rerate.billing_subscription_id,
                    rerate.month,
                    rerate.difference,
                    rerate.total
                );
                for d in &rerate.lines {
                    say!(
                        "  {} {} {}: {} -> {} ({} -> {}), difference {}",
                        d.meter_id,
                        d.stamp_id,
                        d.component,
                        d.final_book,
                        d.book,
                        d.final_amount,
                        d.rerated_amount,
                        d.difference
                    );
                }
                for f in &rerate.fees {
                    say!(
                        "  {:?} fee: {} -> {} ({} -> {}), difference {}",
                        f.kind,
                        f.final_book,
                        f.book,
                        f.final_amount,
                        f.rerated_amount,
                        f.difference
                    );
                }
                if let Some(t) = &rerate.tax {
                    say!(
                        "  tax: {} % of {} = {} -> {} % of {} = {}, difference {}",
                        t.final_tax_percent,
                        t.final_taxed,
                        t.final_tax,
                        t.tax_percent,
                        t.corrected_taxed,
                        t.corrected_tax,
                        t.difference
                    );
                }
            }
            say_error!("tax rule: {TAX_RULE}");
            match corrected {
                Some(s) => say_error!(
                    "written as correction lines onto the {} statement (total now {}); the final {} statement is unchanged",
                    s.month,
                    s.total,
                    month
                ),
                None if dry_run => say_error!("dry run: nothing was written"),
                None => say_error!("nothing to correct"),
            }
        }
        StatementCommand::Finalize { billing_subscription_id, month, json } => {
            match service.finalize(&billing_subscription_id, month, now).await? {
                Finalised::Final(s) => print_statement(&s, json)?,
                Finalised::Blocked(s, not_complete) => {
                    if json {
                        print_statement(&s, true)?;
                    }
                    say_error!(
                        "not finalised: {} for {} is not complete:",
                        not_complete.billing_subscription_id,
                        not_complete.month
                    );
                    for b in &not_complete.blockers {
                        say_error!("  {b}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_statement(s: &Statement, json: bool) -> Result<()> {
    if json {
        say!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    let currency = s.currency.as_ref().map_or("", |c| c.code.as_str());
    say!(
        "{} {} ({}){}",
        s.billing_subscription_id,
        s.month,
        if s.is_final() { "final" } else { "draft" },
        if s.blockers.is_empty() { String::new() } else { format!(", {} blocker(s)", s.blockers.len()) }
    );
    for l in &s.lines {
        let corrects = l.corrects.map(|m| format!(" [late usage of {m}]")).unwrap_or_default();
        say!(
            "  {} {} {} {}: {} x {} = {} {currency}{corrects}",
            l.meter_id,
            l.stamp_id,
            l.book,
            l.component,
            l.pricing_quantity,
            l.unit_price,
            l.amount
        );
    }
    for f in &s.fees {
        say!(
            "  fee {:?} {} ({} of {} h): {} {currency}",
            f.kind,
            f.book,
            f.active_hours,
            f.month_hours,
            f.amount
        );
    }
    for u in &s.unpriced {
        say!("  UNPRICED {} in {}: {} rows, quantity {}", u.meter_id, u.book, u.rows, u.quantity);
    }
    say!(
        "  usage {}  corrections {}  fees {}  (discount included {})",
        s.usage,
        s.corrections,
        s.fees_total,
        s.discount
    );
    say!("  subtotal {}  tax {} % {}  total {} {currency}", s.subtotal, s.tax_percent, s.tax, s.total);
    for b in &s.blockers {
        say!("  blocked: {b}");
    }
    Ok(())
}

pub(crate) async fn margin(services: &Services, month: Month, json: bool) -> Result<ExitCode> {
    let service = StatementService {
        store: services.store.clone(),
        rating: open_rating_store(&services.config).await?,
        settings: StatementSettings::default(),
    };
    // The operator's machine has no gateway timeout: the whole month in one report.
    let report = azs_app::margin::month_margin(&service, month, &Covered::Every, Utc::now()).await?.report;
    if json {
        say!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!("margin {} ({})", report.month, report.currency.code);
    print_margin(&report);
    Ok(ExitCode::SUCCESS)
}

/// A margin report as a table: per meter and stamp, the total, then what could not be costed.
fn print_margin(report: &MarginReport) {
    say!("{:<32} {:<24} {:>14} {:>14} {:>14}", "METER", "STAMP", "REVENUE", "COST", "MARGIN");
    for l in &report.lines {
        say!(
            "{:<32} {:<24} {:>14} {:>14} {:>14}",
            l.meter_id,
            l.stamp_id,
            l.revenue.to_string(),
            l.cost.to_string(),
            l.margin.to_string()
        );
    }
    say!(
        "{:<32} {:<24} {:>14} {:>14} {:>14}",
        "TOTAL",
        "",
        report.revenue.to_string(),
        report.cost.to_string(),
        report.margin.to_string()
    );
    for u in &report.uncosted {
        say!("  UNCOSTED {} on {}: {} rows: {}", u.meter_id, u.stamp_id, u.rows, u.reason);
    }
}
