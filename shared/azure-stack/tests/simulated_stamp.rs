//! The Azure Stack Hub client against `stamp-sim`: both identity providers, both query modes, every
//! fault the simulator can serve, and the failures an operator must be told about clearly.
//!
//! "Equals ground truth" compares rows as multisets of every field the API sent.

use azs_azure_stack::{AzureStackClient, ClientSettings, HttpSettings, RetryPolicy, read_certificate};
use azs_core::ports::{PullError, PullStage, PullSummary, StampSession, UsageSource};
use azs_core::stamp::UsageQueryMode;
use azs_core::window::{ReportedWindow, floor_hour};
use azs_core::{Credential, Secret, Stamp, StampConnection, StampId, UsageRow};
use chrono::{DateTime, Duration as Hours, Utc};
use stamp_sim::{
    Fault, RequestKind, SimAuth, Simulator, SimulatorConfig, StampSpec, TestCertificate, TruthRow,
};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------------
// Given: a simulated stamp and a registration for it
// ---------------------------------------------------------------------------------------------------

const SECRET: &str = "sim-client-secret-0123456789";

/// One client certificate for the whole test binary (RSA key generation is the slow part).
fn certificate() -> &'static TestCertificate {
    static CERT: OnceLock<TestCertificate> = OnceLock::new();
    CERT.get_or_init(|| stamp_sim::generate_test_certificate("azs-usage collector").unwrap())
}

fn certificate_credential() -> Credential {
    Credential::Certificate {
        certificate_pem: certificate().certificate_pem.clone(),
        private_key_pem: Secret::new(certificate().private_key_pem.clone()),
    }
}

fn adfs_with_certificate() -> SimAuth {
    SimAuth::Adfs { secret: None, certificate_pem: Some(certificate().certificate_pem.clone()) }
}

fn azure_ad_with_secret() -> SimAuth {
    SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None }
}

async fn simulate(auth: SimAuth, page_size: usize, shape: impl FnOnce(&mut StampSpec)) -> Simulator {
    let mut spec = StampSpec::generated(7, 0, auth);
    shape(&mut spec);
    Simulator::start(SimulatorConfig { seed: 7, page_size, stamps: vec![spec] }).await.unwrap()
}

/// The registration an operator would make for the simulator's stamp 0.
fn registered(sim: &Simulator, mode: UsageQueryMode) -> Stamp {
    let s = sim.stamp(0);
    Stamp {
        id: StampId("sim-0".into()),
        name: "simulated stamp".into(),
        connection: StampConnection {
            admin_subscription_id: s.admin_subscription_id(),
            tenant_id: if s.is_adfs() { "adfs".into() } else { s.tenant_id() },
            application_id: s.application_id(),
            certificate_thumbprint: None,
            admin_arm_endpoint: s.admin_arm_endpoint(),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: s.is_adfs(),
            ca_certificate_pem: Some(sim.ca_pem()),
        },
        credential_secret_name: "stamps/sim-0".into(),
        enabled: true,
        collect_from: "2026-01-01T00:00:00Z".parse().unwrap(),
        query_mode: mode,
        created_at: Utc::now(),
    }
}

/// Tiny backoff: the whole suite stays fast. The request timeout is generous so that a busy test
/// machine never adds a retry; the slow-response test sets a short one.
fn test_settings() -> ClientSettings {
    ClientSettings {
        http: HttpSettings {
            request_timeout: Duration::from_secs(20),
            retry: RetryPolicy::fast_for_tests(),
            ..HttpSettings::default()
        },
        ..ClientSettings::default()
    }
}

fn client() -> AzureStackClient {
    loopback(AzureStackClient::new(test_settings()))
}

/// The simulator listens on loopback, which the outbound policy admits only when named.
fn loopback(client: AzureStackClient) -> AzureStackClient {
    client.with_allowed_hosts(Some(azs_azure_stack::hosts::StampHosts::parse("127.0.0.1").unwrap()))
}

/// Settled reported hours a little in the past: `[now - 2h - hours, now - 2h)`.
fn past_window(hours: i64) -> ReportedWindow {
    let end = floor_hour(Utc::now()) - Hours::hours(2);
    ReportedWindow::new(end - Hours::hours(hours), end).unwrap()
}

