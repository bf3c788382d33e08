//! The provider usage API's requests and pages: where to ask (`subscriberUsageAggregates`, the tenant
//! subscription list) and how a page becomes [`UsageRow`]s.
//!
//! Parsing is the hot path of a collection run (a busy stamp reports hundreds of thousands of rows a
//! day), so a page is read in one pass with serde into borrowed views of the body, and each row is
//! converted straight into its owned [`UsageRow`]:
//! - `quantity` is taken as the raw JSON number text ([`RawValue`]) and parsed as a decimal, so
//!   `2.0000000000` keeps its ten decimals and nothing ever passes through `f64`;
//! - `instanceData` (a JSON document inside a string) is parsed a second time; `tags` and
//!   `additionalInfo` stay JSON text exactly as sent (object or string), `None` when null or absent;
//! - times like `2026-11-25T13:00:00+00:00` become UTC.
//!
//! A page that is not the expected JSON, or a row without a required field, is reported as
//! [`PageError`]; the session retries such a page (a gateway may have cut or garbled it) and, if it
//! stays broken, fails the window naming the row and field.

use azs_core::quarantine::{QuarantinedRow, Unrepresentable};
use azs_core::usage::{Quantity, UsageRow};
use azs_core::window::ReportedWindow;
use chrono::{DateTime, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

pub(crate) const USAGE_API_VERSION: &str = "2015-06-01-preview";
pub(crate) const SUBSCRIPTIONS_API_VERSION: &str = "2015-11-01";

/// The first page of one window: all direct tenants, or one tenant subscription (`subscriberId`).
/// Times are sent as `2026-11-25T13:00:00Z` (all of them are valid query characters).
pub fn usage_url(
    admin_arm_endpoint: &str,
    admin_subscription_id: &str,
    window: ReportedWindow,
    subscriber_id: Option<&str>,
) -> Result<reqwest::Url, url::ParseError> {
    let subscriber = subscriber_id
        .map(|s| {
            format!(
                "&subscriberId={}",
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
            )
        })
        .unwrap_or_default();
    reqwest::Url::parse(&format!(
        "{}/subscriptions/{admin_subscription_id}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates\
         ?reportedStartTime={}&reportedEndTime={}&aggregationGranularity=Hourly{subscriber}&api-version={USAGE_API_VERSION}",
        admin_arm_endpoint.trim_end_matches('/'),
        window.start.format("%Y-%m-%dT%H:%M:%SZ"),
        window.end.format("%Y-%m-%dT%H:%M:%SZ"),
    ))
}

/// The first page of the stamp's tenant subscriptions (Microsoft.Subscriptions.Admin).
pub fn subscriptions_url(
    admin_arm_endpoint: &str,
    admin_subscription_id: &str,
) -> Result<reqwest::Url, url::ParseError> {
    reqwest::Url::parse(&format!(
        "{}/subscriptions/{admin_subscription_id}/providers/Microsoft.Subscriptions.Admin/subscriptions\
         ?api-version={SUBSCRIPTIONS_API_VERSION}",
        admin_arm_endpoint.trim_end_matches('/'),
    ))
}

/// One page of `subscriberUsageAggregates`.
#[derive(Debug)]
pub struct UsagePage {
    pub rows: Vec<UsageRow>,
    /// Entries that are well-formed rows except for a quantity no exact decimal holds (more than
    /// 28 significant digits, beyond ±7.9e28, or `NaN`/`Infinity` sent as text): quarantined
    /// verbatim rather than rounded, and rather than failing the window on every run.
    pub unreadable: Vec<QuarantinedRow>,
    /// The `value` indexes of `unreadable`'s entries, ascending (to find a row's entry again).
    pub unreadable_entries: Vec<usize>,
    /// The next page, verbatim as the stamp sent it; `None` on the last page.
    pub next_link: Option<String>,
}

impl UsagePage {
    /// The JSON of `rows[row]` exactly as it stands in `body` (the page this was parsed from). Parses
    /// the page a second time, so it is for the rare row that is quarantined, not for every row.
    pub fn verbatim_row(&self, body: &[u8], row: usize) -> Option<String> {
        let mut entry = row;
        for skipped in &self.unreadable_entries {
            if *skipped <= entry {
                entry += 1;
            }
        }
        verbatim_entries(body, &[entry]).pop()
    }
}

/// The `value` entries at `indexes` (ascending) of a page, as the text the stamp sent.
fn verbatim_entries(body: &[u8], indexes: &[usize]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Entries<'a> {
        #[serde(borrow)]
        value: Vec<&'a RawValue>,
    }
    let Ok(page) = serde_json::from_slice::<Entries<'_>>(body) else { return Vec::new() };
    indexes.iter().filter_map(|i| page.value.get(*i).map(|e| e.get().to_owned())).collect()
}

