//! The stamp's identity provider (Azure AD or AD FS, v1 client credentials) and the bearer check
//! the admin ARM endpoints apply.
//!
//! Token requests are `application/x-www-form-urlencoded` POSTs with `grant_type=client_credentials`,
//! `client_id`, `resource` (must equal the stamp's audience; `scope` is refused: AD FS answers a
//! `.default` scope with `invalid_scope` / MSIS9605 like the real one) and either `client_secret`
//! or a certificate client assertion (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`).
//!
//! An assertion must be an RS256 JWT signed by the registered certificate's key, with header `x5t`
//! = base64url (no padding) of the certificate's raw SHA-1 digest (hex text is refused), claims
//! `aud` = the exact token endpoint URL, `iss` = `sub` = client id, a `jti` not seen before,
//! `exp` in the future and `nbf` (when present) not in the future, both with 60 s of skew.
//!
//! Issued access tokens are opaque random strings, remembered with their expiry.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::certs::{RegisteredCertificate, hex_upper};
use crate::errors::{arm_error, json_value, oauth_error};
use crate::faults::bump;
use crate::server::StampState;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const CLOCK_SKEW_SECS: i64 = 60;

/// Access tokens issued by one stamp, and the pending [`Fault::ExpireTokensAfter`](crate::Fault).
#[derive(Default)]
pub(crate) struct TokenStore {
    tokens: HashMap<String, Instant>,
    seen_assertion_ids: HashSet<String>,
    expire_after_usage_requests: Option<u32>,
}

/// Why a bearer token was refused.
pub(crate) enum BearerRejection {
    Missing,
    Malformed,
    Unknown,
    Expired,
}

impl TokenStore {
    fn issue(&mut self, lifetime: Duration) -> String {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        self.tokens.insert(token.clone(), Instant::now() + lifetime);
        token
    }

    /// Checks the `Authorization` header value.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), BearerRejection> {
        let value = authorization.ok_or(BearerRejection::Missing)?;
        let value = value.to_str().map_err(|_| BearerRejection::Malformed)?;
        let (scheme, token) = value.split_once(' ').ok_or(BearerRejection::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerRejection::Malformed);
        }
        match self.tokens.get(token.trim()) {
            None => Err(BearerRejection::Unknown),
            Some(expiry) if *expiry <= Instant::now() => Err(BearerRejection::Expired),
            Some(_) => Ok(()),
        }
    }

    pub fn expire_after_usage_requests(&mut self, usage_requests: u32) {
        self.expire_after_usage_requests = Some(usage_requests);
    }

    pub fn clear_fault(&mut self) {
        self.expire_after_usage_requests = None;
    }

    /// Counts one authenticated usage request against a pending expiry; returns true when this
    /// request triggers it (every token issued so far is then expired).
    pub fn usage_request_triggers_expiry(&mut self) -> bool {
        match self.expire_after_usage_requests {
            Some(0) => {
                let now = Instant::now();
                self.tokens.values_mut().for_each(|expiry| *expiry = now);
                self.expire_after_usage_requests = None;
                true
            }
            Some(n) => {
                self.expire_after_usage_requests = Some(n - 1);
                false
            }
            None => false,
        }
    }
}

