//! Helpers shared by the integration tests: starting simulators, a client that trusts only the
//! simulator's CA, tokens, client assertions, and parsing usage pages back into truth rows.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Duration, DurationRound as _, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use stamp_sim::{SimAuth, SimStampHandle, Simulator, SimulatorConfig, StampSpec, TestCertificate};

pub const SECRET: &str = "test-secret";

/// A fixture of the reference, as JSON.
pub fn fixture(name: &str) -> serde_json::Value {
    azs_testkit::fixtures::json(name)
}

/// The fixture text, verbatim.
pub fn fixture_text(name: &str) -> String {
    azs_testkit::fixtures::text(name)
}

/// The registered client certificate and an unrelated one, made once per test binary
/// (RSA key generation is slow in debug builds).
pub fn certificates() -> &'static (TestCertificate, TestCertificate) {
    static CERTS: OnceLock<(TestCertificate, TestCertificate)> = OnceLock::new();
    CERTS.get_or_init(|| {
        let registered = stamp_sim::generate_test_certificate("collector").expect("certificate");
        let other = stamp_sim::generate_test_certificate("intruder").expect("certificate");
        (registered, other)
    })
}

pub fn aad() -> SimAuth {
    SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None }
}

pub fn adfs() -> SimAuth {
    SimAuth::Adfs { secret: Some(SECRET.into()), certificate_pem: None }
}

/// Starts a simulator with the given stamps.
pub async fn start(page_size: usize, stamps: Vec<StampSpec>) -> Simulator {
    Simulator::start(SimulatorConfig { seed: 42, page_size, stamps }).await.expect("simulator starts")
}

/// Starts one stamp.
pub async fn start_one(spec: StampSpec) -> (Simulator, SimStampHandle) {
    let simulator = start(1000, vec![spec]).await;
    let stamp = simulator.stamp(0);
    (simulator, stamp)
}

/// A client that trusts only the simulator's CA.
pub fn client(simulator: &Simulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(simulator.ca_pem().as_bytes()).expect("CA PEM");
    reqwest::Client::builder().tls_certs_only([ca]).build().expect("client")
}

/// Posts a token request form and returns (status, JSON body).
pub async fn token_request(
    client: &reqwest::Client,
    stamp: &SimStampHandle,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let response = client.post(stamp.token_endpoint()).form(form).send().await.expect("token call");
    let status = response.status().as_u16();
    (status, response.json().await.expect("token endpoint answers JSON"))
}

/// A token by client secret.
pub async fn token(client: &reqwest::Client, stamp: &SimStampHandle) -> String {
    let (app, audience) = (stamp.application_id(), stamp.audience());
    let (status, body) = token_request(
        client,
        stamp,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &app),
            ("client_secret", SECRET),
            ("resource", &audience),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("access_token").to_owned()
}

/// How to build a client assertion.
pub struct Assertion<'a> {
    pub signer: &'a TestCertificate,
    pub x5t: Option<String>,
    pub aud: String,
    pub client_id: String,
    pub exp_offset_secs: i64,
    pub jti: String,
}

impl<'a> Assertion<'a> {
    /// A correct assertion for `stamp` signed by `signer`.
    pub fn valid(stamp: &SimStampHandle, signer: &'a TestCertificate) -> Self {
        Self {
            signer,
            x5t: Some(signer.x5t()),
            aud: stamp.token_endpoint(),
            client_id: stamp.application_id(),
            exp_offset_secs: 600,
            jti: uuid::Uuid::new_v4().to_string(),
        }
    }

    pub fn sign(&self) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.x5t = self.x5t.clone();
        let claims = serde_json::json!({
            "aud": self.aud,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": self.jti,
            "nbf": now - 90,
            "exp": now + self.exp_offset_secs,
        });
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.signer.private_key_pem.as_bytes())
            .expect("PKCS#8 RSA key");
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    }
}

