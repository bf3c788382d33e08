//! End to end: `statement show --html FILE` rendered in a real headless Chromium shows the same
//! totals as `statement show --json`.

use crate::common::*;
use azs_core::rating::Statement;
use azs_core::usage::normalize_meter_id;
use rust_decimal::Decimal;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser on PATH (scripts/chromium.sh install-if-missing puts it there), or why there is none.
fn chromium() -> Result<PathBuf, String> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh").args(["-c", &format!("command -v {name}")]).output()
            && out.status.success()
        {
            return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reason = std::fs::read_to_string(root.join("target/chromium/not-installed"))
        .unwrap_or_else(|_| "run scripts/chromium.sh install-if-missing".into());
    Err(format!("chromium is not installed: {}", reason.trim()))
}

/// The text of the element with `id` in a serialised DOM.
fn cell(dom: &str, id: &str) -> Decimal {
    let open = format!(r#"id="{id}">"#);
    let start = dom.find(&open).unwrap_or_else(|| panic!("no #{id} in the DOM")) + open.len();
    let end = start + dom[start..].find('<').unwrap();
    dom[start..end].trim().parse().unwrap_or_else(|e| panic!("#{id}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_statement_in_a_headless_browser_shows_the_totals_of_the_json() {
    let browser = match chromium() {
        Ok(path) => path,
        Err(reason) => {
            println!("NOT RUN: the HTML statement in a browser: {reason}");
            return;
        }
    };
    // Given collected usage mapped to one customer and a book with a monthly fee and tax
    let world = World::start(|_| vec![plain(0, 3)], 4, 50).await;
    let out = world.run(&["collect"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = world.truth(0, world.horizon());
    for tenant in truth.iter().map(|r| r.subscription_id.as_str()).collect::<BTreeSet<_>>() {
        let out = world.run(&["mapping", "set", &world.stamp_ids[0], tenant, "cust-html"]).await;
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let month = azs_core::rating::Month::of(truth.iter().map(|r| r.usage_start).max().unwrap());
    let meters: Vec<serde_json::Value> = truth
        .iter()
        .map(|r| normalize_meter_id(&r.meter_id))
        .collect::<BTreeSet<_>>()
        .iter()
        .map(|m| serde_json::json!({"meterId": m, "price": {"kind": "unit", "unitPrice": "0.0437"}}))
        .collect();
    let book = serde_json::json!({"id": "html", "currency": {"code": "EUR", "minorUnits": 2}, "versions": [
        {"version": 1, "effectiveFrom": "2020-01-01T00:00:00Z", "monthlyFee": "25", "taxPercent": "19",
         "meters": meters}]});
    std::fs::write(world.path("book.json"), book.to_string()).unwrap();
    for args in [
        vec!["price-book", "import", world.path("book.json").to_str().unwrap()],
        vec!["price-book", "assign", "html", "--from", "2020-01-01T00:00:00Z"],
    ] {
        let out = world.run(&args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }

    // When the statement is shown as JSON and written as HTML, and the page is opened in Chromium
    let page = world.path("statement.html");
    let args =
        ["statement", "show", "cust-html", &month.to_string(), "--json", "--html", page.to_str().unwrap()];
    let out = world.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let statement: Statement = serde_json::from_str(&stdout(&out)).unwrap();
    let profile = world.path("chromium-profile");
    let dom = Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);

    // Then the page the browser built shows the JSON's totals
    assert!(statement.total > Decimal::ZERO && statement.tax > Decimal::ZERO);
    for (id, value) in [
        ("usage", statement.usage),
        ("corrections", statement.corrections),
        ("fees-total", statement.fees_total),
        ("subtotal", statement.subtotal),
        ("tax", statement.tax),
        ("total", statement.total),
    ] {
        assert_eq!(cell(&dom, id), value, "#{id}");
    }
    assert_eq!(dom.matches("<tr><td>").count(), statement.lines.len() + statement.fees.len());
    world.finish().await;
}
