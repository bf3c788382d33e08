//! A statement as an HTML page an operator can send or print, rendered from the template
//! `statement.html`. Every value placed in it is escaped: stamp ids, meter ids, locations, book
//! ids and billing subscription ids come from stamps and operators, never trusted as markup.

use super::rerate::{carried_tax, taxed_base};
use super::statement::{FeeKind, Statement};
use std::fmt::Write;

const PAGE: &str = include_str!("statement.html");

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The statement as a whole HTML page.
pub fn statement_html(s: &Statement) -> String {
    let e = |v: &dyn std::fmt::Display| escape(&v.to_string());
    let mut lines = String::new();
    for l in &s.lines {
        let corrects = match l.corrects {
            Some(m) if l.price_correction => format!("{m}, price correction"),
            Some(m) => format!("{m}, late usage"),
            None => String::new(),
        };
        let _ = writeln!(
            lines,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td></tr>",
            e(&l.meter_id),
            e(&l.stamp_id),
            e(&l.location),
            e(&l.book),
            e(&l.component),
            e(&corrects),
            e(&l.pricing_quantity),
            e(&l.unit_price),
            e(&l.amount)
        );
    }
    let mut fees = String::new();
    for f in &s.fees {
        let kind = match f.kind {
            FeeKind::Monthly => "Monthly fee",
            FeeKind::OneTime => "One-time fee",
        };
        let (corrects, hours) = match f.corrects {
            Some(m) => (format!("{m}, price correction"), String::new()),
            None => (String::new(), format!("{} of {}", f.active_hours, f.month_hours)),
        };
        let _ = writeln!(
            fees,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td></tr>",
            e(&kind),
            e(&f.book),
            e(&corrects),
            e(&hours),
            e(&f.amount)
        );
    }
    let mut tax_corrections = String::new();
    let corrected: Vec<_> = s.rerates.iter().filter_map(|r| r.tax.as_ref().map(|t| (r.month, t))).collect();
    if !corrected.is_empty() {
        tax_corrections.push_str(
            "<h2>Tax of corrected months</h2>\n<p>Each corrected month is taxed at its own rate.</p>\n<table id=\"tax-corrections\">\n<thead><tr><th>Month</th><th class=\"amount\">Taxed, as invoiced</th><th class=\"amount\">Taxed, corrected</th><th class=\"amount\">Rate</th><th class=\"amount\">Tax, as invoiced</th><th class=\"amount\">Tax, corrected</th><th class=\"amount\">Difference</th></tr></thead>\n<tbody>\n",
        );
        for (month, t) in corrected {
            let rate = if t.final_tax_percent == t.tax_percent {
                format!("{} %", t.tax_percent)
            } else {
                format!("{} % -> {} %", t.final_tax_percent, t.tax_percent)
            };
            let _ = writeln!(
                tax_corrections,
                "<tr><td>{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td><td class=\"amount\">{}</td></tr>",
                e(&month),
                e(&t.final_taxed),
                e(&t.corrected_taxed),
                e(&rate),
                e(&t.final_tax),
                e(&t.corrected_tax),
                e(&t.difference)
            );
        }
        tax_corrections.push_str("</tbody>\n</table>\n");
    }
    let mut blockers = String::new();
    if !s.blockers.is_empty() {
        blockers.push_str("<h2>Not final yet</h2>\n<ul id=\"blockers\">\n");
        for b in &s.blockers {
            let _ = writeln!(blockers, "<li>{}</li>", e(b));
        }
        blockers.push_str("</ul>\n");
    }
    let state = if s.is_final() { "final" } else { "draft" };
    let currency = s.currency.as_ref().map_or(String::new(), |c| c.code.clone());
    let tax_label = if carried_tax(s).is_zero() {
        format!("Tax ({} %)", s.tax_percent)
    } else {
        format!("Tax ({} % of {}, and of corrected months)", s.tax_percent, taxed_base(s))
    };
    let values: [(&str, String); 17] = [
        ("billing_subscription_id", e(&s.billing_subscription_id)),
        ("month", e(&s.month)),
        ("state", e(&state)),
        ("currency", e(&currency)),
        ("built_at", e(&s.built_at.to_rfc3339())),
        ("usage", e(&s.usage)),
        ("corrections", e(&s.corrections)),
        ("fees_total", e(&s.fees_total)),
        ("discount", e(&s.discount)),
        ("subtotal", e(&s.subtotal)),
        ("tax_label", e(&tax_label)),
        ("tax", e(&s.tax)),
        ("total", e(&s.total)),
        ("lines", lines),
        ("fees", fees),
        ("tax_corrections", tax_corrections),
        ("blockers", blockers),
    ];
    fill(PAGE, &values)
}

/// The template with each `{{name}}` replaced by its (already escaped or rendered) value, in one
/// pass: a value is never searched for placeholders itself.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("the statement template closes every placeholder");
        let name = &after[..end];
        let value = values.iter().find(|(n, _)| *n == name);
        out.push_str(&value.unwrap_or_else(|| panic!("the statement template names {name}, not filled")).1);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn placeholders_are_filled_once_and_values_are_not_searched_again() {
        let out = fill("a {{x}} b {{y}}", &[("x", "{{y}}".into()), ("y", "2".into())]);
        assert_eq!(out, "a {{y}} b 2");
    }
}
