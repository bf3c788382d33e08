//! What handlers take from a request: a JSON body (content type, size, and serde's complaints turned
//! into field errors), the `verify` query parameter, and the ids in the path.

use super::problem::Problem;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use azs_core::StampId;
use azs_core::error::ValidationErrors;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::error::Category;
use std::collections::HashMap;

/// How much of a too-large body is still read (and discarded) before answering 413, so that a client
/// still sending it reads our answer instead of a reset connection.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads every authenticated request body up front, at most [`BODY_LIMIT`](super::BODY_LIMIT) bytes
/// (413 above).
///
/// Answers that come before a handler reads the body (404, 405, a bad query) would otherwise leave it
/// unread; hyper then closes the connection under a client that is still writing, and the client sees
/// a broken pipe rather than the problem. A 401 is answered before this runs, body unread: a caller
/// without the token is owed no such courtesy, and reading for it would let it hold the server.
pub async fn buffer(req: Request, next: Next) -> Response {
    let limit = super::BODY_LIMIT;
    let declared =
        req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return Problem::too_large().into_response();
    }
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) if timed_out(&e) => {
                return Problem::plain(StatusCode::REQUEST_TIMEOUT, "The body did not arrive in time.")
                    .into_response();
            }
            Err(_) => {
                return Problem::plain(StatusCode::BAD_REQUEST, "The body could not be read.")
                    .into_response();
            }
        };
        seen += chunk.len();
        if seen <= limit {
            kept.extend_from_slice(&chunk);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > limit {
        return Problem::too_large().into_response();
    }
    next.run(Request::from_parts(parts, Body::from(kept))).await
}

