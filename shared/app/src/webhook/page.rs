//! Paginated listings: `?limit=` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`], unless a route
//! bounds its pages otherwise) and `?cursor=`.
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

/// Which page a caller asked for, and where the listing is served (for the `next` link). `DEFAULT`
/// and `MAX` bound `limit`: a route whose items are large or slow to make pages by fewer.
pub struct PageRequest<const DEFAULT: usize = DEFAULT_LIMIT, const MAX: usize = MAX_LIMIT> {
    limit: usize,
    /// The key the page starts after, as bytes: any hex is a position in the order (a cursor we did
    /// not hand out only starts the page somewhere), so no well-formed cursor is refused.
    after: Option<Vec<u8>>,
    uri: Uri,
}

impl<S: Send + Sync, const DEFAULT: usize, const MAX: usize> FromRequestParts<S>
    for PageRequest<DEFAULT, MAX>
{
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
                    let n = value.parse::<usize>().ok().filter(|n| (1..=MAX).contains(n));
                    limit = Some(n.ok_or_else(|| {
                        Problem::invalid_field("limit", &format!("must be a whole number from 1 to {MAX}"))
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
        Ok(PageRequest { limit: limit.unwrap_or(DEFAULT), after, uri })
    }
}

impl<const DEFAULT: usize, const MAX: usize> PageRequest<DEFAULT, MAX> {
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

    /// The cursor as a position among billing subscription ids (printable ASCII, compared as bytes,
    /// by the stores too): a string `p` such that the ids after `p` are exactly the ids after the
    /// cursor's bytes. A cursor we handed out is an id and is its own position; any other is cut at
    /// its first byte no id holds (a control byte, non-ASCII): below every id character the page
    /// starts after the prefix, above every one after all ids the prefix begins (`p` + DEL). So the
    /// stores are never handed a NUL or invalid UTF-8, and no well-formed cursor is refused.
    pub fn after_billing_subscription(&self) -> Option<String> {
        let after = self.after.as_ref()?;
        let printable = after.iter().take_while(|b| (0x20..0x7f).contains(*b)).count();
        let mut position: String = after[..printable].iter().map(|b| char::from(*b)).collect();
        if after.get(printable).is_some_and(|b| *b >= 0x7f) {
            position.push('\u{7f}');
        }
        Some(position)
    }

    /// `response` with the `next` link after `last_key` when more follow: for a page whose body is
    /// not a JSON array of the items (a CSV, a report over them).
    pub fn with_next(&self, mut response: Response, last_key: Option<&str>) -> Response {
        if let Some(link) = last_key.and_then(|k| HeaderValue::from_str(&self.next_link(k)).ok()) {
            response.headers_mut().insert(LINK, link);
        }
        response
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

#[cfg(test)]
mod tests {
    use super::*;

    fn after(cursor: &[u8]) -> PageRequest {
        PageRequest { limit: 1, after: Some(cursor.to_vec()), uri: Uri::from_static("/focus") }
    }

    #[test]
    fn any_cursor_is_the_position_among_billing_subscription_ids_its_bytes_are() {
        // Ids as the rule allows them (printable ASCII), sorted as bytes, as the stores sort them
        let ids = ["A", "Cust 1", "cust", "cust a", "cust-a", "cust-a b", "cust-b", "cust~", "z"];
        let cursors: [&[u8]; 9] = [
            b"cust-a",
            b"cust-a\x01",
            b"cust-a\xff",
            b"cust-\xc3\xa9",
            b"\x00",
            b"\xff",
            b"cust ",
            b"~",
            b"cust-a\x7f",
        ];
        for cursor in cursors {
            let position = after(cursor).after_billing_subscription().unwrap();
            // A position is text the stores take: no NUL, valid UTF-8 by construction
            assert!(!position.contains('\0'), "{cursor:?}");
            let by_bytes: Vec<&str> = ids.iter().copied().filter(|id| id.as_bytes() > cursor).collect();
            let by_position: Vec<&str> = ids.iter().copied().filter(|id| *id > position.as_str()).collect();
            assert_eq!(by_position, by_bytes, "cursor {cursor:?}, position {position:?}");
        }
    }
}
