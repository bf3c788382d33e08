//! Text from stamps and from webhook callers on its way to where it could do harm: a spreadsheet
//! evaluates a CSV cell that starts like a formula, a terminal runs an escape sequence.

use std::borrow::Cow;

pub use azs_core::spreadsheet::spreadsheet_safe;

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
    fn escape_sequences_and_carriage_returns_are_dropped_newlines_and_tabs_kept() {
        assert_eq!(terminal_safe("stamp\x1b]0;owned\x07 \x1b[2Jok\r\u{9b}31m"), "stamp]0;owned [2Jok31m");
        assert_eq!(terminal_safe("a\tb\nc"), "a\tb\nc");
        assert_eq!(terminal_safe("evil\u{202e}txt.exe\u{200b}"), "eviltxt.exe");
        assert!(matches!(terminal_safe("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
