//! `/audit`: the audit trail, oldest first, paginated like every listing (`limit`, `cursor`), for
//! one stamp (`?stamp=` id, or a registered stamp's name) and from a time on (`?since=` RFC 3339).

use super::App;
use super::page::PageRequest;
use super::problem::Problem;
use super::quarantine::StampFilter;
use crate::audit::AuditFilter;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use azs_core::audit::AuditPosition;
use chrono::{DateTime, Utc};

pub async fn list(
    State(app): State<App>,
    StampFilter(stamp): StampFilter,
    Since(since): Since,
    page: PageRequest,
) -> Result<Response, Problem> {
    let filter = AuditFilter { stamp, since };
    let after = page.after_number().map(AuditPosition);
    // One more than the page holds: whether a next page exists.
    let entries = app
        .audit
        .list(&filter, after, page.limit() + 1)
        .await
        .map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(page.answer_numbered(entries.into_iter().map(|e| (e.position.0, e.record)).collect()))
}

/// `?since=<RFC 3339 time>`, at most once.
pub struct Since(pub Option<DateTime<Utc>>);

impl<S: Send + Sync> FromRequestParts<S> for Since {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut since = None;
        for (name, value) in url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
            if name != "since" {
                continue;
            }
            if since.is_some() {
                return Err(Problem::invalid_field("since", "must be given at most once"));
            }
            let time = DateTime::parse_from_rfc3339(value.trim()).map_err(|_| {
                Problem::invalid_field("since", "must be an RFC 3339 time such as 2026-12-01T00:00:00Z")
            })?;
            since = Some(time.with_timezone(&Utc));
        }
        Ok(Since(since))
    }
}
