//! Errors as RFC 9457 problem details (`application/problem+json`), and the one place that decides
//! which [`RegistrationError`] becomes which status.

use super::log::RequestId;
use crate::registrar::RegistrationError;
use axum::body::Body;
use axum::extract::{OriginalUri, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use azs_core::error::{FieldError, ValidationErrors};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::any::Any;

pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client should wait after a 503 before retrying.
const RETRY_AFTER_SECONDS: &str = "30";

/// Problem types of this API. Plain HTTP failures (401, 404 for paths, 405, 413, 415, 500) are `about:blank`.
pub mod kind {
    pub const INVALID_FIELDS: &str = "tag:azs-usage,2026:problem:invalid-fields";
    pub const UNUSABLE_FIELDS: &str = "tag:azs-usage,2026:problem:unusable-fields";
    pub const MALFORMED_JSON: &str = "tag:azs-usage,2026:problem:malformed-json";
    pub const UNVERIFIED: &str = "tag:azs-usage,2026:problem:unverified";
    pub const DUPLICATE_STAMP: &str = "tag:azs-usage,2026:problem:duplicate-stamp";
    pub const STAMP_NOT_FOUND: &str = "tag:azs-usage,2026:problem:stamp-not-found";
    pub const MAPPING_NOT_FOUND: &str = "tag:azs-usage,2026:problem:mapping-not-found";
    pub const UNAVAILABLE: &str = "tag:azs-usage,2026:problem:unavailable";
    pub const BLANK: &str = "about:blank";
}

/// One problem answer. `instance` and `requestId` are filled in by [`complete`] on the way out.
/// Boxed: it travels in `Result::Err` through every handler and extractor.
#[derive(Debug, Clone)]
pub struct Problem(Box<ProblemDetails>);

/// The members of a [`Problem`].
#[derive(Debug, Clone, Serialize)]
pub struct ProblemDetails {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    #[serde(serialize_with = "status_code")]
    pub status: StatusCode,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Extension members (`existingId`, `stage`, `upstreamCode`...).
    #[serde(flatten)]
    pub members: Map<String, Value>,
    #[serde(skip)]
    headers: Vec<(HeaderName, HeaderValue)>,
}

fn status_code<S: serde::Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self(Box::new(ProblemDetails {
            kind,
            title: title.into(),
            status,
            detail: detail.into(),
            instance: None,
            request_id: None,
            errors: None,
            members: Map::new(),
            headers: Vec::new(),
        }))
    }

    /// An `about:blank` problem: the title is the status's reason phrase.
    pub fn plain(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::new(status, kind::BLANK, status.canonical_reason().unwrap_or("Error"), detail)
    }

    /// 422: every field well-formed, but some cannot be acted on as things stand (see
    /// [`RegistrationError::Unusable`]); `errors` names them like a 400 does.
    pub fn unusable_fields(errors: ValidationErrors) -> Self {
        let mut p = Self::invalid_fields(errors);
        p.status = StatusCode::UNPROCESSABLE_ENTITY;
        p.kind = kind::UNUSABLE_FIELDS;
        p.title = "The request cannot be acted on".into();
        p
    }

    pub fn invalid_fields(errors: ValidationErrors) -> Self {
        let names: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
        let detail = format!(
            "{} invalid: {}",
            if names.len() == 1 { "1 field is" } else { "some fields are" },
            names.join(", ")
        );
        let mut p = Self::new(
            StatusCode::BAD_REQUEST,
            kind::INVALID_FIELDS,
            "The request has invalid fields",
            detail,
        );
        p.errors = Some(errors.0);
        p
    }

    pub fn invalid_field(field: &str, rule: &str) -> Self {
        let mut errors = ValidationErrors::default();
        errors.push(field, rule);
        Self::invalid_fields(errors)
    }

    pub fn malformed_json(detail: impl Into<String>) -> Self {
        let mut p =
            Self::new(StatusCode::BAD_REQUEST, kind::MALFORMED_JSON, "The body is not valid JSON", detail);
        p.errors = Some(Vec::new());
        p
    }

    pub fn stamp_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            kind::STAMP_NOT_FOUND,
            "No such stamp",
            "No stamp is registered under this id.",
        )
    }

    pub fn unauthorized(detail: &str, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            r#"Bearer realm="azs-usage", error="invalid_token""#
        } else {
            r#"Bearer realm="azs-usage""#
        };
        Self::plain(StatusCode::UNAUTHORIZED, detail)
            .with_header(axum::http::header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge))
    }

    pub fn too_large() -> Self {
        Self::plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The body is larger than {} KiB.", super::BODY_LIMIT / 1024),
        )
    }

    pub(super) fn with_member(mut self, name: &str, value: Value) -> Self {
        self.members.insert(name.to_owned(), value);
        self
    }

    fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The answer to a registrar failure. `base` is the router's mount prefix (for `Location`).
    pub fn from_registration(e: RegistrationError, base: &str) -> Self {
        match e {
            RegistrationError::Invalid(errors) => Self::invalid_fields(errors),
            RegistrationError::Unusable(errors) => Self::unusable_fields(errors),
            RegistrationError::Unverified(pull) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                kind::UNVERIFIED,
                "The stamp could not be verified",
                pull.message.clone(),
            )
            .with_member("stage", json!(pull.stage))
            .with_member("upstreamStatus", json!(pull.http_status))
            .with_member("upstreamCode", json!(pull.upstream_code))
            .with_member("transient", json!(pull.transient)),
            RegistrationError::Duplicate(existing) => {
                let location = format!("{base}/stamps/{existing}");
                let mut p = Self::new(
                    StatusCode::CONFLICT,
                    kind::DUPLICATE_STAMP,
                    "The stamp is already registered",
                    format!("A stamp with this admin ARM endpoint and admin subscription is registered as {existing}."),
                )
                .with_member("existingId", json!(existing));
                if let Ok(value) = HeaderValue::from_str(&location) {
                    p = p.with_header(LOCATION, value);
                }
                p
            }
            RegistrationError::NotFound(_) => Self::stamp_not_found(),
            RegistrationError::MappingNotFound(_, external) => Self::new(
                StatusCode::NOT_FOUND,
                kind::MAPPING_NOT_FOUND,
                "No such mapping",
                format!("Subscription {external} has no mapping on this stamp."),
            ),
            RegistrationError::Unavailable(reason) => {
                // The reason names our infrastructure; it is logged, not shown to the caller.
                tracing::warn!(error = %reason, "webhook: store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    kind::UNAVAILABLE,
                    "Temporarily unavailable",
                    "The database or the secret store is unavailable; nothing was changed. Retry later.",
                )
                .with_header(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS))
            }
        }
    }

    fn render(&self) -> Response {
        let body = serde_json::to_vec(&*self.0).expect("a problem serialises");
        let mut res = (self.status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        res.extensions_mut().insert(self.clone());
        res
    }
}

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;
    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.render()
    }
}