// ---------------------------------------------------------------------------------------------------
// Rows as comparable values
// ---------------------------------------------------------------------------------------------------

type RowText =
    (String, String, DateTime<Utc>, DateTime<Utc>, String, String, String, Option<String>, Option<String>);

fn pulled(row: &UsageRow) -> RowText {
    (
        row.subscription_id.clone(),
        row.meter_id.clone(),
        row.usage_start,
        row.usage_end,
        row.quantity.to_string(),
        row.resource_uri.clone(),
        row.location.clone(),
        row.tags.clone(),
        row.additional_info.clone(),
    )
}

fn served(row: &TruthRow) -> RowText {
    (
        row.subscription_id.clone(),
        row.meter_id.clone(),
        row.usage_start,
        row.usage_end,
        row.quantity.clone(),
        row.resource_uri.clone(),
        row.location.clone(),
        row.tags.clone(),
        row.additional_info.clone(),
    )
}

fn multiset(rows: impl IntoIterator<Item = RowText>) -> HashMap<RowText, usize> {
    let mut counts = HashMap::new();
    for r in rows {
        *counts.entry(r).or_insert(0) += 1;
    }
    counts
}

async fn pull(
    session: &dyn StampSession,
    window: ReportedWindow,
) -> Result<(Vec<UsageRow>, PullSummary), PullError> {
    let mut rows = Vec::new();
    let summary = session.pull_pages(window, &[], &mut |page| rows.extend(page.rows)).await?;
    Ok((rows, summary))
}

fn assert_equals_ground_truth(sim: &Simulator, window: ReportedWindow, rows: &[UsageRow]) {
    let truth = sim.stamp(0).ground_truth(window.start, window.end);
    assert!(!truth.is_empty(), "the simulator serves rows for {window}");
    assert_eq!(rows.len(), truth.len(), "row count");
    assert_eq!(multiset(rows.iter().map(pulled)), multiset(truth.iter().map(served)));
}

/// A pull with `faults` queued must still deliver exactly the ground truth.
async fn survives(faults: Vec<Fault>, page_size: usize) -> (PullSummary, stamp_sim::SimStats, Duration) {
    survives_with(client(), faults, page_size).await
}

async fn survives_with(
    client: AzureStackClient,
    faults: Vec<Fault>,
    page_size: usize,
) -> (PullSummary, stamp_sim::SimStats, Duration) {
    let sim = simulate(adfs_with_certificate(), page_size, |_| {}).await;
    let session = client
        .connect(&registered(&sim, UsageQueryMode::AllTenants), &certificate_credential())
        .await
        .unwrap();
    for fault in faults {
        sim.stamp(0).inject(fault);
    }
    let window = past_window(3);
    let started = Instant::now();
    let (rows, summary) = pull(session.as_ref(), window).await.unwrap();
    let took = started.elapsed();
    assert_equals_ground_truth(&sim, window, &rows);
    (summary, sim.stamp(0).stats(), took)
}

// ---------------------------------------------------------------------------------------------------
// Authentication paths and query modes
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_adfs_stamp_with_a_certificate_pulls_a_multi_page_window_equal_to_ground_truth() {
    let sim = simulate(adfs_with_certificate(), 7, |_| {}).await;
    let session = client()
        .connect(&registered(&sim, UsageQueryMode::AllTenants), &certificate_credential())
        .await
        .unwrap();
    assert!(session.endpoints().is_adfs);
    assert_eq!(session.endpoints().token_endpoint, sim.stamp(0).token_endpoint());
    assert_eq!(session.endpoints().audience, sim.stamp(0).audience());

    let window = past_window(3);
    let (rows, summary) = pull(session.as_ref(), window).await.unwrap();

    assert_equals_ground_truth(&sim, window, &rows);
    assert!(summary.pages > 3, "several pages: {summary:?}");
    assert_eq!(summary.retries, 0);
    let stats = sim.stamp(0).stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.usage_requests, summary.pages);
    assert_eq!(stats.rejected_requests, 0);
}

