//! Paginated listings: `?limit=` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `?cursor=`.
//!
//! The body stays the JSON array each listing always was; a page that is not the last carries
//! `Link: <same path and query, with cursor=...>; rel="next"` (RFC 8288), the way GitHub's API pages.
//! Items are ordered by a key of their own (a stamp's id, a subscription id, a quarantined row's stamp,
//! window and content hash) and the cursor is the last key of the page, opaque (hex), so a page
//! boundary never skips or repeats an item when items are added or removed between requests. A
//! response is then bounded whatever the database holds (Lambda refuses answers over 6 MB).

use super::problem::Problem;
use axum::Json;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Uri, header::LINK};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const DEFAULT_LIMIT: usize = 500;
pub const MAX_LIMIT: usize = 1000;

/// Which page a caller asked for, and where the listing is served (for the `next` link).
pub struct PageRequest {
    limit: usize,
    /// The key the page starts after, as bytes: any hex is a position in the order (a cursor we did
    /// not hand out only starts the page somewhere), so no well-formed cursor is refused.
    after: Option<Vec<u8>>,
    uri: Uri,
}

impl<S: Send + Sync> FromRequestParts<S> for PageRequest {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let uri = match OriginalUri::from_request_parts(parts, state).await {
            Ok(OriginalUri(uri)) => uri,
            Err(never) => match never {},
        };
        let (mut limit, mut after) = (None, None);
        for (name, value) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
            match name.as_ref() {
                "limit" if limit.is_some() => {
                    return Err(Problem::invalid_field("limit", "must be given at most once"));
                }
                "limit" => {
                    let n = value.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n));
                    limit = Some(n.ok_or_else(|| {
                        Problem::invalid_field(
                            "limit",
                            &format!("must be a whole number from 1 to {MAX_LIMIT}"),
                        )
                    })?);
                }
                "cursor" if after.is_some() => {
                    return Err(Problem::invalid_field("cursor", "must be given at most once"));
                }
                "cursor" => {
                    let key = from_hex(&value).filter(|key| !key.is_empty() && key.len() <= 600);
                    after = Some(key.ok_or_else(|| {
                        Problem::invalid_field("cursor", "must be the cursor of a previous page's next link")
                    })?);
                }
                _ => {} // platforms add their own parameters (Azure Functions' `code=`)
            }
        }
        Ok(PageRequest { limit: limit.unwrap_or(DEFAULT_LIMIT), after, uri })
    }
}

impl PageRequest {
    /// The page of `items` (in any order) this request asked for, ordered by `key`, with the `next`
    /// link when more follow.
    pub fn answer<T: Serialize>(&self, mut items: Vec<T>, key: impl Fn(&T) -> String) -> Response {
        let mut keyed: Vec<(String, T)> = items.drain(..).map(|item| (key(&item), item)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let start = match &self.after {
            Some(after) => keyed.partition_point(|(k, _)| k.as_bytes() <= after.as_slice()),
            None => 0,
        };
        let mut page: Vec<(String, T)> = keyed.into_iter().skip(start).take(self.limit + 1).collect();
        let more = page.len() > self.limit;
        page.truncate(self.limit);
        let next = more.then(|| page.last().map(|(k, _)| self.next_link(k))).flatten();
        let body: Vec<T> = page.into_iter().map(|(_, item)| item).collect();
        let mut response = Json(body).into_response();
        if let Some(link) = next.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(LINK, link);
        }
        response
    }

    /// How many items the page holds at most.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The cursor as a position in a numbered listing (the audit trail): the big-endian number its
    /// bytes spell, so that any well-formed cursor is a position (a longer one than a number holds is
    /// past the end).
    pub fn after_number(&self) -> Option<i64> {
        let after = self.after.as_ref()?;
        let significant: Vec<u8> = after.iter().copied().skip_while(|b| *b == 0).collect();
        if significant.len() > 8 {
            return Some(i64::MAX);
        }
        let n = significant.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        Some(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// A page of a numbered listing that the store already cut: `items` in order, at most one more
    /// than [`Self::limit`] (which says a next page exists), each with its number.
    pub fn answer_numbered<T: Serialize>(&self, mut items: Vec<(i64, T)>) -> Response {
        let more = items.len() > self.limit;
        items.truncate(self.limit);
        let next = more.then(|| items.last().map(|(n, _)| self.next_link_bytes(&n.to_be_bytes()))).flatten();
        let body: Vec<T> = items.into_iter().map(|(_, item)| item).collect();
        let mut response = Json(body).into_response();
        if let Some(link) = next.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(LINK, link);
        }
        response
    }

    fn next_link(&self, last_key: &str) -> String {
        self.next_link_bytes(last_key.as_bytes())
    }

    fn next_link_bytes(&self, last_key: &[u8]) -> String {
        let cursor: String = last_key.iter().map(|b| format!("{b:02x}")).collect();
        let query = url::form_urlencoded::parse(self.uri.query().unwrap_or_default().as_bytes())
            .filter(|(name, _)| name != "cursor")
            .fold(url::form_urlencoded::Serializer::new(String::new()), |mut q, (name, value)| {
                q.append_pair(&name, &value);
                q
            })
            .append_pair("cursor", &cursor)
            .finish();
        format!("<{}?{query}>; rel=\"next\"", self.uri.path())
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}
