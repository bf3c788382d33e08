//! Access tokens for a stamp's admin ARM: the OAuth 2.0 v1 client-credentials grant, against Azure AD
//! or AD FS, with a client secret or a certificate-signed client assertion.
//!
//! ## Why our own token client, for both identity providers
//!
//! `azure_identity` 1.0 always posts to `/{tenant}/oauth2/v2.0/token` with `scope=`, drops any path of
//! the authority (so `/adfs` is lost), refuses `http://` authorities, writes `x5t` as padded standard
//! base64, and its certificate credential needs the system OpenSSL. AD FS is therefore out of reach
//! (it wants `/adfs/oauth2/token`, `resource=`, base64url `x5t`; `.default` scopes fail with MSIS9605).
//! For Azure AD stamps it *could* work (`scope={audience}/.default` against v2), but using it there
//! would mean two token flows for one product, an OpenSSL dependency for certificates, a second retry
//! policy and a second TLS trust configuration next to ours (the stamp's CA bundle), and tokens from a
//! different endpoint version than every Azure Stack Hub tool and document uses. The v1 request is a
//! single form POST, so both paths use this one small client: same request shape as Microsoft's
//! scripts (`resource=`, never `scope=`), same retries, same CA bundle, same error mapping.
//!
//! ## Client assertion
//!
//! RS256 (PKCS#1 v1.5, SHA-256), header `typ` JWT and `x5t` = base64url (no padding) of the raw SHA-1
//! digest of the certificate (20 bytes, *not* the 40-character hex text: AD FS 2019 matches on it).
//! Claims: `aud` = the token endpoint URL exactly as discovered, `iss` = `sub` = the client id, a fresh
//! `jti`, `nbf` = now - 90 s for clock skew, `exp` = now + 600 s. A new assertion is signed for every
//! attempt, so a retried request never replays a `jti`. The JWT is signed with `rsa` directly: a
//! dozen lines, and no run-time crypto-backend selection (jsonwebtoken 11 picks its backend from crate
//! features and panics if another crate of the workspace unifies in a second one).
//!
//! ## Cache
//!
//! Tokens are cached per stamp and renewed 5 minutes before they expire (half their lifetime if that
//! is shorter). A 401 from the usage API drops the cached token (see the session). Token errors
//! (`invalid_client`, `AADSTS…`, `MSIS…`) become `PullError { stage: Token, transient: false }`.

use crate::credential::AssertionKey;
use crate::http::{HttpFailure, StampHttp, Unreadable};
use azs_core::Secret;
use azs_core::ports::{DiscoveredEndpoints, PullError, PullStage};
use base64::Engine as _;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, info};

pub(crate) const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far back `nbf` reaches, for clocks that run behind the identity provider's.
const CLOCK_SKEW: u64 = 90;
/// How long an assertion is good for.
const ASSERTION_LIFETIME: u64 = 600;
/// Assumed lifetime of a token whose response states none.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// What the service principal proves itself with.
pub(crate) enum ClientProof {
    Secret(Secret),
    Certificate(Box<AssertionKey>),
}

impl ClientProof {
    pub fn kind(&self) -> &'static str {
        match self {
            ClientProof::Secret(_) => "applicationSecret",
            ClientProof::Certificate(_) => "certificate",
        }
    }
}

/// A token and when to stop using it.
#[derive(Clone)]
pub(crate) struct CachedToken {
    pub access_token: Secret,
    /// The endpoint and audience it was issued for: a changed discovery means a new token.
    issued_by: String,
    audience: String,
    renew_at: Instant,
}

impl CachedToken {
    fn usable_for(&self, endpoints: &DiscoveredEndpoints, now: Instant) -> bool {
        now < self.renew_at
            && self.issued_by == endpoints.token_endpoint
            && self.audience == endpoints.audience
    }
}

/// The per-stamp token cache, shared by every session with that stamp.
pub(crate) type TokenCache = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Gets tokens for one stamp's service principal.
#[derive(Clone)]
pub(crate) struct TokenClient {
    http: StampHttp,
    client_id: String,
    proof: Arc<ClientProof>,
    cache: TokenCache,
    renew_before: Duration,
}

