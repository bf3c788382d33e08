//! The HTTP layer for one stamp: one `reqwest` client that trusts the stamp's own CA *in addition to*
//! the system roots, timeouts on connecting and on every request, and the retry loop every call to the
//! stamp goes through.
//!
//! What is retried (see [`crate::retry`]): 429, 500, 502, 503, 504, connection failures, timeouts, a
//! body cut off half-way, and a success whose body the caller could not read (a malformed page).
//! What is never retried: every other status (the usage API's 400 codes, 401 and 403, 404) and a TLS
//! certificate the client does not trust: asking again cannot change those answers, and a retry storm
//! against a stamp that refuses us helps nobody. The one exception, a single fresh token after a 401,
//! belongs to the session, which knows about tokens (see `session.rs`).
//!
//! Every call is HTTPS, never follows a redirect (a 3xx is a failure that says so: a redirect could
//! carry the bearer token or the client secret to a host nobody registered), never through a proxy, and
//! only to a host the outbound policy admits (`AZS_USAGE_ALLOWED_STAMP_HOSTS`, and never a loopback,
//! link-local or metadata address it does not name explicitly: [`crate::hosts`]). These
//! are checked on the request itself, just before it is sent, so they hold for the admin ARM endpoint,
//! the discovered login and token endpoints and every `nextLink` alike.
//!
//! Nothing here ever logs or returns a request body, a header value or a token. What reaches the
//! caller is short and typed: the call's name, the HTTP status, the stamp's own error code, and a fixed
//! phrase for transport failures. Upstream error messages, bodies and transport error chains may echo
//! whatever the far end chooses (an internal service's page, if a caller pointed us at one), so they
//! go to the debug log only.

use crate::credential::parse_ca_bundle;
use crate::hosts::{AllowedResolver, StampHosts};
use crate::retry::{RetryPolicy, parse_retry_after};
use azs_core::ports::{PullError, PullStage};
use chrono::Utc;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// Timeouts, retries and limits for talking to stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// How long establishing a connection (TCP + TLS) may take.
    pub connect_timeout: Duration,
    /// How long one request may take from sending to the last byte of the answer.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// The largest answer we read; a usage page of 1,000 rows is about 1 MB.
    pub max_body_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            max_body_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The reqwest client of one stamp and the retry loop around it.
#[derive(Clone)]
pub(crate) struct StampHttp {
    client: reqwest::Client,
    settings: HttpSettings,
    allowed: Option<Arc<StampHosts>>,
}

/// A 2xx answer the caller could not use.
#[derive(Debug)]
pub(crate) struct Unreadable {
    pub message: String,
    /// Whether asking again may give a readable answer (a truncated or garbled page may; a login
    /// endpoint that serves HTML will not).
    pub retryable: bool,
}

impl Unreadable {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: true }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), retryable: false }
    }
}

/// The stamp's own error code: ARM's `{"error":{"code","message"}}` or OAuth's
/// `{"error":"invalid_client","error_description":"AADSTS7000215: ...","error_codes":[7000215]}`. Only
/// the code travels on (a short token of letters, digits, `_`, `.`, `-`); messages are logged at debug.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UpstreamError {
    pub code: Option<String>,
}

