//! The custom handler executable as the Functions host starts it (`FUNCTIONS_CUSTOMHANDLER_PORT`),
//! called the way the host forwards HTTP requests (`/api/...`, already past the function key). Shows
//! that `AZS_USAGE_API_TOKEN_SECRET` is honoured behind the function key, and that the audit trail
//! names App Service Authentication's principal only when the platform says it is on.

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
    start_with(token_secret, secrets, &[]).await
}

/// [`start`] with extra environment variables (what the platform sets).
async fn start_with(token_secret: Option<&str>, secrets: &[(&str, &str)], env: &[(&str, &str)]) -> Handler {
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
    command.envs(env.iter().copied());
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

/// Registers a stamp through the handler as a caller whose request carries Easy Auth's principal
/// headers, then reads who the audit trail says registered it.
async fn registered_by(handler: &Handler) -> Value {
    let client = reqwest::Client::new();
    let registration = json!({
        "name": "stamp-eu-1",
        "adminSubscriptionId": "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f",
        "tenantId": "4de154de-f8a8-4017-af41-df619da68155",
        "applicationId": "11111111-2222-3333-4444-555555555555",
        "adminArmEndpoint": "https://adminmanagement.local.azurestack.external",
        "applicationSecret": "azure-stamp-secret-8e1f"
    });
    let created = client
        .post(format!("{}/api/stamps?verify=false", handler.base))
        .header("x-ms-client-principal-name", "ops@contoso.com")
        .header("x-ms-client-principal-id", "5f3e2d1c-0b9a-4876-9543-210fedcba987")
        .json(&registration)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let trail: Value =
        client.get(format!("{}/api/audit", handler.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(trail[0]["action"], "stamp.register", "{trail}");
    trail[0]["actor"].clone()
}

#[tokio::test]
async fn behind_easy_auth_the_audit_names_its_principal_and_without_it_the_same_headers_name_no_one() {
    // Given the handler with App Service Authentication on (the platform sets WEBSITE_AUTH_ENABLED)
    let handler = start_with(None, &[], &[("WEBSITE_AUTH_ENABLED", "True")]).await;
    // Then a change is recorded under the principal Easy Auth forwarded
    assert_eq!(
        registered_by(&handler).await,
        "azure-principal:ops@contoso.com (5f3e2d1c-0b9a-4876-9543-210fedcba987)"
    );

    // And without Easy Auth the same headers are the client's own, and name no one
    let handler = start(None, &[]).await;
    assert_eq!(registered_by(&handler).await, "platform");
}
