//! Paging of usage responses: which rows a page holds, the opaque continuation token, the
//! `nextLink`, and the streamed JSON body.
//!
//! A page holds up to `page_size` rows. With `duplicate_across_pages` every page after the first
//! starts with the last row of the previous page (counted in the page size). The continuation
//! token is base64 (standard alphabet, padded, like the reference fixture) of an 8-byte keyed
//! digest followed by the JSON paging state; any change to it fails the digest and the request
//! gets 400 `InvalidProperty` naming `continuationToken`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::data::{HourTexts, RowKey, StampData, format_api_time, hour_start};

/// Rows written per body chunk.
const CHUNK_ROWS: usize = 64;

/// The rows a usage request asks for: reported hours `[start_hour, end_hour)`, one tenant or all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UsageQuery {
    pub start_hour: i64,
    pub end_hour: i64,
    pub tenant: Option<usize>,
}

/// A position in the row sequence of a query: row `index` of reported hour `hour`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Position {
    pub hour: i64,
    pub index: usize,
}

/// What a continuation token carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PagingState {
    pub stamp: usize,
    pub query: UsageQuery,
    pub page: u64,
    /// First row of the next page that was not served yet.
    pub next: Position,
    /// Last row served, repeated first when duplicates across pages are on.
    pub last: Position,
}

/// Signs and checks continuation tokens with a per-simulator key.
pub(crate) struct TokenSealer {
    key: [u8; 32],
}

