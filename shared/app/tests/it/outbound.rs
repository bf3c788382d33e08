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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "outbound-test-token-6a0c2f";
/// The stand-in stamps listen here; the outbound policy admits loopback only when it is named.
const LOOPBACK: &str = "127.0.0.1";

/// What the stand-in stamp answers to `GET /metadata/endpoints`.
#[derive(Clone)]
enum Metadata {
    /// `302 Found` to another path on the same host (which counts its visitors).
    Redirect,
    /// A metadata document naming this login endpoint.
    Login(String),
    /// A metadata document naming this server itself as the login endpoint, whose openid
    /// configuration names its own token endpoint.
    OwnLogin,
    /// [`Metadata::OwnLogin`], but the openid configuration names this token endpoint.
    OwnLoginTokenAt(String),
    /// This body, verbatim, as JSON.
    Raw(&'static str),
}

/// An HTTPS server on 127.0.0.1 with a certificate from its own CA; counts every request.
struct FakeStamp {
    url: String,
    ca_pem: String,
    requests: Arc<AtomicUsize>,
    redirected_to: Arc<AtomicUsize>,
    /// What it answers to `GET /metadata/endpoints` from now on.
    metadata: Arc<Mutex<Metadata>>,
}

async fn fake_stamp(metadata: Metadata) -> FakeStamp {
    let metadata = Arc::new(Mutex::new(metadata));
    let shared = metadata.clone();
    let (ca_pem, tls) = test_tls();
    let requests = Arc::new(AtomicUsize::new(0));
    let redirected_to = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (counted, landed, target) = (requests.clone(), redirected_to.clone(), format!("{url}/elsewhere"));
    let app = Router::new().fallback(move |uri: Uri| {
        let metadata = shared.lock().unwrap().clone();
        let (counted, landed, target) = (counted.clone(), landed.clone(), target.clone());
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
    FakeStamp { url, ca_pem, requests, redirected_to, metadata }
}

fn answer(uri: &Uri, metadata: &Metadata, landed: &AtomicUsize, target: &str) -> Response {
    if uri.path() == "/elsewhere" {
        landed.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::OK, "followed").into_response();
    }
    let own = target.trim_end_matches("/elsewhere");
    if uri.path().ends_with("/.well-known/openid-configuration") {
        let token_endpoint = match metadata {
            Metadata::OwnLoginTokenAt(elsewhere) => elsewhere.clone(),
            _ => format!("{own}/oauth2/token"),
        };
        return axum::Json(json!({ "token_endpoint": token_endpoint })).into_response();
    }
    let own_login = format!("{own}/");
    let metadata = match metadata {
        Metadata::OwnLogin | Metadata::OwnLoginTokenAt(_) => &Metadata::Login(own_login),
        other => other,
    };
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
        Metadata::Raw(body) => ([("content-type", "application/json")], *body).into_response(),
        Metadata::OwnLogin | Metadata::OwnLoginTokenAt(_) => unreachable!("answered as Login above"),
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
    let base = webhook(dir.path(), Some(LOOPBACK)).await;
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
    let base = webhook(dir.path(), Some(LOOPBACK)).await;
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
    let base = webhook(dir.path(), Some(LOOPBACK)).await;
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

/// Registers (without verification) a stamp at `admin_arm` and times `POST /stamps/{id}/test`: the
/// test's result, which must be a negative one (200, `ok: false`), and its failure.
async fn test_unreachable(admin_arm: &str) -> (reqwest::StatusCode, Value, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), Some("127.0.0.1, 10.255.255.1")).await;
    let (status, created) = post(&base, "/stamps?verify=false", Some(&registration(admin_arm, None))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let (status, result) = post(&base, &format!("/stamps/{id}/test"), None).await;
    assert_eq!(result["ok"], false, "{result}");
    (status, result["failure"].clone(), started.elapsed())
}

#[tokio::test]
async fn test_of_a_host_that_accepts_and_never_answers_answers_within_30_seconds() {
    let (port, connections) = silent_listener().await;
    let (status, problem, took) = test_unreachable(&format!("https://127.0.0.1:{port}")).await;
    println!("POST /stamps/{{id}}/test against a silent listener answered in {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(status, 200, "{problem}");
    assert!(connections.load(Ordering::SeqCst) >= 1, "the listener was reached");
    let detail = problem["detail"].as_str().unwrap();
    assert!(!detail.contains("os error") && !detail.contains("tcp connect"), "no transport chain: {detail}");
}

#[tokio::test]
async fn test_of_a_non_routable_address_answers_within_30_seconds() {
    let (status, problem, took) = test_unreachable("https://10.255.255.1").await;
    println!("POST /stamps/{{id}}/test against 10.255.255.1 answered in {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(status, 200, "{problem}");
}

#[tokio::test]
async fn a_stamp_whose_metadata_later_names_another_login_host_fails_its_run_and_that_host_hears_nothing() {
    // Given a stamp that is its own login host, registered without verification: registration pins the
    // login endpoint its discovery named (no credential sent)
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), Some(LOOPBACK)).await;
    let stamp = fake_stamp(Metadata::OwnLogin).await;
    let (status, created) =
        post(&base, "/stamps?verify=false", Some(&registration(&stamp.url, Some(&stamp.ca_pem)))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["connection"]["authorityEndpointUrl"], format!("{}/", stamp.url), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    // When its metadata names another login host from then on
    let elsewhere = fake_stamp(Metadata::Login("https://login.windows.net/".into())).await;
    *stamp.metadata.lock().unwrap() = Metadata::Login(format!("{}/", elsewhere.url));
    let (status, result) = post(&base, &format!("/stamps/{id}/test"), None).await;

    // Then the run fails at discovery saying the credential is bound to the pinned host, and the
    // other host heard nothing
    assert_eq!((status.as_u16(), &result["ok"]), (200, &json!(false)), "{result}");
    let problem = &result["failure"];
    assert_eq!(problem["stage"], "discovery", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("bound to") && detail.contains("nothing was sent"), "{detail}");
    assert_eq!(elsewhere.requests.load(Ordering::SeqCst), 0, "the other login host was called");
}

#[tokio::test]
async fn a_token_endpoint_off_the_login_host_is_refused_before_the_credential_is_sent() {
    // Given a stamp that is its own login host, but whose openid configuration names a token endpoint
    // on another host
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), Some(LOOPBACK)).await;
    let elsewhere = fake_stamp(Metadata::Login("https://login.windows.net/".into())).await;
    let stamp = fake_stamp(Metadata::OwnLoginTokenAt(format!("{}/oauth2/token", elsewhere.url))).await;

    // When it is registered with verification
    let (status, problem) =
        post(&base, "/stamps?verify=true", Some(&registration(&stamp.url, Some(&stamp.ca_pem)))).await;

    // Then discovery refuses the token endpoint, and the other host never saw the credential
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["stage"], "discovery", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("not on the login host"), "{problem}");
    assert_eq!(elsewhere.requests.load(Ordering::SeqCst), 0, "the token endpoint elsewhere was called");
    assert!(stored_stamps(&base).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn metadata_and_loopback_addresses_are_refused_without_an_entry_that_names_them() {
    // Given the webhook with no allow-list at all, and a listener on loopback counting connections
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), None).await;
    let (port, connections) = silent_listener().await;