impl TokenClient {
    pub fn new(
        http: StampHttp,
        client_id: String,
        proof: Arc<ClientProof>,
        cache: TokenCache,
        renew_before: Duration,
    ) -> Self {
        Self { http, client_id, proof, cache, renew_before }
    }

    pub fn proof_kind(&self) -> &'static str {
        self.proof.kind()
    }

    /// A token for `endpoints`, from the cache while it is fresh enough, else a new one.
    pub async fn token(
        &self,
        endpoints: &DiscoveredEndpoints,
        retries: &mut u64,
    ) -> Result<CachedToken, PullError> {
        let mut cached = self.cache.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.usable_for(endpoints, Instant::now())) {
            return Ok(token.clone());
        }
        let token = self.request(endpoints, retries).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Forgets `stale` (a token the stamp refused). A newer token another task fetched meanwhile stays.
    pub async fn forget(&self, stale: &Secret) {
        let mut cached = self.cache.lock().await;
        if cached.as_ref().is_some_and(|t| t.access_token == *stale) {
            *cached = None;
        }
    }

    async fn request(
        &self,
        endpoints: &DiscoveredEndpoints,
        retries: &mut u64,
    ) -> Result<CachedToken, PullError> {
        let endpoint = endpoints.token_endpoint.as_str();
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
            // v1: `resource=`, never `scope=…/.default` (AD FS refuses that with MSIS9605).
            ("resource", endpoints.audience.clone()),
        ];
        let first_assertion = match self.proof.as_ref() {
            ClientProof::Secret(secret) => {
                form.push(("client_secret", secret.expose().to_owned()));
                None
            }
            ClientProof::Certificate(key) => {
                form.push(("client_assertion_type", CLIENT_ASSERTION_TYPE.into()));
                Some(client_assertion(key, &self.client_id, endpoint, unix_now()).map_err(|message| {
                    PullError {
                        stage: PullStage::Token,
                        http_status: None,
                        upstream_code: None,
                        message,
                        transient: false,
                    }
                })?)
            }
        };
        let build = |client: &reqwest::Client| {
            let mut form = form.clone();
            if let (ClientProof::Certificate(key), Some(first)) = (self.proof.as_ref(), &first_assertion) {
                // A fresh jti per attempt; signing cannot fail for a key that signed a moment ago, but
                // if it did, the first assertion is still valid for its ten minutes.
                let assertion = client_assertion(key, &self.client_id, endpoint, unix_now())
                    .map(|fresh| fresh.expose().to_owned())
                    .unwrap_or_else(|_| first.expose().to_owned());
                form.push(("client_assertion", assertion));
            }
            client.post(endpoint).form(&form)
        };
        let started = Instant::now();
        let response = self
            .http
            .call(PullStage::Token, "token endpoint", build, parse_token_response, retries)
            .await
            .map_err(|failure| self.token_error(failure, first_assertion.as_ref()))?;
        let lifetime = response.lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
        let (_expires_at, renew_at) = renewal(started, lifetime, self.renew_before);
        info!(
            proof = self.proof.kind(),
            token_type = response.token_type.as_deref().unwrap_or("Bearer"),
            expires_in_s = lifetime.as_secs(),
            "token issued"
        );
        debug!(renew_in_s = renew_at.saturating_duration_since(Instant::now()).as_secs(), "token cached");
        Ok(CachedToken {
            access_token: response.access_token,
            issued_by: endpoints.token_endpoint.clone(),
            audience: endpoints.audience.clone(),
            renew_at,
        })
    }

    /// Maps a failed token request, scrubbing anything of ours the identity provider may have echoed.
    fn token_error(&self, failure: HttpFailure, assertion: Option<&Secret>) -> PullError {
        let mut error = failure.into_pull_error(PullStage::Token);
        if error.http_status.is_some_and(|s| (400..500).contains(&s) && s != 429) {
            error.transient = false;
        }
        let mut scrub = |value: &str| {
            if value.len() >= 8 {
                error.message = error.message.replace(value, "[redacted]");
            }
        };
        if let ClientProof::Secret(secret) = self.proof.as_ref() {
            scrub(secret.expose());
        }
        if let Some(assertion) = assertion {
            scrub(assertion.expose());
        }
        error
    }
}