/// Fallback for paths no route serves.
pub async fn no_route() -> Problem {
    Problem::plain(StatusCode::NOT_FOUND, "No resource at this path.")
}

/// `CatchPanicLayer` handler: a panic is a bug, answered as a problem, never as a dropped connection.
pub fn from_panic(payload: Box<dyn Any + Send + 'static>) -> Response {
    // Only a static message is logged: a formatted one could carry request data.
    let message = payload.downcast_ref::<&'static str>().copied().unwrap_or("(formatted message not logged)");
    tracing::error!(panic = message, "webhook: handler panicked");
    Problem::plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The request failed unexpectedly; nothing is known to have changed.",
    )
    .into_response()
}

/// Makes every error answer a complete problem: fills `instance` and `requestId`, and turns the bare
/// error responses axum produces itself (405 with `Allow`, body-limit 413...) into problems.
pub async fn complete(req: Request, next: Next) -> Response {
    let instance =
        req.extensions().get::<OriginalUri>().map_or_else(|| req.uri().path(), |u| u.0.path()).to_owned();
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
    let method = req.method().clone();
    let res = next.run(req).await;
    let status = res.status();
    let mut problem = match res.extensions().get::<Problem>() {
        Some(p) => p.clone(),
        None if status.is_client_error() || status.is_server_error() => {
            Problem::plain(status, generic_detail(status, &method))
        }
        None => return res,
    };
    problem.instance = Some(instance);
    problem.request_id = request_id;
    let (mut parts, _) = res.into_parts();
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(CONTENT_LENGTH);
    parts.extensions.insert(problem.clone());
    let body = serde_json::to_vec(&*problem.0).expect("a problem serialises");
    Response::from_parts(parts, Body::from(body))
}

fn generic_detail(status: StatusCode, method: &Method) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on this resource; the Allow header lists what is.")
        }
        StatusCode::NOT_FOUND => "No resource at this path.".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => format!("The body is larger than {} KiB.", super::BODY_LIMIT / 1024),
        _ => status.canonical_reason().unwrap_or("Error").to_owned(),
    }
}
