//! Outbound calls under control, through the webhook as a caller uses it: the real `Services`
//! (SQLite, the file secret store, the real stamp client) behind the router over real HTTP, and a
//! stand-in stamp over real HTTPS (a throw-away CA the registration trusts) that answers what each test
//! needs: a redirect, an `http://` login endpoint, a login endpoint outside the allow-list, silence.
//! Each refusal is a clear problem, nothing is stored, and the host that should not be called is not.

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use azs_app::config::AppConfig;
use azs_app::webhook::{ApiAuth, router};
use azs_app::wiring::Services;
use azs_core::Secret;
use azs_core::registration::MAX_URL_LEN;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "outbound-test-token-6a0c2f";

/// What the stand-in stamp answers to `GET /metadata/endpoints`.
#[derive(Clone)]
enum Metadata {
    /// `302 Found` to another path on the same host (which counts its visitors).
    Redirect,
    /// A metadata document naming this login endpoint.
    Login(String),
}

/// An HTTPS server on 127.0.0.1 with a certificate from its own CA; counts every request.
struct FakeStamp {
    url: String,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
    redirected_to: Arc<AtomicUsize>,
}

async fn fake_stamp(metadata: Metadata) -> FakeStamp {
    let (ca_pem, tls) = test_tls();
    let requests = Arc::new(AtomicUsize::new(0));
    let redirected_to = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (counted, landed, target) = (requests.clone(), redirected_to.clone(), format!("{url}/elsewhere"));
    let app = Router::new().fallback(move |uri: Uri| {
        let (metadata, counted, landed, target) =
            (metadata.clone(), counted.clone(), landed.clone(), target.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            answer(&uri, &metadata, &landed, &target)
        }
    });
    let server =
        axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(tls));
    tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });
    FakeStamp { url, ca_pem, requests, redirected_to }
}

fn answer(uri: &Uri, metadata: &Metadata, landed: &AtomicUsize, target: &str) -> Response {
    if uri.path() == "/elsewhere" {
        landed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::OK, "followed").into_response();
    }
    match metadata {
        Metadata::Redirect => (StatusCode::FOUND, [("location", target.to_owned())]).into_response(),
        Metadata::Login(login) => axum::Json(json!({
            "galleryEndpoint": "https://adminportal.local.azurestack.external:30015/",
            "graphEndpoint": "https://graph.windows.net/",
            "portalEndpoint": "https://adminportal.local.azurestack.external/",
            "authentication": {
                "loginEndpoint": login,
                "audiences": ["https://adminmanagement.contoso.onmicrosoft.com/4de154de-f8a8-4017-af41-df619da68155"]
            }
        }))
        .into_response(),
    }
}

fn test_tls() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "azs-usage outbound test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), CertificateDer::from(ca.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca.pem(), Arc::new(config))
}

/// A plain TCP listener that counts connections and never answers (a blackholed or silent host).
async fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, accepted)
}

