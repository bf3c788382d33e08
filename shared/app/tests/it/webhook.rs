//! The registration webhook, over real HTTP: the router bound on 127.0.0.1:0 with `axum::serve` and
//! called with reqwest, in front of the real SQLite store and the real file secret store. Failures are
//! injected by thin wrappers around those adapters.

use async_trait::async_trait;
use azs_app::administration::Administration;
use azs_app::registrar::CredentialReader;
use azs_app::webhook::{ApiAuth, BODY_LIMIT, SIGNATURE_HEADER, TOKEN_HEADER, router, router_with_prefix};
use azs_azure_stack::{AzureStackClient, ClientSettings, RetryPolicy, credential_from_registration};
use azs_core::audit::AuditTrail;
use azs_core::observed::{ObservedStore, StoreObserver};
use azs_core::ports::{
    DiscoveredEndpoints, LeaseStore, PullError, SecretStore, SecretStoreError, StampDirectory, StampSession,
    StatusReader, StatusStore, StoreError, UsageLedger, UsageSource, WindowCommit, WindowWrite,
};
use azs_core::registration::CredentialSecretRules;
use azs_core::status::{DriftCounts, LastVerified};
use azs_core::window::floor_hour;
use azs_core::{Credential, ReportedWindow, Secret, Stamp, StampId, UsageRow};
use azs_secrets::FileSecretStore;
use azs_store_sqlite::SqliteStore;
use chrono::{DateTime, Duration, Utc};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stamp_sim::{SimAuth, SimStampHandle, Simulator, SimulatorConfig, StampSpec};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const TOKEN: &str = "webhook-test-token-7c1e0f";
const PROBLEM_JSON: &str = "application/problem+json";
const GOOD_SECRET: &str = "s3cret-value-from-the-portal";

// ---------------------------------------------------------------------------------------------------
// The app under test and its adapters
// ---------------------------------------------------------------------------------------------------

/// Switches the wrappers below consult before delegating to the real adapters.
#[derive(Default)]
struct Faults {
    fail_insert: AtomicBool,
    fail_put_secret: AtomicBool,
    panic_on_list: AtomicBool,
    secrets_put: AtomicUsize,
    secrets_deleted: AtomicUsize,
}

/// The real SQLite store fails or panics on demand: an observer of its calls.
struct FlakyStore(Arc<Faults>);

impl StoreObserver for FlakyStore {
    fn before(&self, call: &'static str) -> Result<(), StoreError> {
        match call {
            "list_stamps" if self.0.panic_on_list.load(Ordering::SeqCst) => {
                panic!("injected: list_stamps panicked")
            }
            "register_stamp" if self.0.fail_insert.load(Ordering::SeqCst) => {
                Err(StoreError::Unavailable("injected: the database is down".into()))
            }
            _ => Ok(()),
        }
    }
}

/// The real file secret store, failing puts on demand and counting what was written and deleted.
struct FlakySecrets {
    inner: FileSecretStore,
    faults: Arc<Faults>,
}

#[async_trait]
impl SecretStore for FlakySecrets {
    async fn put_secret(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError> {
        if self.faults.fail_put_secret.load(Ordering::SeqCst) {
            return Err(SecretStoreError::Unavailable("injected: the secret store is down".into()));
        }
        self.inner.put_secret(name, value).await?;
        self.faults.secrets_put.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn get_secret(&self, name: &str) -> Result<Option<Secret>, SecretStoreError> {
        self.inner.get_secret(name).await
    }
    async fn delete_secret(&self, name: &str) -> Result<(), SecretStoreError> {
        self.inner.delete_secret(name).await?;
        self.faults.secrets_deleted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn credential_name(&self, stamp: &StampId) -> String {
        self.inner.credential_name(stamp)
    }
}

/// The real stamp client, kept to the simulator: a stamp anywhere else is a mistake in a test.
struct SimulatorOnly(AzureStackClient);

#[async_trait]
impl UsageSource for SimulatorOnly {
    async fn connect(
        &self,
        stamp: &Stamp,
        credential: &Credential,
    ) -> Result<Box<dyn StampSession>, PullError> {
        assert!(
            stamp.connection.admin_arm_endpoint.starts_with("https://127.0.0.1:"),
            "tests verify against the simulator only, not {}",
            stamp.connection.admin_arm_endpoint
        );
        self.0.connect(stamp, credential).await
    }

    async fn discover(&self, stamp: &Stamp) -> Result<DiscoveredEndpoints, PullError> {
        self.0.discover(stamp).await
    }
}

fn stamp_client() -> Arc<dyn UsageSource> {
    let mut settings = ClientSettings::default();
    settings.http.connect_timeout = std::time::Duration::from_secs(5);
    settings.http.request_timeout = std::time::Duration::from_secs(10);
    settings.http.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(50),
        max_retry_after: std::time::Duration::from_millis(50),
    };
    let loopback = azs_azure_stack::hosts::StampHosts::parse("127.0.0.1").unwrap();
    Arc::new(SimulatorOnly(AzureStackClient::new(settings).with_allowed_hosts(Some(loopback))))
}

struct Options {
    auth: ApiAuth,
    prefix: Option<&'static str>,
    source: Arc<dyn UsageSource>,
    read_credential: CredentialReader,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            auth: ApiAuth::Bearer(Secret::new(TOKEN)),
            prefix: None,
            source: stamp_client(),
            read_credential: credential_from_registration,
        }
    }
}

/// The webhook on a real socket, and direct access to what it wrote.
struct Harness {
    base: String,
    client: reqwest::Client,
    store: SqliteStore,
    secrets_file: PathBuf,
    faults: Arc<Faults>,
    /// A simulated Azure AD stamp accepting [`GOOD_SECRET`], for the tests that reach a stamp.
    sim: Option<Simulator>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{} body is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    /// The body as an RFC 9457 problem, after checking its media type and required members.
    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some(PROBLEM_JSON),
            "{} is not a problem: {:?}",
            self.status,
            self.json()
        );
        let p = self.json();
        assert_eq!(p["status"], self.status.as_u16(), "{p}");
        for member in ["type", "title", "detail", "instance", "requestId"] {
            assert!(p[member].is_string(), "problem without {member}: {p}");
        }
        assert_eq!(p["requestId"].as_str(), self.header("x-request-id"), "{p}");
        p
    }

    fn expect(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        self
    }

    /// `(field, rule)` of a 400 invalid-fields problem.
    fn field_errors(&self) -> Vec<(String, String)> {
        let p = self.expect(StatusCode::BAD_REQUEST).problem();
        p["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors member: {p}"))
            .iter()
            .map(|e| (e["field"].as_str().unwrap().to_owned(), e["rule"].as_str().unwrap().to_owned()))
            .collect()
    }

    fn fields(&self) -> BTreeSet<String> {
        self.field_errors().into_iter().map(|(f, _)| f).collect()
    }
}

impl Harness {
    async fn start() -> Harness {
        Self::with(Options::default()).await
    }

    async fn with(options: Options) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let secrets_file = dir.path().join("secrets.json");
        let store = SqliteStore::open_in_memory().unwrap();
        let faults = Arc::new(Faults::default());
        let administration = Administration::new(
            Arc::new(ObservedStore::new(Arc::new(store.clone()), FlakyStore(faults.clone()))),
            Arc::new(FlakySecrets {
                inner: FileSecretStore::new(&secrets_file, "azs-usage/"),
                faults: faults.clone(),
            }),
            options.source,
            options.read_credential,
            CredentialSecretRules::new("azs-usage/", ["azs-usage/database".to_owned()]),
        );
        let app = match options.prefix {
            Some(prefix) => router_with_prefix(prefix, administration, options.auth),
            None => router(administration, options.auth),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Harness { base, client: reqwest::Client::new(), store, secrets_file, faults, sim: None, _dir: dir }
    }

    /// The app, and a simulated stamp to register.
    async fn with_stamp() -> Harness {
        Self::with_stamp_signing_in(SimAuth::AzureAd {
            secret: Some(GOOD_SECRET.into()),
            certificate_pem: None,
        })
        .await
    }

    /// The app, and a simulated stamp with identity provider `auth` to register.
    async fn with_stamp_signing_in(auth: SimAuth) -> Harness {
        let config = SimulatorConfig {
            seed: 7,
            stamps: vec![StampSpec::generated(7, 0, auth)],
            ..SimulatorConfig::default()
        };
        let sim = Simulator::start(config).await.expect("the simulator starts");
        Harness { sim: Some(sim), ..Self::start().await }
    }

    fn sim_stamp(&self) -> SimStampHandle {
        self.sim.as_ref().expect("started with_stamp").stamp(0)
    }

    /// A registration of the simulated stamp, trusting the simulator's CA.
    fn stamp_registration(&self) -> Value {
        let stamp = self.sim_stamp();
        json!({
            "name": "simulated stamp",
            "adminSubscriptionId": stamp.admin_subscription_id(),
            "tenantId": stamp.tenant_id(),
            "applicationId": stamp.application_id(),
            "adminArmEndpoint": stamp.admin_arm_endpoint(),
            "applicationSecret": GOOD_SECRET,
            "caCertificate": self.sim.as_ref().unwrap().ca_pem(),
        })
    }

