//! The custom handler executable as the Functions host starts it (`FUNCTIONS_CUSTOMHANDLER_PORT`),
//! called the way the host forwards HTTP requests (`/api/...`, already past the function key). Shows
//! that `AZS_USAGE_API_TOKEN_SECRET` is honoured behind the function key.

use serde_json::{Value, json};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "azure-api-token-5d2e81b0";
const TOKEN_SECRET: &str = "azs-usage/api-token";

struct Handler {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(token_secret: Option<&str>, secrets: &[(&str, &str)]) -> Handler {
    let dir = tempfile::tempdir().unwrap();
    let secrets_path = dir.path().join("secrets.json");
    azs_testkit::process::secrets_file(&secrets_path, secrets);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = azs_testkit::process::scrubbed(env!("CARGO_BIN_EXE_handler"));
    command
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AZS_USAGE_DATABASE", format!("sqlite:{}", dir.path().join("usage.db").display()))
        .env("AZS_USAGE_SECRETS", format!("file:{}", secrets_path.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(name) = token_secret {
        command.env("AZS_USAGE_API_TOKEN_SECRET", name);
    }
    let child = command.spawn().unwrap();
    let handler = Handler { child, base: format!("http://127.0.0.1:{port}"), _dir: dir };
    let started = Instant::now();
    while reqwest::get(format!("{}/", handler.base)).await.map(|r| r.status()).ok()
        != Some(reqwest::StatusCode::OK)
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the handler did not answer GET /");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handler
}

async fn list_stamps(handler: &Handler, authorization: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .get(format!("{}/api/stamps", handler.base))
        .header("X-Azure-Functions-InvocationId", "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn with_a_configured_token_a_forwarded_request_without_it_is_refused_with_401() {
    let handler = start(Some(TOKEN_SECRET), &[(TOKEN_SECRET, TOKEN)]).await;
    let refused = list_stamps(&handler, None).await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().contains_key("www-authenticate"));
    assert_eq!(list_stamps(&handler, Some("Bearer wrong-token-wrong-token")).await.status(), 401);
    let served = list_stamps(&handler, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn without_a_configured_token_the_function_key_is_the_only_gate() {
    let handler = start(None, &[]).await;
    assert_eq!(list_stamps(&handler, None).await.status(), 200);
}

#[tokio::test]
async fn a_configured_token_missing_from_the_secret_store_answers_503_never_serves_openly() {
    let handler = start(Some(TOKEN_SECRET), &[]).await;
    assert_eq!(list_stamps(&handler, None).await.status(), 503);
}
