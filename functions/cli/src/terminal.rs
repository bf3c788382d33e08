//! What the CLI prints goes to an operator's terminal, and much of it comes from stamps (names,
//! subscription ids, error reasons) or from callers of the webhook. An escape sequence in such text
//! would be run by the terminal (recolour, retitle, move the cursor over earlier lines), so every line
//! is printed through [`azs_app::display::terminal_safe`]: control characters other than newline and
//! tab are dropped.
//! JSON output is unaffected (serde already escapes control characters as `\uXXXX`).

/// `println!` through [`azs_app::display::terminal_safe`].
#[macro_export]
macro_rules! say {
    () => { println!() };
    ($($arg:tt)*) => { println!("{}", $crate::terminal::terminal_safe(&format!($($arg)*))) };
}

/// `print!` through [`azs_app::display::terminal_safe`].
#[macro_export]
macro_rules! say_inline {
    ($($arg:tt)*) => { print!("{}", $crate::terminal::terminal_safe(&format!($($arg)*))) };
}

/// `eprintln!` through [`azs_app::display::terminal_safe`].
#[macro_export]
macro_rules! say_error {
    ($($arg:tt)*) => { eprintln!("{}", $crate::terminal::terminal_safe(&format!($($arg)*))) };
}

pub use azs_app::display::terminal_safe;
