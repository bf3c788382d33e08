//! The demo as a new user runs it (README: the main job on the embedded default): the binary, a
//! fresh folder, a few hours. It compares the database with the simulator's ground truth itself and
//! exits 2 when they differ; this test holds it to that and to what it says it wrote.

#[test]
fn the_demo_collects_every_stamp_equal_to_the_ground_truth_and_exports_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = azs_testkit::process::scrubbed(env!("CARGO_BIN_EXE_azs-usage-demo"));
    let output = command.args(["--hours", "3", "--dir"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{stderr}", output.status);

    let checks: Vec<&str> =
        stdout.lines().filter(|l| l.contains("stored") && l.contains("ground truth")).collect();
    assert_eq!(checks.len(), 3, "one ground-truth line per stamp:\n{stdout}");
    assert!(checks.iter().all(|l| l.ends_with("-> equal")), "{stdout}");

    // The export holds every stored row: a header, then as many rows as the demo says it exported.
    let exported: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Exported ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no 'Exported N rows' line:\n{stdout}"));
    assert!(exported > 0, "{stdout}");
    let csv = std::fs::read_to_string(dir.path().join("usage.csv")).unwrap();
    assert_eq!(csv.lines().count(), exported + 1, "header plus {exported} rows");
    assert!(dir.path().join("azs-usage.db").exists());
}
