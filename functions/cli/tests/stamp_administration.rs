//! End to end: stamp and mapping administration through the real `azs-usage` binary, against the
//! stamp simulator and a real SQLite file.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_import_with_bad_lines_writes_nothing_and_names_every_bad_line() {
    // Given a registered stamp and a file whose lines 1-9 are valid, line 4 has three columns and
    // line 10 breaks the subscription rule
    let world = World::start(|_| vec![spec(0, aad(), 2)], 2, 50).await;
    let id = world.stamp_ids[0].clone();
    let mut lines: Vec<String> =
        (1..=9).map(|n| format!("00000000-0000-4000-8000-{n:012},billing-{n}")).collect();
    lines[3] = "00000000-0000-4000-8000-000000000004,billing-4,extra".into();
    lines.push("tenant/with/slash,billing-10".into());
    let file = world.path("mappings.csv");
    std::fs::write(&file, lines.join("\n")).unwrap();

    // When it is imported
    let out = world.run(&["mapping", "import", &id, file.to_str().unwrap()]).await;

    // Then the import fails naming both lines, and no mapping was written
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("line 4") && err.contains("line 10: externalSubscriptionId"), "{err}");
    let list = world.run(&["mapping", "list", "--json"]).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout(&list)).unwrap(), serde_json::json!([]));

    // And once the file is fixed, every line is imported
    lines[3] = "00000000-0000-4000-8000-000000000004,billing-4".into();
    lines[9] = "00000000-0000-4000-8000-000000000010,billing-10".into();
    std::fs::write(&file, format!("externalSubscriptionId,billingSubscriptionId\n{}", lines.join("\n")))
        .unwrap();
    let out = world.run(&["mapping", "import", &id, file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("imported 10 mappings"), "{}", stdout(&out));
    let list = world.run(&["mapping", "list", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&list)).unwrap().as_array().unwrap().len(),
        10
    );
}