    /// A request carrying the API token.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let res = request.send().await.expect("the webhook answers");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.bytes().await.unwrap().to_vec();
        Reply { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn register(&self, body: &Value) -> String {
        let reply = self.post("/stamps?verify=false", body).await;
        reply.expect(StatusCode::CREATED);
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    async fn stamp_count(&self) -> usize {
        self.store.list_stamps().await.unwrap().len()
    }

    /// Names in the secret file (which is created by the first write).
    fn secret_names(&self) -> Vec<String> {
        match std::fs::read(&self.secrets_file) {
            Ok(bytes) => serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes)
                .unwrap()
                .keys()
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn assert_nothing_written(&self) {
        assert_eq!(self.stamp_count().await, 0, "a stamp was stored");
        assert!(self.secret_names().is_empty(), "secrets were left behind: {:?}", self.secret_names());
    }
}

/// A registration as the operator guide shows it (ASDK defaults), with an application secret.
fn registration() -> Value {
    json!({
        "name": "stamp-eu-1",
        "adminSubscriptionId": "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f",
        "tenantId": "4de154de-f8a8-4017-af41-df619da68155",
        "applicationId": "11111111-2222-3333-4444-555555555555",
        "adminArmEndpoint": "https://adminmanagement.local.azurestack.external",
        "applicationSecret": GOOD_SECRET
    })
}

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

fn without(mut body: Value, field: &str) -> Value {
    body.as_object_mut().unwrap().remove(field);
    body
}

fn no_secret_in(reply: &Reply) {
    let text = String::from_utf8_lossy(&reply.body);
    assert!(!text.contains(GOOD_SECRET) && !text.contains(TOKEN), "a secret was echoed: {text}");
}

// ---------------------------------------------------------------------------------------------------
// Stamps
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn registering_without_verification_answers_201_with_the_location_and_the_stamp_but_no_secret() {
    let app = Harness::start().await;

    let reply = app.post("/stamps?verify=false", &registration()).await;

    reply.expect(StatusCode::CREATED);
    let view = reply.json();
    let id = view["id"].as_str().unwrap();
    assert_eq!(reply.header("location"), Some(format!("/stamps/{id}").as_str()));
    assert_eq!(view["name"], "stamp-eu-1");
    assert_eq!(view["connection"]["adminArmEndpoint"], "https://adminmanagement.local.azurestack.external");
    assert_eq!(view["credentialSecretName"], format!("azs-usage/{id}"));
    assert_eq!(view["status"]["outcome"], "pending");
    no_secret_in(&reply);
    assert_eq!(app.secret_names(), vec![format!("azs-usage/{id}")]);
}

#[tokio::test]
async fn registering_with_verification_checks_the_stamp_and_fills_in_what_discovery_found() {
    let app = Harness::with_stamp().await;

    let reply = app.post("/stamps", &app.stamp_registration()).await;

    reply.expect(StatusCode::CREATED);
    let view = reply.json();
    let stamp = app.sim_stamp();
    assert_eq!(view["connection"]["authorityEndpointUrl"], stamp.login_endpoint());
    assert_eq!(view["connection"]["tokenRequestResourceUrl"], stamp.audience());
    assert_eq!(view["connection"]["isAdfs"], false);
    assert!(stamp.stats().usage_requests >= 1, "the usage API was queried");
    no_secret_in(&reply);
    assert_eq!(app.secret_names().len(), 1);
}

#[tokio::test]
async fn an_adfs_stamp_registered_with_the_adfs_tenant_needs_no_is_adfs_and_a_wrong_guess_is_named() {
    let app = Harness::with_stamp_signing_in(SimAuth::Adfs {
        secret: Some(GOOD_SECRET.into()),
        certificate_pem: None,
    })
    .await;

    // The tenant `adfs` says AD FS; verification agrees with the stamp's login endpoint.
    let reply = app.post("/stamps", &with(app.stamp_registration(), "tenantId", json!("adfs"))).await;
    reply.expect(StatusCode::CREATED);
    assert_eq!(reply.json()["connection"]["isAdfs"], true);
    assert_eq!(reply.json()["connection"]["authorityEndpointUrl"], app.sim_stamp().login_endpoint());

    // A GUID tenant and no isAdfs is taken for Azure AD: the stamp says otherwise, and the answer
    // names isAdfs (and nothing more is stored).
    let second = with(app.stamp_registration(), "name", json!("second"));
    let second = with(second, "adminSubscriptionId", json!("0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f"));
    let reply = app.post("/stamps", &second).await;
    reply.expect(StatusCode::UNPROCESSABLE_ENTITY);
    let detail = reply.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("isAdfs") && detail.contains("AD FS"), "{detail}");
    assert_eq!(app.stamp_count().await, 1);
}

#[tokio::test]
async fn a_stamp_that_refuses_the_credential_answers_422_with_the_upstream_reason_and_nothing_is_stored() {
    let app = Harness::with_stamp().await;
    let body = with(app.stamp_registration(), "applicationSecret", json!("not-the-secret"));

    let reply = app.post("/stamps?verify=true", &body).await;

    let p = reply.expect(StatusCode::UNPROCESSABLE_ENTITY).problem();
    assert_eq!(p["stage"], "token", "{p}");
    assert_eq!(p["upstreamCode"], "invalid_client", "{p}");
    assert_eq!(p["upstreamStatus"], 401, "{p}");
    assert_eq!(p["transient"], false, "{p}");
    assert!(!p["detail"].as_str().unwrap().is_empty());
    assert!(!String::from_utf8_lossy(&reply.body).contains("not-the-secret"));
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn a_second_registration_of_the_same_stamp_answers_409_with_the_existing_id() {
    let app = Harness::start().await;
    let id = app.register(&registration()).await;

    // Same endpoint (other spelling) and subscription (upper case), other name and credential.
    let again = json!({
        "name": "the same stamp",
        "adminSubscriptionId": "0B9D6E1C-2F4E-4B8A-9C3D-1A2B3C4D5E6F",
        "tenantId": "4de154de-f8a8-4017-af41-df619da68155",
        "applicationId": "11111111-2222-3333-4444-555555555555",
        "adminArmEndpoint": "https://AdminManagement.local.azurestack.external/",
        "applicationSecret": "another"
    });
    let reply = app.post("/stamps?verify=false", &again).await;

    let p = reply.expect(StatusCode::CONFLICT).problem();
    assert_eq!(p["existingId"], id.as_str());
    assert_eq!(reply.header("location"), Some(format!("/stamps/{id}").as_str()));
    assert_eq!(app.stamp_count().await, 1);
    assert_eq!(app.secret_names().len(), 1);
}

#[tokio::test]
async fn a_registered_stamp_is_listed_shown_changed_tested_and_removed() {
    let app = Harness::with_stamp().await;
    let id = app.register(&app.stamp_registration()).await;

    let list = app.get("/stamps").await;
    list.expect(StatusCode::OK);
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    assert_eq!(list.json()[0]["id"], id.as_str());

    let shown = app.get(&format!("/stamps/{id}")).await;
    shown.expect(StatusCode::OK);
    assert_eq!(shown.json()["status"]["stampId"], id.as_str());
    assert!(shown.json()["status"]["watermark"].is_string());

    let patched = app
        .call(
            Method::PATCH,
            &format!("/stamps/{id}?verify=false"),
            Some(&json!({"name": "renamed", "enabled": false})),
        )
        .await;
    patched.expect(StatusCode::OK);
    assert_eq!(patched.json()["name"], "renamed");
    assert_eq!(patched.json()["enabled"], false);

    let rotated =
        app.call(Method::PATCH, &format!("/stamps/{id}"), Some(&json!({"applicationSecret": "wrong"}))).await;
    assert_eq!(rotated.expect(StatusCode::UNPROCESSABLE_ENTITY).problem()["stage"], "token");
    let rotated = app
        .call(Method::PATCH, &format!("/stamps/{id}"), Some(&json!({"applicationSecret": GOOD_SECRET})))
        .await;
    rotated.expect(StatusCode::OK);
    no_secret_in(&rotated);

    let tested = app.call(Method::POST, &format!("/stamps/{id}/test"), None).await;
    tested.expect(StatusCode::OK);
    let report = tested.json();
    assert_eq!(report["endpoints"]["tokenEndpoint"], app.sim_stamp().token_endpoint());
    assert!(report["pages"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["window"]["start"].is_string());

    app.call(Method::DELETE, &format!("/stamps/{id}"), None).await.expect(StatusCode::NO_CONTENT);
    app.assert_nothing_written().await;
    app.get(&format!("/stamps/{id}")).await.expect(StatusCode::NOT_FOUND).problem();
    app.call(Method::DELETE, &format!("/stamps/{id}"), None).await.expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_patch_changes_connection_fields_in_place_verified_like_a_registration_keeping_the_watermark() {
    // Given a verified stamp, named, with its watermark
    let app = Harness::with_stamp().await;
    let reply = app.post("/stamps", &app.stamp_registration()).await;
    reply.expect(StatusCode::CREATED);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    let stamp_id = StampId(id.clone());
    let watermark = app.store.get_status(&stamp_id).await.unwrap().unwrap().watermark;
    let before = app.store.get_stamp(&stamp_id).await.unwrap().unwrap();
    let harness = &app;
    let patch = |body: Value| async move {
        harness.call(Method::PATCH, "/stamps/simulated%20stamp", Some(&body)).await
    };

    // When the query mode changes (by name), it is verified and stored in place
    let changed = patch(json!({"queryMode": "per-subscriber"})).await;
    changed.expect(StatusCode::OK);
    assert_eq!(changed.json()["id"], id.as_str());
    assert_eq!(changed.json()["queryMode"], "per-subscriber");
    let shown: DateTime<Utc> = changed.json()["status"]["watermark"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown, watermark);

    // When the application id changes to one the stamp does not know, the stamp's refusal answers 422
    // and nothing changed
    let refused = patch(json!({
        "applicationId": "0f0e0d0c-0b0a-4909-8807-060504030201",
        "applicationSecret": GOOD_SECRET,
    }))
    .await;
    assert_eq!(refused.expect(StatusCode::UNPROCESSABLE_ENTITY).problem()["stage"], "token");
    let now = app.store.get_stamp(&stamp_id).await.unwrap().unwrap();
    assert_eq!(now.connection, before.connection);

    // When a field breaks a registration rule, it is named with the rule (one rule set for both)
    let invalid =
        patch(json!({"adminArmEndpoint": "http://plain.example", "tenantId": "x", "name": " "})).await;
    assert_eq!(
        invalid.fields(),
        ["adminArmEndpoint", "name", "tenantId"].into_iter().map(String::from).collect()
    );
    let two = patch(json!({"applicationSecret": "a", "credentialSecretName": "azs-usage/x"})).await;
    assert_eq!(two.fields(), ["applicationSecret".to_owned()].into());

    // When the credential would come from the service's own database secret, it is refused before
    // the stamp is contacted
    let tokens = app.sim_stamp().stats().token_requests;
    let own = patch(json!({"credentialSecretName": "azs-usage/database"})).await;
    let problem = own.expect(StatusCode::UNPROCESSABLE_ENTITY).problem();
    assert_eq!(problem["errors"][0]["field"], "credentialSecretName", "{problem}");
    assert_eq!(app.sim_stamp().stats().token_requests, tokens);

    // When the endpoint and admin subscription become another stamp's, 409 names that stamp
    let other = app.register(&registration()).await;
    let taken = patch(json!({
        "adminArmEndpoint": registration()["adminArmEndpoint"],
        "adminSubscriptionId": registration()["adminSubscriptionId"],
        "applicationSecret": GOOD_SECRET,
    }))
    .await;
    assert_eq!(taken.expect(StatusCode::CONFLICT).problem()["existingId"], other.as_str());

    // Then the stamp kept its id, connection and watermark through all of it
    let after = app.store.get_stamp(&stamp_id).await.unwrap().unwrap();
    assert_eq!(after.connection, before.connection);
    assert_eq!(app.store.get_status(&stamp_id).await.unwrap().unwrap().watermark, watermark);
}

#[tokio::test]
async fn a_patch_that_points_the_stored_credential_elsewhere_is_refused_and_that_host_hears_nothing() {
    // Given a verified stamp, and a second stamp (the caller's own host) it could be pointed at
    let config = SimulatorConfig {
        seed: 7,
        stamps: (0..2)
            .map(|i| {
                StampSpec::generated(
                    7,
                    i,
                    SimAuth::AzureAd { secret: Some(GOOD_SECRET.into()), certificate_pem: None },
                )
            })
            .collect(),
        ..SimulatorConfig::default()
    };
    let app = Harness { sim: Some(Simulator::start(config).await.unwrap()), ..Harness::start().await };
    let reply = app.post("/stamps", &app.stamp_registration()).await;
    let id = reply.expect(StatusCode::CREATED).json()["id"].as_str().unwrap().to_owned();
    let before = app.store.get_stamp(&StampId(id.clone())).await.unwrap().unwrap();
    let elsewhere = app.sim.as_ref().unwrap().stamp(1);
    let heard = |s: stamp_sim::SimStats| {
        s.metadata_requests + s.openid_requests + s.token_requests + s.usage_requests
    };

    // When any field that decides where the credential goes or whom it speaks for is changed without
    // a new credential, with verification or without
    let cases = [
        ("adminArmEndpoint", json!(elsewhere.admin_arm_endpoint())),
        ("authorityEndpointUrl", json!(elsewhere.login_endpoint())),
        ("tokenRequestResourceUrl", json!(elsewhere.audience())),
        ("tenantId", json!(elsewhere.tenant_id())),
        ("applicationId", json!(elsewhere.application_id())),
        ("caCertificate", json!("")),
    ];
    for (field, value) in &cases {
        for verify in ["true", "false"] {
            let path = format!("/stamps/{id}?verify={verify}");
            let reply = app.call(Method::PATCH, &path, Some(&json!({ *field: value }))).await;
            // Then it is refused as unusable, naming the field and the way out
            let problem = reply.expect(StatusCode::UNPROCESSABLE_ENTITY).problem();
            assert_eq!(problem["errors"][0]["field"], *field, "{problem}");
            assert!(problem["errors"][0]["rule"].as_str().unwrap().contains("new credential"), "{problem}");
            no_secret_in(&reply);
        }
    }
    // And naming the stamp's own stored secret is not a new credential
    let own = json!({"adminArmEndpoint": elsewhere.admin_arm_endpoint(), "credentialSecretName": before.credential_secret_name});
    let reply = app.call(Method::PATCH, &format!("/stamps/{id}"), Some(&own)).await;
    let problem = reply.expect(StatusCode::UNPROCESSABLE_ENTITY).problem();
    assert_eq!(problem["errors"][0]["field"], "credentialSecretName", "{problem}");

    // Then the stamp is unchanged, a connection test reaches the stamp it was registered for, and the
    // other host heard nothing at all: no discovery, no token request, no usage query
    assert_eq!(app.store.get_stamp(&StampId(id.clone())).await.unwrap().unwrap(), before);
    app.call(Method::POST, &format!("/stamps/{id}/test"), None).await.expect(StatusCode::OK);
    assert_eq!(heard(elsewhere.stats()), 0, "{:?}", elsewhere.stats());

    // And the same change with a new credential is accepted (verified against the new host)
    let moved = json!({"adminArmEndpoint": elsewhere.admin_arm_endpoint(), "adminSubscriptionId": elsewhere.admin_subscription_id(),
        "tenantId": elsewhere.tenant_id(), "applicationId": elsewhere.application_id(), "applicationSecret": GOOD_SECRET});
    app.call(Method::PATCH, &format!("/stamps/{id}"), Some(&moved)).await.expect(StatusCode::OK);
    assert!(elsewhere.stats().token_requests > 0);
}

#[tokio::test]
async fn a_pfx_that_asks_for_2_pow_31_minus_1_key_derivation_rounds_is_refused_at_once() {
    // Given a real PFX whose MAC iteration count was raised to 2^31-1 (opening it would take hours)
    let app = Harness::start().await;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../azure-stack/tests/fixtures");
    let pfx =
        std::fs::read_to_string(format!("{fixtures}/client-2147483647-mac-iterations.pfx.b64")).unwrap();
    let body = with(without(registration(), "applicationSecret"), "certificate", json!(pfx));
    let body = with(body, "certificatePassword", json!("fixture-password"));

    // When it is registered
    let started = std::time::Instant::now();
    let reply = app.post("/stamps?verify=false", &body).await;

    // Then it is refused within a second, naming the certificate and the bound, and nothing is written
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "took {:?}", started.elapsed());
    let problem = reply.expect(StatusCode::UNPROCESSABLE_ENTITY).problem();
    assert_eq!(problem["errors"][0]["field"], "certificate", "{problem}");
    assert!(problem["errors"][0]["rule"].as_str().unwrap().contains("iterations"), "{problem}");
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn testing_a_stamp_reports_discovery_and_the_last_settled_hour_in_either_query_mode() {
    // Given a registered stamp
    let app = Harness::with_stamp().await;
    let id = app.register(&app.stamp_registration()).await;
    let sim = app.sim_stamp();
    for mode in ["all-tenants", "per-subscriber"] {
        let patched = app
            .call(Method::PATCH, &format!("/stamps/{id}?verify=false"), Some(&json!({"queryMode": mode})))
            .await;
        patched.expect(StatusCode::OK);

        // When it is tested (the one verification path, also behind registration and PATCH)
        let tested = app.call(Method::POST, &format!("/stamps/{id}/test"), None).await;

        // Then discovery is reported, and the last settled hour's rows are exactly the stamp's
        let report = tested.expect(StatusCode::OK).json();
        assert_eq!(report["endpoints"]["loginEndpoint"], sim.login_endpoint(), "{mode}");
        assert_eq!(report["endpoints"]["isAdfs"], false);
        let start: DateTime<Utc> = report["window"]["start"].as_str().unwrap().parse().unwrap();
        let end: DateTime<Utc> = report["window"]["end"].as_str().unwrap().parse().unwrap();
        assert_eq!(end - start, Duration::hours(1), "{mode}");
        assert!(end <= floor_hour(Utc::now()) - Duration::hours(1), "{mode}: {end} is not settled");
        assert_eq!(report["rows"], sim.ground_truth(start, end).len() as u64, "{mode}");
    }
}

#[tokio::test]
async fn testing_a_stamp_the_stamp_refuses_is_a_negative_result_naming_the_step_not_a_rejection() {
    let app = Harness::with_stamp().await;
    let id = app.register(&with(app.stamp_registration(), "applicationSecret", json!("revoked"))).await;

    let reply = app.call(Method::POST, &format!("/stamps/{id}/test"), None).await;

    let result = reply.expect(StatusCode::OK).json();
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["failure"]["stage"], "token", "{result}");
    assert_eq!(result["failure"]["transient"], false, "{result}");
    assert!(result["failure"]["detail"].is_string() && result.get("rows").is_none(), "{result}");
    no_secret_in(&reply);
}

#[tokio::test]
async fn a_stamp_registered_with_an_existing_secret_uses_it_and_testing_it_once_gone_answers_422() {
    let app = Harness::with_stamp().await;
    let operator_secrets = FileSecretStore::new(&app.secrets_file, "azs-usage/");
    let document = Credential::ApplicationSecret(Secret::new(GOOD_SECRET))
        .to_secret_for(&app.sim_stamp().admin_arm_endpoint());
    operator_secrets.put_secret("azs-usage/ops-stamp-credential", &document).await.unwrap();
    let body = with(
        without(app.stamp_registration(), "applicationSecret"),
        "credentialSecretName",
        json!("azs-usage/ops-stamp-credential"),
    );

    let created = app.post("/stamps", &body).await;

    created.expect(StatusCode::CREATED);
    assert_eq!(created.json()["credentialSecretName"], "azs-usage/ops-stamp-credential");
    assert_eq!(
        app.secret_names(),
        vec!["azs-usage/ops-stamp-credential".to_owned()],
        "no copy of the operator's secret"
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();
    operator_secrets.delete_secret("azs-usage/ops-stamp-credential").await.unwrap();
    let reply = app.call(Method::POST, &format!("/stamps/{id}/test"), None).await;
    let p = reply.expect(StatusCode::UNPROCESSABLE_ENTITY).problem();
    assert_eq!(p["errors"][0]["field"], "credentialSecretName", "{p}");
}

#[tokio::test]
async fn unknown_and_malformed_stamp_ids_answer_404() {
    let app = Harness::start().await;
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/stamps/{unknown}"),
        format!("/stamps/{unknown}/subscriptions"),
        format!("/stamps/{unknown}/unmapped"),
        "/stamps/not-a-uuid".to_owned(),
        "/stamps/%E2%80%AE".to_owned(),
        "/stamps/00000000000000000000000000000000".to_owned(),
    ] {
        let p = app.get(&path).await.expect(StatusCode::NOT_FOUND).problem();
        assert_eq!(p["type"], "tag:azs-usage,2026:problem:stamp-not-found", "{path}");
    }
    app.call(Method::POST, &format!("/stamps/{unknown}/test"), None).await.expect(StatusCode::NOT_FOUND);
    app.call(Method::PATCH, &format!("/stamps/{unknown}"), Some(&json!({})))
        .await
        .expect(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------------
// Subscription mappings
// ---------------------------------------------------------------------------------------------------

const TENANT_SUBSCRIPTION: &str = "7e4e9a3c-1b2d-4c5e-8f90-a1b2c3d4e5f6";

/// A registered stamp with two collected usage rows of [`TENANT_SUBSCRIPTION`], not yet mapped.
async fn stamp_with_unmapped_usage(app: &Harness) -> String {
    let collect_from = floor_hour(Utc::now()) - Duration::hours(3);
    let id = app.register(&with(registration(), "collectFrom", json!(collect_from.to_rfc3339()))).await;
    let stamp = StampId(id.clone());
    let window = ReportedWindow::hour(collect_from);
    let row = |meter: &str| UsageRow {
        subscription_id: TENANT_SUBSCRIPTION.to_uppercase(),
        meter_id: meter.into(),
        usage_start: collect_from - Duration::hours(1),
        usage_end: collect_from,
        quantity: rust_decimal::Decimal::new(15, 1),
        resource_uri: "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
            .into(),
        location: "local".into(),
        tags: None,
        additional_info: None,
    };
    let rows = [row("6dab500f-a4fd-49c4-956d-229bb9c8c793"), row("fab6eb84-500b-4a09-a8ca-7358f8bbaea5")];
    assert!(app.store.try_acquire(&stamp, "test", std::time::Duration::from_secs(60)).await.unwrap());
    let receipt = app
        .store
        .commit_window(WindowCommit {
            stamp: &stamp,
            window,
            lease_owner: "test",
            write: WindowWrite::Advance,
            rows: rows.to_vec(),
            quarantined: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(receipt.unmapped_rows, 2);
    app.store.release(&stamp, "test").await.unwrap();
    id
}

#[tokio::test]
async fn the_quarantine_is_listed_for_one_stamp_by_id_or_name_or_for_all_and_bad_filters_are_refused() {
    // Given a stamp whose collected window quarantined one row, and a stamp without any
    let app = Harness::start().await;
    let collect_from = floor_hour(Utc::now()) - Duration::hours(3);
    let quarantined =
        with(with(registration(), "collectFrom", json!(collect_from.to_rfc3339())), "name", json!("eu-q"));
    let id = app.register(&quarantined).await;
    let other = app
        .register(&with(
            with(
                registration(),
                "adminArmEndpoint",
                json!("https://adminmanagement.other.azurestack.external"),
            ),
            "name",
            json!("eu-other"),
        ))
        .await;
    let stamp = StampId(id.clone());
    let why =
        azs_core::quarantine::Unrepresentable { field: "properties.quantity", rule: "too precise".into() };
    let raw = r#"{"properties":{"quantity":1.00000000000000000000000000001}}"#;
    assert!(app.store.try_acquire(&stamp, "test", std::time::Duration::from_secs(60)).await.unwrap());
    let receipt = app
        .store
        .commit_window(WindowCommit {
            stamp: &stamp,
            window: ReportedWindow::hour(collect_from),
            lease_owner: "test",
            write: WindowWrite::Advance,
            rows: Vec::new(),
            quarantined: vec![azs_core::quarantine::QuarantinedRow::new(raw.into(), &why)],
        })
        .await
        .unwrap();
    assert_eq!(receipt.quarantined, 1);

    // Then it is listed by id, by name and in the full list, with the row verbatim
    for filter in [id.as_str(), "EU-Q"] {
        let reply = app.get(&format!("/quarantine?stamp={filter}")).await;
        reply.expect(StatusCode::OK);
        let entries = reply.json();
        assert_eq!(entries.as_array().unwrap().len(), 1, "{entries}");
        assert_eq!(entries[0]["stampId"], id.as_str());
        assert_eq!(entries[0]["raw"], raw);
        assert_eq!(entries[0]["field"], "properties.quantity");
        assert_eq!(entries[0]["reason"], "properties.quantity: too precise");
        assert_eq!(
            entries[0]["window"]["start"],
            collect_from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    let all = app.get("/quarantine?code=platform-key").await;
    all.expect(StatusCode::OK);
    assert_eq!(all.json().as_array().unwrap().len(), 1);
    let none = app.get(&format!("/quarantine?stamp={other}")).await;
    none.expect(StatusCode::OK);
    assert_eq!(none.json(), json!([]));
    // And the stamp's status counts it
    assert_eq!(app.get(&format!("/stamps/{id}")).await.json()["status"]["quarantinedRows"], 1);
    // And the status shows the scheduled verify's outcome and the duplicates runs dropped, as recorded
    let status = app.get(&format!("/stamps/{id}")).await.json()["status"].clone();
    assert!(status["lastVerified"].is_null() && status["drift"].is_null(), "{status}");
    assert_eq!(status["duplicateRows"], 0);
    let range = azs_core::window::ReportedWindow::hour(collect_from);
    let verified = LastVerified { at: chrono::Utc::now(), range };
    app.store
        .record_verified(&stamp, &verified, &DriftCounts { missing: 1, extra: 0, changed: 2 })
        .await
        .unwrap();
    let status = app.get(&format!("/stamps/{id}")).await.json()["status"].clone();
    assert_eq!(status["drift"], json!({"missing": 1, "extra": 0, "changed": 2}), "{status}");
    assert_eq!(
        status["lastVerified"]["range"]["start"],
        collect_from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );

    // And an unknown stamp is a 404, an empty or repeated filter a 400 naming the field
    app.get("/quarantine?stamp=no-such-stamp").await.expect(StatusCode::NOT_FOUND);
    for bad in ["/quarantine?stamp=", "/quarantine?stamp=%20", &format!("/quarantine?stamp={id}&stamp={id}")]
    {
        let reply = app.get(bad).await;
        reply.expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.problem()["errors"][0]["field"], "stamp", "{bad}");
    }
}

#[tokio::test]
async fn listings_come_a_page_at_a_time_and_the_next_link_walks_them_all_once() {
    // Given a stamp with seven mappings
    let app = Harness::start().await;
    let id = app.register(&registration()).await;
    let mut subscriptions: Vec<String> =
        (0..7).map(|i| format!("00000000-0000-4000-8000-00000000000{i}")).collect();
    for (i, sub) in subscriptions.iter().enumerate() {
        let path = format!("/stamps/{id}/subscriptions/{sub}");
        let body = json!({ "billingSubscriptionId": format!("billing-{i}") });
        app.call(Method::PUT, &path, Some(&body)).await.expect(StatusCode::OK);
    }

    // When the mappings are listed three at a time, following each page's next link
    let mut seen = Vec::new();
    let mut next = Some(format!("/stamps/{id}/subscriptions?limit=3"));
    let mut pages = 0;
    while let Some(path) = next.take() {
        let reply = app.get(&path).await;
        let page = reply.expect(StatusCode::OK).json();
        assert!(page.as_array().unwrap().len() <= 3, "{page}");
        seen.extend(
            page.as_array().unwrap().iter().map(|m| m["externalSubscriptionId"].as_str().unwrap().to_owned()),
        );
        next = reply.header("link").map(|link| {
            assert!(link.ends_with(r#">; rel="next""#), "{link}");
            link.trim_start_matches('<').split('>').next().unwrap().to_owned()
        });
        pages += 1;
    }

    // Then three pages hold every mapping once, in order; the default page holds them all
    subscriptions.sort();
    assert_eq!((pages, &seen), (3, &subscriptions));
    let all = app.get(&format!("/stamps/{id}/subscriptions")).await;
    assert_eq!(all.json().as_array().unwrap().len(), 7);
    assert!(all.header("link").is_none());

    // And a bad limit or cursor is named with its rule, on every listing
    for listing in ["/stamps", &format!("/stamps/{id}/unmapped"), "/quarantine"] {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("cursor=zz", "cursor"),
            ("limit=1&limit=2", "limit"),
        ] {
            let reply = app.get(&format!("{listing}?{query}")).await;
            assert_eq!(reply.fields(), [field.to_owned()].into(), "{listing}?{query}");
        }
    }
}

#[tokio::test]
async fn mapping_a_subscription_back_fills_its_unmapped_rows_and_can_be_listed_and_removed() {
    let app = Harness::start().await;
    let id = stamp_with_unmapped_usage(&app).await;

    let unmapped = app.get(&format!("/stamps/{id}/unmapped")).await;
    unmapped.expect(StatusCode::OK);
    assert_eq!(unmapped.json()[0]["externalSubscriptionId"], TENANT_SUBSCRIPTION);
    assert_eq!(unmapped.json()[0]["rows"], 2);

    let path = format!("/stamps/{id}/subscriptions/{}", TENANT_SUBSCRIPTION.to_uppercase());
    let set = app.call(Method::PUT, &path, Some(&json!({"billingSubscriptionId": "billing-0042"}))).await;
    set.expect(StatusCode::OK);
    assert_eq!(set.json()["backfilledRows"], 2);
    assert_eq!(set.json()["externalSubscriptionId"], TENANT_SUBSCRIPTION);
    assert_eq!(set.json()["billingSubscriptionId"], "billing-0042");
    assert_eq!(set.json()["stampId"], id.as_str());

    let listed = app.get(&format!("/stamps/{id}/subscriptions")).await;
    listed.expect(StatusCode::OK);
    assert_eq!(listed.json().as_array().unwrap().len(), 1);
    assert_eq!(app.get(&format!("/stamps/{id}/unmapped")).await.json(), json!([]));

    app.call(Method::DELETE, &path, None).await.expect(StatusCode::NO_CONTENT);
    let again = app.call(Method::DELETE, &path, None).await;
    assert_eq!(
        again.expect(StatusCode::NOT_FOUND).problem()["type"],
        "tag:azs-usage,2026:problem:mapping-not-found"
    );
    assert_eq!(app.get(&format!("/stamps/{id}/subscriptions")).await.json(), json!([]));
}

#[tokio::test]
async fn a_mapping_body_is_checked_like_every_other_body() {
    let app = Harness::start().await;
    let id = app.register(&registration()).await;
    let path = format!("/stamps/{id}/subscriptions/{TENANT_SUBSCRIPTION}");
    let put = |body: Value| {
        let (app, path) = (&app, &path);
        async move { app.call(Method::PUT, path, Some(&body)).await }
    };

    assert_eq!(
        put(json!({})).await.field_errors(),
        vec![("billingSubscriptionId".into(), "is required".into())]
    );
    assert_eq!(
        put(json!({"billingSubscriptionId": 42})).await.fields(),
        ["billingSubscriptionId".into()].into()
    );
    assert_eq!(
        put(json!({"billingSubscriptionId": " "})).await.fields(),
        ["billingSubscriptionId".into()].into()
    );
    assert_eq!(
        put(json!({"billingSubscriptionId": "b", "extra": 1})).await.fields(),
        ["extra".into()].into()
    );
    let long = format!("/stamps/{id}/subscriptions/{}", "a".repeat(129));
    let reply = app.call(Method::PUT, &long, Some(&json!({"billingSubscriptionId": "b"}))).await;
    assert_eq!(reply.fields(), ["externalSubscriptionId".into()].into());
    let unknown = format!("/stamps/{}/subscriptions/{TENANT_SUBSCRIPTION}", uuid::Uuid::new_v4());
    app.call(Method::PUT, &unknown, Some(&json!({"billingSubscriptionId": "b"})))
        .await
        .expect(StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------------------------------------------
// The audit trail
// ---------------------------------------------------------------------------------------------------

/// The change `field` of an audit record (`GET /audit` JSON).
fn audited<'a>(record: &'a Value, field: &str) -> &'a Value {
    record["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == field)
        .unwrap_or_else(|| panic!("no change of {field} in {record}"))
}

#[tokio::test]
async fn a_patch_shows_in_get_audit_with_its_caller_its_fields_and_their_old_and_new_values() {
    // Given a registered stamp
    let app = Harness::start().await;
    let id = app.register(&registration()).await;

    // When a PATCH renames it and turns it off
    let patch = json!({"name": "stamp-eu-1b", "enabled": false});
    app.call(Method::PATCH, &format!("/stamps/{id}?verify=false"), Some(&patch)).await.expect(StatusCode::OK);

    // Then GET /audit shows the registration and the PATCH, in that order, by the token's caller
    let trail = app.get(&format!("/audit?stamp={id}")).await.expect(StatusCode::OK).json();
    let records = trail.as_array().unwrap();
    assert_eq!(records.len(), 2, "{trail}");
    assert_eq!(
        (records[0]["action"].as_str(), records[1]["action"].as_str()),
        (Some("stamp.register"), Some("stamp.update"))
    );
    let update = &records[1];
    assert_eq!(update["actor"], "api-token", "{update}");
    assert_eq!(update["stampId"], id.as_str());
    assert_eq!(update["stampName"], "stamp-eu-1b");
    // And exactly the fields the PATCH changed, each with its old and new value
    let fields: BTreeSet<&str> =
        update["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, BTreeSet::from(["name", "enabled"]), "{update}");
    assert_eq!(
        (&audited(update, "name")["old"], &audited(update, "name")["new"]),
        (&json!("stamp-eu-1"), &json!("stamp-eu-1b"))
    );
    assert_eq!(
        (&audited(update, "enabled")["old"], &audited(update, "enabled")["new"]),
        (&json!(true), &json!(false))
    );
    let at: DateTime<Utc> = update["at"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - at).num_seconds().abs() < 60, "{at}");
}

#[tokio::test]
async fn a_new_credential_is_audited_as_changed_and_no_secret_reaches_the_trail() {
    // Given a registered stamp
    let app = Harness::start().await;
    let id = app.register(&registration()).await;
    let rotated = "rotated-secret-value-4b2f9e";

    // When its credential is rotated through a PATCH
    let patch = json!({"applicationSecret": rotated});
    app.call(Method::PATCH, &format!("/stamps/{id}?verify=false"), Some(&patch)).await.expect(StatusCode::OK);

    // Then the update records the credential as changed, without any value
    let reply = app.get("/audit").await;
    let trail = reply.expect(StatusCode::OK).json();
    let update =
        trail.as_array().unwrap().iter().find(|r| r["action"] == "stamp.update").expect("the update");
    assert_eq!(update["changes"], json!([{ "field": "credential", "secret": true }]), "{update}");
    // And neither the old secret, nor the new one, nor the API token appears anywhere in the trail
    let text = String::from_utf8_lossy(&reply.body);
    for secret in [GOOD_SECRET, rotated, TOKEN] {
        assert!(!text.contains(secret), "{secret} in the trail: {text}");
    }
    // As stored, too
    let stored = app
        .store
        .audit_records(&azs_core::audit::AuditQuery { limit: 100, ..Default::default() })
        .await
        .unwrap();
    let stored = format!("{stored:?}");
    assert!(!stored.contains(GOOD_SECRET) && !stored.contains(rotated), "{stored}");
}

#[tokio::test]
async fn a_refused_change_writes_no_audit_record() {
    // Given a registered stamp and its trail
    let app = Harness::start().await;
    let id = app.register(&registration()).await;
    let before = app.get("/audit").await.expect(StatusCode::OK).json();

    // When a PATCH moves its endpoint without a new credential (422), breaks a field rule (400),
    // a mapping is refused and a removal names an unknown stamp
    let moved = json!({"adminArmEndpoint": "https://adminmanagement.elsewhere.example"});
    app.call(Method::PATCH, &format!("/stamps/{id}?verify=false"), Some(&moved))
        .await
        .expect(StatusCode::UNPROCESSABLE_ENTITY);
    app.call(Method::PATCH, &format!("/stamps/{id}"), Some(&json!({"name": ""})))
        .await
        .expect(StatusCode::BAD_REQUEST);
    let bad_mapping = json!({"billingSubscriptionId": "=HYPERLINK(1)"});
    let path = format!("/stamps/{id}/subscriptions/{TENANT_SUBSCRIPTION}");
    app.call(Method::PUT, &path, Some(&bad_mapping)).await.expect(StatusCode::BAD_REQUEST);
    app.call(Method::DELETE, "/stamps/stamp-nobody-registered", None).await.expect(StatusCode::NOT_FOUND);

    // Then the trail is as it was
    assert_eq!(app.get("/audit").await.expect(StatusCode::OK).json(), before);
}

#[tokio::test]
async fn mapping_changes_and_removals_are_audited_and_the_trail_pages_filters_and_refuses_bad_filters() {
    // Given a stamp whose mapping is set, changed and removed, and which is then removed
    let app = Harness::start().await;
    let id = app.register(&registration()).await;
    let path = format!("/stamps/{id}/subscriptions/{TENANT_SUBSCRIPTION}");
    for billing in ["billing-1", "billing-2"] {
        app.call(Method::PUT, &path, Some(&json!({"billingSubscriptionId": billing})))
            .await
            .expect(StatusCode::OK);
    }
    app.call(Method::DELETE, &path, None).await.expect(StatusCode::NO_CONTENT);
    app.call(Method::DELETE, &format!("/stamps/{id}"), None).await.expect(StatusCode::NO_CONTENT);

    // When the trail is read one record at a time, following each page's next link
    let mut actions = Vec::new();
    let mut next = Some(format!("/audit?stamp={id}&limit=1"));
    while let Some(page) = next.take() {
        let reply = app.get(&page).await;
        let records = reply.expect(StatusCode::OK).json();
        assert!(records.as_array().unwrap().len() <= 1);
        actions.extend(records.as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap().to_owned()));
        next = reply.header("link").map(|l| l.trim_start_matches('<').split('>').next().unwrap().to_owned());
    }

    // Then it holds every change once, in order, the removed stamp's history included
    assert_eq!(actions, ["stamp.register", "mapping.set", "mapping.set", "mapping.remove", "stamp.remove"]);
    let trail = app.get(&format!("/audit?stamp={id}")).await.json();
    let changed = &trail[2];
    assert_eq!(changed["subscription"], TENANT_SUBSCRIPTION.to_lowercase());
    assert_eq!(audited(changed, "billingSubscriptionId")["old"], "billing-1");
    assert_eq!(audited(changed, "billingSubscriptionId")["new"], "billing-2");
    // And `since` keeps what came at or after it; a bad filter is named
    let future = (Utc::now() + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(app.get(&format!("/audit?since={future}")).await.expect(StatusCode::OK).json(), json!([]));
    let fields = app.get("/audit?since=yesterday").await.fields();
    assert_eq!(fields, BTreeSet::from(["since".to_owned()]));
    app.get("/audit?stamp=no-such-stamp").await.expect(StatusCode::NOT_FOUND).problem();
}

// ---------------------------------------------------------------------------------------------------
// Invalid input
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_invalid_registration_field_is_named_with_its_rule_and_nothing_is_written() {
    let app = Harness::start().await;
    let long_name = "n".repeat(129);
    // (a field set to a value it may not take, and that field named in the answer)
    let bad = |case, field, value| (case, with(registration(), field, value), field);
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "missing adminSubscriptionId",
            without(registration(), "adminSubscriptionId"),
            "adminSubscriptionId",
        ),
        ("missing tenantId", without(registration(), "tenantId"), "tenantId"),
        ("missing applicationId", without(registration(), "applicationId"), "applicationId"),
        ("missing adminArmEndpoint", without(registration(), "adminArmEndpoint"), "adminArmEndpoint"),
        bad("bad adminSubscriptionId", "adminSubscriptionId", json!("not-a-guid")),
        bad("short GUID", "adminSubscriptionId", json!("0b9d6e1c-2f4e-4b8a-9c3d")),
        bad("bad tenantId", "tenantId", json!("contoso.onmicrosoft.com")),
        (
            "adfs tenant on Azure AD",
            with(with(registration(), "isAdfs", json!(false)), "tenantId", json!("adfs")),
            "tenantId",
        ),
        bad("bad applicationId", "applicationId", json!("{xyz}")),
        bad("http endpoint", "adminArmEndpoint", json!("http://adminmanagement.local.azurestack.external")),
        bad("relative endpoint", "adminArmEndpoint", json!("adminmanagement.local")),
        bad("endpoint with user", "adminArmEndpoint", json!("https://u:p@adminmanagement.local")),
        bad("endpoint with query", "adminArmEndpoint", json!("https://adminmanagement.local/?x=1")),
        bad("http audience", "tokenRequestResourceUrl", json!("http://management.local")),
        bad("http authority", "authorityEndpointUrl", json!("http://login.local/")),
        bad("endpoint over 256", "adminArmEndpoint", json!(format!("https://azs.local/{}", "a".repeat(256)))),
        bad("short thumbprint", "certificateThumbprint", json!("abc")),
        bad("non-hex thumbprint", "certificateThumbprint", json!("zz".repeat(20))),
        bad("collectFrom not a time", "collectFrom", json!("yesterday")),
        bad("collectFrom not whole hour", "collectFrom", json!("2026-01-01T00:30:00Z")),
        bad("collectFrom in the future", "collectFrom", json!("2100-01-01T00:00:00Z")),
        bad("collectFrom after 2262", "collectFrom", json!("9999-12-31T23:00:00Z")),
        bad("collectFrom before 1677", "collectFrom", json!("1000-01-01T00:00:00Z")),
        (
            "two credentials",
            with(registration(), "credentialSecretName", json!("my-secret")),
            "applicationSecret",
        ),
        ("no credential", without(registration(), "applicationSecret"), "applicationSecret"),
        bad("empty secret", "applicationSecret", json!("  ")),
        bad("password without certificate", "certificatePassword", json!("pw")),
        (
            "unreadable certificate",
            with(without(registration(), "applicationSecret"), "certificate", json!("not a certificate")),
            "certificate",
        ),
        (
            "bad secret name",
            with(
                without(registration(), "applicationSecret"),
                "credentialSecretName",
                json!("no spaces allowed"),
            ),
            "credentialSecretName",
        ),
        (
            "secret name not in the store",
            with(
                without(registration(), "applicationSecret"),
                "credentialSecretName",
                json!("azs-usage/absent"),
            ),
            "credentialSecretName",
        ),
        bad("name too long", "name", json!(long_name)),
        bad("name with control character", "name", json!("a\u{7}b")),
        bad("CA not PEM", "caCertificate", json!("MIIB...")),
        bad("unknown query mode", "queryMode", json!("fast")),
    ];
    // Well-formed, but not usable as things stand (what the secret store holds, what parses): 422,
    // with the same field errors.
    let unusable = ["unreadable certificate", "secret name not in the store"];
    for (case, body, field) in cases {
        let reply = app.post("/stamps?verify=false", &body).await;
        let errors = if unusable.contains(&case) {
            let p = reply.expect(StatusCode::UNPROCESSABLE_ENTITY).problem();
            assert_eq!(p["type"], "tag:azs-usage,2026:problem:unusable-fields", "{case}");
            p["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["field"].as_str().unwrap().to_owned(), e["rule"].as_str().unwrap().to_owned()))
                .collect()
        } else {
            reply.field_errors()
        };
        assert!(
            errors.iter().any(|(f, rule)| f == field && !rule.is_empty()),
            "{case}: {field} not in {errors:?}"
        );
        no_secret_in(&reply);
    }
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn all_invalid_fields_are_reported_at_once() {
    let app = Harness::start().await;
    let body = json!({
        "adminSubscriptionId": "x",
        "applicationId": "y",
        "adminArmEndpoint": "http://insecure",
        "certificateThumbprint": "abc",
        "collectFrom": "9999-01-01T00:00:00Z",
    });

    let fields = app.post("/stamps", &body).await.fields();

    let want = [
        "adminSubscriptionId",
        "tenantId",
        "applicationId",
        "adminArmEndpoint",
        "certificateThumbprint",
        "collectFrom",
        "applicationSecret",
    ];
    assert_eq!(fields, want.iter().map(|f| f.to_string()).collect());
}

#[tokio::test]
async fn wrong_json_types_and_unknown_fields_name_the_field() {
    let app = Harness::start().await;
    let strings = [
        "name",
        "adminSubscriptionId",
        "tenantId",
        "applicationId",
        "certificateThumbprint",
        "adminArmEndpoint",
        "tokenRequestResourceUrl",
        "authorityEndpointUrl",
        "applicationSecret",
        "certificate",
        "certificatePassword",
        "credentialSecretName",
        "caCertificate",
        "collectFrom",
        "queryMode",
    ];
    for field in strings {
        for wrong in [json!(12), json!(true), json!(["a"]), json!({"a": 1})] {
            let errors =
                app.post("/stamps", &with(registration(), field, wrong.clone())).await.field_errors();
            assert_eq!(errors.len(), 1, "{field}={wrong}: {errors:?}");
            assert_eq!(errors[0].0, field, "{field}={wrong}");
        }
    }
    for field in ["isAdfs", "enabled"] {
        let errors = app.post("/stamps", &with(registration(), field, json!("hunter2"))).await.field_errors();
        assert_eq!(errors, vec![(field.to_owned(), "must be a boolean".to_owned())]);
    }
    let reply = app.post("/stamps", &with(registration(), "adminPassword", json!("hunter2"))).await;
    assert_eq!(reply.field_errors(), vec![("adminPassword".into(), "is not a known field".into())]);
    assert!(!String::from_utf8_lossy(&reply.body).contains("hunter2"));
    let patch = app
        .call(Method::PATCH, &format!("/stamps/{}", uuid::Uuid::new_v4()), Some(&json!({"watermark": "x"})))
        .await;
    assert_eq!(patch.field_errors(), vec![("watermark".into(), "is not a known field".into())]);
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn malformed_bodies_answer_400_and_the_wrong_media_type_415() {
    let app = Harness::start().await;
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.request(Method::POST, "/stamps").body(body);
        if let Some(ct) = content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        app.send(request)
    };

    for body in ["{", "", "{\"name\": }", "{} {}", "{\"name\":\"a\",}", "nul"] {
        let p = raw(body, Some("application/json")).await.expect(StatusCode::BAD_REQUEST).problem();
        assert_eq!(p["type"], "tag:azs-usage,2026:problem:malformed-json", "{body:?}");
    }
    for body in ["[]", "\"stamp\"", "42", "null"] {
        let reply = raw(body, Some("application/json")).await;
        assert_eq!(reply.field_errors(), vec![(String::new(), "must be a JSON object".into())], "{body}");
    }
    let duplicate = raw(r#"{"name":"a","name":"b"}"#, Some("application/json")).await;
    assert_eq!(duplicate.fields(), ["name".into()].into());

    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("json"),
        Some("application/jsonx"),
    ] {
        let reply = raw(r#"{"name":"a"}"#, content_type).await;
        reply.expect(StatusCode::UNSUPPORTED_MEDIA_TYPE).problem();
    }
    let charset = raw("{}", Some("application/json; charset=utf-8")).await;
    charset.expect(StatusCode::BAD_REQUEST);
    let id = uuid::Uuid::new_v4();
    for (method, path) in
        [(Method::PATCH, format!("/stamps/{id}")), (Method::PUT, format!("/stamps/{id}/subscriptions/x"))]
    {
        let reply = app.send(app.request(method, &path).header(CONTENT_TYPE, "text/plain").body("{}")).await;
        reply.expect(StatusCode::UNSUPPORTED_MEDIA_TYPE).problem();
    }
    let merge_patch = app
        .send(
            app.request(Method::PATCH, &format!("/stamps/{id}"))
                .header(CONTENT_TYPE, "application/merge-patch+json")
                .body("{}"),
        )
        .await;
    merge_patch.expect(StatusCode::NOT_FOUND);
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn bodies_over_64_kib_answer_413() {
    let app = Harness::start().await;
    let big = with(registration(), "certificate", json!("A".repeat(BODY_LIMIT + 1)));

    let reply = app.post("/stamps", &big).await;

    reply.expect(StatusCode::PAYLOAD_TOO_LARGE).problem();
    let chunked = reqwest::Body::wrap_stream(futures_stream(serde_json::to_vec(&big).unwrap()));
    let reply = app
        .send(app.request(Method::POST, "/stamps").header(CONTENT_TYPE, "application/json").body(chunked))
        .await;
    reply.expect(StatusCode::PAYLOAD_TOO_LARGE).problem();
    let signed = app
        .send(
            app.request(Method::POST, "/stamps")
                .json(&big)
                .header(SIGNATURE_HEADER, format!("sha256={}", "0".repeat(64))),
        )
        .await;
    signed.expect(StatusCode::PAYLOAD_TOO_LARGE).problem();
    app.assert_nothing_written().await;
}

/// A body without a length: chunked transfer encoding, 8 KiB at a time.
fn futures_stream(bytes: Vec<u8>) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(8192).map(|c| Ok(c.to_vec())).collect();
    futures::stream::iter(chunks)
}

#[tokio::test]
async fn the_verify_parameter_must_be_true_or_false() {
    let app = Harness::start().await;
    for query in ["verify=maybe", "verify=", "verify=true&verify=false"] {
        let reply = app.post(&format!("/stamps?{query}"), &registration()).await;
        assert_eq!(reply.fields(), ["verify".into()].into(), "{query}");
    }
    // Platforms add their own parameters (Azure Functions: code=); they are ignored.
    app.post("/stamps?code=abc&verify=FALSE", &registration()).await.expect(StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_paths_answer_404_and_wrong_methods_405_as_problems() {
    let app = Harness::start().await;
    for path in ["/", "/stamp", "/stamps/", "/api/stamps", "/stamps/x/y/z/w"] {
        let p = app.get(path).await.expect(StatusCode::NOT_FOUND).problem();
        assert_eq!(p["type"], "about:blank", "{path}");
        assert_eq!(p["instance"], path);
    }
    let id = uuid::Uuid::new_v4();
    for (method, path, allow) in [
        (Method::DELETE, "/stamps".to_owned(), "GET,HEAD,POST"),
        (Method::PUT, format!("/stamps/{id}"), "GET,HEAD,PATCH,DELETE"),
        (Method::GET, format!("/stamps/{id}/test"), "POST"),
        (Method::POST, format!("/stamps/{id}/subscriptions"), "GET,HEAD"),
        (Method::PATCH, format!("/stamps/{id}/subscriptions/x"), "PUT,DELETE"),
        (Method::OPTIONS, "/stamps".to_owned(), "GET,HEAD,POST"),
    ] {
        let reply = app.call(method.clone(), &path, None).await;
        reply.expect(StatusCode::METHOD_NOT_ALLOWED).problem();
        let allowed: BTreeSet<&str> =
            reply.header("allow").unwrap_or_default().split(',').map(str::trim).collect();
        assert_eq!(allowed, allow.split(',').collect(), "{method} {path}");
    }
}

// ---------------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------------

fn every_route(id: &str) -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/stamps".into()),
        (Method::POST, "/stamps".into()),
        (Method::GET, format!("/stamps/{id}")),
        (Method::PATCH, format!("/stamps/{id}")),
        (Method::DELETE, format!("/stamps/{id}")),
        (Method::POST, format!("/stamps/{id}/test")),
        (Method::GET, format!("/stamps/{id}/subscriptions")),
        (Method::PUT, format!("/stamps/{id}/subscriptions/{TENANT_SUBSCRIPTION}")),
        (Method::DELETE, format!("/stamps/{id}/subscriptions/{TENANT_SUBSCRIPTION}")),
        (Method::GET, format!("/stamps/{id}/unmapped")),
        (Method::GET, "/no/such/path".into()),
        (Method::PUT, "/stamps".into()),
    ]
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_wrong_token_with_401() {
    let app = Harness::start().await;
    let id = app.register(&registration()).await;
    let wrong = [
        None,
        Some("Bearer wrong-token"),
        Some(&*format!("Basic {TOKEN}")),
        Some("Bearer"),
        Some(&*format!("Bearer {TOKEN}x")),
    ];

    for (method, path) in every_route(&id) {
        for authorization in &wrong {
            let mut request =
                app.client.request(method.clone(), format!("{}{path}", app.base)).json(&registration());
            if let Some(value) = authorization {
                request = request.header("authorization", *value);
            }
            let reply = app.send(request).await;
            reply.expect(StatusCode::UNAUTHORIZED).problem();
            assert!(reply.header("www-authenticate").unwrap().starts_with("Bearer"), "{method} {path}");
            no_secret_in(&reply);
        }
    }
    assert_eq!(app.stamp_count().await, 1);
    app.get(&format!("/stamps/{id}")).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn an_empty_configured_token_admits_no_one() {
    let app = Harness::with(Options { auth: ApiAuth::Bearer(Secret::new("")), ..Options::default() }).await;
    let reply =
        app.send(app.client.get(format!("{}/stamps", app.base)).header("authorization", "Bearer ")).await;
    reply.expect(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn platform_authentication_lets_every_request_through_and_the_prefix_moves_every_route() {
    let app =
        Harness::with(Options { auth: ApiAuth::PlatformOnly, prefix: Some("api/"), ..Options::default() })
            .await;
    let anonymous = |method: Method, path: &str| app.client.request(method, format!("{}{path}", app.base));

    let created = app.send(anonymous(Method::POST, "/api/stamps?verify=false").json(&registration())).await;
    created.expect(StatusCode::CREATED);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), Some(format!("/api/stamps/{id}").as_str()));
    app.send(anonymous(Method::GET, &format!("/api/stamps/{id}"))).await.expect(StatusCode::OK);
    app.send(anonymous(Method::GET, "/stamps")).await.expect(StatusCode::NOT_FOUND).problem();
    let duplicate = app.send(anonymous(Method::POST, "/api/stamps?verify=false").json(&registration())).await;
    assert_eq!(
        duplicate.expect(StatusCode::CONFLICT).header("location"),
        Some(format!("/api/stamps/{id}").as_str())
    );
    let p =
        app.send(anonymous(Method::GET, "/api/stamps/nope")).await.expect(StatusCode::NOT_FOUND).problem();
    assert_eq!(p["instance"], "/api/stamps/nope");
}

fn hmac_hex(body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_body_signature_is_checked_when_sent_and_never_replaces_the_token() {
    let app = Harness::start().await;
    let body = serde_json::to_vec(&registration()).unwrap();
    let post = |signature: String, bearer: bool| {
        let mut request = app
            .client
            .post(format!("{}/stamps?verify=false", app.base))
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone());
        if bearer {
            request = request.bearer_auth(TOKEN);
        }
        app.send(request)
    };

    post(format!("sha256={}", hmac_hex(b"{}")), true).await.expect(StatusCode::UNAUTHORIZED).problem();
    post("sha256=xyz".into(), true).await.expect(StatusCode::UNAUTHORIZED).problem();
    post(format!("sha256={}", hmac_hex(&body)), false).await.expect(StatusCode::UNAUTHORIZED).problem();
    app.assert_nothing_written().await;
    post(format!("sha256={}", hmac_hex(&body)), true).await.expect(StatusCode::CREATED);
}

#[tokio::test]
async fn the_token_may_travel_in_x_azs_api_token_leaving_authorization_to_the_platform() {
    let app = Harness::start().await;
    // What a Lambda function URL with AWS_IAM auth needs in Authorization: the caller's SigV4 signature.
    let sigv4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/lambda/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-azs-api-token, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
    let request = |method: Method, path: &str| {
        app.client.request(method, format!("{}{path}", app.base)).header("authorization", sigv4)
    };

    // Given a SigV4 Authorization and the right token in X-Azs-Api-Token, when it registers and
    // lists, then it is admitted (a signature over the body is still checked against the same token)
    let body = serde_json::to_vec(&registration()).unwrap();
    let created = app
        .send(
            request(Method::POST, "/stamps?verify=false")
                .header(TOKEN_HEADER, TOKEN)
                .header(CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, format!("sha256={}", hmac_hex(&body)))
                .body(body),
        )
        .await;
    created.expect(StatusCode::CREATED);
    let listed = app.send(request(Method::GET, "/stamps").header(TOKEN_HEADER, TOKEN)).await;
    assert_eq!(listed.expect(StatusCode::OK).json().as_array().unwrap().len(), 1);

    // When X-Azs-Api-Token is present it is the token checked: a wrong or empty one is refused
    // even next to a correct bearer token
    for wrong in ["wrong-token", "", &format!("{TOKEN}x")] {
        let reply = app
            .send(
                app.client.get(format!("{}/stamps", app.base)).bearer_auth(TOKEN).header(TOKEN_HEADER, wrong),
            )
            .await;
        reply.expect(StatusCode::UNAUTHORIZED).problem();
        assert!(reply.header("www-authenticate").unwrap().contains("invalid_token"), "{wrong:?}");
    }
    // And SigV4 alone is no token
    let reply = app.send(request(Method::GET, "/stamps")).await;
    reply.expect(StatusCode::UNAUTHORIZED).problem();
    assert!(reply.problem()["detail"].as_str().unwrap().contains("X-Azs-Api-Token"));
}

/// Sends `head` (a request's line and headers) on a fresh connection and waits at most `within` for
/// the first bytes of an answer; never sends a body.
async fn answer_to_head(base: &str, head: &str, within: std::time::Duration) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(within, socket.read(&mut answer)).await.ok()?.unwrap();
    Some(String::from_utf8_lossy(&answer[..n]).into_owned())
}

#[tokio::test]
async fn a_caller_without_the_token_is_refused_before_its_body_is_read() {
    let app = Harness::start().await;
    let head = |credential: &str| {
        format!(
            "POST /stamps?verify=false HTTP/1.1\r\nHost: localhost\r\n{credential}\r\n\
             Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
        )
    };
    let second = std::time::Duration::from_secs(1);

    // Given requests that announce a 60000-byte body and never send a byte of it, when the token is
    // missing or wrong, then the 401 arrives at once: the server did not wait for the body
    for credential in
        ["Authorization: Bearer wrong-token", &format!("X-Azs-Api-Token: {TOKEN}x"), "Accept: */*"]
    {
        let answer = answer_to_head(&app.base, &head(credential), second).await;
        let answer = answer.unwrap_or_else(|| panic!("no answer within a second for {credential:?}"));
        assert!(answer.starts_with("HTTP/1.1 401"), "{credential:?}: {answer}");
    }
    // When the token is right, the server waits for the body it was promised
    let answer = answer_to_head(&app.base, &head(&format!("Authorization: Bearer {TOKEN}")), second).await;
    assert_eq!(answer, None, "an authenticated request is answered only once its body has arrived");
    app.assert_nothing_written().await;
}

// ---------------------------------------------------------------------------------------------------
// Failures of the store and the secret store
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_secret_store_that_fails_answers_503_with_retry_after_and_no_stamp_is_stored() {
    let app = Harness::start().await;
    app.faults.fail_put_secret.store(true, Ordering::SeqCst);

    let reply = app.post("/stamps?verify=false", &registration()).await;

    let p = reply.expect(StatusCode::SERVICE_UNAVAILABLE).problem();
    assert!(reply.header("retry-after").is_some());
    assert!(!p["detail"].as_str().unwrap().contains("injected"), "infrastructure details leaked: {p}");
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn a_database_that_fails_the_insert_answers_503_and_the_credential_is_deleted_again() {
    let app = Harness::start().await;
    app.faults.fail_insert.store(true, Ordering::SeqCst);

    let reply = app.post("/stamps?verify=false", &registration()).await;

    reply.expect(StatusCode::SERVICE_UNAVAILABLE).problem();
    assert!(reply.header("retry-after").is_some());
    assert_eq!(app.faults.secrets_put.load(Ordering::SeqCst), 1, "the credential was written first");
    assert_eq!(app.faults.secrets_deleted.load(Ordering::SeqCst), 1, "and deleted again");
    app.assert_nothing_written().await;

    app.faults.fail_insert.store(false, Ordering::SeqCst);
    app.post("/stamps?verify=false", &registration()).await.expect(StatusCode::CREATED);
}

#[tokio::test]
async fn a_panicking_handler_answers_500_as_a_problem_and_the_app_keeps_serving() {
    let app = Harness::start().await;
    app.faults.panic_on_list.store(true, Ordering::SeqCst);

    app.get("/stamps").await.expect(StatusCode::INTERNAL_SERVER_ERROR).problem();

    app.faults.panic_on_list.store(false, Ordering::SeqCst);
    app.get("/stamps").await.expect(StatusCode::OK);
}

/// Everything this test binary logs. A global subscriber, set once: thread-scoped ones lose events
/// to tracing's per-callsite interest cache when tests run in parallel.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_log() -> &'static CapturedLog {
    static LOG: std::sync::OnceLock<CapturedLog> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = CapturedLog::default();
        let writer = log.clone();
        tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).init();
        log
    })
}

#[tokio::test]
async fn each_request_is_logged_with_method_route_status_and_request_id_but_no_body_or_header() {
    let log = captured_log();
    let app = Harness::start().await;

    let created = app
        .send(
            app.request(Method::POST, "/stamps?verify=false")
                .json(&registration())
                .header("x-request-id", "req-0042"),
        )
        .await;
    created.expect(StatusCode::CREATED);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let shown = app
        .send(app.request(Method::GET, &format!("/stamps/{id}")).header("x-request-id", "evil id\twith tab"))
        .await;
    let missing = app.get("/stamps/abc%0AFAKE-LOG-LINE").await;
    missing.expect(StatusCode::NOT_FOUND);

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line_of = |reply: &Reply| {
        let request_id = reply.header("x-request-id").unwrap().to_owned();
        let lines: Vec<&str> =
            text.lines().filter(|l| l.contains("webhook request") && l.contains(&request_id)).collect();
        assert_eq!(lines.len(), 1, "one log event for {request_id}: {text}");
        lines[0].to_owned()
    };
    let (post, get, miss) = (line_of(&created), line_of(&shown), line_of(&missing));
    assert_eq!(created.header("x-request-id"), Some("req-0042"), "the caller's request id is kept");
    assert!(
        post.contains("method=POST") && post.contains(r#"route="/stamps""#) && post.contains("status=201"),
        "{post}"
    );
    assert!(get.contains(r#"route="/stamps/{id}""#) && !get.contains(&id), "the route, not the path: {get}");
    assert!(
        !shown.header("x-request-id").unwrap().contains("evil"),
        "a request id that is not a plain token is replaced"
    );
    assert!(miss.contains("status=404"), "{miss}");
    for line in [&post, &get, &miss] {
        for leak in [GOOD_SECRET, TOKEN, "FAKE-LOG-LINE", "stamp-eu-1", "Bearer"] {
            assert!(!line.contains(leak), "{leak} reached the request log: {line}");
        }
    }
    assert!(!text.contains(GOOD_SECRET) && !text.contains(TOKEN), "a secret reached the log: {text}");
}

// ---------------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------------

mod hostile {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    /// One request aimed at POST /stamps, PATCH /stamps/{id} or PUT .../subscriptions/{sub}.
    #[derive(Debug, Clone)]
    pub struct Attack {
        method: Method,
        path: String,
        content_type: Option<String>,
        authorization: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "\\PC{0,24}",
            "[\\x00-\\x1f\"\\\\]{0,8}",
            Just(String::new()),
            Just("\u{202e}\u{0}\u{feff}".to_owned()),
            Just("x".repeat(5000)),
            Just("../../etc/passwd".to_owned()),
            Just("https://adminmanagement.local.azurestack.external".to_owned()),
            Just("0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f".to_owned()),
            Just("'; DROP TABLE stamps; --".to_owned()),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIELDS: &[&str] = &[
        "name",
        "adminSubscriptionId",
        "tenantId",
        "applicationId",
        "certificateThumbprint",
        "adminArmEndpoint",
        "tokenRequestResourceUrl",
        "authorityEndpointUrl",
        "isAdfs",
        "applicationSecret",
        "certificate",
        "certificatePassword",
        "credentialSecretName",
        "caCertificate",
        "collectFrom",
        "enabled",
        "queryMode",
        "billingSubscriptionId",
        "unknownField",
    ];

    /// A registration with random fields replaced, then one rule surely broken, so none can succeed.
    fn near_registration() -> impl Strategy<Value = Value> {
        let broken: &[(&str, Value)] = &[
            ("adminSubscriptionId", json!("not-a-guid")),
            ("adminArmEndpoint", json!("http://adminmanagement.local.azurestack.external")),
            ("tenantId", Value::Null),
            ("certificateThumbprint", json!("abc")),
            ("credentialSecretName", json!("second-credential")),
            ("collectFrom", json!("2999-01-01T00:00:00Z")),
        ];
        let broken = broken.to_vec();
        (
            prop::collection::vec((prop::sample::select(FIELDS), json_value()), 0..5),
            prop::sample::select(broken),
        )
            .prop_map(|(changes, (field, value))| {
                let mut body = registration();
                for (f, v) in changes {
                    body[f] = v;
                }
                body[field] = value;
                body
            })
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => near_registration().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            2 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            2 => prop::collection::btree_map(prop::sample::select(FIELDS), json_value(), 0..8)
                .prop_map(|m| serde_json::to_vec(&m).unwrap()),
            2 => prop::collection::vec(any::<u8>(), 0..400),
            1 => (1usize..3000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
            1 => (1usize..200).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
            1 => Just(vec![b' '; BODY_LIMIT + 1]),
            1 => Just(br#"{"name":"a","name":"b","name":"c"}"#.to_vec()),
            1 => Just(b"{\"name\":\"\xff\xfe\"}".to_vec()),
        ]
    }

    fn segment() -> impl Strategy<Value = String> {
        let encode = |s: String| {
            url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
        };
        prop_oneof![
            Just(uuid::Uuid::new_v4().to_string()),
            Just(uuid::Uuid::new_v4().to_string().to_uppercase()),
            "[A-Za-z0-9._~-]{1,40}",
            text().prop_filter("not empty", |s| !s.is_empty()).prop_map(encode),
            Just("%FF%FE".to_owned()),
            Just("%00".to_owned()),
            Just("..".to_owned()),
            Just("a".repeat(3000)),
        ]
    }

    fn query() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("?verify=false".to_owned()),
            Just("?verify=true".to_owned()),
            Just("?verify=maybe".to_owned()),
            Just("?verify=false&verify=true".to_owned()),
            "\\?[A-Za-z0-9=&%]{0,30}",
        ]
    }

    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Bytes a header value may carry: visible ASCII, space, tab and obs-text.
        prop::collection::vec(prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff], 0..80)
    }

    /// Requests that can only fail: new stamps that break a rule, changes to stamps that do not exist.
    fn attack() -> impl Strategy<Value = Attack> {
        attack_on(prop_oneof![
            2 => query().prop_map(|q| (Method::POST, format!("/stamps{q}"))),
            1 => (segment(), query()).prop_map(|(id, q)| (Method::PATCH, format!("/stamps/{id}{q}"))),
            1 => (segment(), segment()).prop_map(|(id, sub)| (Method::PUT, format!("/stamps/{id}/subscriptions/{sub}"))),
        ])
    }

    /// Changes to a stamp that exists (unverified, so they never leave the machine); some may succeed.
    fn attack_stamp(id: String) -> impl Strategy<Value = Attack> {
        let patch = Just((Method::PATCH, format!("/stamps/{id}?verify=false")));
        let put = segment().prop_map(move |sub| (Method::PUT, format!("/stamps/{id}/subscriptions/{sub}")));
        attack_on(prop_oneof![patch, put])
    }

    fn attack_on(target: impl Strategy<Value = (Method, String)>) -> impl Strategy<Value = Attack> {
        let content_type = prop_oneof![
            6 => Just(Some("application/json".to_owned())),
            1 => Just(None),
            1 => Just(Some("text/plain".to_owned())),
            1 => Just(Some("application/json; charset=utf-16".to_owned())),
            1 => Just(Some("application/merge-patch+json".to_owned())),
            1 => "[ -~]{0,40}".prop_map(Some),
        ];
        let authorization = prop_oneof![
            8 => Just(Some(format!("Bearer {TOKEN}").into_bytes())),
            1 => Just(None),
            1 => header_bytes().prop_map(Some),
        ];
        let names = prop::sample::select(vec![
            "x-request-id",
            "x-azs-signature",
            "accept",
            "content-encoding",
            "x-forwarded-for",
            "cookie",
            "x-http-method-override",
            "expect",
            "x-ms-client-principal",
        ]);
        let headers = prop::collection::vec((names.prop_map(str::to_owned), header_bytes()), 0..4);
        (target, content_type, authorization, headers, body()).prop_map(
            |((method, path), content_type, authorization, headers, body)| Attack {
                method,
                path,
                content_type,
                authorization,
                headers,
                body,
            },
        )
    }

    /// Sends `attack`. Every answer is below 500 and every error a problem; with `must_fail`, every
    /// answer is a 4xx.
    async fn launch(app: &Harness, attack: &Attack, must_fail: bool) -> Result<(), TestCaseError> {
        let Ok(url) = reqwest::Url::parse(&format!("{}{}", app.base, attack.path)) else {
            return Ok(()); // not a request a client could send
        };
        let mut request = app.client.request(attack.method.clone(), url).body(attack.body.clone());
        if let Some(ct) = &attack.content_type {
            let Ok(value) = reqwest::header::HeaderValue::from_str(ct) else { return Ok(()) };
            request = request.header(CONTENT_TYPE, value);
        }
        if let Some(auth) = &attack.authorization {
            request =
                request.header("authorization", reqwest::header::HeaderValue::from_bytes(auth).unwrap());
        }
        for (name, value) in &attack.headers {
            if name == "expect" || name == "content-encoding" {
                continue; // these change the transfer itself; hyper's answers to them are not the app's
            }
            request = request.header(name.as_str(), reqwest::header::HeaderValue::from_bytes(value).unwrap());
        }
        let reply = app.send(request).await;
        prop_assert!(!reply.status.is_server_error(), "{} for {attack:?}", reply.status);
        if !must_fail && reply.status.is_success() {
            return Ok(());
        }
        prop_assert!(
            reply.status.is_client_error(),
            "{} for {attack:?}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        prop_assert_eq!(reply.header("content-type"), Some(PROBLEM_JSON));
        let p: Value = serde_json::from_slice(&reply.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&p["status"], &json!(reply.status.as_u16()));
        prop_assert!(p["type"].is_string() && p["title"].is_string());
        Ok(())
    }

    #[test]
    fn thousands_of_hostile_requests_get_4xx_problems_and_write_nothing() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let app = rt.block_on(Harness::start());
        let config = Config { cases: 2400, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        runner.run(&attack(), |attack| rt.block_on(launch(&app, &attack, true))).unwrap();
        rt.block_on(app.assert_nothing_written());
        assert_eq!(app.faults.secrets_put.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn hostile_changes_to_a_registered_stamp_never_get_a_5xx_and_leave_it_readable() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let app = rt.block_on(Harness::start());
        let id = rt.block_on(app.register(&registration()));
        let config = Config { cases: 600, failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new(config);
        runner.run(&attack_stamp(id.clone()), |attack| rt.block_on(launch(&app, &attack, false))).unwrap();
        rt.block_on(async {
            app.get(&format!("/stamps/{id}")).await.expect(StatusCode::OK);
            app.get(&format!("/stamps/{id}/subscriptions")).await.expect(StatusCode::OK);
            assert_eq!(app.stamp_count().await, 1);
        });
    }
}

// ---------------------------------------------------------------------------------------------------
// The OpenAPI document
// ---------------------------------------------------------------------------------------------------

const METHODS: [&str; 6] = ["get", "post", "put", "patch", "delete", "options"];

fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml exists");
    serde_norway::from_str(&text).expect("docs/openapi.yaml is YAML")
}

/// True when the router has no route for this method and path (as opposed to an answer from a route).
fn is_route_miss(reply: &Reply) -> bool {
    reply.status == StatusCode::METHOD_NOT_ALLOWED
        || (reply.status == StatusCode::NOT_FOUND && reply.problem()["type"] == "about:blank")
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"].as_object().expect("a schema with properties").keys().cloned().collect()
}

/// The fields serde accepts, read from its own "unknown field" message (which lists them all).
fn accepted_fields<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> BTreeSet<String> {
    let e = serde_json::from_str::<T>(r#"{"\u0001": 0}"#).unwrap_err().to_string();
    let list = e.split("expected one of ").nth(1).expect("serde lists the fields");
    list.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn sample(schema: &Value, doc: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        return sample(&doc["components"]["schemas"][name], doc);
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("boolean") => json!(true),
        Some("integer") | Some("number") => json!(1),
        Some("array") => json!([]),
        Some("object") => json!({}),
        _ => json!("x"),
    }
}

#[tokio::test]
async fn openapi_document_matches_the_router() {
    let doc = openapi();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"), "an OpenAPI 3.0 document");
    let app = Harness::with_stamp().await;
    let id = app.register(&app.stamp_registration()).await;
    let concrete = |template: &str| {
        template
            .replace("{id}", &id)
            .replace("{externalSubscriptionId}", TENANT_SUBSCRIPTION)
            .replace("{bookId}", "standard")
            .replace("{billingSubscriptionId}", "cust-a")
            .replace("{month}", "2026-11")
    };

    let schemas = &doc["components"]["schemas"];

    // What the app answers has the documented members.
    let view = app.get(&format!("/stamps/{id}")).await.json();
    let view_members: BTreeSet<String> = view.as_object().unwrap().keys().cloned().collect();
    assert_eq!(view_members, property_names(&schemas["StampView"]));
    let status_members: BTreeSet<String> = view["status"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(status_members, property_names(&schemas["ProcessingStatus"]));
    let connection: BTreeSet<String> = view["connection"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(connection, property_names(&schemas["StampConnection"]));
    let report = app.call(Method::POST, &format!("/stamps/{id}/test"), None).await.json();
    let report_members: BTreeSet<String> = report.as_object().unwrap().keys().cloned().collect();
    // A test that passed: `ok` and the report's members (`failure` only when it did not).
    let mut passed = property_names(&schemas["ConnectionReport"]);
    passed.insert("ok".to_owned());
    assert_eq!(report_members, passed);
    let result = property_names(&schemas["TestResult"]);
    assert_eq!(result, passed.iter().cloned().chain(["failure".to_owned()]).collect());
    // An audit record (a stamp's: no subscription) and its field changes have the documented members.
    let trail = app.get("/audit").await.json();
    let record = &trail[0];
    let record_members: BTreeSet<String> = record.as_object().unwrap().keys().cloned().collect();
    let mut documented = property_names(&schemas["AuditRecord"]);
    documented.remove("subscription");
    assert_eq!(record_members, documented, "{record}");
    let change_members: BTreeSet<String> = record["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c.as_object().unwrap().keys().cloned())
        .collect();
    // (A registration has no old values; the PATCH tests show `old`.)
    let expected: BTreeSet<String> = ["field", "new", "secret"].map(str::to_owned).into();
    assert_eq!(change_members, expected, "{record}");
    assert!(change_members.is_subset(&property_names(&schemas["FieldChange"])));
    // Every documented operation is served, and every method the document leaves out is refused.
    let paths = doc["paths"].as_object().unwrap();
    for (template, item) in paths {
        for method in METHODS {
            let reply = app
                .call(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &concrete(template),
                    None,
                )
                .await;
            let documented = item.get(method).is_some();
            assert_eq!(
                !is_route_miss(&reply),
                documented,
                "{method} {template}: {} (documented: {documented})",
                reply.status
            );
            if documented {
                let statuses = item[method]["responses"].as_object().unwrap();
                assert!(
                    statuses.contains_key(reply.status.as_str()),
                    "{method} {template} answered an undocumented {}",
                    reply.status
                );
            }
        }
    }
    // Paths the document does not list are not served, whatever the method.
    for path in [
        "/",
        "/stamps/{id}/mappings",
        "/stamps/{id}/subscriptions/{externalSubscriptionId}/rows",
        "/openapi.yaml",
        "/health",
        "/stamps/{id}/test/x",
    ] {
        for method in METHODS {
            let reply = app
                .call(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), &concrete(path), None)
                .await;
            assert!(is_route_miss(&reply), "{method} {path} is served but not documented");
        }
    }

    // The documented bodies are exactly what the handlers accept.
    let registration_fields = property_names(&schemas["StampRegistration"]);
    assert_eq!(registration_fields, accepted_fields::<azs_core::registration::StampRegistration>());
    assert_eq!(property_names(&schemas["StampPatch"]), accepted_fields::<azs_app::registrar::StampPatch>());
    for field in &registration_fields {
        let body =
            json!({ field.as_str(): sample(&schemas["StampRegistration"]["properties"][field], &doc) });
        let errors = app.post("/stamps?verify=false", &body).await.field_errors();
        assert!(
            !errors.iter().any(|(_, rule)| rule == "is not a known field"),
            "{field} is documented but refused: {errors:?}"
        );
    }
    for field in property_names(&schemas["StampPatch"]) {
        let body = json!({ field.as_str(): sample(&schemas["StampPatch"]["properties"][&field], &doc) });
        let reply = app
            .call(Method::PATCH, &format!("/stamps/{}?verify=false", uuid::Uuid::new_v4()), Some(&body))
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{field} is documented but refused");
    }
    let undocumented = app.post("/stamps", &json!({"adminPassword": "x"})).await;
    assert_eq!(undocumented.field_errors(), vec![("adminPassword".into(), "is not a known field".into())]);
    let mapping = property_names(&schemas["MappingRequest"]);
    assert_eq!(mapping, ["billingSubscriptionId".to_owned()].into());

    // Either documented way of sending the token is the one the router reads.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["apiTokenHeader"]["in"], "header");
    let header = schemes["apiTokenHeader"]["name"].as_str().unwrap();
    assert!(header.eq_ignore_ascii_case(TOKEN_HEADER), "{header}");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer");
    let alternatives: BTreeSet<String> = doc["security"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|requirement| requirement.as_object().unwrap().keys().cloned())
        .collect();
    assert_eq!(alternatives, ["apiTokenHeader".to_owned(), "bearerAuth".to_owned()].into());
    let reply = app.send(app.client.get(format!("{}/stamps", app.base)).header(header, TOKEN)).await;
    reply.expect(StatusCode::OK);

    let problem = app.get("/stamps/nope").await.problem();
    for member in problem.as_object().unwrap().keys() {
        assert!(
            schemas["Problem"]["properties"].get(member).is_some(),
            "problem member {member} is not documented"
        );
    }
}
