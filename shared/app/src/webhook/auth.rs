//! Who may call the webhook. Either the app checks its API token itself, or the platform in front of
//! it (a Lambda function URL with IAM auth, Azure Functions keys) already did.
//!
//! The token travels in `X-Azs-Api-Token: <token>` or `Authorization: Bearer <token>`. The own header
//! exists because a Lambda function URL with AWS_IAM auth needs `Authorization` for the caller's SigV4
//! signature; when `X-Azs-Api-Token` is sent it is the one checked and `Authorization` is left alone.
//! The token is checked on the headers, before any body byte is read.
//!
//! The token is configured the same way on every platform: `AZS_USAGE_API_TOKEN_SECRET` names a
//! secret in the secret store ([`configured`]). Behind a Lambda function URL with IAM auth or Azure
//! Functions keys it is defence in depth: a caller who got past the platform still needs the token.
//!
//! With a token configured, a caller may also sign the raw body: `X-Azs-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the exact bytes sent, keyed with the same token. The signature is checked when present
//! (a wrong one is refused) and is never a substitute for the token: a signature over an empty
//! body would otherwise be a replayable constant.

use super::caller::{self, Caller, PlatformCaller};
use super::problem::Problem;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use azs_core::Secret;
use azs_core::audit::Actor;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The shortest API token accepted: anything shorter is guessable.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// Why the configured API token cannot be used. The token itself never appears.
#[derive(Debug, thiserror::Error)]
pub enum TokenSecretError {
    #[error("{variable} names secret {name:?}, which is not in the secret store")]
    Missing { variable: &'static str, name: String },
    #[error("the API token in secret {name:?} must be at least {MIN_TOKEN_LENGTH} characters")]
    TooShort { name: String },
    #[error("reading the API token secret {name:?}: {reason}")]
    Unreadable { name: String, reason: String },
}

/// The bearer token the deployment configured, `None` when `AZS_USAGE_API_TOKEN_SECRET` is unset.
/// A configured but missing or short token is an error: failing closed beats serving unauthenticated.
pub async fn configured(
    config: &crate::config::AppConfig,
    secrets: &dyn azs_core::ports::SecretStore,
) -> Result<Option<Secret>, TokenSecretError> {
    let Some(name) = &config.api_token_secret else { return Ok(None) };
    let token = secrets
        .get_secret(name)
        .await
        .map_err(|e| TokenSecretError::Unreadable { name: name.clone(), reason: e.to_string() })?
        .ok_or_else(|| TokenSecretError::Missing {
            variable: crate::config::API_TOKEN_SECRET,
            name: name.clone(),
        })?;
    if token.expose().trim().chars().count() < MIN_TOKEN_LENGTH {
        return Err(TokenSecretError::TooShort { name: name.clone() });
    }
    Ok(Some(Secret::new(token.expose().trim())))
}

/// How a platform entry point (Lambda, the Azure handler) authenticates callers: the configured token
/// when there is one, on top of the platform's own auth; else the platform's auth alone.
pub async fn behind_platform(
    config: &crate::config::AppConfig,
    secrets: &dyn azs_core::ports::SecretStore,
) -> Result<ApiAuth, TokenSecretError> {
    Ok(match configured(config, secrets).await? {
        Some(token) => ApiAuth::Bearer(token),
        None => ApiAuth::PlatformOnly,
    })
}

/// Optional HMAC signature of the body (see the module documentation).
pub const SIGNATURE_HEADER: &str = "x-azs-signature";

/// The API token in a header of its own, for callers whose `Authorization` header the platform takes.
pub const TOKEN_HEADER: &str = "x-azs-api-token";

/// How callers authenticate.
#[derive(Debug, Clone)]
pub enum ApiAuth {
    /// Every request carries the token, in `X-Azs-Api-Token` or as `Authorization: Bearer <token>`.
    /// An empty token admits no one.
    Bearer(Secret),
    /// The platform authenticated the caller before the request reached us; everything passes.
    PlatformOnly,
}

/// Admits a request on its headers alone. It runs before any body byte is read, so a caller without
/// the token can neither make the server wait for a slow body nor make it buffer a large one.
/// An admitted request carries its [`Caller`]: the platform's identity when the entry point found
/// one, else `api-token` or `platform`, by how it was admitted.
pub async fn require_token(State(auth): State<Arc<ApiAuth>>, mut req: Request, next: Next) -> Response {
    let platform = req.extensions().get::<PlatformCaller>().map(|p| p.0.clone());
    let ApiAuth::Bearer(token) = &*auth else {
        let caller = platform.unwrap_or_else(|| Actor::new(caller::PLATFORM));
        req.extensions_mut().insert(Caller(caller));
        return next.run(req).await;
    };
    let refusal = match presented_token(req.headers()) {
        Presented::Token(given) if same_token(given, token) => {
            let caller = platform.unwrap_or_else(|| Actor::new(caller::API_TOKEN));
            req.extensions_mut().insert(Caller(caller));
            return next.run(req).await;
        }
        Presented::Nothing => {
            Problem::unauthorized("Send X-Azs-Api-Token: <token> or Authorization: Bearer <token>.", false)
        }
        Presented::Token(_) | Presented::Unusable => {
            Problem::unauthorized("The API token is not valid.", true)
        }
    };
    discard_after_answering(req.into_body());
    refusal.into_response()
}

/// How long, and how much of, a refused request's body is still taken off the connection after the 401.
const DISCARD_FOR: Duration = Duration::from_secs(2);
const DISCARD_AT_MOST: usize = 1024 * 1024;

/// Takes what the client is still sending off the connection, after the answer has gone, and throws
/// it away. Closing on unread bytes makes the client's side reset the connection, and a reset drops
/// our 401 before the client reads it. Bounded in time and size, and nothing is kept, so a caller
/// without the token gains at most two seconds of a connection from it.
fn discard_after_answering(body: Body) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + DISCARD_FOR;
        let mut chunks = body.into_data_stream();
        let mut seen = 0usize;
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, chunks.next()).await {
            seen += chunk.len();
            if seen > DISCARD_AT_MOST {
                break;
            }
        }
    });
}

