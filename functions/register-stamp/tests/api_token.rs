//! The `register-stamp` bootstrap as Lambda runs it: the real executable started with the Runtime API
//! variables against a minimal Runtime API (next invocation, response, error), handed the documented
//! Function URL event. Shows that `AZS_USAGE_API_TOKEN_SECRET` is honoured behind the URL's IAM auth,
//! that the token travels in `X-Azs-Api-Token` next to the SigV4 `Authorization`, and that the audit
//! trail names the IAM caller the Function URL authenticated.

use azs_platform_tests::runtime_api::{self, Outcome};
use serde_json::{Value, json};
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::Duration;

const TOKEN: &str = "lambda-api-token-0f3c9a71";
const TOKEN_SECRET: &str = "azs-usage/api-token";

/// The Function URL event from the AWS documentation (the test kit's fixtures), `GET /stamps`, with
/// `authorization` set to `authorization` when given.
fn list_stamps_event(authorization: Option<&str>) -> Value {
    let mut event = azs_testkit::fixtures::json("aws-function-url-request.json");
    event["rawPath"] = json!("/stamps");
    event["rawQueryString"] = json!("");
    event["queryStringParameters"] = json!({});
    event["requestContext"]["http"]["method"] = json!("GET");
    event["requestContext"]["http"]["path"] = json!("/stamps");
    event["body"] = Value::Null;
    if let Some(value) = authorization {
        event["headers"]["authorization"] = json!(value);
    }
    event
}

/// Starts the bootstrap with a file secret store holding `secrets`, hands it `event`, and returns its
/// response (`Ok`) or what it reported to the error endpoints (`Err`).
async fn invoke(event: Value, token_secret: Option<&str>, secrets: &[(&str, &str)]) -> Result<Value, String> {
    let dir = tempfile::tempdir().unwrap();
    invoke_in(dir.path(), event, token_secret, secrets).await
}

