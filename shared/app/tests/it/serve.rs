//! `azs-usage serve` as an operator starts it: the real [`Services`] (SQLite and the file secret store)
//! behind `serve_until`, called over real TCP and TLS with reqwest.

use azs_app::config::AppConfig;
use azs_app::serve::{ServeLimits, ServeOptions, TlsFiles, serve_until};
use azs_app::wiring::Services;
use azs_core::Secret;
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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
    let error = serve_until(
        &services,
        ServeOptions { listen, insecure_loopback: false, tls: None, limits: ServeLimits::default() },
        async {},
    )
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
    let _stop = start(
        services,
        ServeOptions { listen, insecure_loopback: false, tls: Some(tls), limits: ServeLimits::default() },
    )
    .await;

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
    let _stop = start(
        services,
        ServeOptions { listen, insecure_loopback: true, tls: None, limits: ServeLimits::default() },
    )
    .await;
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
    let error = serve_until(
        &services,
        ServeOptions { listen, insecure_loopback: true, tls: Some(tls), limits: ServeLimits::default() },
        async {},
    )
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
    let error = serve_until(
        &services,
        ServeOptions { listen, insecure_loopback: true, tls: None, limits: ServeLimits::default() },
        async {},
    )
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
    let error = serve_until(
        &services,
        ServeOptions { listen, insecure_loopback: false, tls: None, limits: ServeLimits::default() },
        async {},
    )
    .await
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("at least 16"), "{message}");
    assert!(!message.contains("short"), "the token never appears: {message}");
}

// ---------------------------------------------------------------------------------------------------
// Bounded work: timeouts and the connection cap
// ---------------------------------------------------------------------------------------------------

/// A loopback server with a token and `limits`, and its port.
async fn start_limited(dir: &std::path::Path, limits: ServeLimits) -> (oneshot::Sender<()>, u16) {
    let services = services(dir, Some(TOKEN)).await;
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (start(services, ServeOptions { listen, insecure_loopback: false, tls: None, limits }).await, port)
}

fn get_stamps() -> String {
    format!("GET /stamps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
}

/// Waits at most `within` for the server to close `socket`; what it sent meanwhile, or `None` if the
/// connection is still open.
async fn closed_within(socket: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one whole answer (header and `Content-Length` body) from `socket` within `within`.
async fn answer_within(socket: &mut TcpStream, within: Duration) -> Option<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return Some(text);
            }
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn a_connection_that_stalls_its_header_or_sits_idle_is_closed_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServeLimits { header_read: Duration::from_secs(1), ..ServeLimits::default() };
    let (_stop, port) = start_limited(dir.path(), limits).await;

    // Given a client that sends nothing, one that stops halfway through its header, and one that
    // was answered and keeps the connection open without a next request
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    half.write_all(b"POST /stamps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz").await.unwrap();
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    idle.write_all(get_stamps().as_bytes()).await.unwrap();
    let answer = answer_within(&mut idle, Duration::from_secs(5)).await.expect("the request is answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let started = Instant::now();

    // Then the server closes each of them within the header timeout (and some slack), answering nothing
    for (name, socket) in [("silent", &mut silent), ("half a header", &mut half), ("idle", &mut idle)] {
        let sent = closed_within(socket, Duration::from_secs(4)).await;
        assert_eq!(sent.as_deref(), Some(""), "{name}: still open {:?} after connecting", started.elapsed());
    }
    assert!(started.elapsed() >= Duration::from_millis(500), "closed by the timeout, not at once");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_the_body_timeout_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServeLimits { body_read: Duration::from_secs(1), ..ServeLimits::default() };
    let (_stop, port) = start_limited(dir.path(), limits).await;

    // Given an authenticated request that announces 100 bytes of body and sends 10
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /stamps HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":\"a"
    );
    socket.write_all(head.as_bytes()).await.unwrap();

    // Then it is answered 408 once the body timeout has passed, and the connection is closed
    let answer = closed_within(&mut socket, Duration::from_secs(4)).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn over_tls_a_stalled_handshake_is_closed_within_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Some(TOKEN)).await;
    let (tls, _) = tls_files(dir.path());
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let limits = ServeLimits { header_read: Duration::from_secs(1), ..ServeLimits::default() };
    let _stop =
        start(services, ServeOptions { listen, insecure_loopback: false, tls: Some(tls), limits }).await;

    // Given a client that connects to the TLS port and never starts the handshake
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();

    // Then the server closes the connection within the header timeout
    assert!(closed_within(&mut socket, Duration::from_secs(4)).await.is_some(), "still open");
}

#[tokio::test]
async fn beyond_the_connection_cap_a_new_connection_waits_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ServeLimits { max_connections: 2, ..ServeLimits::default() };
    let (_stop, port) = start_limited(dir.path(), limits).await;

    // Given two connections, each answered once and kept open
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        socket.write_all(get_stamps().as_bytes()).await.unwrap();
        let answer = answer_within(&mut socket, Duration::from_secs(5)).await.expect("within the cap");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(socket);
    }

    // When a third connects and sends its request, then it is not served while both are open
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    third.write_all(get_stamps().as_bytes()).await.unwrap();
    assert_eq!(answer_within(&mut third, Duration::from_millis(700)).await, None, "served beyond the cap");

    // When one of the two closes, then the third is served
    drop(held.pop());
    let answer = answer_within(&mut third, Duration::from_secs(5)).await.expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_closes_idle_connections_stops_listening_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let services = services(dir.path(), Some(TOKEN)).await;
    let port = free_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let options =
        ServeOptions { listen, insecure_loopback: false, tls: None, limits: ServeLimits::default() };
    let server = tokio::spawn(async move {
        serve_until(&services, options, async {
            let _ = stopped.await;
        })
        .await
    });
    let mut idle = loop {
        if let Ok(socket) = TcpStream::connect(("127.0.0.1", port)).await {
            break socket;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // Given a keep-alive connection that was answered and sits idle
    idle.write_all(get_stamps().as_bytes()).await.unwrap();
    assert!(answer_within(&mut idle, Duration::from_secs(5)).await.is_some());

    // When the server is told to stop
    drop(stop);

    // Then serve_until returns promptly, the idle connection is closed and nothing listens any more
    let returned = tokio::time::timeout(Duration::from_secs(3), server).await;
    returned.expect("serve_until returned").unwrap().unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await.is_some(), "idle connection still open");
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err(), "still listening");
}
