//! A stand-in Azure Key Vault for tests: HTTPS on 127.0.0.1 with a throw-away CA, speaking the secrets
//! REST API as Microsoft documents it (Set / Get / Delete Secret, Get / Purge Deleted Secret, the 401
//! bearer challenge, `{"error": {"code", "message"}}` bodies). No Key Vault emulator exists, and the
//! real client refuses plain HTTP, hence the TLS. Used as in
//! [`the_double_serves_the_real_client_and_fails_on_demand`].
//!
//! A test support module of this crate's tests only (no feature of the library), so that every build of
//! the workspace resolves the same features.

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use azs_secrets::{KeyVaultOptions, KeyVaultStore};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The only bearer token the double accepts; [`FixedTokenCredential`] hands it out.
pub const ACCESS_TOKEN: &str = "key-vault-double-token";
/// The tenant named in the 401 challenge.
pub const TENANT: &str = "00000000-0000-0000-0000-00000000d0b1";

const RETENTION_DAYS: i64 = 90;

/// A running double; it stops when dropped.
pub struct KeyVaultDouble {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// The CA that signed the server's certificate, PEM.
    pub ca_pem: String,
    state: Shared,
    handle: axum_server::Handle,
}

type Shared = Arc<Mutex<Vault>>;

#[derive(Default)]
struct Vault {
    secrets: BTreeMap<String, Vec<Version>>,
    deleted: BTreeMap<String, Deleted>,
    fail_next: usize,
    deny_purge: bool,
    deletion_delay: Duration,
    requests: Vec<String>,
}

struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: Option<Value>,
    created: i64,
}

struct Deleted {
    versions: Vec<Version>,
    deleted_date: i64,
    /// Key Vault finishes a delete asynchronously; until then the secret is in neither list.
    listed_from: Instant,
}

impl KeyVaultDouble {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime.
    pub async fn start() -> KeyVaultDouble {
        let (ca_pem, tls) = test_tls();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let state: Shared = Arc::default();
        let app = axum::Router::new().fallback(handle).with_state(Arc::clone(&state));
        let handle = axum_server::Handle::new();
        let server =
            axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(tls))
                .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        handle.listening().await;
        KeyVaultDouble { url: format!("https://{addr}"), ca_pem, state, handle }
    }

    /// Names of the live (not deleted) secrets, sorted.
    pub fn secret_names(&self) -> Vec<String> {
        self.vault().secrets.keys().cloned().collect()
    }

    /// Names of soft-deleted secrets not yet purged, sorted.
    pub fn deleted_names(&self) -> Vec<String> {
        self.vault().deleted.keys().cloned().collect()
    }

    /// The current value of a live secret, by its Key Vault name.
    pub fn raw_value(&self, name: &str) -> Option<String> {
        self.vault().secrets.get(name).and_then(|v| v.last()).map(|v| v.value.clone())
    }

    /// How many versions a live secret has.
    pub fn version_count(&self, name: &str) -> usize {
        self.vault().secrets.get(name).map_or(0, Vec::len)
    }

    /// The next `n` requests, whatever they are, get `503 ServiceUnavailable`.
    pub fn fail_next(&self, n: usize) {
        self.vault().fail_next = n;
    }

    /// Purge answers `403 Forbidden`, as for an identity without the purge permission.
    pub fn deny_purge(&self, deny: bool) {
        self.vault().deny_purge = deny;
    }

    /// A deleted secret shows under `/deletedsecrets` (and can be purged) only after `delay`.
    pub fn set_deletion_delay(&self, delay: Duration) {
        self.vault().deletion_delay = delay;
    }

    /// Every request so far, as `METHOD /path -> status`.
    pub fn requests(&self) -> Vec<String> {
        self.vault().requests.clone()
    }

    /// Client options for this double: trusts its CA, skips the challenge-resource check (the host is
    /// 127.0.0.1, not `*.vault.azure.net`), no retries, short waits.
    pub fn store_options(&self) -> KeyVaultOptions {
        KeyVaultOptions {
            transport: Some(self.http_client()),
            max_retries: 0,
            verify_challenge_resource: false,
            purge_wait: Duration::from_secs(2),
            ..KeyVaultOptions::default()
        }
    }

    /// A reqwest client that trusts only this double's CA.
    pub fn http_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client")
    }

    /// The real Key Vault client against this double, with a fixed-token credential.
    pub fn store(&self, prefix: &str) -> KeyVaultStore {
        KeyVaultStore::new(&self.url, Arc::new(FixedTokenCredential), prefix, self.store_options())
            .expect("Key Vault store")
    }

    fn vault(&self) -> MutexGuard<'_, Vault> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for KeyVaultDouble {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Returns [`ACCESS_TOKEN`] for any scope, valid for an hour.
