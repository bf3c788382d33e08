//! The HTML statement: every total of the statement on the page, and markup a stamp sends shown
//! as text, never run.

use crate::rating::{VM, books, d, november, request, settled_evidence, t, usage};
use azs_core::rating::html::statement_html;
use azs_core::rating::rerate::{add_rerate, price_differences};
use azs_core::rating::{Month, Statement, StatementSettings, Statements, finalize};

/// cust-a's November statement from one row of two VM hours, on stamp `stamp` at `location`: for
/// text a stamp controls.
pub(crate) fn one_row_statement(stamp: &str, location: &str) -> Statement {
    let mut row = usage(stamp, "cust-a", VM, t("2026-11-03T04:00:00Z"), d("2"), None);
    row.row.location = location.into();
    let rows = vec![row];
    let (books, assignments) = (books(), crate::rating::assignments());
    let evidence = settled_evidence();
    Statements::new(&books, &assignments, StatementSettings::default()).build(&request(
        "cust-a",
        november(),
        &rows,
        &[],
        &evidence,
        "2026-12-03T00:00:00Z",
    ))
}

#[test]
fn stamp_controlled_strings_are_escaped_and_every_total_is_on_the_page() {
    // Given a statement whose stamp id and location carry markup
    let s = one_row_statement("<img src=x onerror=alert(1)>", "</td><script>alert(2)</script>");
    // When it is rendered
    let html = statement_html(&s);
    // Then the markup is text
    assert!(!html.contains("<img") && !html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
    assert!(html.contains("&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;"), "{html}");
    // And each total sits in its cell
    for (id, value) in [("usage", s.usage), ("fees-total", s.fees_total), ("tax", s.tax), ("total", s.total)]
    {
        assert!(html.contains(&format!(r#"id="{id}">{value}</td>"#)), "{id} {value}");
    }
}

#[test]
fn fee_and_tax_corrections_name_the_month_they_correct() {
    // Given December carrying November re-rated: a monthly fee 50 -> 60 and tax 19 % -> 21 %
    let rows = vec![usage("stamp-east", "cust-a", VM, t("2026-11-03T04:00:00Z"), d("2"), None)];
    let (books, assignments) = (books(), crate::rating::assignments());
    let evidence = settled_evidence();
    let mut builder = Statements::new(&books, &assignments, StatementSettings::default());
    let final_ = finalize(
        builder.build(&request("cust-a", november(), &rows, &[], &evidence, "2026-12-03T00:00:00Z")),
        t("2026-12-03T00:05:00Z"),
    )
    .unwrap();
    let mut rebuilt = final_.clone();
    rebuilt.fees[0].fee = d("60");
    rebuilt.tax_percent = d("21");
    let rerate = price_differences(&final_, &rebuilt, &[], t("2026-12-05T00:00:00Z"));
    let december: Month = "2026-12".parse().unwrap();
    let draft = builder.build(&request(
        "cust-a",
        december,
        &rows,
        std::slice::from_ref(&final_),
        &evidence,
        "2026-12-05T00:00:00Z",
    ));
    let s = add_rerate(draft, rerate);

    // When it is rendered
    let html = statement_html(&s);

    // Then the fee correction names November, and November's tax is listed at its own rates
    let fee = &s.fees.iter().find(|f| f.corrects.is_some()).unwrap();
    let fee_row = format!(
        "<td>2026-11, price correction</td><td class=\"amount\"></td><td class=\"amount\">{}</td>",
        fee.amount
    );
    assert!(html.contains(&fee_row), "{html}");
    let tax = s.rerates[0].tax.as_ref().unwrap();
    assert!(html.contains("<h2>Tax of corrected months</h2>"), "{html}");
    let tax_row = format!("<tr><td>2026-11</td><td class=\"amount\">{}</td>", tax.final_taxed);
    assert!(html.contains(&tax_row), "{html}");
    assert!(html.contains("19 % -&gt; 21 %"), "{html}");
    assert!(html.contains(&format!("<td class=\"amount\">{}</td></tr>", tax.difference)), "{html}");
    // And the totals are the statement's
    for (id, value) in [("corrections", s.corrections), ("tax", s.tax), ("total", s.total)] {
        assert!(html.contains(&format!(r#"id="{id}">{value}</td>"#)), "{id} {value}");
    }
}
