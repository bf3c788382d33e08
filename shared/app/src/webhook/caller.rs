//! Who is calling: the identity the audit trail records for a change. Taken only from what the
//! platform vouches for, never from a header a client could set where the platform does not set it:
//!
//! | where | identity | why it can be trusted |
//! |---|---|---|
//! | Lambda Function URL, `AWS_IAM` auth | `aws-iam:<userArn>` (`callerId` when there is no ARN) | the Lambda service writes `requestContext.authorizer.iam` after checking the SigV4 signature; a client writes no part of the request context. The bootstrap reads it ([`aws_iam`]) |
//! | Azure Functions with App Service Authentication (Easy Auth) | `azure-principal:<name> (<id>)` | Easy Auth removes `X-MS-CLIENT-PRINCIPAL-*` from every incoming request and sets them for the caller it authenticated. Without Easy Auth a client's own headers pass through untouched, so the handler reads them only when the platform says Easy Auth is on (`WEBSITE_AUTH_ENABLED`, [`easy_auth`]) |
//! | the app's API token | `api-token` | the caller proved the token; the token names no one, and never appears |
//! | the platform alone (Function keys, no token) | `platform` | a Function key names no one |
//!
//! An entry point puts a platform identity into the request as a [`PlatformCaller`] before the
//! router; [`super::auth::require_token`] then settles the [`Caller`] every handler sees.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use azs_core::audit::Actor;
use std::convert::Infallible;

/// An identity the platform in front of the app established (see the module table).
#[derive(Debug, Clone)]
pub struct PlatformCaller(pub Actor);

/// The caller a change is recorded under: the platform's identity when there is one, else how the
/// request was admitted.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

/// The actor of a request the API token admitted.
pub const API_TOKEN: &str = "api-token";
/// The actor of a request only the platform admitted, naming no one (a Function key).
pub const PLATFORM: &str = "platform";

/// A Lambda Function URL's IAM caller (`requestContext.authorizer.iam`): its user or role ARN, or its
/// caller id when the ARN is missing.
pub fn aws_iam(user_arn: Option<&str>, caller_id: Option<&str>) -> Option<PlatformCaller> {
    let identity = [user_arn, caller_id].into_iter().flatten().map(str::trim).find(|s| !s.is_empty())?;
    Some(PlatformCaller(Actor::new(&format!("aws-iam:{identity}"))))
}

/// The principal Easy Auth authenticated, from the headers it sets. Call only when Easy Auth is on:
/// otherwise these headers are whatever the client sent.
pub fn easy_auth(headers: &HeaderMap) -> Option<PlatformCaller> {
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let (name, id) = (header("x-ms-client-principal-name"), header("x-ms-client-principal-id"));
    let identity = match (name, id) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (Some(only), None) | (None, Some(only)) => only.to_owned(),
        (None, None) => return None,
    };
    Some(PlatformCaller(Actor::new(&format!("azure-principal:{identity}"))))
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        // require_token runs before every route and always settles the caller; this fallback names no
        // one rather than guessing.
        Ok(parts.extensions.get::<Caller>().cloned().unwrap_or_else(|| Caller(Actor::new("unknown"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn an_iam_caller_is_its_arn_or_else_its_caller_id() {
        let arn = aws_iam(Some("arn:aws:iam::123456789012:user/ops"), Some("AIDAEXAMPLE")).unwrap();
        assert_eq!(arn.0.as_str(), "aws-iam:arn:aws:iam::123456789012:user/ops");
        assert_eq!(aws_iam(Some(" "), Some("AIDAEXAMPLE")).unwrap().0.as_str(), "aws-iam:AIDAEXAMPLE");
        assert!(aws_iam(None, None).is_none());
    }

    #[test]
    fn an_easy_auth_principal_is_its_name_and_id() {
        let mut headers = HeaderMap::new();
        assert!(easy_auth(&headers).is_none());
        headers.insert("x-ms-client-principal-name", HeaderValue::from_static("ops@contoso.com"));
        headers.insert(
            "x-ms-client-principal-id",
            HeaderValue::from_static("00000000-0000-0000-0000-000000000001"),
        );
        assert_eq!(
            easy_auth(&headers).unwrap().0.as_str(),
            "azure-principal:ops@contoso.com (00000000-0000-0000-0000-000000000001)"
        );
    }
}