impl TokenSealer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn digest(&self, payload: &[u8]) -> [u8; 8] {
        let full = Sha256::new().chain_update(self.key).chain_update(payload).finalize();
        let mut digest = [0u8; 8];
        digest.copy_from_slice(&full[..8]);
        digest
    }

    pub fn seal(&self, state: &PagingState) -> String {
        let payload = serde_json::to_vec(state).unwrap_or_default();
        let mut bytes = self.digest(&payload).to_vec();
        bytes.extend_from_slice(&payload);
        STANDARD.encode(bytes)
    }

    /// The state inside a token, `None` when it was not issued by this simulator or was altered.
    pub fn open(&self, token: &str) -> Option<PagingState> {
        let bytes = STANDARD.decode(token.trim()).ok()?;
        if bytes.len() < 8 {
            return None;
        }
        let (digest, payload) = bytes.split_at(8);
        if digest != self.digest(payload) {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

/// The rows of one page and, unless it is the last, the state of the next.
pub(crate) struct PagePlan {
    pub keys: Vec<RowKey>,
    pub next: Option<PagingState>,
}

/// Picks the rows of the page that starts at `state` (or the first page).
pub(crate) fn plan_page(
    data: &StampData,
    stamp: usize,
    query: UsageQuery,
    state: Option<&PagingState>,
    page_size: usize,
    duplicate_across_pages: bool,
) -> PagePlan {
    let mut keys = Vec::with_capacity(page_size);
    let mut position = state.map_or(Position { hour: query.start_hour, index: 0 }, |s| s.next);
    if let Some(previous) = state.filter(|_| duplicate_across_pages).map(|s| s.last) {
        let rows = data.hour_rows(previous.hour, query.tenant);
        if previous.index < rows.len() {
            keys.push(rows.key(previous.index));
        }
    }
    let mut last = state.map(|s| s.last);
    let mut rows = data.hour_rows(position.hour, query.tenant);
    while position.hour < query.end_hour {
        if position.index >= rows.len() {
            position = Position { hour: position.hour + 1, index: 0 };
            rows = data.hour_rows(position.hour, query.tenant);
            continue;
        }
        if keys.len() == page_size {
            break;
        }
        keys.push(rows.key(position.index));
        last = Some(position);
        position.index += 1;
    }
    let next = match (position.hour < query.end_hour, last) {
        (true, Some(last)) => {
            Some(PagingState { stamp, query, page: state.map_or(1, |s| s.page + 1), next: position, last })
        }
        _ => None,
    };
    PagePlan { keys, next }
}

/// `https://127.0.0.1:PORT/subscriptions/.../subscriberUsageAggregates?...&continuationToken=...`
/// with the times in the escaped `%3a` / `%2b` form of the documentation.
pub(crate) fn next_link(
    base_url: &str,
    admin_subscription: &str,
    subscriber: Option<&str>,
    query: &UsageQuery,
    token: &str,
) -> String {
    let time = |hour| escape(&format_api_time(hour_start(hour)));
    let subscriber = subscriber.map(|s| format!("&subscriberId={s}")).unwrap_or_default();
    format!(
        "{base_url}/subscriptions/{admin_subscription}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime={}&reportedEndTime={}&aggregationGranularity=Hourly{subscriber}&api-version=2015-06-01-preview&continuationToken={}",
        time(query.start_hour),
        time(query.end_hour),
        escape(token)
    )
}

/// Percent-escapes the characters of times and base64 that a query value must not carry raw,
/// in lower case like the documentation (`%3a`, `%2b`, `%3d`).
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            ':' => escaped.push_str("%3a"),
            '+' => escaped.push_str("%2b"),
            '/' => escaped.push_str("%2f"),
            '=' => escaped.push_str("%3d"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// The JSON body of a page, generated chunk by chunk while it is sent.
pub(crate) struct PageBody {
    data: Arc<StampData>,
    keys: Vec<RowKey>,
    written: usize,
    next_link: Option<String>,
    times: HourTexts,
    finished: bool,
}

impl PageBody {
    pub fn new(data: Arc<StampData>, keys: Vec<RowKey>, next_link: Option<String>) -> Self {
        Self { data, keys, written: 0, next_link, times: HourTexts::default(), finished: false }
    }

    /// Streams the page.
    pub fn into_body(self) -> Body {
        Body::from_stream(futures::stream::iter(self.map(Ok::<_, Infallible>)))
    }

    /// The whole page at once.
    pub fn into_bytes(self) -> Vec<u8> {
        self.flat_map(|chunk| chunk.to_vec()).collect()
    }
}

impl Iterator for PageBody {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        let end = (self.written + CHUNK_ROWS).min(self.keys.len());
        let mut out = Vec::with_capacity((end - self.written) * 900 + 600);
        if self.written == 0 {
            out.extend_from_slice(b"{\"value\":[");
        }
        for i in self.written..end {
            if i > 0 {
                out.push(b',');
            }
            self.data.write_row(self.keys[i], &mut out, &mut self.times);
        }
        self.written = end;
        if end == self.keys.len() {
            out.push(b']');
            if let Some(link) = &self.next_link {
                out.extend_from_slice(b",\"nextLink\":\"");
                out.extend_from_slice(link.as_bytes());
                out.push(b'"');
            }
            out.push(b'}');
            self.finished = true;
        }
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SimAuth, StampSpec};

    fn data(tenants: usize) -> StampData {
        let mut spec = StampSpec::generated(3, 0, SimAuth::Adfs { secret: None, certificate_pem: None });
        spec.tenants = tenants;
        spec.meters_per_tenant = 3;
        spec.late_rows_per_window = 4;
        StampData::new(3, 0, &spec)
    }

    fn pull(data: &StampData, query: UsageQuery, page_size: usize, dup: bool) -> Vec<RowKey> {
        let mut all = Vec::new();
        let mut state = None;
        loop {
            let plan = plan_page(data, 0, query, state.as_ref(), page_size, dup);
            let skip = usize::from(dup && state.is_some());
            all.extend_from_slice(&plan.keys[skip..]);
            match plan.next {
                Some(next) => state = Some(next),
                None => return all,
            }
        }
    }

    #[test]
    fn pages_cover_every_row_once() {
        let data = data(4);
        let query = UsageQuery { start_hour: 100, end_hour: 105, tenant: None };
        let expected: Vec<RowKey> = (100..105)
            .flat_map(|h| {
                let rows = data.hour_rows(h, None);
                (0..rows.len()).map(move |i| rows.key(i)).collect::<Vec<_>>()
            })
            .collect();
        for page_size in [2, 3, 7, 16, 80, 1000] {
            assert_eq!(pull(&data, query, page_size, false), expected, "page size {page_size}");
            assert_eq!(pull(&data, query, page_size, true), expected, "page size {page_size} dup");
        }
    }

    #[test]
    fn empty_windows_have_one_empty_page() {
        let data = data(0);
        let query = UsageQuery { start_hour: 1, end_hour: 30, tenant: None };
        let plan = plan_page(&data, 0, query, None, 10, true);
        assert!(plan.keys.is_empty() && plan.next.is_none());
    }

    #[test]
    fn tokens_round_trip_and_detect_tampering() {
        let sealer = TokenSealer::new([7; 32]);
        let state = PagingState {
            stamp: 1,
            query: UsageQuery { start_hour: 1, end_hour: 2, tenant: Some(3) },
            page: 2,
            next: Position { hour: 1, index: 5 },
            last: Position { hour: 1, index: 4 },
        };
        let token = sealer.seal(&state);
        assert_eq!(sealer.open(&token), Some(state));
        let mut bytes = STANDARD.decode(&token).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        assert_eq!(sealer.open(&STANDARD.encode(bytes)), None);
        assert_eq!(TokenSealer::new([8; 32]).open(&token), None);
    }
}
