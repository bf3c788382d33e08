//! `azs-usage serve` as an operator starts it: the real [`Services`] (SQLite and the file secret store)
//! behind `serve_until`, called over real TCP and TLS with reqwest.

use azs_app::config::AppConfig;
use azs_app::serve::{ServeOptions, TlsFiles, serve_until};
use azs_app::wiring::Services;
use azs_core::Secret;
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;

const TOKEN: &str = "serve-test-token-31b7d2c9";
const TOKEN_SECRET: &str = "azs-usage/api-token";

async fn services(dir: &std::path::Path, token: Option<&str>) -> Services {
    let database = format!("sqlite:{}", dir.join("usage.db").display());
    let secrets = format!("file:{}", dir.join("secrets.json").display());
    let config = AppConfig::from_lookup(|name| match name {
        "AZS_USAGE_DATABASE" => Some(database.clone()),
        "AZS_USAGE_SECRETS" => Some(secrets.clone()),
        "AZS_USAGE_API_TOKEN_SECRET" => token.map(|_| TOKEN_SECRET.to_owned()),
        _ => None,
    })
    .unwrap();
    let services = Services::build(&config).await.unwrap();
    if let Some(token) = token {
        services.secrets.put_secret(TOKEN_SECRET, &Secret::new(token)).await.unwrap();
    }
    services
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server running until the returned sender is dropped.
async fn start(services: Services, options: ServeOptions) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let listen = options.listen;
    tokio::spawn(async move {
        serve_until(&services, options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let port = listen.port();
    let started = std::time::Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "serve did not start listening");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop
}

/// A throw-away CA and a leaf for 127.0.0.1 signed by it, written as PEM files.
fn tls_files(dir: &std::path::Path) -> (TlsFiles, String) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "azs-usage serve test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let certificate_chain = dir.join("server.crt");
    let private_key = dir.join("server.key");
    std::fs::write(&certificate_chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&private_key, leaf_key.serialize_pem()).unwrap();
    (TlsFiles { certificate_chain, private_key }, ca.pem())
}

#[tokio::test]
async fn a_non_loopback_address_without_tls_is_refused_before_anything_binds() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Some(TOKEN)).await;
    let listen: SocketAddr = format!("0.0.0.0:{}", free_port()).parse().unwrap();
    let error =
        serve_until(&services, ServeOptions { listen, insecure_loopback: false, tls: None }, async {})
            .await
            .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("--tls-cert") && message.contains("without TLS"), "{message}");
}

#[tokio::test]
async fn with_tls_a_non_loopback_address_serves_https_and_still_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Some(TOKEN)).await;
    let (tls, ca_pem) = tls_files(dir.path());
    let port = free_port();
    let listen: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let _stop = start(services, ServeOptions { listen, insecure_loopback: false, tls: Some(tls) }).await;

    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/stamps");
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let served = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.text().await.unwrap(), "[]");
    // Plain HTTP on the TLS port gets no webhook answer.
    let plain =
        reqwest::Client::new().get(format!("http://127.0.0.1:{port}/stamps")).bearer_auth(TOKEN).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != StatusCode::OK);
}

#[tokio::test]
async fn insecure_loopback_answers_only_requests_whose_host_is_a_loopback_name() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), None).await;
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _stop = start(services, ServeOptions { listen, insecure_loopback: true, tls: None }).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/stamps");

    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::OK);
    let localhost = client.get(&url).header("host", format!("localhost:{port}")).send().await.unwrap();
    assert_eq!(localhost.status(), StatusCode::OK);
    // A page on evil.example whose name now resolves to 127.0.0.1 (DNS rebinding).
    let rebound = client.get(&url).header("host", format!("evil.example:{port}")).send().await.unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    assert_eq!(rebound.headers()["content-type"], "application/problem+json");
    let body = client
        .post(&url)
        .header("host", "attacker.example")
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn insecure_loopback_on_a_non_loopback_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), None).await;
    let (tls, _) = tls_files(dir.path());
    let listen: SocketAddr = format!("0.0.0.0:{}", free_port()).parse().unwrap();
    let error =
        serve_until(&services, ServeOptions { listen, insecure_loopback: true, tls: Some(tls) }, async {})
            .await
            .unwrap_err();
    assert!(format!("{error:#}").contains("only allowed on a loopback address"), "{error:#}");
}

#[tokio::test]
async fn a_configured_token_missing_from_the_secret_store_stops_serve_and_names_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Some(TOKEN)).await;
    services.secrets.delete_secret(TOKEN_SECRET).await.unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let error = serve_until(&services, ServeOptions { listen, insecure_loopback: true, tls: None }, async {})
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(TOKEN_SECRET) && message.contains("AZS_USAGE_API_TOKEN_SECRET"), "{message}");
}

#[tokio::test]
async fn a_token_shorter_than_16_characters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Some("short")).await;
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let error =
        serve_until(&services, ServeOptions { listen, insecure_loopback: false, tls: None }, async {})
            .await
            .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("at least 16"), "{message}");
    assert!(!message.contains("short"), "the token never appears: {message}");
}
