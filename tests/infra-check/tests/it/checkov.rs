//! infra/README.md's table of accepted checkov exceptions is the inline `#checkov:skip` comments, word for
//! word, so that a reason cannot go stale in one place (as the Linux Consumption reasons did).

use infra_check::{infra_dir, repo_root};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// `(directory below infra/, check, reason)` of every inline skip.
fn inline_skips(dir: &Path, out: &mut BTreeSet<(String, String, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.file_name().unwrap().to_string_lossy().starts_with('.') {
            inline_skips(&path, out);
        } else if path.extension().is_some_and(|x| x == "tf") {
            let module = path.parent().unwrap().strip_prefix(infra_dir()).unwrap().display().to_string();
            for line in fs::read_to_string(&path).unwrap().lines() {
                if let Some((check, reason)) =
                    line.trim().strip_prefix("#checkov:skip=").and_then(|s| s.split_once(':'))
                {
                    out.insert((module.clone(), check.to_owned(), reason.trim().to_owned()));
                }
            }
        }
    }
}

#[test]
fn the_readme_lists_every_checkov_skip_with_its_inline_reason() {
    let mut inline = BTreeSet::new();
    inline_skips(&infra_dir(), &mut inline);
    let readme = fs::read_to_string(repo_root().join("infra/README.md")).unwrap();
    let listed: BTreeSet<(String, String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> =
                line.split(" | ").map(|c| c.trim_matches(|c| c == '|' || c == ' ')).collect();
            (cells.len() == 4 && cells[2].starts_with("CKV"))
                .then(|| (cells[0].to_owned(), cells[2].to_owned(), cells[3].to_owned()))
        })
        .collect();
    let missing: Vec<_> = inline.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&inline).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "not in the README: {missing:#?}\nnot inline: {stale:#?}"
    );
    assert!(!inline.iter().any(|(_, _, reason)| reason.contains("Linux Consumption")), "Y1 is not offered");
}
