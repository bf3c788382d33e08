//! Text from stamps and from webhook callers on its way to where it could do harm: a spreadsheet
//! evaluates a CSV cell that starts like a formula, a terminal runs an escape sequence.

use std::borrow::Cow;

/// A text cell a spreadsheet will not evaluate (OWASP's CSV injection rule, and ASVS 5's list): a
/// cell that starts with `=`, `+`, `-`, `@`, a tab, a carriage return, a line feed or NUL, or with
/// spaces before one of those, is prefixed with `'`, which spreadsheets show as text and do not
/// display. The csv writer then quotes what needs quoting.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    if cell.trim_start_matches(' ').starts_with(['=', '+', '-', '@', '\t', '\r', '\n', '\0']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `text` without control characters (C0, DEL and C1; newline and tab kept) and without the
/// invisible characters that reorder or hide what a terminal shows (bidirectional overrides and
/// isolates, zero-width characters).
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    if text.chars().any(unsafe_char) {
        Cow::Owned(text.chars().filter(|c| !unsafe_char(*c)).collect())
    } else {
        Cow::Borrowed(text)
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
    fn escape_sequences_and_carriage_returns_are_dropped_newlines_and_tabs_kept() {
        assert_eq!(terminal_safe("stamp\x1b]0;owned\x07 \x1b[2Jok\r\u{9b}31m"), "stamp]0;owned [2Jok31m");
        assert_eq!(terminal_safe("a\tb\nc"), "a\tb\nc");
        assert_eq!(terminal_safe("evil\u{202e}txt.exe\u{200b}"), "eviltxt.exe");
        assert!(matches!(terminal_safe("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
