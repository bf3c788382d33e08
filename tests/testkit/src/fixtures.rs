//! The documented payloads every crate's tests read, kept once in `tests/testkit/fixtures/` (copies of
//! the project's reference fixtures: the stamp's responses and the platforms' events). Reached through
//! these functions, by an absolute path fixed at compile time, so no crate reaches into another's
//! folder by a relative path.

use std::path::PathBuf;

/// Where the fixture `name` is.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures")).join(name)
}

/// The fixture's bytes, verbatim.
pub fn bytes(name: &str) -> Vec<u8> {
    let path = path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture's text, verbatim.
pub fn text(name: &str) -> String {
    String::from_utf8(bytes(name)).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"))
}

/// The fixture as JSON.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&text(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documented_fixture_is_read_as_text_and_as_json() {
        let page = json("azs-usage-page.json");
        assert!(page["value"].is_array(), "{page}");
        assert_eq!(text("azs-usage-page.json").into_bytes(), bytes("azs-usage-page.json"));
    }
}