    // When stamps at the cloud metadata addresses or at loopback (by address or by a name that
    // resolves there) are registered, with verification or without
    for admin_arm in [
        "https://169.254.169.254".to_owned(),
        "https://[fd00:ec2::254]".to_owned(),
        format!("https://127.0.0.1:{port}"),
        format!("https://[::ffff:127.0.0.1]:{port}"),
    ] {
        for verify in ["true", "false"] {
            let (status, problem) =
                post(&base, &format!("/stamps?verify={verify}"), Some(&registration(&admin_arm, None))).await;
            // Then each is refused naming the field and the rule, before any connection
            assert_eq!(status, 422, "{admin_arm}: {problem}");
            assert_eq!(problem["errors"][0]["field"], "adminArmEndpoint", "{problem}");
            assert!(problem["errors"][0]["rule"].as_str().unwrap().contains("special address"), "{problem}");
        }
    }
    let by_name = format!("https://localhost:{port}");
    let (status, created) = post(&base, "/stamps?verify=false", Some(&registration(&by_name, None))).await;
    assert_eq!(status, 201, "a name is decided when it resolves: {created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, result) = post(&base, &format!("/stamps/{id}/test"), None).await;
    assert_eq!((status.as_u16(), &result["ok"]), (200, &json!(false)), "{result}");
    assert!(
        result["failure"]["detail"].as_str().unwrap().contains("AZS_USAGE_ALLOWED_STAMP_HOSTS"),
        "{result}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0, "loopback was connected to");
}

#[tokio::test]
async fn what_a_stamps_metadata_says_never_reaches_a_problem() {
    // Given stamps whose metadata documents carry text of their own choosing in the wrong places
    let dir = tempfile::tempdir().unwrap();
    let base = webhook(dir.path(), Some(LOOPBACK)).await;
    let bodies = [
        r#"{"authentication":{"loginEndpoint":"https://login.example/","audiences":"MARKER-audiences-not-a-list"}}"#,
        r#"{"authentication":{"loginEndpoint":["MARKER-login-not-a-string"],"audiences":["a"]}}"#,
        r#"{"authentication": MARKER-not-json}"#,
    ];
    for body in bodies {
        let stamp = fake_stamp(Metadata::Raw(body)).await;

        // When each is registered with verification
        let (status, problem) =
            post(&base, "/stamps?verify=true", Some(&registration(&stamp.url, Some(&stamp.ca_pem)))).await;

        // Then the problem says what was wrong in our words, and none of the stamp's text
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["stage"], "discovery", "{problem}");
        assert!(!problem.to_string().contains("MARKER"), "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("metadata document"), "{problem}");
    }
}
