//! The admin ARM endpoints: the provider usage API
//! (`Microsoft.Commerce.Admin/subscriberUsageAggregates`) and the tenant subscription list
//! (`Microsoft.Subscriptions.Admin/subscriptions`).
//!
//! Checks of a usage request, in order (the first failing one answers):
//! 1. bearer token (401, see [`crate::auth`]);
//! 2. admin subscription in the path (404 `SubscriptionNotFound`);
//! 3. `api-version` = `2015-06-01-preview` (missing: 400 `NoApiVersion`; other: 400 `InvalidProperty`);
//! 4. `aggregationGranularity`: `Hourly` (any case) is served. `Daily`, which is also the default
//!    when the parameter is absent, is valid for the real API but NOT simulated: 400
//!    `DailyGranularityNotSimulated`. Anything else: 400 `InvalidAggregationGranularity`;
//! 5. `reportedStartTime` / `reportedEndTime`: present, RFC 3339 with an offset (`Z`, `+00:00`,
//!    any percent-escaped form; a `+` that arrived unescaped and decoded to a space is accepted
//!    too), on the whole hour, start before end; else 400 `InvalidProperty` naming the property;
//! 6. `reportedEndTime` not after the current time (400 `RequestEndTimeIsInFuture`);
//! 7. `subscriberId`, when present, one of the stamp's tenants (400 `SubscriberIdIsNotDirectTenant`);
//! 8. `continuationToken`, when present, issued by this stamp for the same query (400 `InvalidProperty`).
//!
//! Unknown query parameters are ignored; a repeated parameter counts by its first occurrence.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth::unauthorized;
use crate::data::whole_hour;
use crate::errors::{Rejection, arm_error, invalid_property, json_response, json_value};
use crate::faults::bump;
use crate::paging::{PageBody, UsageQuery, next_link, plan_page};
use crate::server::StampState;

pub(crate) const USAGE_API_VERSION: &str = "2015-06-01-preview";
pub(crate) const SUBSCRIPTIONS_API_VERSION: &str = "2015-11-01";

