//! `/quarantine`: rows the stamps sent that the store cannot hold exactly, kept verbatim with their
//! window, field and rule (see `azs_core::quarantine`), for one stamp (`?stamp=` id or name) or all.

use super::App;
use super::page::PageRequest;
use super::problem::Problem;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use azs_core::StampId;
use azs_core::quarantine::QuarantineEntry;
use sha2::Digest as _;

pub async fn list(
    State(app): State<App>,
    StampFilter(stamp): StampFilter,
    page: PageRequest,
) -> Result<Response, Problem> {
    let entries =
        app.quarantine.list(stamp.as_ref()).await.map_err(|e| Problem::from_registration(e, &app.base))?;
    Ok(page.answer(entries, entry_key))
}

/// A quarantined row's place in the listing: its stamp, its window, and its content (as stored: one
/// row per stamp, window and verbatim JSON).
fn entry_key(entry: &QuarantineEntry) -> String {
    let digest = sha2::Sha256::digest(entry.raw.as_bytes());
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}|{}|{hash}", entry.stamp_id, entry.window.start.to_rfc3339())
}

/// `?stamp=ID|NAME`, at most once; absent means every stamp. Other parameters are ignored (platforms
/// add their own, e.g. Azure Functions' `code=`).
pub struct StampFilter(pub Option<StampId>);

impl<S: Send + Sync> FromRequestParts<S> for StampFilter {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let mut stamp = None;
        for (name, value) in url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
            if name != "stamp" {
                continue;
            }
            if stamp.is_some() {
                return Err(Problem::invalid_field("stamp", "must be given at most once"));
            }
            let handle = value.trim();
            if handle.is_empty() || handle.chars().count() > 256 {
                return Err(Problem::invalid_field(
                    "stamp",
                    "must be a stamp's id or name (1 to 256 characters)",
                ));
            }
            stamp = Some(StampId(handle.to_owned()));
        }
        Ok(StampFilter(stamp))
    }
}
