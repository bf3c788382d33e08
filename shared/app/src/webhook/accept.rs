//! Content negotiation (RFC 9110 §12.5.1): which of the representations a resource offers the
//! caller's `Accept` header prefers. A statement is one resource with three representations (JSON,
//! CSV, HTML), so they share its URL and the header picks one, rather than a query parameter
//! that would make three URLs of one thing.

use super::problem::Problem;
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};

/// The offered media type the caller prefers: the highest `q` of the most specific range that
/// matches each (exact, then `type/*`, then `*/*`), ties to the order of `offered`. No `Accept`
/// header is the first offered; one that allows none of them is a 406 listing them.
pub fn negotiate(headers: &HeaderMap, offered: &[&'static str]) -> Result<&'static str, Problem> {
    let ranges: Vec<(String, f32)> = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(range)
        .collect();
    if ranges.is_empty() {
        return Ok(offered[0]);
    }
    let quality = |media: &str| -> f32 {
        let kind = media.split('/').next().unwrap_or_default();
        let specificity = |r: &str| {
            if r == media {
                Some(3)
            } else if r.strip_suffix("/*") == Some(kind) {
                Some(2)
            } else if r == "*/*" {
                Some(1)
            } else {
                None
            }
        };
        ranges
            .iter()
            .filter_map(|(r, q)| specificity(r).map(|s| (s, *q)))
            .max_by_key(|(s, _)| *s)
            .map_or(0.0, |(_, q)| q)
    };
    let mut best: Option<(&'static str, f32)> = None;
    for media in offered {
        let q = quality(media);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((media, q));
        }
    }
    best.map(|(media, _)| media).ok_or_else(|| {
        Problem::plain(
            StatusCode::NOT_ACCEPTABLE,
            format!(
                "This resource is served as {}; the Accept header allows none of them.",
                offered.join(", ")
            ),
        )
    })
}

/// One media range of an `Accept` header, lower case, with its `q` (1 when absent or unreadable).
fn range(item: &str) -> Option<(String, f32)> {
    let mut parts = item.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    if media.is_empty() || !media.contains('/') {
        return None;
    }
    let q = parts
        .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
        .find_map(|q| q.trim().parse::<f32>().ok())
        .map_or(1.0, |q| q.clamp(0.0, 1.0));
    Some((media, q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const OFFERED: &[&str] = &["application/json", "text/csv", "text/html"];

    fn pick(accept: Option<&str>) -> Result<&'static str, StatusCode> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
        }
        negotiate(&headers, OFFERED).map_err(|p| p.status)
    }

    #[test]
    fn the_callers_preference_picks_the_representation_and_none_acceptable_is_406() {
        assert_eq!(pick(None), Ok("application/json"));
        assert_eq!(pick(Some("*/*")), Ok("application/json"));
        assert_eq!(pick(Some("text/csv")), Ok("text/csv"));
        assert_eq!(pick(Some("Text/HTML; charset=utf-8")), Ok("text/html"));
        assert_eq!(pick(Some("text/*")), Ok("text/csv"));
        assert_eq!(pick(Some("text/html;q=0.9, text/csv;q=0.5, */*;q=0.1")), Ok("text/html"));
        assert_eq!(pick(Some("application/json;q=0, */*")), Ok("text/csv"));
        assert_eq!(pick(Some("application/xml")), Err(StatusCode::NOT_ACCEPTABLE));
        assert_eq!(pick(Some("text/*;q=0, application/pdf")), Err(StatusCode::NOT_ACCEPTABLE));
    }
}