/// `GET /subscriptions/{sub}/providers/{namespace}/{resourceType}`: dispatches the two admin
/// collections the simulator serves (namespace and type matched case-insensitively, as ARM does).
pub(crate) async fn admin_collection(
    State(state): State<Arc<StampState>>,
    Path((subscription, namespace, resource_type)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let namespace = namespace.to_ascii_lowercase();
    let resource_type = resource_type.to_ascii_lowercase();
    let params = QueryParams::parse(query.as_deref().unwrap_or(""));
    match (namespace.as_str(), resource_type.as_str()) {
        ("microsoft.commerce.admin", "subscriberusageaggregates") => {
            usage_aggregates(&state, &subscription, &params, &headers).await
        }
        ("microsoft.subscriptions.admin", "subscriptions") => {
            tenant_subscriptions(&state, &subscription, &params, &headers)
        }
        _ => arm_error(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            &format!(
                "The resource type '{resource_type}' of namespace '{namespace}' is not served by this stamp."
            ),
        ),
    }
}

/// Decoded query parameters.
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn parse(raw: &str) -> Self {
        Self(url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect())
    }

    /// First value of a parameter; names match case-insensitively, as ARM's do.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Steps 1 to 3 of the checks, shared by both collections.
fn admit(
    state: &StampState,
    subscription: &str,
    params: &QueryParams,
    headers: &HeaderMap,
    api_version: &str,
    counts_for_token_expiry: bool,
) -> Result<(), Rejection> {
    {
        let mut tokens = state.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.check(headers.get(header::AUTHORIZATION)).map_err(|r| unauthorized(state, &r))?;
        if counts_for_token_expiry && tokens.usage_request_triggers_expiry() {
            bump(&state.stats.faults_served);
            return Err(unauthorized(state, &crate::auth::BearerRejection::Expired).into());
        }
    }
    if !subscription.eq_ignore_ascii_case(&state.spec.admin_subscription_id) {
        return Err(arm_error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            &format!("The subscription '{subscription}' could not be found."),
        )
        .into());
    }
    match params.get("api-version") {
        None => Err(arm_error(
            StatusCode::BAD_REQUEST,
            "NoApiVersion",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
        .into()),
        Some(version) if version != api_version => Err(invalid_property(
            "api-version",
            &format!("'{version}' is not supported; use '{api_version}'."),
        )
        .into()),
        Some(_) => Ok(()),
    }
}

async fn usage_aggregates(
    state: &Arc<StampState>,
    subscription: &str,
    params: &QueryParams,
    headers: &HeaderMap,
) -> Response {
    if let Err(rejection) = admit(state, subscription, params, headers, USAGE_API_VERSION, true) {
        return rejection.into_response();
    }
    let query = match parse_usage_query(state, params) {
        Ok(query) => query,
        Err(rejection) => return rejection.into_response(),
    };
    let paging_state = match params.get("continuationToken") {
        None => None,
        Some(token) => match state.sealer.open(token) {
            Some(s) if s.stamp == state.index && s.query == query => Some(s),
            _ => {
                return invalid_property(
                    "continuationToken",
                    "it was not issued for this query or has been altered; follow nextLink as given.",
                );
            }
        },
    };

    let plan = plan_page(
        &state.data,
        state.index,
        query,
        paging_state.as_ref(),
        state.page_size,
        state.spec.duplicate_across_pages,
    );
    if state.faults.lock().unwrap_or_else(|e| e.into_inner()).take_empty_page() {
        bump(&state.stats.faults_served);
        bump(&state.stats.pages);
        return json_response(StatusCode::OK, br#"{"value":[]}"#.to_vec());
    }
    let subscriber = query.tenant.map(|t| state.data.tenants()[t].as_str());
    let mut link = plan.next.map(|next| {
        let token = state.sealer.seal(&next);
        next_link(&state.base_url, &state.spec.admin_subscription_id, subscriber, &query, &token)
    });
    if paging_state.is_some() && state.faults.lock().unwrap_or_else(|e| e.into_inner()).take_looping_link() {
        bump(&state.stats.faults_served);
        // Back to the chain's first page: the same query without a continuation token.
        let any = next_link(&state.base_url, &state.spec.admin_subscription_id, subscriber, &query, "");
        link = Some(any.trim_end_matches("&continuationToken=").to_owned());
    }
    if link.is_some() && state.faults.lock().unwrap_or_else(|e| e.into_inner()).take_relative_link() {
        bump(&state.stats.faults_served);
        link = link.map(|absolute| {
            let path = absolute.find("/subscriptions/").expect("a usage link has the ARM path");
            absolute[path..].to_owned()
        });
    }
    if !state.spec.page_delay.is_zero() {
        tokio::time::sleep(state.spec.page_delay).await;
    }
    bump(&state.stats.pages);
    state.stats.rows.fetch_add(plan.keys.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let body = PageBody::new(state.data.clone(), plan.keys, link);
    let oversized = state.faults.lock().unwrap_or_else(|e| e.into_inner()).take_oversized_page();
    if let Some(padding) = oversized {
        bump(&state.stats.faults_served);
        const CHUNK: u64 = 64 * 1024;
        let blanks = axum::body::Bytes::from(vec![b' '; CHUNK as usize]);
        let chunks = (0..padding.div_ceil(CHUNK))
            .map(move |i| blanks.slice(..(padding - i * CHUNK).min(CHUNK) as usize));
        let stream = futures::stream::iter(chunks.chain(body).map(Ok::<_, std::convert::Infallible>));
        return json_response(StatusCode::OK, axum::body::Body::from_stream(stream));
    }
    let extra = state.faults.lock().unwrap_or_else(|e| e.into_inner()).take_extra_entries();
    if let Some(entries) = extra {
        bump(&state.stats.faults_served);
        let bytes = body.into_bytes();
        let open = bytes.iter().position(|b| *b == b'[').expect("a page has a value array") + 1;
        let mut spliced = bytes[..open].to_vec();
        spliced.extend_from_slice(entries.join(",").as_bytes());
        if bytes.get(open) != Some(&b']') {
            spliced.push(b',');
        }
        spliced.extend_from_slice(&bytes[open..]);
        return json_response(StatusCode::OK, spliced);
    }
    let malformed = state.faults.lock().unwrap_or_else(|e| e.into_inner()).take_malformed_page();
    if malformed {
        bump(&state.stats.faults_served);
        let mut bytes = body.into_bytes();
        bytes.truncate(bytes.len() / 2);
        return json_response(StatusCode::OK, bytes);
    }
    json_response(StatusCode::OK, body.into_body())
}

/// Checks 4 to 7.
fn parse_usage_query(state: &StampState, params: &QueryParams) -> Result<UsageQuery, Rejection> {
    match params.get("aggregationGranularity").map(str::to_ascii_lowercase).as_deref() {
        Some("hourly") => {}
        None | Some("daily") => {
            return Err(arm_error(
                StatusCode::BAD_REQUEST,
                "DailyGranularityNotSimulated",
                "Daily aggregation (the default) is valid for Azure Stack Hub but stamp-sim serves Hourly only: send aggregationGranularity=Hourly.",
            )
            .into());
        }
        Some(_) => {
            return Err(arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidAggregationGranularity",
                "The aggregationGranularity is invalid; only Daily and Hourly are valid.",
            )
            .into());
        }
    }
    let start = whole_hour_param(params, "reportedStartTime")?;
    let end = whole_hour_param(params, "reportedEndTime")?;
    if end.1 <= start.1 {
        return Err(invalid_property("reportedEndTime", "it must be later than reportedStartTime.").into());
    }
    if end.0 > Utc::now() {
        return Err(arm_error(
            StatusCode::BAD_REQUEST,
            "RequestEndTimeIsInFuture",
            "The value for ReportedEndTime is in the future.",
        )
        .into());
    }
    let tenant = match params.get("subscriberId") {
        None => None,
        Some(subscriber) => Some(state.data.tenant_index(subscriber).ok_or_else(|| {
            arm_error(
                StatusCode::BAD_REQUEST,
                "SubscriberIdIsNotDirectTenant",
                &format!("The subscriber '{subscriber}' is not a direct tenant of the provider."),
            )
        })?),
    };
    Ok(UsageQuery { start_hour: start.1, end_hour: end.1, tenant })
}

/// A required time parameter on the whole hour, as a time and as hours since the epoch.
fn whole_hour_param(params: &QueryParams, name: &str) -> Result<(DateTime<Utc>, i64), Rejection> {
    let raw = params.get(name).ok_or_else(|| invalid_property(name, "it is missing."))?;
    let time = parse_time(raw).ok_or_else(|| {
        invalid_property(name, &format!("'{raw}' is not an ISO 8601 UTC time such as 2026-11-25T13:00:00Z."))
    })?;
    let hour = whole_hour(time)
        .ok_or_else(|| invalid_property(name, &format!("'{raw}' is not on the whole hour.")))?;
    Ok((time, hour))
}

/// RFC 3339 with an explicit offset. A `+` sent unescaped arrives as a space after query
/// decoding (`13:00:00 00:00`); that form is read as `+`.
fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    let repaired;
    let text = match raw.rfind(' ') {
        Some(at) if at > 10 => {
            repaired = format!("{}+{}", &raw[..at], &raw[at + 1..]);
            repaired.as_str()
        }
        _ => raw,
    };
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantSubscription {
    id: String,
    name: String,
    #[serde(rename = "type")]
    resource_type: &'static str,
    subscription_id: String,
    delegated_provider_subscription_id: String,
    display_name: String,
    owner: String,
    tenant_id: String,
    routing_resource_manager_type: &'static str,
    offer_id: String,
    state: &'static str,
}

#[derive(Serialize)]
struct SubscriptionList {
    value: Vec<TenantSubscription>,
}

/// `GET /subscriptions/{admin}/providers/Microsoft.Subscriptions.Admin/subscriptions?api-version=2015-11-01`:
/// every tenant subscription, `Enabled`, in one page. Fields are those of the 2015-11-01
/// `Microsoft.Subscriptions.Admin/subscriptions` resource type.
fn tenant_subscriptions(
    state: &StampState,
    subscription: &str,
    params: &QueryParams,
    headers: &HeaderMap,
) -> Response {
    if let Err(rejection) = admit(state, subscription, params, headers, SUBSCRIPTIONS_API_VERSION, false) {
        return rejection.into_response();
    }
    let admin = &state.spec.admin_subscription_id;
    let deleted = state.deleted_subscriptions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let value = state
        .data
        .tenants()
        .iter()
        .enumerate()
        .filter(|(_, sub)| !deleted.contains(&sub.to_ascii_lowercase()))
        .map(|(i, sub)| TenantSubscription {
            id: format!("/subscriptions/{admin}/providers/Microsoft.Subscriptions.Admin/subscriptions/{sub}"),
            name: sub.clone(),
            resource_type: "Microsoft.Subscriptions.Admin/subscriptions",
            subscription_id: sub.clone(),
            delegated_provider_subscription_id: admin.clone(),
            display_name: format!("Tenant subscription {}", i + 1),
            owner: format!("tenant{}@stamp{}.sim.local", i + 1, state.index),
            tenant_id: state.spec.tenant_id.clone(),
            routing_resource_manager_type: "Default",
            offer_id: format!("/subscriptions/{admin}/resourceGroups/offers/providers/Microsoft.Subscriptions.Admin/offers/sim-offer"),
            state: "Enabled",
        })
        .collect();
    json_value(StatusCode::OK, &SubscriptionList { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_every_documented_form() {
        let expected = DateTime::parse_from_rfc3339("2026-11-25T13:00:00Z").unwrap();
        for raw in [
            "2026-11-25T13:00:00Z",
            "2026-11-25T13:00:00+00:00",
            "2026-11-25T13:00:00 00:00",
            "2026-11-25T14:00:00+01:00",
            "2026-11-25T13:00:00.000Z",
        ] {
            assert_eq!(parse_time(raw), Some(expected.with_timezone(&Utc)), "{raw}");
        }
        assert_eq!(parse_time("2026-11-25T13:00:00"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn escaped_query_values_decode() {
        let params = QueryParams::parse("reportedStartTime=2026-11-25T13%3a00%3a00%2b00%3a00&API-VERSION=x");
        assert_eq!(params.get("reportedStartTime"), Some("2026-11-25T13:00:00+00:00"));
        assert_eq!(params.get("api-version"), Some("x"));
    }
}