#[tokio::test]
async fn an_azure_ad_stamp_with_a_secret_pulls_per_subscriber_equal_to_ground_truth() {
    let sim = simulate(azure_ad_with_secret(), 5, |s| s.tenants = 4).await;
    let session = client()
        .connect(
            &registered(&sim, UsageQueryMode::PerSubscriber),
            &Credential::ApplicationSecret(Secret::new(SECRET)),
        )
        .await
        .unwrap();
    assert!(!session.endpoints().is_adfs);

    let window = past_window(2);
    let (rows, summary) = pull(session.as_ref(), window).await.unwrap();

    assert_equals_ground_truth(&sim, window, &rows);
    let per_subscriber: Vec<TruthRow> = sim
        .stamp(0)
        .tenant_subscriptions()
        .iter()
        .flat_map(|t| sim.stamp(0).ground_truth_for_subscriber(window.start, window.end, t))
        .collect();
    assert_eq!(multiset(rows.iter().map(pulled)), multiset(per_subscriber.iter().map(served)));
    let stats = sim.stamp(0).stats();
    assert_eq!(stats.subscription_list_requests, 1);
    assert!(stats.usage_requests >= 4, "one chain per tenant subscription");
    assert_eq!(summary.pages, stats.usage_requests);
}

/// A per-subscriber session whose window pulls run `concurrency` subscriber chains at once.
async fn per_subscriber_session(sim: &Simulator, settings: ClientSettings) -> Box<dyn StampSession> {
    loopback(AzureStackClient::new(settings))
        .connect(
            &registered(sim, UsageQueryMode::PerSubscriber),
            &Credential::ApplicationSecret(Secret::new(SECRET)),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subscriber_chains_run_in_parallel_up_to_the_bound_and_the_window_equals_ground_truth() {
    // Given a per-subscriber stamp with 24 tenant subscriptions, several pages each, 40 ms per page
    let sim = simulate(azure_ad_with_secret(), 3, |s| {
        s.tenants = 24;
        s.page_delay = Duration::from_millis(40);
    })
    .await;
    let window = past_window(1);

    // When one window is pulled with at most 4 subscriber queries in flight
    let session =
        per_subscriber_session(&sim, ClientSettings { subscriber_concurrency: 4, ..test_settings() }).await;
    let started = Instant::now();
    let (rows, summary) = pull(session.as_ref(), window).await.unwrap();
    let took = started.elapsed();

    // Then the window holds exactly the ground truth (every subscriber's rows, each once),
    assert_equals_ground_truth(&sim, window, &rows);
    let stats = sim.stamp(0).stats();
    assert_eq!(summary.pages, stats.usage_requests);
    // the stamp never saw more than 4 usage queries at once, and did see 4 (the chains overlapped),
    assert_eq!(stats.usage_in_flight_peak, 4, "{stats:?}");
    // and the window took well under the time of one query after another.
    let one_by_one = Duration::from_millis(40) * stats.usage_requests as u32;
    assert!(took < one_by_one / 2, "{took:?} vs {one_by_one:?} one by one");
}

#[tokio::test]
async fn one_subscriber_query_at_a_time_when_the_bound_is_1() {
    let sim = simulate(azure_ad_with_secret(), 3, |s| {
        s.tenants = 6;
        s.page_delay = Duration::from_millis(5);
    })
    .await;
    let window = past_window(1);
    let session =
        per_subscriber_session(&sim, ClientSettings { subscriber_concurrency: 1, ..test_settings() }).await;
    let (rows, _) = pull(session.as_ref(), window).await.unwrap();
    assert_equals_ground_truth(&sim, window, &rows);
    assert_eq!(sim.stamp(0).stats().usage_in_flight_peak, 1);
}

#[tokio::test]
async fn the_window_row_limit_counts_every_parallel_chain_together() {
    // Given a per-subscriber stamp whose window has more rows than the limit, though no single
    // subscriber's chain comes near it
    let sim = simulate(azure_ad_with_secret(), 3, |s| s.tenants = 12).await;
    let window = past_window(1);
    let total = sim.stamp(0).ground_truth(window.start, window.end).len() as u64;
    let mut settings = ClientSettings { subscriber_concurrency: 8, ..test_settings() };
    settings.limits.max_rows = total - 1;
    let session = per_subscriber_session(&sim, settings).await;

    // When the window is pulled with 8 chains at once
    let e = pull(session.as_ref(), window).await.unwrap_err();

    // Then the window's shared limit ends the pull, naming it
    assert_eq!(e.stage, PullStage::Limit, "{e}");
    assert!(e.message.contains(&format!("more than {} rows", total - 1)), "{}", e.message);
}

#[tokio::test]
async fn an_azure_ad_stamp_with_a_certificate_and_an_adfs_stamp_with_a_secret_also_work() {
    let cert = simulate(
        SimAuth::AzureAd { secret: None, certificate_pem: Some(certificate().certificate_pem.clone()) },
        50,
        |_| {},
    )
    .await;
    let window = past_window(1);
    let session = client()
        .connect(&registered(&cert, UsageQueryMode::AllTenants), &certificate_credential())
        .await
        .unwrap();
    assert_equals_ground_truth(&cert, window, &pull(session.as_ref(), window).await.unwrap().0);

    let secret =
        simulate(SimAuth::Adfs { secret: Some(SECRET.into()), certificate_pem: None }, 50, |_| {}).await;
    let session = client()
        .connect(
            &registered(&secret, UsageQueryMode::AllTenants),
            &Credential::ApplicationSecret(Secret::new(SECRET)),
        )
        .await
        .unwrap();
    assert_equals_ground_truth(&secret, window, &pull(session.as_ref(), window).await.unwrap().0);
}

#[tokio::test]
async fn a_pfx_registered_with_its_thumbprint_connects() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let pfx = certificate().pfx_base64("pfx-password").unwrap();
    let read = read_certificate(
        &Secret::new(pfx),
        Some(&Secret::new("pfx-password")),
        Some(&certificate().thumbprint_hex),
    )
    .unwrap();
    let mut stamp = registered(&sim, UsageQueryMode::AllTenants);
    stamp.connection.certificate_thumbprint = Some(read.thumbprint.clone());

    let session = client().connect(&stamp, &read.credential).await.unwrap();

    let window = past_window(1);
    assert_equals_ground_truth(&sim, window, &pull(session.as_ref(), window).await.unwrap().0);
}

#[tokio::test]
async fn variants_and_page_boundary_repeats_reach_the_caller_as_served() {
    let sim = simulate(adfs_with_certificate(), 6, |s| {
        s.variants = true;
        s.duplicate_across_pages = true;
    })
    .await;
    let session = client()
        .connect(&registered(&sim, UsageQueryMode::AllTenants), &certificate_credential())
        .await
        .unwrap();
    let window = past_window(2);

    let (rows, summary) = pull(session.as_ref(), window).await.unwrap();

    // Repeats are not dropped here (the store keys rows by content); as a set, rows are the truth.
    let truth = sim.stamp(0).ground_truth(window.start, window.end);
    assert_eq!(rows.len() as u64, truth.len() as u64 + summary.pages - 1, "one repeat per page boundary");
    let pulled_set: HashMap<RowText, usize> =
        multiset(rows.iter().map(pulled)).into_keys().map(|k| (k, 1)).collect();
    assert_eq!(pulled_set, multiset(truth.iter().map(served)));
}

#[tokio::test]
async fn sessions_share_the_stamps_cached_token() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let client = client();
    let stamp = registered(&sim, UsageQueryMode::AllTenants);
    for _ in 0..3 {
        client.connect(&stamp, &certificate_credential()).await.unwrap();
    }
    assert_eq!(sim.stamp(0).stats().tokens_issued, 1);
}