/// Why a page could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("the page is not the expected JSON: {0}")]
    Malformed(String),
    #[error("row {row} of the page: {field} {problem}")]
    InvalidRow { row: usize, field: &'static str, problem: String },
}

/// A string that borrows from the page unless it had escapes to undo.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    value: Option<Vec<RawEntry<'a>>>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow)]
    properties: Option<RawProperties<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProperties<'a> {
    subscription_id: Option<String>,
    meter_id: Option<String>,
    #[serde(borrow)]
    usage_start_time: Option<Text<'a>>,
    #[serde(borrow)]
    usage_end_time: Option<Text<'a>>,
    #[serde(borrow)]
    instance_data: Option<Text<'a>>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RawInstanceData<'a> {
    #[serde(rename = "Microsoft.Resources", borrow)]
    resources: Option<RawResources<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResources<'a> {
    resource_uri: Option<String>,
    location: Option<String>,
    #[serde(borrow)]
    tags: Option<&'a RawValue>,
    #[serde(borrow)]
    additional_info: Option<&'a RawValue>,
}

/// Reads one page.
pub fn parse_usage_page(body: &[u8]) -> Result<UsagePage, PageError> {
    let page: RawPage =
        serde_json::from_slice(body).map_err(|e| PageError::Malformed(crate::http::json_error(&e)))?;
    let entries = page.value.ok_or_else(|| PageError::Malformed("no `value` array".into()))?;
    let mut rows = Vec::with_capacity(entries.len());
    let mut times = TimeMemo::default();
    let mut unreadable = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        match usage_row(index + 1, entry, &mut times)? {
            Ok(row) => rows.push(row),
            Err(why) => unreadable.push((index, why)),
        }
    }
    let unreadable_entries: Vec<usize> = unreadable.iter().map(|(i, _)| *i).collect();
    let raw = verbatim_entries(body, &unreadable_entries);
    let unreadable =
        raw.into_iter().zip(&unreadable).map(|(raw, (_, why))| QuarantinedRow::new(raw, why)).collect();
    Ok(UsagePage {
        rows,
        unreadable,
        unreadable_entries,
        next_link: page.next_link.filter(|l| !l.trim().is_empty()),
    })
}

/// The last usage start and end times read and what they parsed to: consecutive rows of a page
/// mostly share their usage hour, so most rows skip date parsing.
#[derive(Default)]
struct TimeMemo {
    start: Option<(String, DateTime<Utc>)>,
    end: Option<(String, DateTime<Utc>)>,
}

fn remembered(memo: &mut Option<(String, DateTime<Utc>)>, text: &str) -> Option<DateTime<Utc>> {
    match memo {
        Some((seen, value)) if seen == text => Some(*value),
        _ => {
            let value = parse_usage_time(text)?;
            *memo = Some((text.to_owned(), value));
            Some(value)
        }
    }
}