/// The whole hours `[now - back_hours, now - back_hours + hours)` before now.
pub fn past_window(back_hours: i64, hours: i64) -> (DateTime<Utc>, DateTime<Utc>) {
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let start = now - Duration::hours(back_hours);
    (start, start + Duration::hours(hours))
}

/// The usage URL for a window, times in the plain `Z` form.
pub fn usage_url(stamp: &SimStampHandle, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!(
        "{}/subscriptions/{}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime={}&reportedEndTime={}&aggregationGranularity=Hourly&api-version=2015-06-01-preview",
        stamp.admin_arm_endpoint(),
        stamp.admin_subscription_id(),
        start.format("%Y-%m-%dT%H:%M:%SZ"),
        end.format("%Y-%m-%dT%H:%M:%SZ"),
    )
}

#[derive(Deserialize)]
pub struct Page {
    pub value: Vec<Row>,
    #[serde(rename = "nextLink")]
    pub next_link: Option<String>,
}

/// `id`, `name` and `type` are only required (a row without them does not parse), never read.
#[derive(Deserialize)]
#[allow(dead_code)]
pub struct Row {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub row_type: String,
    pub properties: Properties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Properties {
    pub subscription_id: String,
    pub usage_start_time: String,
    pub usage_end_time: String,
    pub instance_data: String,
    pub quantity: Box<RawValue>,
    pub meter_id: String,
}

#[derive(Deserialize)]
struct InstanceData {
    #[serde(rename = "Microsoft.Resources")]
    resources: Resources,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resources {
    resource_uri: String,
    location: String,
    tags: Box<RawValue>,
    additional_info: Box<RawValue>,
}

/// A served row in comparable form: every truth field but the (invisible) reported hour.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeenRow {
    pub subscription_id: String,
    pub meter_id: String,
    pub usage_start: DateTime<Utc>,
    pub usage_end: DateTime<Utc>,
    pub quantity: String,
    pub resource_uri: String,
    pub location: String,
    pub tags: Option<String>,
    pub additional_info: Option<String>,
}

fn non_null(raw: &RawValue) -> Option<String> {
    (raw.get() != "null").then(|| raw.get().to_owned())
}

impl SeenRow {
    pub fn from_row(row: &Row) -> Self {
        let p = &row.properties;
        let instance: InstanceData = serde_json::from_str(&p.instance_data).expect("instanceData holds JSON");
        let time = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        Self {
            subscription_id: p.subscription_id.clone(),
            meter_id: p.meter_id.clone(),
            usage_start: time(&p.usage_start_time),
            usage_end: time(&p.usage_end_time),
            quantity: p.quantity.get().to_owned(),
            resource_uri: instance.resources.resource_uri,
            location: instance.resources.location,
            tags: non_null(&instance.resources.tags),
            additional_info: non_null(&instance.resources.additional_info),
        }
    }

    pub fn from_truth(row: &stamp_sim::TruthRow) -> Self {
        Self {
            subscription_id: row.subscription_id.clone(),
            meter_id: row.meter_id.clone(),
            usage_start: row.usage_start,
            usage_end: row.usage_end,
            quantity: row.quantity.clone(),
            resource_uri: row.resource_uri.clone(),
            location: row.location.clone(),
            tags: row.tags.clone(),
            additional_info: row.additional_info.clone(),
        }
    }
}

/// Follows `nextLink` from `url` to the end; returns the pages' raw texts.
pub async fn pull_pages(client: &reqwest::Client, token: &str, url: &str) -> Vec<String> {
    let mut pages = Vec::new();
    let mut next = Some(url.to_owned());
    while let Some(url) = next {
        let response = client.get(&url).bearer_auth(token).send().await.expect("usage call");
        assert_eq!(response.status(), 200, "{url}");
        let text = response.text().await.expect("body");
        let page: Page = serde_json::from_str(&text).expect("page JSON");
        next = page.next_link;
        pages.push(text);
        assert!(pages.len() < 10_000, "runaway paging");
    }
    pages
}