// ---------------------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_48_hour_pull_never_holds_more_than_one_page() {
    let sim = simulate(adfs_with_certificate(), 100, |s| {
        s.tenants = 6;
        s.meters_per_tenant = 5;
    })
    .await;
    let session = client()
        .connect(&registered(&sim, UsageQueryMode::AllTenants), &certificate_credential())
        .await
        .unwrap();
    let stamp = sim.stamp(0);
    let window = past_window(48);

    let mut pages_seen = 0u64;
    let mut rows_seen = 0usize;
    let mut largest_page = 0usize;
    let summary = session
        .pull_pages(window, &[], &mut |page| {
            pages_seen += 1;
            rows_seen += page.rows.len();
            largest_page = largest_page.max(page.rows.len());
            // The client asked for no page beyond the one it is handing over: nothing is read ahead.
            assert_eq!(
                stamp.stats().usage_pages_served,
                pages_seen,
                "page {pages_seen} was handed over before the next was fetched"
            );
            // `page` is dropped here: the only rows in flight are this page's.
        })
        .await
        .unwrap();

    assert!(summary.pages >= 15, "{summary:?}");
    assert!(largest_page <= 100);
    assert_eq!(rows_seen, sim.stamp(0).ground_truth(window.start, window.end).len());
}

// ---------------------------------------------------------------------------------------------------
// Faults survived with the exact ground truth
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_burst_of_503_is_retried() {
    let (summary, stats, _) =
        survives(vec![Fault::Status503 { kind: RequestKind::Usage, count: 3 }], 10).await;
    assert_eq!(summary.retries, 3);
    assert_eq!(stats.faults_served, 3);
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let (summary, _, took) =
        survives(vec![Fault::Throttle429 { kind: RequestKind::Usage, count: 1, retry_after_secs: 1 }], 10)
            .await;
    assert_eq!(summary.retries, 1);
    assert!(took >= Duration::from_secs(1), "honoured Retry-After: 1 (took {took:?})");
}