/// One entry as a usage row; `Ok(Err(_))` for an entry that is well-formed but whose quantity no exact
/// decimal holds (quarantined, not refused).
fn usage_row(
    row: usize,
    entry: RawEntry<'_>,
    times: &mut TimeMemo,
) -> Result<Result<UsageRow, Unrepresentable>, PageError> {
    let invalid =
        |field: &'static str, problem: &str| PageError::InvalidRow { row, field, problem: problem.into() };
    let missing = |field: &'static str| invalid(field, "is missing");
    let p = entry.properties.ok_or_else(|| missing("properties"))?;

    let instance_text = p.instance_data.ok_or_else(|| missing("properties.instanceData"))?.0;
    let instance: RawInstanceData = serde_json::from_str(&instance_text).map_err(|e| {
        invalid("properties.instanceData", &format!("is not JSON ({})", crate::http::json_error(&e)))
    })?;
    let resources =
        instance.resources.ok_or_else(|| missing("properties.instanceData.Microsoft.Resources"))?;
    let resource_uri = resources
        .resource_uri
        .filter(|u| !u.is_empty())
        .ok_or_else(|| missing("properties.instanceData.Microsoft.Resources.resourceUri"))?;

    let time = |field: &'static str, value: Option<Text<'_>>, memo: &mut Option<(String, DateTime<Utc>)>| {
        let text = value.ok_or_else(|| missing(field))?.0;
        remembered(memo, &text).ok_or_else(|| invalid(field, &format!("is not a time: {text:?}")))
    };
    let quantity = p.quantity.ok_or_else(|| missing("properties.quantity"))?.get();
    let quantity = match parse_quantity(quantity) {
        Some(q) => q,
        None if is_number_like(quantity) => {
            return Ok(Err(Unrepresentable {
                field: "properties.quantity",
                rule: format!(
                    "{} is not a decimal of at most 28 significant digits within ±7.9e28; it is not rounded",
                    quantity.chars().take(64).collect::<String>()
                ),
            }));
        }
        None => return Err(invalid("properties.quantity", &format!("is not a decimal number: {quantity}"))),
    };
    Ok(Ok(UsageRow {
        subscription_id: p
            .subscription_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("properties.subscriptionId"))?,
        meter_id: p.meter_id.filter(|m| !m.is_empty()).ok_or_else(|| missing("properties.meterId"))?,
        usage_start: time("properties.usageStartTime", p.usage_start_time, &mut times.start)?,
        usage_end: time("properties.usageEndTime", p.usage_end_time, &mut times.end)?,
        quantity,
        resource_uri,
        // Not every meter's instance data names a location; an empty one is kept as such.
        location: resources.location.unwrap_or_default(),
        tags: json_text(resources.tags),
        additional_info: json_text(resources.additional_info),
    }))
}

/// A JSON number, or a string that names one (`"1e40"`, `"NaN"`, `"Infinity"`): a quantity the stamp
/// meant as a number, so a row to quarantine rather than a garbled page to refuse.
fn is_number_like(text: &str) -> bool {
    let text = text.trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    matches!(unsigned.to_ascii_lowercase().as_str(), "nan" | "infinity" | "inf")
        || (!unsigned.is_empty()
            && unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && unsigned.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')))
}

/// `null` and absent are both `None`; anything else is kept as the JSON text the stamp sent.
fn json_text(value: Option<&RawValue>) -> Option<String> {
    value.map(RawValue::get).filter(|t| *t != "null").map(str::to_owned)
}

/// A JSON number's text as an exact decimal: `2.0000000000` keeps its scale; exponent forms
/// (`1.5E-05`) are read as scientific notation. A quoted number is accepted too. `None` for a number
/// no 96-bit decimal holds exactly: it is never rounded (a plain `Decimal::from_str` would round
/// digits past the 28th away without a word).
pub fn parse_quantity(text: &str) -> Option<Quantity> {
    let text = text.trim();
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    match text.split_once(['e', 'E']) {
        // The mantissa must be exact; scaling it by a power of ten then either fits or fails.
        Some((mantissa, _)) => {
            Decimal::from_str_exact(mantissa).ok()?;
            Decimal::from_scientific(text).ok()
        }
        None => Decimal::from_str_exact(text).ok(),
    }
}

/// `2026-11-25T13:00:00+00:00` (and `Z`, and fractions) to UTC. A time without an offset is taken as
/// UTC: the API documents all its times as UTC.
pub fn parse_usage_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc()))
}

