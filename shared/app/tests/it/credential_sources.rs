//! Where a stamp's credential may come from (issue 12, item 1), over real HTTP: the webhook router on
//! a real socket, the real SQLite store, the real file secret store and the real stamp client. The
//! "stamp" the hostile registrations name is a TCP listener that counts the connections it receives:
//! every refusal must come before the service opens one.

use azs_app::administration::Administration;
use azs_app::webhook::{ApiAuth, router};
use azs_azure_stack::hosts::StampHosts;
use azs_azure_stack::{AzureStackClient, credential_from_registration};
use azs_core::ports::SecretStore;
use azs_core::registration::CredentialSecretRules;
use azs_core::{Credential, Secret};
use azs_secrets::FileSecretStore;
use azs_store_sqlite::SqliteStore;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const TOKEN: &str = "credential-sources-test-token";
const PREFIX: &str = "azs-usage/";
const DATABASE_SECRET: &str = "azs-usage/database";
const DATABASE_VALUE: &str = "Server=db.example;Database=usage;User Id=sa;Password=db-pass-91c";
const API_TOKEN_SECRET: &str = "azs-usage/api-token";
const API_TOKEN_VALUE: &str = "api-token-value-5d2e";
const PLAIN_VALUE: &str = "plain-text-not-a-document-77a";