#[derive(Debug, Clone, Copy)]
pub struct FixedTokenCredential;

#[async_trait]
impl TokenCredential for FixedTokenCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            ACCESS_TOKEN.to_owned(),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// A CA and a leaf for 127.0.0.1 / localhost signed by it (rustls refuses a CA as the server's own
/// certificate).
fn test_tls() -> (String, Arc<rustls::ServerConfig>) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "azs-usage Key Vault double CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");

    let mut leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("leaf params");
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf certificate");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), CertificateDer::from(ca.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (ca.pem(), Arc::new(config))
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn error_with_inner(status: StatusCode, code: &str, message: String, inner: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "innererror": {"code": inner}}});
    (status, axum::Json(body)).into_response()
}

fn secret_not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "SecretNotFound",
        format!(
            "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this \
             secret you may be able to recover it using the correct recovery command. For help resolving \
             this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    )
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn attributes(created: i64) -> Value {
    json!({
        "enabled": true,
        "created": created,
        "updated": created,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": RETENTION_DAYS,
    })
}

fn bundle(version: &Version) -> Value {
    let mut body =
        json!({"value": version.value, "id": version.id, "attributes": attributes(version.created)});
    if let Some(ct) = &version.content_type {
        body["contentType"] = json!(ct);
    }
    if let Some(tags) = &version.tags {
        body["tags"] = tags.clone();
    }
    body
}

/// The deleted-secret bundle: like the secret's, without the value, plus recovery fields.
fn deleted_bundle(base: &str, name: &str, deleted: &Deleted) -> Value {
    let latest = deleted.versions.last().expect("a secret has at least one version");
    json!({
        "recoveryId": format!("{base}/deletedsecrets/{name}"),
        "deletedDate": deleted.deleted_date,
        "scheduledPurgeDate": deleted.deleted_date + RETENTION_DAYS * 86_400,
        "id": latest.id,
        "attributes": attributes(latest.created),
    })
}

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut vault = state.lock().unwrap_or_else(|e| e.into_inner());
    let response = respond(&mut vault, &method, &uri, &headers, &body);
    vault.requests.push(format!("{method} {} -> {}", uri.path(), response.status().as_u16()));
    response
}