/// Checks `X-Azs-Signature` when a caller sent one. It needs the body, so it runs after
/// `body::buffer` (and after [`require_token`]: a signature never stands in for the token).
pub async fn check_signature(State(auth): State<Arc<ApiAuth>>, req: Request, next: Next) -> Response {
    let ApiAuth::Bearer(token) = &*auth else {
        return next.run(req).await;
    };
    let Some(signature) = req.headers().get(SIGNATURE_HEADER) else {
        return next.run(req).await;
    };
    let Some(expected) = signature.to_str().ok().and_then(parse_signature) else {
        return Problem::unauthorized("X-Azs-Signature must be sha256=<64 hexadecimal digits>.", true)
            .into_response();
    };
    // The body is already buffered (and within the limit) by `body::buffer`.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, super::BODY_LIMIT).await else {
        return Problem::too_large().into_response();
    };
    if !signature_matches(token, &bytes, &expected) {
        return Problem::unauthorized("X-Azs-Signature does not match the body.", true).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// What a request offers as the API token.
#[derive(Debug, PartialEq)]
enum Presented<'a> {
    Nothing,
    Token(&'a str),
    /// `X-Azs-Api-Token` sent twice or not as visible ASCII: no token, and not a fall-back to `Authorization`.
    Unusable,
}

/// `X-Azs-Api-Token` when the request has that header at all: `Authorization` then belongs to the
/// platform in front (a Lambda function URL with AWS_IAM auth takes a SigV4 signature there),
/// whatever it holds. Otherwise `Authorization: Bearer`.
fn presented_token(headers: &HeaderMap) -> Presented<'_> {
    let mut own = headers.get_all(TOKEN_HEADER).iter();
    match (own.next(), own.next()) {
        (None, _) => bearer(headers).map_or(Presented::Nothing, Presented::Token),
        (Some(value), None) => value.to_str().map_or(Presented::Unusable, |t| Presented::Token(t.trim())),
        (Some(_), Some(_)) => Presented::Unusable,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Compares digests so the time taken depends on neither the token's length nor its content.
fn same_token(given: &str, expected: &Secret) -> bool {
    if expected.expose().is_empty() {
        return false;
    }
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.expose().as_bytes());
    given.as_slice().ct_eq(expected.as_slice()).into()
}

fn parse_signature(value: &str) -> Option<Vec<u8>> {
    let hex = value.trim().strip_prefix("sha256=")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

fn signature_matches(token: &Secret, body: &[u8], expected: &[u8]) -> bool {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(token.expose().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        h
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_other_schemes_are_not_bearer() {
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
    }

    #[test]
    fn x_azs_api_token_when_present_is_the_token_whatever_authorization_holds() {
        // Given a SigV4 Authorization (the platform's) and the app's token in its own header
        let mut h = headers("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/lambda/aws4_request");
        h.insert(TOKEN_HEADER, HeaderValue::from_static("app-token"));
        assert_eq!(presented_token(&h), Presented::Token("app-token"));
        // A bearer token does not stand in for a present X-Azs-Api-Token, even an empty one
        let mut h = headers("Bearer app-token");
        h.insert(TOKEN_HEADER, HeaderValue::from_static(""));
        assert_eq!(presented_token(&h), Presented::Token(""));
        h.append(TOKEN_HEADER, HeaderValue::from_static("app-token"));
        assert_eq!(presented_token(&h), Presented::Unusable);
        // Without it, Authorization: Bearer
        assert_eq!(presented_token(&headers("Bearer app-token")), Presented::Token("app-token"));
        assert_eq!(presented_token(&headers("AWS4-HMAC-SHA256 Credential=x")), Presented::Nothing);
    }

    #[test]
    fn an_empty_configured_token_admits_no_one() {
        assert!(!same_token("", &Secret::new("")));
        assert!(same_token("t0ken", &Secret::new("t0ken")));
        assert!(!same_token("t0ken2", &Secret::new("t0ken")));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body_in_lower_or_upper_hex() {
        let token = Secret::new("key");
        // RFC 4231-style check computed independently: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let hex = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
        let body = b"The quick brown fox jumps over the lazy dog";
        assert!(signature_matches(&token, body, &parse_signature(&format!("sha256={hex}")).unwrap()));
        assert!(signature_matches(
            &token,
            body,
            &parse_signature(&format!("sha256={}", hex.to_uppercase())).unwrap()
        ));
        assert!(!signature_matches(&token, b"other", &parse_signature(&format!("sha256={hex}")).unwrap()));
        assert!(parse_signature("sha1=00").is_none());
        assert!(parse_signature("sha256=zz").is_none());
    }
}