/// When a token issued at `issued` expires, and when to stop using it: `renew_before` its expiry, or
/// half-way through its life if that is sooner (short-lived tokens would otherwise never be reused).
fn renewal(issued: Instant, lifetime: Duration, renew_before: Duration) -> (Instant, Instant) {
    let expires_at = issued + lifetime;
    (expires_at, expires_at - renew_before.min(lifetime / 2))
}

/// A signed client assertion for `token_endpoint`, `now` in Unix seconds.
pub(crate) fn client_assertion(
    key: &AssertionKey,
    client_id: &str,
    token_endpoint: &str,
    now: u64,
) -> Result<Secret, String> {
    #[derive(Serialize)]
    struct Header<'a> {
        alg: &'static str,
        typ: &'static str,
        x5t: &'a str,
    }
    #[derive(Serialize)]
    struct Claims<'a> {
        aud: &'a str,
        iss: &'a str,
        sub: &'a str,
        jti: String,
        nbf: u64,
        exp: u64,
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = Header { alg: "RS256", typ: "JWT", x5t: &key.x5t };
    let claims = Claims {
        aud: token_endpoint,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now.saturating_sub(CLOCK_SKEW),
        exp: now + ASSERTION_LIFETIME,
    };
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let claims = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
    let mut jwt = format!("{}.{}", b64.encode(header), b64.encode(claims));
    let signature = key
        .key
        .try_sign_with_rng(&mut rsa::rand_core::OsRng, jwt.as_bytes())
        .map_err(|_| "could not sign the client assertion with the stored key".to_owned())?;
    jwt.push('.');
    jwt.push_str(&b64.encode(signature.to_bytes()));
    Ok(Secret::new(jwt))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The parts of a token response we use. (`Debug` is safe: the token is a `Secret`.)
#[derive(Debug)]
pub(crate) struct TokenResponse {
    pub access_token: Secret,
    pub token_type: Option<String>,
    pub lifetime: Option<Duration>,
}