fn respond(vault: &mut Vault, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    if vault.fail_next > 0 {
        vault.fail_next -= 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable. Please retry later.".into(),
        );
    }

    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {ACCESS_TOKEN}")) {
        let message = if bearer.is_none() {
            "AKV10000: Request is missing a Bearer or PoP token."
        } else {
            "AKV10022: Invalid audience or token."
        };
        let mut response = error(StatusCode::UNAUTHORIZED, "Unauthorized", message.into());
        let challenge = format!(
            r#"Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net""#
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&challenge).expect("header"));
        return response;
    }

    let api_version = uri.query().unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("api-version="));
    if api_version.is_none_or(str::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The api-version query parameter is missing.".into(),
        );
    }

    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let base = format!("https://{host}");
    // The SDK asks for the latest version as `/secrets/{name}/` (an empty version segment).
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let name = match segments.get(1) {
        Some(name) => *name,
        None => {
            return error(StatusCode::NOT_FOUND, "NotFound", format!("{} is not a known path", uri.path()));
        }
    };
    if !valid_name(name) {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            format!(
                "The request URI contains an invalid name: {name}. Names may contain only 0-9, a-z, A-Z and -, 1 to 127 characters."
            ),
        );
    }

    match (segments[0], &segments[2..], method) {
        ("secrets", [], &Method::PUT) => set_secret(vault, &base, name, body),
        ("secrets", [], &Method::GET) => match vault.secrets.get(name).and_then(|v| v.last()) {
            Some(version) => axum::Json(bundle(version)).into_response(),
            None => secret_not_found(name),
        },
        ("secrets", [version], &Method::GET) => {
            match vault
                .secrets
                .get(name)
                .and_then(|vs| vs.iter().find(|v| v.id.ends_with(&format!("/{version}"))))
            {
                Some(version) => axum::Json(bundle(version)).into_response(),
                None => secret_not_found(name),
            }
        }
        ("secrets", [], &Method::DELETE) => match vault.secrets.remove(name) {
            Some(versions) => {
                let deleted = Deleted {
                    versions,
                    deleted_date: now(),
                    listed_from: Instant::now() + vault.deletion_delay,
                };
                let body = deleted_bundle(&base, name, &deleted);
                vault.deleted.insert(name.to_owned(), deleted);
                axum::Json(body).into_response()
            }
            None => secret_not_found(name),
        },
        ("deletedsecrets", [], &Method::GET) => match vault.deleted.get(name) {
            Some(deleted) if deleted.listed_from <= Instant::now() => {
                axum::Json(deleted_bundle(&base, name, deleted)).into_response()
            }
            _ => error(StatusCode::NOT_FOUND, "SecretNotFound", format!("Deleted Secret not found: {name}")),
        },
        ("deletedsecrets", [], &Method::DELETE) => {
            if vault.deny_purge {
                return error_with_inner(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "The user, group or application 'appid=double' does not have secrets purge permission \
                         on key vault '{host}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
                    ),
                    "AccessDenied",
                );
            }
            match vault.deleted.get(name) {
                Some(deleted) if deleted.listed_from > Instant::now() => error_with_inner(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("Secret {name} is currently being deleted."),
                    "ObjectIsBeingDeleted",
                ),
                Some(_) => {
                    vault.deleted.remove(name);
                    StatusCode::NO_CONTENT.into_response()
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "SecretNotFound",
                    format!("Deleted Secret not found: {name}"),
                ),
            }
        }
        ("secrets" | "deletedsecrets", [] | [_], _) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        ),
        _ => error(StatusCode::NOT_FOUND, "NotFound", format!("{} is not a known path", uri.path())),
    }
}

fn set_secret(vault: &mut Vault, base: &str, name: &str, body: &[u8]) -> Response {
    if vault.deleted.contains_key(name) {
        return error_with_inner(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; \
                 in this state, the secret can only be recovered or purged."
            ),
            "ObjectIsDeletedButRecoverable",
        );
    }
    // Error texts never repeat the request body: it holds the secret.
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BadParameter",
                "The request body is not valid JSON.".into(),
            );
        }
    };
    let Some(value) = parsed.get("value").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "BadParameter", "Property 'value' is required.".into());
    };
    let version = Version {
        id: format!("{base}/secrets/{name}/{}", uuid::Uuid::new_v4().simple()),
        value: value.to_owned(),
        content_type: parsed.get("contentType").and_then(Value::as_str).map(str::to_owned),
        tags: parsed.get("tags").cloned(),
        created: now(),
    };
    let body = bundle(&version);
    vault.secrets.entry(name.to_owned()).or_default().push(version);
    axum::Json(body).into_response()
}

/// How a test uses the double (formerly this module's `no_run` doc example, now run).
#[tokio::test]
async fn the_double_serves_the_real_client_and_fails_on_demand() {
    use azs_core::Secret;
    use azs_core::ports::SecretStore;
    let vault = KeyVaultDouble::start().await;
    let store = vault.store("azs-usage/"); // the real azure_security_keyvault_secrets client
    store.put_secret("azs-usage/example", &Secret::new("value")).await.unwrap();
    vault.fail_next(1); // the next request gets 503
    assert!(store.get_secret("azs-usage/example").await.is_err());
    assert_eq!(vault.secret_names().len(), 1);
}