/// A TCP endpoint that accepts and drops connections, counting them.
struct CountingListener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl CountingListener {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Self { port, connections }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

struct App {
    base: String,
    client: reqwest::Client,
    secrets: FileSecretStore,
    _dir: tempfile::TempDir,
}

impl App {
    /// The webhook as `wiring` builds it, with the database and API-token secrets configured.
    async fn start() -> App {
        let dir = tempfile::tempdir().unwrap();
        let secrets = FileSecretStore::new(dir.path().join("secrets.json"), PREFIX);
        let administration = Administration::new(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Arc::new(secrets.clone()),
            Arc::new(
                AzureStackClient::default().with_allowed_hosts(Some(StampHosts::parse("127.0.0.1").unwrap())),
            ),
            credential_from_registration,
            CredentialSecretRules::new(PREFIX, [DATABASE_SECRET.to_owned(), API_TOKEN_SECRET.to_owned()]),
        );
        let app = router(administration, ApiAuth::Bearer(Secret::new(TOKEN)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        App { base, client: reqwest::Client::new(), secrets, _dir: dir }
    }

    async fn call(&self, method: Method, path: &str, body: &Value) -> (StatusCode, String) {
        let res = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }
}

fn registration(endpoint: &str, subscription: &str) -> Value {
    json!({
        "name": format!("stamp {subscription}"),
        "adminSubscriptionId": subscription,
        "tenantId": "4de154de-f8a8-4017-af41-df619da68155",
        "applicationId": "11111111-2222-3333-4444-555555555555",
        "adminArmEndpoint": endpoint,
    })
}

fn with_secret_name(mut body: Value, name: &str) -> Value {
    body["credentialSecretName"] = json!(name);
    body
}

#[tokio::test]
async fn credential_secrets_outside_their_place_are_refused_before_any_connection() {
    // Given the service's own secrets, a plain-text secret under the prefix, a credential document
    // outside it, and a stamp whose credential the service stored
    let app = App::start().await;
    let listener = CountingListener::start().await;
    app.secrets.put_secret(DATABASE_SECRET, &Secret::new(DATABASE_VALUE)).await.unwrap();
    app.secrets.put_secret(API_TOKEN_SECRET, &Secret::new(API_TOKEN_VALUE)).await.unwrap();
    app.secrets.put_secret("azs-usage/plain", &Secret::new(PLAIN_VALUE)).await.unwrap();
    let document =
        Credential::ApplicationSecret(Secret::new("outside-secret-3f1")).to_secret_for(&listener.endpoint());
    app.secrets.put_secret("elsewhere/credential", &document).await.unwrap();
    // Credential documents under the prefix that no stamp names: one provisioned for a stamp since
    // removed, one written before documents named their stamp
    let left_behind = Credential::ApplicationSecret(Secret::new("left-behind-7d2"))
        .to_secret_for("https://adminmanagement.gone.example");
    app.secrets.put_secret("azs-usage/left-behind", &left_behind).await.unwrap();
    let unbound = Secret::new(r#"{"kind":"applicationSecret","applicationSecret":"unbound-5c9"}"#);
    app.secrets.put_secret("azs-usage/unbound", &unbound).await.unwrap();
    let mut other =
        registration("https://adminmanagement.other.example", "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f");
    other["applicationSecret"] = json!("other-stamp-secret-8b0");
    let (status, body) = app.call(Method::POST, "/stamps?verify=false", &other).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let other_id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let other_secret = format!("{PREFIX}{other_id}");

    let attempts = [
        (API_TOKEN_SECRET.to_owned(), "service's own secrets"),
        (DATABASE_SECRET.to_owned(), "service's own secrets"),
        ("AZS-USAGE_database".to_owned(), "service's own secrets"),
        (other_secret.clone(), "another stamp"),
        ("elsewhere/credential".to_owned(), "under the configured prefix"),
        ("azs-usage/plain".to_owned(), "does not hold a credential document"),
        ("azs-usage/left-behind".to_owned(), "not provisioned for this stamp"),
        ("azs-usage/unbound".to_owned(), "not provisioned for this stamp"),
    ];
    for (name, rule) in &attempts {
        // When a caller registers a stamp at its own endpoint with that secret's name (verify=true)
        let body = with_secret_name(
            registration(&listener.endpoint(), "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
            name,
        );
        let (status, answer) = app.call(Method::POST, "/stamps", &body).await;

        // Then it is refused with 422 naming the field and the rule, and no value is echoed
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {answer}");
        let problem: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(problem["errors"][0]["field"], "credentialSecretName", "{name}: {answer}");
        assert!(problem["errors"][0]["rule"].as_str().unwrap().contains(rule), "{name}: {answer}");
        for value in [
            DATABASE_VALUE,
            API_TOKEN_VALUE,
            PLAIN_VALUE,
            "other-stamp-secret-8b0",
            "left-behind-7d2",
            "unbound-5c9",
        ] {
            assert!(!answer.contains(value), "{name}: a secret value reached the answer: {answer}");
        }
    }

    // And switching the existing stamp to a foreign secret is refused the same way
    for (name, _) in &attempts[..2] {
        let patch = json!({ "credentialSecretName": name });
        let (status, answer) = app.call(Method::PATCH, &format!("/stamps/{other_id}"), &patch).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {answer}");
    }

    // And the caller's endpoint never saw a connection
    assert_eq!(listener.count(), 0, "the service connected to the caller's endpoint");
}

#[tokio::test]
async fn an_operator_secret_under_the_prefix_holding_a_credential_document_is_accepted() {
    let app = App::start().await;
    let document = Credential::ApplicationSecret(Secret::new("operator-secret"))
        .to_secret_for("https://adminmanagement.eu1.example");
    app.secrets.put_secret("azs-usage/eu-1-credential", &document).await.unwrap();
    let body = with_secret_name(
        registration("https://adminmanagement.eu1.example", "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
        "azs-usage/eu-1-credential",
    );

    let (status, answer) = app.call(Method::POST, "/stamps?verify=false", &body).await;

    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let view: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(view["credentialSecretName"], "azs-usage/eu-1-credential");
    // A second stamp cannot take the same secret.
    let second = with_secret_name(
        registration("https://adminmanagement.eu2.example", "6e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"),
        "azs-usage/eu-1-credential",
    );
    let (status, answer) = app.call(Method::POST, "/stamps?verify=false", &second).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer.contains("another stamp already uses"), "{answer}");
}

#[tokio::test]
async fn api_paths_take_a_stamps_name_as_well_as_its_id_and_names_stay_unique() {
    let app = App::start().await;
    let mut body =
        registration("https://adminmanagement.eu1.example", "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
    body["name"] = json!("eu 1");
    body["applicationSecret"] = json!("secret-eu-1");
    let (status, answer) = app.call(Method::POST, "/stamps?verify=false", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["id"].as_str().unwrap().to_owned();

    // The name, percent-encoded and in another casing, reaches the same stamp as the id
    let (status, answer) = app.call(Method::GET, "/stamps/EU%201", &Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(serde_json::from_str::<Value>(&answer).unwrap()["id"], id.as_str());
    let put = json!({ "billingSubscriptionId": "billing-1" });
    let (status, answer) = app
        .call(Method::PUT, "/stamps/eu%201/subscriptions/00000000-0000-4000-8000-000000000001", &put)
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, _) = app.call(Method::GET, "/stamps/no-such-stamp", &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A rename to a GUID (a rule of the field: 400), or to a name in use (well-formed, but taken:
    // 422), is refused naming the field
    let mut second =
        registration("https://adminmanagement.eu2.example", "6e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
    second["name"] = json!("eu 2");
    second["applicationSecret"] = json!("secret-eu-2");
    let (status, answer) = app.call(Method::POST, "/stamps?verify=false", &second).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    for (name, expected) in [
        (json!("Eu 1"), StatusCode::UNPROCESSABLE_ENTITY),
        (json!("5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"), StatusCode::BAD_REQUEST),
    ] {
        let (status, answer) = app.call(Method::PATCH, "/stamps/eu%202", &json!({ "name": name })).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer.contains("\"field\":\"name\""), "{answer}");
    }
}
