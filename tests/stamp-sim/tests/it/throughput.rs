//! Serving throughput (ignored by default; run in release):
//! `cargo test --release -p stamp-sim --test it -- --ignored --nocapture throughput::`

use std::time::Instant;

use crate::common::*;
use stamp_sim::StampSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures throughput; run in release"]
async fn rows_per_second_over_https() {
    let spec = StampSpec {
        tenants: 400,
        meters_per_tenant: 10,
        late_rows_per_window: 100,
        variants: true,
        ..StampSpec::generated(11, 0, aad())
    };
    let (simulator, stamp) = start_one(spec).await;
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let (start, end) = past_window(60, 48);
    let expected = 48 * (400 * 10 + 100);

    let started = Instant::now();
    let mut next = Some(usage_url(&stamp, start, end));
    let mut bytes = 0usize;
    while let Some(url) = next {
        let body = client.get(&url).bearer_auth(&token).send().await.unwrap().bytes().await.unwrap();
        bytes += body.len();
        let tail = String::from_utf8_lossy(&body[body.len().saturating_sub(2000)..]).into_owned();
        next = tail.split_once("\"nextLink\":\"").map(|(_, rest)| rest.trim_end_matches("\"}").to_owned());
    }
    let elapsed = started.elapsed();
    let stats = stamp.stats();
    assert_eq!(stats.usage_rows_served as usize, expected);
    println!(
        "{expected} rows, {:.1} MB in {elapsed:?}: {:.0} rows/s, {:.0} bytes/row",
        bytes as f64 / 1e6,
        expected as f64 / elapsed.as_secs_f64(),
        bytes as f64 / expected as f64
    );
}