/// Whether a body read failed because the server in front gave up waiting (`azs-usage serve` ends
/// a late body with an I/O error of kind `TimedOut`).
fn timed_out(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A JSON body, deserialised with the field named in every error.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(req.headers()) {
            return Err(Problem::plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Send the body as application/json (or an application/*+json type).",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large()
            } else {
                Problem::plain(StatusCode::BAD_REQUEST, "The body could not be read.")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.len() > "+json".len() && sub.ends_with("+json"))
}

/// Parses `bytes` as `T`. Serde's data errors become field errors naming the field (camelCase, dotted
/// for nested members) and the rule, never echoing the value sent (it may be a secret in the wrong field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // Serde lets a derived struct be read from an array, field by field in declaration order; the API
    // takes objects only, so a field is always named by its key.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(Problem::malformed_json("The body is empty; send a JSON object.")),
        Some(b'{') => {}
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
            return Err(Problem::invalid_field("", "must be a JSON object"));
        }
        Some(_) => {}
    }
    // `null` is not a value of any member (the document says so): serde would read it as "absent",
    // which for a PATCH means "unchanged", not what a caller sending null meant.
    if let Ok(members) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes) {
        let mut errors = ValidationErrors::default();
        for (name, _) in members.iter().filter(|(_, v)| v.is_null()) {
            errors.push(name.as_str(), "must not be null (leave the member out instead)");
        }
        if !errors.is_empty() {
            return Err(Problem::invalid_fields(errors));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => de.end().map(|()| value).map_err(|e| (".".to_owned(), e)),
        Err(e) => Err((e.path().to_string(), e.into_inner())),
    };
    parsed.map_err(|(path, inner)| {
        // serde_json reports some type errors as syntax errors (a number where an enum's string
        // belongs is "expected value"), so a body that is valid JSON is always a field error.
        let valid_json = || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        match inner.classify() {
            Category::Data => field_error(&path, &inner),
            Category::Syntax if valid_json() => field_error(&path, &inner),
            Category::Syntax | Category::Eof | Category::Io => Problem::malformed_json(format!(
                "{} at line {} column {}.",
                without_location(&inner),
                inner.line(),
                inner.column()
            )),
        }
    })
}

fn field_error(path: &str, inner: &serde_json::Error) -> Problem {
    let (field, rule) = describe(path, &without_location(inner));
    let mut errors = ValidationErrors::default();
    errors.push(field, rule);
    Problem::invalid_fields(errors)
}

fn without_location(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// The field and rule of a serde data error. `path` is serde_path_to_error's (`.` for the document).
fn describe(path: &str, message: &str) -> (String, String) {
    let at_path = || if path == "." { String::new() } else { path.to_owned() };
    let quoted = |m: &str| m.split('`').nth(1).map(|name| name.chars().take(128).collect::<String>());
    let join = |field: String| if path == "." || path.is_empty() { field } else { format!("{path}.{field}") };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let field = quoted(rest).unwrap_or_default();
        // The path already ends at the unknown key for some formats; avoid naming it twice.
        let field = if path.ends_with(&field) { at_path() } else { join(field) };
        return (field, "is not a known field".into());
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return (join(quoted(rest).unwrap_or_default()), "is required".into());
    }
    if let Some(rest) = message.strip_prefix("duplicate field ") {
        return (join(quoted(rest).unwrap_or_default()), "must appear only once".into());
    }
    if let Some((_, expected)) = message.rsplit_once(", expected ") {
        let expected = if expected.starts_with("struct ") || expected.starts_with("a map") {
            "a JSON object"
        } else {
            expected
        };
        let rule = format!("must be {expected}");
        return (at_path(), rule);
    }
    (at_path(), "has the wrong type or value".into())
}

/// `?verify=true|false` (default true). Other parameters are ignored: platforms add their own (Azure
/// Functions passes `code=` through).
pub struct Verify(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Verify {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut verify = true;
        let mut seen = false;
        for (name, value) in url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
            if name != "verify" {
                continue;
            }
            if seen {
                return Err(Problem::invalid_field("verify", "must be given at most once"));
            }
            seen = true;
            verify = match value.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(Problem::invalid_field("verify", "must be true or false")),
            };
        }
        Ok(Verify(verify))
    }
}

pub(super) async fn path_params(parts: &mut Parts) -> Result<HashMap<String, String>, Problem> {
    Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map(|Path(params)| params)
        .map_err(|_| Problem::plain(StatusCode::NOT_FOUND, "No resource at this path."))
}

/// The `{id}` of `/stamps/{id}...`: a stamp's id or its name (percent-decoded); the registrar resolves
/// it, and a handle that names no stamp answers 404 like an unknown id.
pub struct StampPath(pub StampId);

impl<S: Send + Sync> FromRequestParts<S> for StampPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let params = path_params(parts).await?;
        params
            .get("id")
            .map(|handle| handle.trim())
            .filter(|handle| !handle.is_empty() && handle.chars().count() <= 256)
            .map(|handle| StampPath(StampId(handle.to_owned())))
            .ok_or_else(Problem::stamp_not_found)
    }
}

/// The `{externalSubscriptionId}` of a mapping path, percent-decoded; the registrar checks its rules.
pub struct ExternalSubscriptionPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ExternalSubscriptionPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut params = path_params(parts).await?;
        params
            .remove("external_subscription_id")
            .map(ExternalSubscriptionPath)
            .ok_or_else(|| Problem::plain(StatusCode::NOT_FOUND, "No resource at this path."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::registration::StampRegistration;

    fn field_errors(body: &str) -> Vec<(String, String)> {
        let p = parse_json::<StampRegistration>(body.as_bytes()).expect_err("refused");
        p.errors.clone().unwrap_or_default().into_iter().map(|e| (e.field, e.rule)).collect()
    }

    #[test]
    fn an_unknown_field_is_named() {
        assert_eq!(
            field_errors(r#"{"name":"x","surprise":1}"#),
            vec![("surprise".into(), "is not a known field".into())]
        );
    }

    #[test]
    fn a_wrong_type_names_the_field_and_the_expected_type_without_the_value() {
        let errors = field_errors(r#"{"isAdfs":"hunter2"}"#);
        assert_eq!(errors, vec![("isAdfs".into(), "must be a boolean".into())]);
        let errors = field_errors(r#"{"applicationSecret":12}"#);
        assert_eq!(errors, vec![("applicationSecret".into(), "must be a string".into())]);
    }

    #[test]
    fn an_unknown_query_mode_lists_the_known_ones() {
        let errors = field_errors(r#"{"queryMode":"fast"}"#);
        assert_eq!(errors[0].0, "queryMode");
        assert!(errors[0].1.contains("all-tenants") && !errors[0].1.contains("fast"), "{errors:?}");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused_without_a_field() {
        assert_eq!(field_errors("[1]"), vec![(String::new(), "must be a JSON object".into())]);
    }

    #[test]
    fn syntax_errors_and_trailing_data_are_malformed_json() {
        for body in ["{", "", "{} {}", "{\"name\":}"] {
            let p = parse_json::<StampRegistration>(body.as_bytes()).err().unwrap();
            assert_eq!(p.kind, super::super::problem::kind::MALFORMED_JSON, "{body}");
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, v.parse().unwrap());
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/+json"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