/// [`invoke`] with the database and secret file in `dir`, which outlives the invocation.
async fn invoke_in(
    dir: &std::path::Path,
    event: Value,
    token_secret: Option<&str>,
    secrets: &[(&str, &str)],
) -> Result<Value, String> {
    let secrets_path = dir.join("secrets.json");
    azs_testkit::process::secrets_file(&secrets_path, secrets);

    let (api_address, mut outcomes) = runtime_api::serve_one(event).await;

    let mut command = azs_testkit::process::scrubbed(env!("CARGO_BIN_EXE_register-stamp"));
    command
        .env("AWS_LAMBDA_RUNTIME_API", &api_address)
        .env("AWS_LAMBDA_FUNCTION_NAME", "register-stamp")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/26/[$LATEST]0123456789")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/register-stamp")
        .env("AZS_USAGE_DATABASE", format!("sqlite:{}", dir.join("usage.db").display()))
        .env("AZS_USAGE_SECRETS", format!("file:{}", secrets_path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(name) = token_secret {
        command.env("AZS_USAGE_API_TOKEN_SECRET", name);
    }
    let mut child = KillOnDrop(command.spawn().unwrap());
    let started = std::time::Instant::now();
    // The invocation's outcome, or, when the bootstrap stops before it can serve, its exit and output.
    loop {
        match outcomes.try_recv() {
            Ok(Outcome::Response(response)) => return Ok(response),
            Ok(Outcome::Error(error)) => return Err(error.to_string()),
            Err(_) => {}
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut output = String::new();
            for stream in [
                child.0.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read>),
                child.0.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read>),
            ]
            .into_iter()
            .flatten()
            {
                let mut stream = stream;
                let _ = stream.read_to_string(&mut output);
            }
            return Err(format!("the bootstrap exited with {status} before answering: {output}"));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no outcome within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn with_a_configured_token_a_request_without_it_is_refused_with_401() {
    let secrets = [(TOKEN_SECRET, TOKEN)];
    let response = invoke(list_stamps_event(None), Some(TOKEN_SECRET), &secrets).await.unwrap();
    assert_eq!(response["statusCode"], 401, "{response}");
    let wrong = invoke(list_stamps_event(Some("Bearer not-the-token-at-all")), Some(TOKEN_SECRET), &secrets)
        .await
        .unwrap();
    assert_eq!(wrong["statusCode"], 401, "{wrong}");
}

#[tokio::test]
async fn with_a_configured_token_a_request_carrying_it_is_served() {
    let secrets = [(TOKEN_SECRET, TOKEN)];
    let response = invoke(list_stamps_event(Some(&format!("Bearer {TOKEN}"))), Some(TOKEN_SECRET), &secrets)
        .await
        .unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["body"], "[]", "{response}");
}

#[tokio::test]
async fn without_a_configured_token_the_function_urls_iam_auth_is_the_only_gate() {
    let response = invoke(list_stamps_event(None), None, &[]).await.unwrap();
    assert_eq!(response["statusCode"], 200, "{response}");
}

#[tokio::test]
async fn a_configured_token_missing_from_the_secret_store_fails_the_start_instead_of_serving_openly() {
    let error = invoke(list_stamps_event(None), Some(TOKEN_SECRET), &[]).await.unwrap_err();
    assert!(error.contains("exited") && error.contains(TOKEN_SECRET), "the error names the secret: {error}");
}

/// What a caller signing with SigV4 sends in `Authorization` (the Function URL checks it; the app
/// never reads it).
const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261126/eu-west-1/lambda/aws4_request, \
    SignedHeaders=host;x-amz-date;x-azs-api-token, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

#[tokio::test]
async fn the_token_rides_next_to_sigv4_and_the_audit_names_the_iam_caller_not_a_header_the_client_sent() {
    // Given a configured token, and a registration sent through the Function URL with the caller's
    // SigV4 signature in Authorization, the token in X-Azs-Api-Token, and an identity header a client
    // made up (Lambda never sets it)
    let dir = tempfile::tempdir().unwrap();
    let secrets = [(TOKEN_SECRET, TOKEN)];
    let mut register = list_stamps_event(Some(SIGV4));
    register["headers"]["x-azs-api-token"] = json!(TOKEN);
    register["headers"]["x-ms-client-principal-name"] = json!("mallory");
    register["headers"]["content-type"] = json!("application/json");
    register["rawPath"] = json!("/stamps");
    register["rawQueryString"] = json!("verify=false");
    register["queryStringParameters"] = json!({"verify": "false"});
    register["requestContext"]["http"]["method"] = json!("POST");
    register["body"] = json!(
        json!({
            "name": "stamp-eu-1",
            "adminSubscriptionId": "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f",
            "tenantId": "4de154de-f8a8-4017-af41-df619da68155",
            "applicationId": "11111111-2222-3333-4444-555555555555",
            "adminArmEndpoint": "https://adminmanagement.local.azurestack.external",
            "applicationSecret": "lambda-stamp-secret-51c2"
        })
        .to_string()
    );

    // When it is invoked, and then GET /audit the same way
    let created = invoke_in(dir.path(), register, Some(TOKEN_SECRET), &secrets).await.unwrap();
    assert_eq!(created["statusCode"], 201, "{created}");
    let mut audit = list_stamps_event(Some(SIGV4));
    audit["headers"]["x-azs-api-token"] = json!(TOKEN);
    audit["rawPath"] = json!("/audit");
    audit["requestContext"]["http"]["path"] = json!("/audit");
    let listed = invoke_in(dir.path(), audit, Some(TOKEN_SECRET), &secrets).await.unwrap();

    // Then the registration is on record under the IAM user the Function URL authenticated
    assert_eq!(listed["statusCode"], 200, "{listed}");
    let records: Value = serde_json::from_str(listed["body"].as_str().unwrap()).unwrap();
    assert_eq!(records[0]["action"], "stamp.register", "{records}");
    assert_eq!(records[0]["actor"], "aws-iam:arn:aws:iam::123456789012:user/ops", "{records}");
    assert!(!listed["body"].as_str().unwrap().contains("lambda-stamp-secret-51c2"));

    // And SigV4 alone, without the token, is refused
    let unsigned = invoke(list_stamps_event(Some(SIGV4)), Some(TOKEN_SECRET), &secrets).await.unwrap();
    assert_eq!(unsigned["statusCode"], 401, "{unsigned}");
}
