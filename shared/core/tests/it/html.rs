//! The HTML statement: every total of the statement on the page, and markup a stamp sends shown
//! as text, never run.

use crate::rating::{VM, books, d, november, request, settled_evidence, t, usage};
use azs_core::rating::html::statement_html;
use azs_core::rating::{Statement, StatementSettings, Statements};

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
