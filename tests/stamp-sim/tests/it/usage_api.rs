//! The provider usage API: paging against the ground truth, validation errors, authentication,
//! and the tenant subscription list.

use crate::common::*;
use chrono::Duration;
use stamp_sim::StampSpec;

fn busy_stamp() -> StampSpec {
    StampSpec {
        tenants: 4,
        meters_per_tenant: 5,
        late_rows_per_window: 7,
        duplicate_across_pages: true,
        variants: true,
        ..StampSpec::generated(9, 0, aad())
    }
}

/// Rows of all pages, dropping a page's first row when it repeats the previous page's last.
fn unique_rows(pages: &[String]) -> (Vec<SeenRow>, usize) {
    let mut rows: Vec<SeenRow> = Vec::new();
    let mut repeats = 0;
    let mut previous_last: Option<serde_json::Value> = None;
    for text in pages {
        let raw: serde_json::Value = serde_json::from_str(text).unwrap();
        let page: Page = serde_json::from_str(text).unwrap();
        let values = raw["value"].as_array().unwrap();
        for (i, row) in page.value.iter().enumerate() {
            if i == 0 && previous_last.as_ref() == Some(&values[0]) {
                repeats += 1;
                continue;
            }
            rows.push(SeenRow::from_row(row));
        }
        previous_last = values.last().cloned();
    }
    (rows, repeats)
}

#[tokio::test]
async fn paging_yields_exactly_the_ground_truth_with_repeats_across_pages() {
    let simulator = start(7, vec![busy_stamp()]).await;
    let stamp = simulator.stamp(0);
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let (start, end) = past_window(5, 3);

    let pages = pull_pages(&client, &token, &usage_url(&stamp, start, end)).await;
    let truth = stamp.ground_truth(start, end);
    assert_eq!(truth.len(), 3 * (4 * 5 + 7));
    let (mut seen, repeats) = unique_rows(&pages);
    assert_eq!(repeats, pages.len() - 1, "every page after the first repeats a row");
    assert!(pages.iter().all(|p| serde_json::from_str::<Page>(p).unwrap().value.len() <= 7));
    let mut expected: Vec<SeenRow> = truth.iter().map(SeenRow::from_truth).collect();
    assert_eq!(seen.len(), expected.len());
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);

    // Late rows: usage up to 6 hours before the reported hour.
    assert!(truth.iter().any(|r| r.usage_start < r.reported_start));
    assert!(truth.iter().all(|r| (r.reported_start - r.usage_start) <= Duration::hours(6)));
    // Variants show up.
    let all_text = pages.concat();
    assert!(all_text.contains("Microsoft.Commerce/UsageAggregate"));
    assert!(all_text.contains("resourcegroups") && all_text.contains("resourceGroups"));
    assert_eq!(stamp.stats().usage_pages_served as usize, pages.len());
}

#[tokio::test]
async fn a_subscriber_query_serves_that_tenants_truth() {
    let simulator = start(4, vec![busy_stamp()]).await;
    let stamp = simulator.stamp(0);
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let (start, end) = past_window(4, 2);
    let subscriber = stamp.tenant_subscriptions()[1].clone();
    let url = format!("{}&subscriberId={subscriber}", usage_url(&stamp, start, end));
    let pages = pull_pages(&client, &token, &url).await;
    assert!(pages.len() > 1);
    for page in &pages[..pages.len() - 1] {
        let link = serde_json::from_str::<Page>(page).unwrap().next_link.unwrap();
        assert!(link.contains(&format!("subscriberId={subscriber}")));
        assert!(link.contains("%3a00%3a00%2b00%3a00") && link.contains("continuationToken="));
    }
    let (mut seen, _) = unique_rows(&pages);
    let mut expected: Vec<SeenRow> =
        stamp.ground_truth_for_subscriber(start, end, &subscriber).iter().map(SeenRow::from_truth).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(seen.iter().all(|r| r.subscription_id == subscriber));
}

#[tokio::test]
async fn escaped_time_forms_are_accepted() {
    let (simulator, stamp) = start_one(busy_stamp()).await;
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let (start, end) = past_window(3, 1);
    let escaped =
        |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H%%3a%M%%3a%S%%2b00%%3a00").to_string();
    let url = format!(
        "{}/subscriptions/{}/providers/microsoft.commerce.admin/subscriberUsageAggregates?reportedStartTime={}&reportedEndTime={}&aggregationGranularity=hourly&api-version=2015-06-01-preview",
        stamp.admin_arm_endpoint(),
        stamp.admin_subscription_id(),
        escaped(start),
        escaped(end)
    );
    let pages = pull_pages(&client, &token, &url).await;
    assert_eq!(unique_rows(&pages).0.len(), stamp.ground_truth(start, end).len());
}