#[tokio::test]
async fn a_reset_connection_is_retried() {
    let (summary, _, _) =
        survives(vec![Fault::ConnectionReset { kind: RequestKind::Usage, count: 2 }], 10).await;
    assert_eq!(summary.retries, 2);
}

#[tokio::test]
async fn a_response_slower_than_the_request_timeout_is_retried() {
    let mut settings = test_settings();
    settings.http.request_timeout = Duration::from_secs(2);
    let slow = Fault::Slow { kind: RequestKind::Usage, count: 1, delay: Duration::from_secs(6) };

    let (summary, _, took) = survives_with(loopback(AzureStackClient::new(settings)), vec![slow], 10).await;

    assert!(summary.retries >= 1);
    assert!(took < Duration::from_secs(6), "gave up on the slow answer instead of waiting it out ({took:?})");
}

#[tokio::test]
async fn a_gateway_timeout_is_retried() {
    let (summary, _, _) = survives(vec![Fault::GatewayTimeout { count: 2 }], 10).await;
    assert_eq!(summary.retries, 2);
}

#[tokio::test]
async fn every_5xx_is_retried_as_the_reference_says_not_only_the_common_four() {
    let faults = [501, 520, 599].map(|status| Fault::Status { kind: RequestKind::Usage, status, count: 1 });
    let (summary, stats, _) = survives(faults.into(), 10).await;
    assert_eq!(summary.retries, 3);
    assert_eq!(stats.faults_served, 3);
}

#[tokio::test]
async fn a_relative_next_link_is_resolved_against_its_page() {
    let (summary, stats, _) = survives(vec![Fault::RelativeNextLink { count: 3 }], 4).await;
    assert_eq!(stats.faults_served, 3, "three pages linked relatively");
    assert!(summary.pages > 3);
    assert_eq!(stats.rejected_requests, 0);
}

#[tokio::test]
async fn a_per_subscriber_stamp_without_a_tenant_list_is_pulled_for_all_tenants_at_once() {
    // The tenant list is not part of the usage API; a stamp (or a gateway) may not serve it. Pages of
    // 1,000 rows: the whole window is one page for all tenants, four for one chain per tenant.
    let sim = simulate(azure_ad_with_secret(), 1000, |s| s.tenants = 4).await;
    let session = per_subscriber_session(&sim, test_settings()).await;
    sim.stamp(0).inject(Fault::Status { kind: RequestKind::Subscriptions, status: 404, count: u32::MAX });

    let window = past_window(2);
    let (rows, summary) = pull(session.as_ref(), window).await.unwrap();

    assert_equals_ground_truth(&sim, window, &rows);
    let stats = sim.stamp(0).stats();
    assert_eq!(stats.subscription_list_requests, 1, "asked once, not retried");
    assert_eq!((summary.pages, stats.usage_requests), (1, 1), "one chain for all tenants");
}

#[tokio::test]
async fn a_malformed_page_is_fetched_again() {
    let (summary, stats, _) = survives(vec![Fault::MalformedPage { count: 1 }], 10).await;
    assert_eq!(summary.retries, 1);
    assert_eq!(stats.usage_pages_served, summary.pages + 1);
}

#[tokio::test]
async fn a_token_expiring_mid_pull_is_renewed_once() {
    let (summary, stats, _) = survives(vec![Fault::ExpireTokensAfter { usage_requests: 2 }], 10).await;
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(summary.retries, 1, "one retry with the fresh token");
}

