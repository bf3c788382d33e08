//! The benchmark's small variant as a normal test, so the benchmark code never rots: the whole
//! pipeline (simulator process, registration, collection process, each stage alone) runs over a few
//! thousand rows and the stored rows must equal the simulator's ground truth. Speed is never asserted.

use serde_json::Value;
use std::process::Command;

#[test]
fn a_small_workload_is_collected_exactly_as_the_simulator_serves_it() {
    // Given 2 stamps x 20 tenants x 5 meters x 6 reported hours in pages of 30 rows
    let dir = tempfile::tempdir().expect("a work directory");
    let json_out = dir.path().join("results.jsonl");

    // When the benchmark measures it, with pulling and writing alone as well
    let out = Command::new(env!("CARGO_BIN_EXE_azs-usage-bench"))
        .args([
            "run",
            "--stamps",
            "2",
            "--tenants",
            "20",
            "--meters",
            "5",
            "--hours",
            "6",
            "--page-size",
            "30",
        ])
        .args(["--stages", "--repeat", "2", "--work-dir"])
        .arg(dir.path())
        .arg("--json-out")
        .arg(&json_out)
        .output()
        .expect("azs-usage-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "azs-usage-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Then every run stored exactly the ground truth, and each stage alone handled the same rows
    let line = std::fs::read_to_string(&json_out).expect("the JSON line was written");
    let result: Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["runs"], 2);
    let rows = &result["figures"]["rows"];
    assert_eq!((rows["min"].as_f64(), rows["max"].as_f64()), (Some(1200.0), Some(1200.0)), "{result}");
    // (the commit timer and the pull timer both saw their stage: each took a share of the time)
    for stage in
        ["pullOnlyRowsPerSecond", "writeOnlyRowsPerSecond", "peakRssMib", "pullPercent", "writePercent"]
    {
        assert!(result["figures"][stage]["median"].as_f64().is_some_and(|v| v > 0.0), "{stage}: {result}");
    }
    assert!(stdout.contains("verified: yes"), "{stdout}");
}