async fn error_of(client: &reqwest::Client, token: &str, url: &str) -> (u16, serde_json::Value) {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn invalid_requests_get_documented_errors() {
    let (simulator, stamp) = start_one(busy_stamp()).await;
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let (start, end) = past_window(3, 1);
    let good = usage_url(&stamp, start, end);

    let now = chrono::Utc::now();
    let future_end =
        usage_url(&stamp, start, now + Duration::hours(2) - Duration::seconds(now.timestamp() % 3600));
    let response = client.get(&future_end).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, fixture("azs-usage-error-end-in-future.json"));

    let cases = [
        (good.replace("&api-version=2015-06-01-preview", ""), 400, "NoApiVersion"),
        (good.replace("Hourly", "Weekly"), 400, "InvalidAggregationGranularity"),
        (good.replace("Hourly", "Daily"), 400, "DailyGranularityNotSimulated"),
        (good.replace(":00:00Z&reportedEnd", ":30:00Z&reportedEnd"), 400, "InvalidProperty"),
        (good.replace("reportedStartTime=", "reportedStartTime=x"), 400, "InvalidProperty"),
        (
            format!("{good}&subscriberId=00000000-0000-0000-0000-000000000000"),
            400,
            "SubscriberIdIsNotDirectTenant",
        ),
        (
            good.replace(&stamp.admin_subscription_id(), "11111111-1111-1111-1111-111111111111"),
            404,
            "SubscriptionNotFound",
        ),
        (usage_url(&stamp, end, start), 400, "InvalidProperty"),
    ];
    for (url, status, code) in cases {
        let (actual_status, body) = error_of(&client, &token, &url).await;
        assert_eq!((actual_status, body["error"]["code"].as_str().unwrap()), (status, code), "{url}");
    }
    let (_, body) =
        error_of(&client, &token, &good.replace(":00:00Z&reportedEnd", ":30:00Z&reportedEnd")).await;
    assert!(body["error"]["message"].as_str().unwrap().contains("reportedStartTime"));
}

#[tokio::test]
async fn tampered_next_links_are_refused() {
    let simulator = start(5, vec![busy_stamp()]).await;
    let stamp = simulator.stamp(0);
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let (start, end) = past_window(3, 1);
    let first: Page = client
        .get(usage_url(&stamp, start, end))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let link = first.next_link.expect("more pages");
    let (prefix, token_text) = link.split_once("continuationToken=").unwrap();
    let mut chars: Vec<char> = token_text.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{prefix}continuationToken={}", chars.into_iter().collect::<String>());
    let (status, body) = error_of(&client, &token, &tampered).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "InvalidProperty");
    assert!(body["error"]["message"].as_str().unwrap().contains("continuationToken"));

    // A valid token replayed against another window is refused too.
    let other_window = link.replace(
        &start.format("%Y-%m-%dT%H").to_string(),
        &(start - Duration::hours(1)).format("%Y-%m-%dT%H").to_string(),
    );
    assert_eq!(error_of(&client, &token, &other_window).await.0, 400);
    assert_eq!(client.get(&link).bearer_auth(&token).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn bearer_tokens_are_required() {
    let (simulator, stamp) = start_one(busy_stamp()).await;
    let client = client(&simulator);
    let (start, end) = past_window(3, 1);
    let url = usage_url(&stamp, start, end);
    for request in [client.get(&url), client.get(&url).bearer_auth("made-up")] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer authorization_uri=\""), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""));
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string());
    }
    assert_eq!(stamp.stats().rejected_requests, 2);
}

#[tokio::test]
async fn tenant_subscriptions_are_listed() {
    let (simulator, stamp) = start_one(busy_stamp()).await;
    let client = client(&simulator);
    let token = token(&client, &stamp).await;
    let admin = stamp.admin_subscription_id();
    let url = format!(
        "{}/subscriptions/{admin}/providers/Microsoft.Subscriptions.Admin/subscriptions?api-version=2015-11-01",
        stamp.admin_arm_endpoint()
    );
    let body: serde_json::Value =
        client.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let listed: Vec<String> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["state"], "Enabled");
            let sub = s["subscriptionId"].as_str().unwrap().to_owned();
            assert_eq!(
                s["id"],
                format!("/subscriptions/{admin}/providers/Microsoft.Subscriptions.Admin/subscriptions/{sub}")
            );
            sub
        })
        .collect();
    assert_eq!(listed, stamp.tenant_subscriptions());
}