#[tokio::test]
async fn next_links_are_followed_verbatim() {
    // The simulator's nextLinks carry lower-case escapes (`%3a`, `%2f`, `%3d`) and a sealed
    // continuation token it refuses when altered: a multi-page pull that equals the truth and has no
    // rejected request followed each link byte for byte.
    let (summary, stats, _) = survives(vec![], 4).await;
    assert!(summary.pages > 5);
    assert_eq!(stats.rejected_requests, 0);
}

#[tokio::test]
async fn discovery_and_token_faults_are_retried_too() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    sim.stamp(0).inject(Fault::Status503 { kind: RequestKind::Metadata, count: 1 });
    sim.stamp(0).inject(Fault::ConnectionReset { kind: RequestKind::OpenId, count: 1 });
    sim.stamp(0).inject(Fault::Throttle429 { kind: RequestKind::Token, count: 1, retry_after_secs: 0 });
    let session =
        client().connect(&registered(&sim, UsageQueryMode::AllTenants), &certificate_credential()).await;
    assert!(session.is_ok(), "{:?}", session.err());
    assert_eq!(sim.stamp(0).stats().faults_served, 3);
}

#[tokio::test]
async fn a_stamp_that_stays_busy_fails_transiently_without_a_retry_storm() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let session = client()
        .connect(&registered(&sim, UsageQueryMode::AllTenants), &certificate_credential())
        .await
        .unwrap();
    sim.stamp(0).inject(Fault::Status503 { kind: RequestKind::Usage, count: 100 });

    let e = pull(session.as_ref(), past_window(1)).await.unwrap_err();

    assert_eq!(e.stage, PullStage::Usage);
    assert_eq!(e.http_status, Some(503));
    assert_eq!(e.upstream_code.as_deref(), Some("ServiceUnavailable"));
    assert!(e.transient);
    assert_eq!(sim.stamp(0).stats().usage_requests, RetryPolicy::fast_for_tests().max_attempts as u64);
}

// ---------------------------------------------------------------------------------------------------
// Failures an operator must be told about, each after few requests
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_secret_is_a_token_error_asked_once() {
    let sim = simulate(azure_ad_with_secret(), 50, |_| {}).await;
    let e = client()
        .connect(
            &registered(&sim, UsageQueryMode::AllTenants),
            &Credential::ApplicationSecret(Secret::new("wrong-secret-value")),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(e.stage, PullStage::Token);
    assert_eq!(e.upstream_code.as_deref(), Some("invalid_client"));
    assert!(!e.transient);
    assert!(!e.to_string().contains("wrong-secret-value"));
    assert_eq!(sim.stamp(0).stats().token_requests, 1);
}

#[tokio::test]
async fn a_certificate_the_stamp_does_not_know_is_a_token_error_asked_once() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let stranger = stamp_sim::generate_test_certificate("someone else").unwrap();
    let e = client()
        .connect(
            &registered(&sim, UsageQueryMode::AllTenants),
            &Credential::Certificate {
                certificate_pem: stranger.certificate_pem.clone(),
                private_key_pem: Secret::new(stranger.private_key_pem.clone()),
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(e.stage, PullStage::Token);
    assert_eq!(e.upstream_code.as_deref(), Some("MSIS7066"), "{e}");
    assert!(!e.transient);
    assert_eq!(sim.stamp(0).stats().token_requests, 1);
}

#[tokio::test]
async fn a_stored_certificate_that_is_not_the_registered_thumbprint_is_refused_before_asking() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let mut stamp = registered(&sim, UsageQueryMode::AllTenants);
    stamp.connection.certificate_thumbprint = Some("AB".repeat(20));
    let e = client().connect(&stamp, &certificate_credential()).await.err().unwrap();
    assert_eq!(e.stage, PullStage::Configuration);
    assert!(e.message.contains("certificateThumbprint"), "{e}");
    assert_eq!(sim.stamp(0).stats().token_requests, 0);
}

#[tokio::test]
async fn a_stamp_whose_ca_is_not_given_fails_discovery_once_with_a_tls_hint() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let mut stamp = registered(&sim, UsageQueryMode::AllTenants);
    stamp.connection.ca_certificate_pem = None;

    let e = client().connect(&stamp, &certificate_credential()).await.err().unwrap();

    assert_eq!(e.stage, PullStage::Discovery);
    assert!(!e.transient);
    assert!(e.message.contains("caCertificate"), "{e}");
    let stats = sim.stamp(0).stats();
    assert_eq!(
        stats.metadata_requests + stats.token_requests + stats.usage_requests,
        0,
        "no HTTP request got through"
    );
}

