//! The registration webhook: stamps and their subscription mappings managed over HTTP (and price
//! books, assignments, statements, margin and the FOCUS export), in front of
//! stamp and mapping administration ([`Administration`]). One [`axum::Router`] serves every platform
//! unchanged: AWS Lambda (`lambda_http`), the Azure Functions custom handler (mounted under `/api` with [`router_with_prefix`]) and `azs-usage serve`.
//!
//! Contract (the full one is `docs/openapi.yaml`, which a test holds to this router):
//! - every error is `application/problem+json` (RFC 9457) with `type`, `title`, `status`, `detail`,
//!   `instance` and `requestId`; field errors add `errors: [{field, rule}]`;
//! - no input yields a 5xx except 503 (database or secret store unavailable, with `Retry-After`) and,
//!   should a handler ever panic, 500;
//! - bodies are JSON (`application/json` or `application/*+json`), at most [`BODY_LIMIT`] bytes;
//! - one `tracing` event per request with method, route template, status and request id. Bodies,
//!   headers and raw paths are never logged: they carry credentials and caller input.

mod accept;
mod audit;
mod auth;
mod body;
pub mod caller;
mod log;
mod mappings;
mod page;
mod problem;
mod quarantine;
mod rating;
mod stamps;

pub use auth::{
    ApiAuth, MIN_TOKEN_LENGTH, SIGNATURE_HEADER, TOKEN_HEADER, TokenSecretError, behind_platform,
    configured as configured_api_token,
};
pub use problem::Problem;
pub use rating::{
    FOCUS_DEFAULT_LIMIT, FOCUS_MAX_LIMIT, FOCUS_PAGE_BYTES, MARGIN_DEFAULT_LIMIT, MARGIN_MAX_LIMIT,
};

use crate::administration::Administration;
use crate::mapper::SubscriptionMapper;
use crate::registrar::Registrar;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post, put};
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;

/// Largest request body accepted (413 above). A base64 PFX with its chain fits comfortably.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share: the registrar, and the path prefix the router is mounted under (for `Location`).
#[derive(Clone)]
struct App {
    registrar: Registrar,
    mapper: SubscriptionMapper,
    quarantine: crate::quarantine::QuarantineList,
    audit: crate::audit::AuditLog,
    /// Price books, assignments and statements; `None` when the database keeps none.
    statements: Option<Arc<crate::rating::StatementService>>,
    base: Arc<str>,
}

impl App {
    fn stamp_location(&self, id: &azs_core::StampId) -> String {
        format!("{}/stamps/{id}", self.base)
    }
}

/// The webhook with its routes at `/stamps...`.
pub fn router(administration: Administration, auth: ApiAuth) -> Router {
    build("", administration, auth)
}

/// The same webhook mounted under `prefix` (e.g. `/api` for the Azure Functions custom handler, which
/// forwards `https://app/api/stamps` as `/api/stamps`). Slashes around the prefix do not matter; an
/// empty prefix or `/` is [`router`].
///
/// # Panics
/// When `prefix` is not a literal path (contains `{`, `}` or `*`): a wiring mistake.
pub fn router_with_prefix(prefix: &str, administration: Administration, auth: ApiAuth) -> Router {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        router(administration, auth)
    } else {
        build(&format!("/{prefix}"), administration, auth)
    }
}

fn build(prefix: &str, administration: Administration, auth: ApiAuth) -> Router {
    assert!(
        !prefix.contains(['{', '}', '*']),
        "the webhook prefix must be a literal path such as /api, not {prefix:?}"
    );
    let app = App {
        registrar: administration.stamps,
        mapper: administration.mappings,
        quarantine: administration.quarantine,
        audit: administration.audit,
        statements: administration.statements,
        base: prefix.into(),
    };
    let api = Router::new()
        .route("/stamps", get(stamps::list).post(stamps::register))
        .route("/stamps/{id}", get(stamps::get).patch(stamps::update).delete(stamps::remove))
        .route("/stamps/{id}/test", post(stamps::test))
        .route("/stamps/{id}/subscriptions", get(mappings::list))
        .route(
            "/stamps/{id}/subscriptions/{external_subscription_id}",
            put(mappings::set).delete(mappings::remove),
        )
        .route("/stamps/{id}/unmapped", get(mappings::unmapped))
        .route("/quarantine", get(quarantine::list))
        .route("/audit", get(audit::list))
        .route("/price-books", get(rating::list_books).post(rating::import_book))
        .route("/price-books/{book_id}", get(rating::show_book))
        .route("/price-books/{book_id}/diff", get(rating::diff_book))
        .route("/assignments", get(rating::list_assignments).put(rating::set_assignment))
        .route("/statements", get(rating::list_statements))
        .route("/statements/{billing_subscription_id}/{month}", get(rating::show_statement))
        .route("/statements/{billing_subscription_id}/{month}/finalize", post(rating::finalize_statement))
        .route("/statements/{billing_subscription_id}/{month}/rerate", post(rating::rerate_statement))
        .route("/statements/{billing_subscription_id}/{month}/margin", get(rating::statement_margin))
        .route("/margin", get(rating::month_margin))
        .route("/focus", get(rating::focus))
        .with_state(app);
    let routed = if prefix.is_empty() { api } else { Router::new().nest(prefix, api) };
    // `Router::layer` wraps every route and the fallback, so unknown paths and wrong methods are
    // authenticated, logged and rendered as problems like everything else. Last added runs first:
    // the token is checked on the headers before `body::buffer` reads a byte of the body; the body
    // signature, which needs the bytes, after it.
    let auth = Arc::new(auth);
    routed
        .fallback(problem::no_route)
        .layer(from_fn_with_state(auth.clone(), auth::check_signature))
        .layer(CatchPanicLayer::custom(problem::from_panic))
        .layer(from_fn(body::buffer))
        .layer(from_fn_with_state(auth, auth::require_token))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn(problem::complete))
        .layer(from_fn(log::request))
}