/// Why a call to the stamp gave up.
#[derive(Debug)]
pub(crate) enum HttpFailure {
    /// An answer with a status we do not retry, or kept getting until the attempts ran out.
    Status { what: &'static str, status: u16, upstream: UpstreamError, exhausted: bool },
    /// No answer: connection refused or reset, timeout, TLS failure.
    Transport { what: &'static str, message: String, untrusted_certificate: bool, exhausted: bool },
    /// A success whose body the caller could not read.
    Unreadable { what: &'static str, message: String, exhausted: bool },
    /// Not sent: the URL is not https, or its host is not allowed.
    Refused { what: &'static str, reason: String },
}

impl HttpFailure {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpFailure::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The failure as the collection loop sees it, for `stage`.
    pub fn into_pull_error(self, stage: PullStage) -> PullError {
        match self {
            HttpFailure::Status { what, status, upstream, exhausted } => {
                let transient = exhausted
                    || retryable_status(status)
                    // The window reaches past what the stamp has processed; a later run will do.
                    || upstream.code.as_deref() == Some("RequestEndTimeIsInFuture");
                let hint = match status {
                    300..=399 => " (a redirect; redirects are never followed: register the URL that answers)",
                    401 => " (the stamp refused the token)",
                    403 => {
                        " (the service principal needs Owner, Contributor or Reader on the admin subscription)"
                    }
                    _ if exhausted => " (gave up after retrying)",
                    _ => "",
                };
                let code = upstream.code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
                PullError {
                    stage,
                    http_status: Some(status),
                    upstream_code: upstream.code,
                    message: format!("{what} answered HTTP {status}{code}{hint}"),
                    transient,
                }
            }
            HttpFailure::Transport { what, message, untrusted_certificate, exhausted } => PullError {
                stage,
                http_status: None,
                upstream_code: None,
                message: if untrusted_certificate {
                    format!(
                        "{what}: the server's TLS certificate is not trusted ({message}); register the \
                         stamp's root CA as caCertificate"
                    )
                } else if exhausted {
                    format!("{what}: {message} (gave up after retrying)")
                } else {
                    format!("{what}: {message}")
                },
                transient: !untrusted_certificate,
            },
            HttpFailure::Unreadable { what, message, exhausted } => PullError {
                stage,
                http_status: None,
                upstream_code: None,
                message: format!(
                    "{what}: unreadable answer: {message}{}",
                    if exhausted { " (gave up after retrying)" } else { "" }
                ),
                transient: exhausted,
            },
            HttpFailure::Refused { what, reason } => PullError {
                stage,
                http_status: None,
                upstream_code: None,
                message: format!("{what}: not called: {reason}"),
                transient: false,
            },
        }
    }
}

/// What was wrong with a JSON answer, in our words: serde's own message may quote the answer's text
/// (`invalid type: string "..."`), which is the far end's to choose and never reaches a caller.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of another shape",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// Statuses that mean "busy or broken for now": worth asking again. Every 5xx, as the usage API's
/// reference says (no 429 or 5xx contract is documented; gateways in front of a stamp answer 52x too).
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500..=599)
}

impl StampHttp {
    /// A client trusting the system roots plus `ca_pem` (the stamp's own root, if it has one), calling
    /// only hosts `allowed` admits (when `None`: any host but the special addresses).
    pub fn new(
        ca_pem: Option<&str>,
        settings: HttpSettings,
        allowed: Option<Arc<StampHosts>>,
    ) -> Result<Self, PullError> {
        let configuration = |message: String| PullError {
            stage: PullStage::Configuration,
            http_status: None,
            upstream_code: None,
            message,
            transient: false,
        };
        let mut extra_roots = Vec::new();
        if let Some(pem) = ca_pem.filter(|p| !p.trim().is_empty()) {
            let certs = parse_ca_bundle(pem).map_err(|e| configuration(e.to_string()))?;
            for der in certs {
                extra_roots.push(
                    reqwest::Certificate::from_der(&der)
                        .map_err(|e| configuration(format!("caCertificate: {e}")))?,
                );
            }
        }
        let mut builder = reqwest::Client::builder()
            // Added to the platform's roots, never replacing them (`tls_certs_only` would).
            .tls_certs_merge(extra_roots)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("azs-usage/", env!("CARGO_PKG_VERSION")));
        // Every name resolves through the outbound policy, and no proxy is used: a proxy would
        // resolve and connect on our behalf, past the address check.
        let policy = allowed.clone().unwrap_or_default();
        builder = builder.no_proxy().dns_resolver(Arc::new(AllowedResolver { hosts: policy }));
        let client =
            builder.build().map_err(|e| configuration(format!("could not build the HTTP client: {e}")))?;
        Ok(Self { client, settings, allowed })
    }

    /// Sends the request `build` makes (again for every attempt), reads the whole answer, and hands a
    /// success's body to `read`. Retries what is retryable per the policy; every retry adds one to
    /// `retries`.
    pub async fn call<T>(
        &self,
        stage: PullStage,
        what: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        read: impl Fn(&[u8]) -> Result<T, Unreadable>,
        retries: &mut u64,
    ) -> Result<T, HttpFailure> {
        self.call_reusing(stage, what, build, read, retries, &mut Vec::new()).await
    }

    /// [`call`](Self::call), reading the answer into `body` (cleared first). Callers that fetch page
    /// after page pass the same buffer: a usage page is about 600 KB, and a fresh buffer per page is
    /// fresh memory from the kernel each time (the process maps allocations over 128 KiB on their own;
    /// see azs-process): 14 % of the collector's CPU went to those page faults before.
    pub async fn call_reusing<T>(
        &self,
        stage: PullStage,
        what: &'static str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        read: impl Fn(&[u8]) -> Result<T, Unreadable>,
        retries: &mut u64,
        body: &mut Vec<u8>,
    ) -> Result<T, HttpFailure> {
        let policy = self.settings.retry;
        let max_attempts = policy.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let last = attempt >= max_attempts;
            let (failure, retry_after) = match self.attempt(what, &build, &read, body).await {
                Ok(value) => return Ok(value),
                Err(Attempt::Final(failure)) => return Err(failure),
                Err(Attempt::Retryable(failure, retry_after)) => (failure, retry_after),
            };
            if last {
                return Err(failure.exhausted());
            }
            let delay = policy.delay(attempt, retry_after);
            warn!(
                %stage, call = what, status = failure.status(), attempt, max_attempts,
                delay_ms = delay.as_millis() as u64, reason = %failure.reason(),
                "retrying"
            );
            tokio::time::sleep(delay).await;
            *retries += 1;
            attempt += 1;
        }
    }