#[tokio::test]
async fn a_stamp_registered_with_the_wrong_is_adfs_is_refused_naming_both() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let mut stamp = registered(&sim, UsageQueryMode::AllTenants);
    stamp.connection.is_adfs = false;
    let e = client().connect(&stamp, &certificate_credential()).await.err().unwrap();
    assert_eq!(e.stage, PullStage::Discovery);
    assert!(e.message.contains("isAdfs=false") && e.message.contains("isAdfs=true"), "{e}");
    assert_eq!(sim.stamp(0).stats().token_requests, 0);
}

#[tokio::test]
async fn a_window_reaching_into_the_future_is_refused_without_retrying() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let session = client()
        .connect(&registered(&sim, UsageQueryMode::AllTenants), &certificate_credential())
        .await
        .unwrap();
    let future = ReportedWindow::hour(floor_hour(Utc::now()) + Hours::hours(2));

    let e = pull(session.as_ref(), future).await.unwrap_err();

    assert_eq!(e.upstream_code.as_deref(), Some("RequestEndTimeIsInFuture"));
    assert_eq!(e.http_status, Some(400));
    assert!(e.transient, "a later run will do");
    assert_eq!(sim.stamp(0).stats().usage_requests, 1);
}

// ---------------------------------------------------------------------------------------------------
// The simulator really checks x5t, so the passing certificate tests above prove ours is right
// ---------------------------------------------------------------------------------------------------

/// Posts a hand-made assertion whose header carries `x5t` (or none) to the simulator.
async fn post_assertion(sim: &Simulator, x5t: Option<String>) -> (u16, String) {
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let stamp = sim.stamp(0);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(x5t) = x5t {
        header["x5t"] = x5t.into();
    }
    let now = Utc::now().timestamp();
    let claims = serde_json::json!({
        "aud": stamp.token_endpoint(), "iss": stamp.application_id(), "sub": stamp.application_id(),
        "jti": uuid::Uuid::new_v4().to_string(), "nbf": now - 90, "exp": now + 600,
    });
    let message = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&certificate().private_key_pem).unwrap();
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key).sign(message.as_bytes());
    let assertion = format!("{message}.{}", b64.encode(signature.to_bytes()));
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap()])
        .build()
        .unwrap();
    let response = http
        .post(stamp.token_endpoint())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &stamp.application_id()),
            ("resource", &stamp.audience()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_simulator_refuses_a_hex_or_missing_x5t_and_accepts_the_raw_digest_form() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let (status, body) = post_assertion(&sim, Some(certificate().thumbprint_hex.clone())).await;
    assert_eq!(status, 401, "hex x5t: {body}");
    let (status, body) = post_assertion(&sim, None).await;
    assert_eq!(status, 401, "no x5t: {body}");
    let (status, body) = post_assertion(&sim, Some(certificate().x5t())).await;
    assert_eq!(status, 200, "base64url of the raw digest: {body}");
}

#[tokio::test]
async fn a_registered_audience_wins_over_the_discovered_one() {
    let sim = simulate(adfs_with_certificate(), 50, |_| {}).await;
    let mut stamp = registered(&sim, UsageQueryMode::AllTenants);
    stamp.connection.token_request_resource_url =
        Some("https://management.adfs.azurestack.local/other".into());
    stamp.connection.authority_endpoint_url =
        Some(sim.stamp(0).login_endpoint().trim_end_matches('/').to_owned());

    let e = client().connect(&stamp, &certificate_credential()).await.err().unwrap();

    // The registered authority (without its trailing slash) still found the token endpoint; the
    // registered audience went into `resource=`, and this stamp does not know it.
    assert_eq!(e.stage, PullStage::Token);
    assert_eq!(e.upstream_code.as_deref(), Some("invalid_resource"), "{e}");
    assert_eq!(sim.stamp(0).stats().token_requests, 1);
}