/// The webhook with the real services, `allowed` as `AZS_USAGE_ALLOWED_STAMP_HOSTS`; its base URL.
async fn webhook(dir: &std::path::Path, allowed: Option<&str>) -> String {
    let database = format!("sqlite:{}", dir.join("usage.db").display());
    let secrets = format!("file:{}", dir.join("secrets.json").display());
    let config = AppConfig::from_lookup(|name| match name {
        "AZS_USAGE_DATABASE" => Some(database.clone()),
        "AZS_USAGE_SECRETS" => Some(secrets.clone()),
        "AZS_USAGE_ALLOWED_STAMP_HOSTS" => allowed.map(str::to_owned),
        _ => None,
    })
    .unwrap();
    let services = Services::build(&config).await.unwrap();
    let app = router(services.administration(), ApiAuth::Bearer(Secret::new(TOKEN)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn registration(admin_arm: &str, ca_pem: Option<&str>) -> Value {
    let mut body = json!({
        "name": "stamp-eu-1",
        "adminSubscriptionId": "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f",
        "tenantId": "4de154de-f8a8-4017-af41-df619da68155",
        "applicationId": "11111111-2222-3333-4444-555555555555",
        "adminArmEndpoint": admin_arm,
        "applicationSecret": "outbound-client-secret-1f9e"
    });
    if let Some(pem) = ca_pem {
        body["caCertificate"] = json!(pem);
    }
    body
}

async fn post(base: &str, path: &str, body: Option<&Value>) -> (reqwest::StatusCode, Value) {
    let mut request = reqwest::Client::new().post(format!("{base}{path}")).bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.timeout(Duration::from_secs(60)).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn stored_stamps(base: &str) -> Vec<Value> {
    let response =
        reqwest::Client::new().get(format!("{base}/stamps")).bearer_auth(TOKEN).send().await.unwrap();
    response.json::<Vec<Value>>().await.unwrap()
}

#[tokio::test]
async fn a_redirect_from_the_stamp_is_not_followed_and_the_registration_is_refused_with_a_clear_problem() {
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), None).await;
    let stamp = fake_stamp(Metadata::Redirect).await;

    let (status, problem) =
        post(&base, "/stamps?verify=true", Some(&registration(&stamp.url, Some(&stamp.ca_pem)))).await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["stage"], "discovery", "{problem}");
    assert_eq!(problem["upstreamStatus"], 302, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("redirects are never followed"), "{detail}");
    assert_eq!(stamp.redirected_to.load(Ordering::SeqCst), 0, "the redirect target was never called");
    assert!(stored_stamps(&base).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn an_http_login_endpoint_is_refused_before_anything_is_sent_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), None).await;
    let (port, connections) = silent_listener().await;
    let stamp = fake_stamp(Metadata::Login(format!("http://127.0.0.1:{port}/"))).await;

    let (status, problem) =
        post(&base, "/stamps?verify=true", Some(&registration(&stamp.url, Some(&stamp.ca_pem)))).await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["stage"], "discovery", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("login endpoint") && detail.contains("not https"), "{detail}");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the http:// login endpoint was never contacted");
    assert!(stored_stamps(&base).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn an_overlong_discovered_login_endpoint_is_refused_as_the_stamps_fault_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), None).await;
    let (port, connections) = silent_listener().await;
    let login = format!("https://127.0.0.1:{port}/{}", "a".repeat(MAX_URL_LEN));
    let stamp = fake_stamp(Metadata::Login(login)).await;

    let (status, problem) =
        post(&base, "/stamps?verify=true", Some(&registration(&stamp.url, Some(&stamp.ca_pem)))).await;

    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["stage"], "discovery", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("loginEndpoint") && detail.contains(&format!("at most {MAX_URL_LEN}")),
        "{detail}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the login endpoint was never contacted");
    assert!(stored_stamps(&base).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn an_admin_arm_host_outside_the_allow_list_is_refused_at_registration_without_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), Some("*.azurestack.contoso.com, 10.20.0.0/16")).await;
    let stamp = fake_stamp(Metadata::Login("https://login.windows.net/".into())).await;

    for verify in ["true", "false"] {
        let (status, problem) = post(
            &base,
            &format!("/stamps?verify={verify}"),
            Some(&registration(&stamp.url, Some(&stamp.ca_pem))),
        )
        .await;
        assert_eq!(status, 422, "{problem}");
        let errors = problem["errors"].as_array().unwrap();
        assert!(
            errors.iter().any(|e| e["field"] == "adminArmEndpoint"
                && e["rule"].as_str().unwrap().contains("AZS_USAGE_ALLOWED_STAMP_HOSTS")),
            "{problem}"
        );
    }
    assert_eq!(stamp.requests.load(Ordering::SeqCst), 0, "the stamp was never called");
    assert!(stored_stamps(&base).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn a_discovered_login_endpoint_outside_the_allow_list_is_not_called() {
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), Some("127.0.0.1")).await;
    // 10.255.255.1 is not routable: were it called, the test would wait for the connect timeout.
    let stamp = fake_stamp(Metadata::Login("https://10.255.255.1/".into())).await;

    let started = Instant::now();
    let (status, problem) =
        post(&base, "/stamps?verify=true", Some(&registration(&stamp.url, Some(&stamp.ca_pem)))).await;

    assert_eq!(status, 422, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("10.255.255.1") && detail.contains("AZS_USAGE_ALLOWED_STAMP_HOSTS"), "{detail}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused without trying: {:?}", started.elapsed());
    assert!(stored_stamps(&base).await.is_empty(), "nothing stored");
}

/// Registers (without verification) a stamp at `admin_arm` and times `POST /stamps/{id}/test`.
async fn test_unreachable(admin_arm: &str) -> (reqwest::StatusCode, Value, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), None).await;
    let (status, created) = post(&base, "/stamps?verify=false", Some(&registration(admin_arm, None))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let (status, problem) = post(&base, &format!("/stamps/{id}/test"), None).await;
    (status, problem, started.elapsed())
}

#[tokio::test]
async fn test_of_a_host_that_accepts_and_never_answers_answers_within_30_seconds() {
    let (port, connections) = silent_listener().await;
    let (status, problem, took) = test_unreachable(&format!("https://127.0.0.1:{port}")).await;
    println!("POST /stamps/{{id}}/test against a silent listener answered in {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(status, 422, "{problem}");
    assert!(connections.load(Ordering::SeqCst) >= 1, "the listener was reached");
    let detail = problem["detail"].as_str().unwrap();
    assert!(!detail.contains("os error") && !detail.contains("tcp connect"), "no transport chain: {detail}");
}

#[tokio::test]
async fn test_of_a_non_routable_address_answers_within_30_seconds() {
    let (status, problem, took) = test_unreachable("https://10.255.255.1").await;
    println!("POST /stamps/{{id}}/test against 10.255.255.1 answered in {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(status, 422, "{problem}");
}