/// The 401 ARM answers a refused bearer token with.
pub(crate) fn unauthorized(state: &StampState, rejection: &BearerRejection) -> Response {
    let (code, message) = match rejection {
        BearerRejection::Missing => {
            ("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        }
        BearerRejection::Malformed => (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is not of the form 'Bearer <token>'.",
        ),
        BearerRejection::Unknown => (
            "InvalidAuthenticationToken",
            "The access token is invalid: it was not issued by this stamp's identity provider.",
        ),
        BearerRejection::Expired => (
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        ),
    };
    let mut response = arm_error(StatusCode::UNAUTHORIZED, code, message);
    let challenge = format!(
        "Bearer authorization_uri=\"{}\", error=\"invalid_token\", error_description=\"{message}\"",
        state.authority()
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[derive(Serialize)]
struct TokenResponse {
    token_type: &'static str,
    expires_in: String,
    ext_expires_in: String,
    expires_on: String,
    not_before: String,
    resource: String,
    access_token: String,
}

/// `POST /aad/{tenantId}/oauth2/token`.
pub(crate) async fn aad_token(
    State(state): State<Arc<StampState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !tenant.eq_ignore_ascii_case(&state.spec.tenant_id) {
        return unknown_tenant(&tenant);
    }
    issue_token(&state, &headers, &body)
}

/// `POST /adfs/oauth2/token`.
pub(crate) async fn adfs_token(
    State(state): State<Arc<StampState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    issue_token(&state, &headers, &body)
}

/// AAD's answer for a tenant it does not know.
pub(crate) fn unknown_tenant(tenant: &str) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        &format!(
            "AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// A token request error: `invalid_request`-style problems are 400, client authentication 401.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
}

fn refuse(status: StatusCode, error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal { status, error, description: description.into() }
}

fn issue_token(state: &StampState, headers: &HeaderMap, body: &[u8]) -> Response {
    match check_token_request(state, headers, body) {
        Ok(()) => {
            let lifetime = state.spec.token_lifetime;
            let access_token = state.tokens.lock().unwrap_or_else(|e| e.into_inner()).issue(lifetime);
            bump(&state.stats.tokens_issued);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            json_value(
                StatusCode::OK,
                &TokenResponse {
                    token_type: "Bearer",
                    expires_in: lifetime.as_secs().to_string(),
                    ext_expires_in: "0".to_owned(),
                    expires_on: (now + lifetime.as_secs()).to_string(),
                    not_before: now.saturating_sub(300).to_string(),
                    resource: state.audience.clone(),
                    access_token,
                },
            )
        }
        Err(refusal) => oauth_error(refusal.status, refusal.error, &refusal.description),
    }
}

fn check_token_request(state: &StampState, headers: &HeaderMap, body: &[u8]) -> Result<(), Refusal> {
    let adfs = state.spec.auth.is_adfs();
    let bad = StatusCode::BAD_REQUEST;
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return Err(refuse(
            bad,
            "invalid_request",
            "The request body must be application/x-www-form-urlencoded.",
        ));
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let param = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());

    match param("grant_type") {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(refuse(
                bad,
                "unsupported_grant_type",
                format!("The grant type '{other}' is not supported; use client_credentials."),
            ));
        }
        None => return Err(refuse(bad, "invalid_request", "The 'grant_type' parameter is missing.")),
    }
    if let Some(scope) = param("scope") {
        return Err(if adfs && scope.contains(".default") {
            refuse(
                bad,
                "invalid_scope",
                format!(
                    "MSIS9605: The client is not allowed to access the requested scope '{scope}'. Use the 'resource' parameter."
                ),
            )
        } else if adfs {
            refuse(
                bad,
                "invalid_scope",
                "MSIS9605: The 'scope' parameter is not supported here; use 'resource'.",
            )
        } else {
            refuse(bad, "invalid_request", "This is the v1 token endpoint: send 'resource', not 'scope'.")
        });
    }
    match param("resource") {
        None => {
            return Err(refuse(
                bad,
                "invalid_request",
                "The request body must contain the parameter 'resource' (the audience).",
            ));
        }
        Some(resource) if resource != state.audience => {
            return Err(refuse(
                bad,
                "invalid_resource",
                format!(
                    "The resource '{resource}' is not registered; expected the audience '{}'.",
                    state.audience
                ),
            ));
        }
        Some(_) => {}
    }
    let client_id = param("client_id")
        .ok_or_else(|| refuse(bad, "invalid_request", "The 'client_id' parameter is missing."))?;
    if !client_id.eq_ignore_ascii_case(&state.spec.application_id) {
        return Err(refuse(
            bad,
            "unauthorized_client",
            format!("Application with identifier '{client_id}' was not found."),
        ));
    }
    let unauthorized = StatusCode::UNAUTHORIZED;
    match (param("client_secret"), param("client_assertion")) {
        (Some(_), Some(_)) => {
            Err(refuse(bad, "invalid_request", "Send either client_secret or client_assertion, not both."))
        }
        (Some(secret), None) => match state.spec.auth.secret() {
            Some(expected) if expected == secret => Ok(()),
            Some(_) => Err(refuse(unauthorized, "invalid_client", "Invalid client secret provided.")),
            None => Err(refuse(
                unauthorized,
                "invalid_client",
                "This application has no client secret; authenticate with a certificate.",
            )),
        },
        (None, Some(assertion)) => {
            if param("client_assertion_type") != Some(JWT_BEARER) {
                return Err(refuse(
                    bad,
                    "invalid_request",
                    format!("client_assertion_type must be '{JWT_BEARER}'."),
                ));
            }
            let certificate = state.certificate.as_ref().ok_or_else(|| {
                refuse(unauthorized, "invalid_client", "This application has no registered certificate.")
            })?;
            let prefix = if adfs { "MSIS7066" } else { "AADSTS700027" };
            verify_assertion(state, certificate, client_id, assertion)
                .map_err(|problem| refuse(unauthorized, "invalid_client", format!("{prefix}: {problem}")))
        }
        (None, None) => Err(refuse(
            unauthorized,
            "invalid_client",
            "No client credentials: send client_secret or client_assertion.",
        )),
    }
}

/// Checks a client assertion; the error text says what is wrong with it.
fn verify_assertion(
    state: &StampState,
    certificate: &RegisteredCertificate,
    client_id: &str,
    assertion: &str,
) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| format!("The client assertion is not a valid JWT ({e})."))?;
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return Err(format!("The client assertion must be signed with RS256, not {:?}.", header.alg));
    }
    let x5t = header.x5t.as_deref().ok_or(
        "The client assertion header has no 'x5t': it must carry the base64url SHA-1 thumbprint of the registered certificate.",
    )?;
    if x5t.len() == 40 && x5t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "The client assertion 'x5t' '{x5t}' is hex text; it must be base64url (no padding) of the 20 raw SHA-1 digest bytes."
        ));
    }
    let thumbprint = URL_SAFE_NO_PAD
        .decode(x5t)
        .map_err(|_| format!("The client assertion 'x5t' '{x5t}' is not base64url without padding."))?;
    if thumbprint != certificate.thumbprint {
        return Err(format!(
            "The key was not found. Thumbprint of key used by client: '{}'; registered: '{}'.",
            hex_upper(&thumbprint),
            certificate.thumbprint_hex()
        ));
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_raw_components(&certificate.modulus, &certificate.exponent);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims =
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(assertion, &key, &validation)
            .map_err(|e| format!("Client assertion contains an invalid signature ({e})."))?
            .claims;

    let endpoint = state.token_endpoint();
    let text = |name: &str| claims.get(name).and_then(|v| v.as_str());
    match text("aud") {
        Some(aud) if aud == endpoint => {}
        aud => {
            return Err(format!(
                "The client assertion audience {aud:?} is not the token endpoint '{endpoint}'."
            ));
        }
    }
    for name in ["iss", "sub"] {
        if text(name) != Some(client_id) {
            return Err(format!(
                "The client assertion claim '{name}' is {:?}; it must be the client id '{client_id}'.",
                text(name)
            ));
        }
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let number = |name: &str| claims.get(name).and_then(|v| v.as_i64());
    match number("exp") {
        Some(exp) if exp + CLOCK_SKEW_SECS > now => {}
        Some(exp) => return Err(format!("The client assertion expired at {exp} (now {now}).")),
        None => return Err("The client assertion has no numeric 'exp' claim.".to_owned()),
    }
    if let Some(nbf) = number("nbf")
        && nbf > now + CLOCK_SKEW_SECS
    {
        return Err(format!("The client assertion is not valid before {nbf} (now {now})."));
    }
    let jti = text("jti").filter(|jti| !jti.is_empty()).ok_or("The client assertion has no 'jti' claim.")?;
    let mut tokens = state.tokens.lock().unwrap_or_else(|e| e.into_inner());
    if !tokens.seen_assertion_ids.insert(jti.to_owned()) {
        return Err(format!("The client assertion 'jti' '{jti}' was already used (replay)."));
    }
    Ok(())
}
