//! Text on its way into a CSV file a spreadsheet will open: a cell that starts like a formula is
//! evaluated by it (CSV injection), and a cell with a comma, quote or line break must be quoted.

use std::borrow::Cow;

/// A text cell a spreadsheet will not evaluate (OWASP's CSV injection rule, and ASVS 5's list): a
/// cell that starts with `=`, `+`, `-`, `@`, a tab, a carriage return, a line feed or NUL, or with
/// spaces before one of those, is prefixed with `'`, which spreadsheets show as text and do not
/// display. Only for text: a number we wrote ourselves (`-1.50`) stays a number.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    if cell.trim_start_matches(' ').starts_with(['=', '+', '-', '@', '\t', '\r', '\n', '\0']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// One CSV field (RFC 4180): quoted, its quotes doubled, when it holds a comma, quote or line break.
pub fn csv_field(value: &str) -> Cow<'_, str> {
    if value.contains([',', '"', '\r', '\n']) {
        Cow::Owned(format!("\"{}\"", value.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_evaluate_are_escaped_and_others_kept() {
        for formula in [
            "=HYPERLINK(\"https://evil.example\",\"x\")",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "\n=1",
            "\0=1",
            "  =1+1",
        ] {
            assert_eq!(spreadsheet_safe(formula), format!("'{formula}"));
        }
        for plain in ["eastus", "{\"a\":1}", "/subscriptions/x", "", "a=b"] {
            assert_eq!(spreadsheet_safe(plain), plain);
        }
    }

    #[test]
    fn fields_with_commas_quotes_or_line_breaks_are_quoted_with_quotes_doubled() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