/// Reads a v1 token response, where numbers may arrive as strings (`"expires_in":"3599"`). The body
/// is never quoted in an error: it holds the token.
pub(crate) fn parse_token_response(body: &[u8]) -> Result<TokenResponse, Unreadable> {
    #[derive(Deserialize)]
    struct Raw {
        access_token: Option<String>,
        token_type: Option<String>,
        #[serde(default, deserialize_with = "number_or_string")]
        expires_in: Option<u64>,
        #[serde(default, deserialize_with = "number_or_string")]
        expires_on: Option<u64>,
    }
    let raw: Raw = serde_json::from_slice(body)
        .map_err(|_| Unreadable::retryable("the token response is not the expected JSON"))?;
    let access_token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Unreadable::permanent("the token response has no access_token"))?;
    if raw.token_type.as_deref().is_some_and(|kind| !kind.eq_ignore_ascii_case("bearer")) {
        // The type the far end named is not repeated: its text is its own to choose.
        return Err(Unreadable::permanent("the token type is not Bearer"));
    }
    let lifetime = raw
        .expires_in
        .map(Duration::from_secs)
        .or_else(|| raw.expires_on.map(|on| Duration::from_secs(on.saturating_sub(unix_now()))));
    Ok(TokenResponse { access_token: Secret::new(access_token), token_type: raw.token_type, lifetime })
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u64),
        Text(String),
    }
    Ok(match Option::<NumberOrString>::deserialize(d)? {
        Some(NumberOrString::Number(n)) => Some(n),
        Some(NumberOrString::Text(t)) => t.trim().parse().ok(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::tests::{CLIENT_THUMBPRINT, fixture};
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;

    fn key() -> AssertionKey {
        AssertionKey::from_stored(&fixture("client-cert.pem"), &Secret::new(fixture("client-key-pkcs8.pem")))
            .unwrap()
    }

    #[test]
    fn the_token_response_fixture_parses_with_numbers_as_strings() {
        let t = parse_token_response(azs_testkit::fixtures::text("token-response.json").as_bytes()).unwrap();
        assert_eq!(t.lifetime, Some(Duration::from_secs(3599)));
        assert_eq!(t.access_token.expose(), "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl");
        let numeric = parse_token_response(br#"{"access_token":"a","expires_in":60}"#).unwrap();
        assert_eq!(numeric.lifetime, Some(Duration::from_secs(60)));
    }

    #[test]
    fn tokens_are_renewed_five_minutes_early_or_half_way_when_short_lived() {
        let t0 = Instant::now();
        let five_minutes = Duration::from_secs(300);
        let (expires, renew) = renewal(t0, Duration::from_secs(3599), five_minutes);
        assert_eq!(expires - renew, five_minutes);
        let (expires, renew) = renewal(t0, Duration::from_secs(60), five_minutes);
        assert_eq!(renew - t0, Duration::from_secs(30));
        assert_eq!(expires - t0, Duration::from_secs(60));
    }

    #[test]
    fn an_unreadable_token_response_never_quotes_the_body() {
        let e = parse_token_response(br#"{"access_token":"SECRET-TOKEN","expires_in":[}"#).unwrap_err();
        assert!(!e.message.contains("SECRET-TOKEN"));
        assert!(parse_token_response(br#"{"token_type":"Bearer"}"#).is_err());
    }

    #[test]
    fn the_assertion_header_has_rs256_jwt_and_x5t_of_the_raw_sha1_bytes() {
        let jwt = client_assertion(&key(), "app-id", "https://adfs.example/adfs/oauth2/token", 1_795_683_300)
            .unwrap();
        let header = jsonwebtoken::decode_header(jwt.expose()).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let x5t = header.x5t.expect("x5t is present");
        let raw =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&x5t).expect("base64url, no padding");
        assert_eq!(raw.len(), 20, "the raw digest, not its hex text");
        assert_eq!(raw.iter().map(|b| format!("{b:02X}")).collect::<String>(), CLIENT_THUMBPRINT);
    }

    #[test]
    fn the_assertion_claims_name_the_token_endpoint_and_the_client() {
        let now = 1_795_683_300;
        let a = client_assertion(&key(), "app-id", "https://login.example/t/oauth2/token", now).unwrap();
        let b = client_assertion(&key(), "app-id", "https://login.example/t/oauth2/token", now).unwrap();
        let claims = |jwt: &Secret| -> serde_json::Value {
            let part = jwt.expose().split('.').nth(1).unwrap();
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap())
                .unwrap()
        };
        let c = claims(&a);
        assert_eq!(c["aud"], "https://login.example/t/oauth2/token");
        assert_eq!(c["iss"], "app-id");
        assert_eq!(c["sub"], "app-id");
        assert_eq!(c["nbf"], now - 90);
        assert_eq!(c["exp"], now + 600);
        assert_ne!(c["jti"], claims(&b)["jti"], "a fresh jti every time");
    }

    #[test]
    fn the_assertion_signature_verifies_with_the_certificates_public_key() {
        let jwt = client_assertion(&key(), "app-id", "https://x/oauth2/token", 1_795_683_300).unwrap();
        let (message, signature) = jwt.expose().rsplit_once('.').unwrap();
        let cert_pem = fixture("client-cert.pem");
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer| c.to_vec())
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let public = rsa::RsaPublicKey::from_public_key_der(cert.public_key().raw).unwrap();
        let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public);
        let signature = rsa::pkcs1v15::Signature::try_from(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature).unwrap().as_slice(),
        )
        .unwrap();
        verifier.verify(message.as_bytes(), &signature).expect("RS256 over header.claims");
    }
}