    async fn attempt<T>(
        &self,
        what: &'static str,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        read: &impl Fn(&[u8]) -> Result<T, Unreadable>,
        body: &mut Vec<u8>,
    ) -> Result<T, Attempt> {
        let request = build(&self.client).build().map_err(|e| {
            Attempt::Final(HttpFailure::Refused {
                what,
                reason: format!("the request could not be made ({e})"),
            })
        })?;
        self.admit(what, request.url()).map_err(Attempt::Final)?;
        let response = self.client.execute(request).await.map_err(|e| transport_failure(what, &e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        self.read_body(what, response, body).await?;
        debug!(call = what, status, bytes = body.len(), "answer");
        if (200..300).contains(&status) {
            return read(body).map_err(|u| {
                let failure = HttpFailure::Unreadable { what, message: u.message, exhausted: false };
                if u.retryable { Attempt::Retryable(failure, None) } else { Attempt::Final(failure) }
            });
        }
        let failure = HttpFailure::Status { what, status, upstream: upstream_error(body), exhausted: false };
        if retryable_status(status) {
            Err(Attempt::Retryable(failure, retry_after))
        } else {
            Err(Attempt::Final(failure))
        }
    }

    /// Whether `url` may be called at all: https, and an allowed host.
    fn admit(&self, what: &'static str, url: &reqwest::Url) -> Result<(), HttpFailure> {
        if url.scheme() != "https" {
            return Err(HttpFailure::Refused {
                what,
                reason: format!(
                    "{} is not https; credentials and tokens are never sent in clear text",
                    url.origin().ascii_serialization()
                ),
            });
        }
        let policy = self.allowed.clone().unwrap_or_default();
        policy.check_url(url).map_err(|e| HttpFailure::Refused { what, reason: e.to_string() })
    }

    /// The whole body into `body`, refusing more than `max_body_bytes`. A connection dropped half-way
    /// is a retryable transport failure.
    async fn read_body(
        &self,
        what: &'static str,
        mut response: reqwest::Response,
        body: &mut Vec<u8>,
    ) -> Result<(), Attempt> {
        let limit = self.settings.max_body_bytes;
        body.clear();
        body.reserve(response.content_length().unwrap_or(0).min(limit as u64) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| transport_failure(what, &e))? {
            if body.len() + chunk.len() > limit {
                return Err(Attempt::Final(HttpFailure::Unreadable {
                    what,
                    message: format!("the answer is larger than {limit} bytes"),
                    exhausted: false,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    }
}

/// One attempt's failure, and whether another attempt may help.
enum Attempt {
    Retryable(HttpFailure, Option<Duration>),
    Final(HttpFailure),
}

impl HttpFailure {
    fn exhausted(self) -> Self {
        match self {
            HttpFailure::Status { what, status, upstream, .. } => {
                HttpFailure::Status { what, status, upstream, exhausted: true }
            }
            HttpFailure::Transport { what, message, untrusted_certificate, .. } => {
                HttpFailure::Transport { what, message, untrusted_certificate, exhausted: true }
            }
            HttpFailure::Unreadable { what, message, .. } => {
                HttpFailure::Unreadable { what, message, exhausted: true }
            }
            refused @ HttpFailure::Refused { .. } => refused,
        }
    }

    /// A short reason for the retry log line.
    fn reason(&self) -> String {
        match self {
            HttpFailure::Status { status, upstream, .. } => {
                format!(
                    "HTTP {status}{}",
                    upstream.code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
                )
            }
            HttpFailure::Transport { message, .. } | HttpFailure::Unreadable { message, .. } => {
                message.clone()
            }
            HttpFailure::Refused { reason, .. } => reason.clone(),
        }
    }
}

fn transport_failure(what: &'static str, error: &reqwest::Error) -> Attempt {
    let chain = error_chain(error);
    debug!(call = what, error = %chain, "no answer");
    // rustls reports an untrusted chain as "invalid peer certificate: UnknownIssuer" (and similar for
    // expired or misnamed certificates) somewhere down the source chain. Matching the text keeps this
    // crate free of a direct rustls dependency; a miss only means the failure is retried a few times.
    let untrusted_certificate = chain.contains("invalid peer certificate") || chain.contains("UnknownIssuer");
    let not_allowed = chain.contains("AZS_USAGE_ALLOWED_STAMP_HOSTS");
    // A fixed phrase per kind of failure: the chain names addresses and OS errors of our network.
    let message = if untrusted_certificate {
        "the TLS certificate is not trusted"
    } else if not_allowed {
        "the host resolves to no address AZS_USAGE_ALLOWED_STAMP_HOSTS allows"
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        "the host name does not resolve"
    } else if error.is_connect() {
        // One phrase for a refused and an unanswered connection: telling them apart would tell a
        // webhook caller which ports of our network are open.
        "could not connect (refused or no answer)"
    } else if error.is_timeout() {
        "no answer in time (timed out)"
    } else {
        "the connection failed before a complete answer"
    }
    .to_owned();
    let failure = HttpFailure::Transport { what, message, untrusted_certificate, exhausted: false };
    if untrusted_certificate || not_allowed {
        Attempt::Final(failure)
    } else {
        Attempt::Retryable(failure, None)
    }
}

/// `error: cause: cause`, without the request URL's query (it is not secret, but it is long).
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The longest upstream error code passed on; real ones (`RequestEndTimeIsInFuture`, `AADSTS7000215`)
/// are far shorter.
const MAX_UPSTREAM_CODE: usize = 64;

/// Reads the error code of either error shape the stamp's services use. For OAuth errors the specific
/// code (`AADSTS7000215`, `MSIS9605`) is preferred over the generic `invalid_client`, since it is the one
/// that says what to fix. The messages are logged at debug level and go no further.
pub(crate) fn upstream_error(body: &[u8]) -> UpstreamError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<serde_json::Value>,
        error_description: Option<String>,
        error_codes: Option<Vec<serde_json::Value>>,
    }
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        debug!(bytes = body.len(), "error answer that is not JSON (not passed on)");
        return UpstreamError::default();
    };
    let code = match envelope.error {
        Some(serde_json::Value::Object(arm)) => {
            if let Some(message) = arm.get("message").and_then(|m| m.as_str()) {
                debug!(upstream_message = %message.chars().take(400).collect::<String>(), "upstream error");
            }
            arm.get("code").and_then(|c| c.as_str()).map(str::to_owned)
        }
        Some(serde_json::Value::String(oauth)) => {
            let description = envelope.error_description.unwrap_or_default();
            debug!(upstream_message = %description.chars().take(400).collect::<String>(), "upstream error");
            specific_code(&description)
                .or_else(|| {
                    envelope
                        .error_codes
                        .as_ref()
                        .and_then(|codes| codes.first())
                        .and_then(|c| c.as_u64())
                        .map(|n| format!("AADSTS{n}"))
                })
                .or(Some(oauth))
        }
        _ => None,
    };
    UpstreamError { code: code.filter(|c| is_error_code(c)) }
}

/// An error code is a short token; anything else is not an error code and is not passed on.
fn is_error_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_UPSTREAM_CODE
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `AADSTS7000215` or `MSIS9605` at the start of (or anywhere in) an OAuth error description.
fn specific_code(description: &str) -> Option<String> {
    for prefix in ["AADSTS", "MSIS"] {
        if let Some(at) = description.find(prefix) {
            let digits: String =
                description[at + prefix.len()..].chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                return Some(format!("{prefix}{digits}"));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use azs_testkit::fixtures::bytes as fixture;

    #[test]
    fn reads_the_usage_apis_error_shape() {
        let e = upstream_error(&fixture("azs-usage-error-end-in-future.json"));
        assert_eq!(e.code.as_deref(), Some("RequestEndTimeIsInFuture"));
    }

    #[test]
    fn prefers_the_specific_oauth_code_over_the_generic_one() {
        let aad = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
        assert_eq!(upstream_error(aad).code.as_deref(), Some("AADSTS7000215"));
        let adfs = br#"{"error":"invalid_scope","error_description":"MSIS9605: The client is not allowed to access the requested resource."}"#;
        assert_eq!(upstream_error(adfs).code.as_deref(), Some("MSIS9605"));
        let bare = br#"{"error":"invalid_client"}"#;
        assert_eq!(upstream_error(bare).code.as_deref(), Some("invalid_client"));
    }

    #[test]
    fn a_503_is_transient_and_a_400_is_not() {
        let busy = HttpFailure::Status {
            what: "usage page",
            status: 503,
            upstream: upstream_error(&fixture("azs-usage-error-503.json")),
            exhausted: true,
        }
        .into_pull_error(PullStage::Usage);
        assert!(busy.transient);
        assert_eq!(busy.upstream_code.as_deref(), Some("ServiceUnavailable"));
        let bad = HttpFailure::Status {
            what: "usage page",
            status: 400,
            upstream: UpstreamError { code: Some("InvalidProperty".into()) },
            exhausted: false,
        }
        .into_pull_error(PullStage::Usage);
        assert!(!bad.transient);
    }

    #[test]
    fn an_untrusted_certificate_is_not_transient_and_says_what_to_do() {
        let e = HttpFailure::Transport {
            what: "metadata",
            message: "invalid peer certificate: UnknownIssuer".into(),
            untrusted_certificate: true,
            exhausted: false,
        }
        .into_pull_error(PullStage::Discovery);
        assert!(!e.transient);
        assert!(e.message.contains("caCertificate"), "{}", e.message);
    }

    #[test]
    fn upstream_bodies_and_messages_never_reach_the_caller_only_a_well_formed_code_does() {
        let html = b"<html>internal admin console: password=hunter2</html>";
        let failure = |body: &[u8]| {
            HttpFailure::Status {
                what: "metadata endpoint",
                status: 500,
                upstream: upstream_error(body),
                exhausted: true,
            }
            .into_pull_error(PullStage::Discovery)
        };
        let e = failure(html);
        assert!(!e.message.contains("hunter2") && !e.message.contains("html"), "{}", e.message);
        assert_eq!(e.upstream_code, None);
        let arm = br#"{"error":{"code":"Leaky","message":"secret internal detail"}}"#;
        let e = failure(arm);
        assert_eq!(e.upstream_code.as_deref(), Some("Leaky"));
        assert!(!e.message.contains("secret internal detail"), "{}", e.message);
        let not_a_code = br#"{"error":{"code":"two words <b>","message":"m"}}"#;
        assert_eq!(failure(not_a_code).upstream_code, None);
        let long = format!(r#"{{"error":{{"code":"{}"}}}}"#, "A".repeat(65));
        assert_eq!(failure(long.as_bytes()).upstream_code, None);
    }

    #[test]
    fn a_redirect_says_that_redirects_are_not_followed() {
        let e = HttpFailure::Status {
            what: "metadata endpoint",
            status: 302,
            upstream: UpstreamError::default(),
            exhausted: false,
        }
        .into_pull_error(PullStage::Discovery);
        assert!(!e.transient);
        assert!(
            e.message.contains("HTTP 302") && e.message.contains("redirects are never followed"),
            "{}",
            e.message
        );
    }
}