/// One page of the tenant subscription list.
pub(crate) struct SubscriptionPage {
    pub subscription_ids: Vec<String>,
    pub next_link: Option<String>,
}

pub(crate) fn parse_subscription_page(body: &[u8]) -> Result<SubscriptionPage, PageError> {
    #[derive(Deserialize)]
    struct Raw {
        value: Option<Vec<RawSubscription>>,
        #[serde(rename = "nextLink")]
        next_link: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawSubscription {
        subscription_id: Option<String>,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| PageError::Malformed(crate::http::json_error(&e)))?;
    let value = raw.value.ok_or_else(|| PageError::Malformed("no `value` array".into()))?;
    let mut subscription_ids = Vec::with_capacity(value.len());
    for (index, s) in value.into_iter().enumerate() {
        subscription_ids.push(s.subscription_id.filter(|id| !id.is_empty()).ok_or(
            PageError::InvalidRow { row: index + 1, field: "subscriptionId", problem: "is missing".into() },
        )?);
    }
    Ok(SubscriptionPage { subscription_ids, next_link: raw.next_link.filter(|l| !l.trim().is_empty()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_testkit::fixtures::text as fixture;
    use std::str::FromStr;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_documented_page_parses_exactly() {
        let page = parse_usage_page(fixture("azs-usage-page.json").as_bytes()).unwrap();
        assert_eq!(page.rows.len(), 2);
        let vm = &page.rows[0];
        assert_eq!(vm.subscription_id, "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10");
        assert_eq!(vm.meter_id, "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5");
        assert_eq!(vm.usage_start, t("2026-11-25T13:00:00Z"));
        assert_eq!(vm.usage_end, t("2026-11-25T14:00:00Z"));
        assert_eq!(vm.quantity.to_string(), "2.0000000000", "the scale the stamp sent is kept");
        assert_eq!(
            vm.resource_uri,
            "/subscriptions/8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/web-01"
        );
        assert_eq!(vm.location, "local");
        assert_eq!(vm.tags.as_deref(), Some(r#"{"costCenter":"4711"}"#));
        assert_eq!(
            vm.additional_info.as_deref(),
            Some(r#"{"ServiceType":"Standard_D2_v2","ImageType":"Windows Server"}"#)
        );

        let ip = &page.rows[1];
        assert_eq!(ip.quantity.to_string(), "1");
        assert_eq!(ip.meter_id, "F271A8A388C44D93956A063E1D2FA80B", "kept as sent, without hyphens");
        assert!(ip.resource_uri.contains("/resourcegroups/"), "casing kept as sent");
        assert_eq!(ip.tags, None);
        assert_eq!(ip.additional_info, None);

        assert_eq!(
            page.next_link.as_deref(),
            Some(
                "https://adminmanagement.local.azurestack.external/subscriptions/0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime=2026-11-25T13%3a00%3a00%2b00%3a00&reportedEndTime=2026-11-25T14%3a00%3a00%2b00%3a00&aggregationGranularity=Hourly&api-version=2015-06-01-preview&continuationToken=eyJwYWdlIjoyfQ%3d%3d"
            )
        );
    }

    #[test]
    fn the_next_link_survives_url_parsing_byte_for_byte() {
        let page = parse_usage_page(fixture("azs-usage-page.json").as_bytes()).unwrap();
        let link = page.next_link.unwrap();
        assert_eq!(reqwest::Url::parse(&link).unwrap().as_str(), link, "lower-case %3a and %3d stay as sent");
    }

    #[test]
    fn tags_as_a_string_are_kept_as_json_text() {
        let body = page_with_instance_data(
            r#"{\"Microsoft.Resources\":{\"resourceUri\":\"/r\",\"location\":\"l\",\"tags\":\"a=b\",\"additionalInfo\":null}}"#,
            "0.5",
        );
        let row = &parse_usage_page(body.as_bytes()).unwrap().rows[0];
        assert_eq!(row.tags.as_deref(), Some(r#""a=b""#));
        assert_eq!(row.additional_info, None);
    }

    #[test]
    fn quantities_never_pass_through_a_float() {
        assert_eq!(parse_quantity("2.4000000000").unwrap().to_string(), "2.4000000000");
        assert_eq!(
            parse_quantity("0.1").unwrap() + parse_quantity("0.2").unwrap(),
            parse_quantity("0.3").unwrap()
        );
        assert_eq!(parse_quantity("1.5E-05").unwrap(), Decimal::from_str("0.000015").unwrap());
        assert_eq!(
            parse_quantity("12345678901234567.123456789").unwrap().to_string(),
            "12345678901234567.123456789"
        );
        assert_eq!(parse_quantity("-3").unwrap().to_string(), "-3");
        assert_eq!(parse_quantity(r#""7.25""#).unwrap().to_string(), "7.25");
        assert!(parse_quantity("true").is_none());
    }

    #[test]
    fn a_quantity_no_decimal_holds_exactly_is_refused_never_rounded() {
        // A 96-bit mantissa holds up to 79,228,162,514,264,337,593,543,950,335: Decimal::from_str
        // would round the last digit of these away.
        assert!(parse_quantity("1.00000000000000000000000000001").is_none());
        assert!(parse_quantity("9.0000000000000000000000000001").is_none());
        assert!(
            parse_quantity("1.0000000000000000000000000001").is_some(),
            "29 digits below the maximum fit"
        );
        assert!(parse_quantity("0.1234567890123456789012345678").is_some(), "28 digits fit");
        assert!(parse_quantity("1e40").is_none());
        assert!(parse_quantity("1.5E-40").is_none());
        assert!(parse_quantity(r#""NaN""#).is_none());
    }

    #[test]
    fn a_row_whose_quantity_no_decimal_holds_is_kept_verbatim_and_the_others_are_read() {
        let good = page_with_instance_data(
            r#"{\"Microsoft.Resources\":{\"resourceUri\":\"u\",\"location\":\"l\"}}"#,
            "2.5",
        );
        let entry = |q: &str| {
            let page = page_with_instance_data(r#"{\"Microsoft.Resources\":{\"resourceUri\":\"u\"}}"#, q);
            page[r#"{"value":["#.len()..page.len() - 2].to_owned()
        };
        let good_entry = &good[r#"{"value":["#.len()..good.len() - 2];
        let body = format!(
            r#"{{"value":[{good_entry}, {}, {good_entry},{}]}}"#,
            entry("1.00000000000000000000000000001"),
            entry(r#""Infinity""#)
        );
        let page = parse_usage_page(body.as_bytes()).unwrap();
        assert_eq!(page.rows.len(), 2);
        assert_eq!(page.unreadable.len(), 2);
        assert_eq!(page.unreadable_entries, vec![1, 3]);
        assert_eq!(page.unreadable[0].raw, entry("1.00000000000000000000000000001"), "verbatim, to the byte");
        assert_eq!(page.unreadable[0].field, "properties.quantity");
        assert!(page.unreadable[0].reason.contains("not rounded"), "{}", page.unreadable[0].reason);
        assert_eq!(page.unreadable[1].raw, entry(r#""Infinity""#));
        // The rows' own verbatim text is found past the quarantined entries.
        assert_eq!(page.verbatim_row(body.as_bytes(), 0).as_deref(), Some(good_entry));
        assert_eq!(page.verbatim_row(body.as_bytes(), 1).as_deref(), Some(good_entry));
        // A quantity that is no number at all is still a broken page (asked for again), not a row.
        let broken = page_with_instance_data(r#"{\"Microsoft.Resources\":{\"resourceUri\":\"u\"}}"#, "true");
        assert!(parse_usage_page(broken.as_bytes()).is_err());
    }

    #[test]
    fn usage_times_read_offsets_z_and_bare_utc() {
        assert_eq!(parse_usage_time("2026-11-25T13:00:00+00:00"), Some(t("2026-11-25T13:00:00Z")));
        assert_eq!(parse_usage_time("2026-11-25T14:00:00+01:00"), Some(t("2026-11-25T13:00:00Z")));
        assert_eq!(parse_usage_time("2026-11-25T13:00:00Z"), Some(t("2026-11-25T13:00:00Z")));
        assert_eq!(parse_usage_time("2026-11-25T13:00:00"), Some(t("2026-11-25T13:00:00Z")));
        assert_eq!(parse_usage_time("yesterday"), None);
    }

    #[test]
    fn a_row_without_a_meter_names_the_field() {
        let body = fixture("azs-usage-page.json").replacen(
            r#""meterId": "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5""#,
            r#""x": 1"#,
            1,
        );
        let e = parse_usage_page(body.as_bytes()).unwrap_err();
        assert_eq!(
            e,
            PageError::InvalidRow { row: 1, field: "properties.meterId", problem: "is missing".into() }
        );
        assert!(e.to_string().contains("meterId"));
    }

    #[test]
    fn a_row_without_a_resource_uri_names_the_field() {
        let body = page_with_instance_data(r#"{\"Microsoft.Resources\":{\"location\":\"l\"}}"#, "1");
        let e = parse_usage_page(body.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("resourceUri"), "{e}");
    }

    #[test]
    fn a_truncated_page_is_malformed() {
        let full = fixture("azs-usage-page.json");
        let e = parse_usage_page(&full.as_bytes()[..full.len() / 2]).unwrap_err();
        assert!(matches!(e, PageError::Malformed(_)));
        assert!(matches!(parse_usage_page(b"{}").unwrap_err(), PageError::Malformed(_)));
    }

    #[test]
    fn an_empty_last_page_has_no_rows_and_no_next_link() {
        let page = parse_usage_page(br#"{"value":[]}"#).unwrap();
        assert!(page.rows.is_empty());
        assert!(page.next_link.is_none());
    }

    #[test]
    fn usage_urls_carry_the_window_on_whole_hours_in_z_form() {
        let w = ReportedWindow::hour(t("2026-11-25T13:00:00Z"));
        let url = usage_url(
            "https://adminmanagement.local.azurestack.external/",
            "0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f",
            w,
            None,
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://adminmanagement.local.azurestack.external/subscriptions/0b9d6e1c-2f4e-4b8a-9c3d-1a2b3c4d5e6f/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime=2026-11-25T13:00:00Z&reportedEndTime=2026-11-25T14:00:00Z&aggregationGranularity=Hourly&api-version=2015-06-01-preview"
        );
        let per =
            usage_url("https://a.example", "s", w, Some("8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10")).unwrap();
        assert!(per.as_str().contains("&subscriberId=8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10&"));
    }

    #[test]
    fn the_subscription_list_reads_ids_and_next_link() {
        let body = br#"{"value":[{"subscriptionId":"a","displayName":"x","state":"Enabled"},{"subscriptionId":"b"}],"nextLink":"https://h/next"}"#;
        let page = parse_subscription_page(body).unwrap();
        assert_eq!(page.subscription_ids, vec!["a", "b"]);
        assert_eq!(page.next_link.as_deref(), Some("https://h/next"));
    }

    fn page_with_instance_data(instance_data: &str, quantity: &str) -> String {
        format!(
            r#"{{"value":[{{"id":"i","name":"n","type":"Microsoft.Commerce/UsageAggregate","properties":{{"subscriptionId":"s","usageStartTime":"2026-11-25T13:00:00+00:00","usageEndTime":"2026-11-25T14:00:00+00:00","instanceData":"{instance_data}","quantity":{quantity},"meterId":"m"}}}}]}}"#
        )
    }
}
