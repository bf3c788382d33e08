//! Injected faults: each is observed exactly as often as asked, then normal service resumes.

use std::time::{Duration, Instant};

use crate::common::*;
use stamp_sim::{Fault, RequestKind, SimStampHandle, Simulator, StampSpec};

struct Setup {
    _simulator: Simulator,
    stamp: SimStampHandle,
    client: reqwest::Client,
    token: String,
    url: String,
}

async fn setup() -> Setup {
    let spec = StampSpec { tenants: 2, meters_per_tenant: 2, ..StampSpec::generated(5, 0, adfs()) };
    let (simulator, stamp) = start_one(spec).await;
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let (start, end) = past_window(3, 1);
    let url = usage_url(&stamp, start, end);
    Setup { _simulator: simulator, stamp, client, token, url }
}

impl Setup {
    async fn usage(&self) -> reqwest::Result<reqwest::Response> {
        self.client.get(&self.url).bearer_auth(&self.token).send().await
    }

    async fn usage_status(&self) -> u16 {
        self.usage().await.expect("a response").status().as_u16()
    }
}

#[tokio::test]
async fn status_faults_are_served_count_times_then_service_resumes() {
    let s = setup().await;
    s.stamp.inject(Fault::Status503 { kind: RequestKind::Usage, count: 2 });
    for _ in 0..2 {
        let response = s.usage().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.text().await.unwrap(), fixture_text("azs-usage-error-503.json").trim());
    }
    assert_eq!(s.usage_status().await, 200);

    s.stamp.inject(Fault::Throttle429 { kind: RequestKind::Usage, count: 1, retry_after_secs: 7 });
    let response = s.usage().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(s.usage_status().await, 200);

    s.stamp.inject(Fault::GatewayTimeout { count: 1 });
    assert_eq!(s.usage_status().await, 504);
    assert_eq!(s.usage_status().await, 200);

    // A fault for another kind leaves usage alone and waits for its own kind.
    s.stamp.inject(Fault::Status503 { kind: RequestKind::Metadata, count: 1 });
    assert_eq!(s.usage_status().await, 200);
    let metadata = format!("{}/metadata/endpoints?api-version=2015-01-01", s.stamp.admin_arm_endpoint());
    assert_eq!(s.client.get(&metadata).send().await.unwrap().status(), 503);
    assert_eq!(s.client.get(&metadata).send().await.unwrap().status(), 200);

    let stats = s.stamp.stats();
    assert_eq!(stats.faults_served, 5);
    assert_eq!(stats.usage_requests, 8);
}

#[tokio::test]
async fn connection_reset_is_a_transport_error() {
    let s = setup().await;
    assert_eq!(s.usage_status().await, 200);
    s.stamp.inject(Fault::ConnectionReset { kind: RequestKind::Any, count: 1 });
    let error = s.usage().await.expect_err("no HTTP response");
    assert!(!error.is_status(), "{error:?}");
    assert_eq!(s.usage_status().await, 200);
    assert_eq!(s.stamp.stats().faults_served, 1);
}

#[tokio::test]
async fn slow_responses_arrive_late_but_intact() {
    let s = setup().await;
    s.stamp.inject(Fault::Slow { kind: RequestKind::Usage, count: 1, delay: Duration::from_millis(300) });
    let started = Instant::now();
    assert_eq!(s.usage_status().await, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(s.usage_status().await, 200);
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn malformed_pages_do_not_parse() {
    let s = setup().await;
    s.stamp.inject(Fault::MalformedPage { count: 1 });
    let response = s.usage().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
    let text = s.usage().await.unwrap().text().await.unwrap();
    assert!(serde_json::from_str::<Page>(&text).is_ok());
}

#[tokio::test]
async fn tokens_expire_mid_pull() {
    let s = setup().await;
    s.stamp.inject(Fault::ExpireTokensAfter { usage_requests: 2 });
    assert_eq!(s.usage_status().await, 200);
    assert_eq!(s.usage_status().await, 200);
    let response = s.usage().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ExpiredAuthenticationToken");
    assert_eq!(s.usage_status().await, 401, "the old token stays expired");

    let fresh = token(&s.client, &s.stamp).await;
    let response = s.client.get(&s.url).bearer_auth(&fresh).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(s.stamp.stats().faults_served, 1);
}

#[tokio::test]
async fn cleared_faults_are_not_served() {
    let s = setup().await;
    s.stamp.inject(Fault::Status503 { kind: RequestKind::Any, count: 3 });
    s.stamp.inject(Fault::ExpireTokensAfter { usage_requests: 0 });
    s.stamp.clear_faults();
    assert_eq!(s.usage_status().await, 200);
    assert_eq!(s.stamp.stats().faults_served, 0);
}
