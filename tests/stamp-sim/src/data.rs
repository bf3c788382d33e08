//! Deterministic usage data of one stamp: which rows a reported hour carries and their exact text.
//!
//! # The model
//! A stamp has `tenants` tenant subscriptions, each using `meters_per_tenant` resources ("slots");
//! slot `k` of tenant `t` bills one meter of the table on one resource
//! (`/subscriptions/{sub}/resourceGroups/rg-{k % 4}/providers/{type}/{name}-{k}`, location `local`).
//!
//! Reported hour `H` carries, in this order:
//! 1. one *on-time* row per slot (tenant-major, slot-minor) with usage hour `H`;
//! 2. `late_rows_per_window` *late* rows, each for a distinct (slot, lag) with lag in 1..=6, usage
//!    hour `H - lag`. A late row is additional usage of a resource whose usage hour was already
//!    reported: it has the same subscription, meter, usage start and resource URI as the on-time
//!    row reported at `H - lag` (and possibly as late rows of other reported hours), but it is a
//!    different row. Within one reported hour (subscription, meter, usage start, resource URI) is
//!    unique; across reported hours it is not. Quantities differ almost always, yet nothing
//!    guarantees it: only the reported hour tells such rows apart.
//!
//! With a `subscriberId` filter the hour carries the tenant's on-time rows, then its late rows.
//!
//! # Text
//! Without variants every row has type `Microsoft.Commerce.Admin/UsageAggregate`, the meter id as
//! the table publishes it (network ids without hyphens), `resourceGroups`, `tags` and
//! `additionalInfo` null, and a 10-decimal quantity (`2.4000000000`). With variants, chosen per row
//! from its hash: some meter ids lower-cased, some `resourcegroups`, some rows typed
//! `Microsoft.Commerce/UsageAggregate`, tags null / an object / a string holding JSON,
//! additionalInfo null / an object, and integer quantities (always for IP address meters).
//!
//! Everything is a pure function of (seed, stamp index, reported hour, slot, lag), so a page at any
//! offset is generated directly, and the ground truth reproduces exactly what is served.

use std::io::Write as _;

use chrono::{DateTime, Utc};

use crate::config::StampSpec;
use crate::ids::{deterministic_guid, mix, splitmix64};
use crate::meters::{Meter, meter_table};

/// Longest delay between usage hour and reported hour of a late row.
pub(crate) const MAX_LAG_HOURS: u64 = 6;

const TYPE_ADMIN: &str = "Microsoft.Commerce.Admin/UsageAggregate";
const TYPE_LEGACY: &str = "Microsoft.Commerce/UsageAggregate";
const TAGS_OBJECT: &str = r#"{"costCenter":"4711","env":"sim"}"#;
const TAGS_STRING: &str = r#""{\"costCenter\":\"4711\"}""#;
const INFO_VM: &str = r#"{"ServiceType":"Standard_D2_v2","ImageType":"Windows Server"}"#;
const INFO_OTHER: &str = r#"{"ServiceType":"Standard"}"#;

/// One row the API returns, as the simulator knows it: the text of every field as served.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TruthRow {
    /// Start of the reported hour that carries this row (not visible in the API response).
    pub reported_start: DateTime<Utc>,
    /// `properties.subscriptionId`: the tenant subscription.
    pub subscription_id: String,
    /// `properties.meterId`, exactly as served (case and hyphens included).
    pub meter_id: String,
    /// `properties.usageStartTime`.
    pub usage_start: DateTime<Utc>,
    /// `properties.usageEndTime`.
    pub usage_end: DateTime<Utc>,
    /// `properties.quantity`: the exact JSON number text (`2.4000000000`, `3`).
    pub quantity: String,
    /// `resourceUri` inside `instanceData`, exactly as served.
    pub resource_uri: String,
    /// `location` inside `instanceData`.
    pub location: String,
    /// `tags` inside `instanceData` as JSON text (an object, or a quoted string); `None` for null.
    pub tags: Option<String>,
    /// `additionalInfo` inside `instanceData` as JSON text; `None` for null.
    pub additional_info: Option<String>,
}

/// Identifies one row: its reported hour, slot and lag (0 for on-time rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowKey {
    pub reported_hour: i64,
    pub slot: u32,
    pub lag: u8,
}

/// A meter as the generator writes it.
struct MeterText {
    id: String,
    id_lower: String,
    whole_units: bool,
    is_vm: bool,
}

/// One resource of one tenant, billed on one meter.
struct Slot {
    tenant: usize,
    meter: usize,
    /// `/subscriptions/{sub}/`
    uri_head: String,
    /// `/rg-N/providers/{type}/{name}-{k}` (after the resource-groups segment).
    uri_tail: String,
}

/// JSON text of a value inside `instanceData`, raw and escaped for the enclosing string.
struct EmbeddedJson {
    raw: &'static str,
    escaped: String,
}

impl EmbeddedJson {
    fn new(raw: &'static str) -> Self {
        Self { raw, escaped: json_escape(raw) }
    }
}

/// The choices a row's hash made, shared by the serializer and the ground truth.
struct RowView<'a> {
    slot: &'a Slot,
    subscription: &'a str,
    meter_id: &'a str,
    row_type: &'static str,
    resource_groups: &'static str,
    usage_hour: i64,
    quantity: Quantity,
    tags: Option<&'a EmbeddedJson>,
    additional_info: Option<&'a EmbeddedJson>,
}

/// An exact decimal quantity: `whole` or `whole.fraction` with ten fraction digits.
#[derive(Clone, Copy)]
struct Quantity {
    whole: u64,
    /// `None` writes an integer.
    fraction: Option<u64>,
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.fraction {
            Some(fraction) => write!(f, "{}.{:010}", self.whole, fraction),
            None => write!(f, "{}", self.whole),
        }
    }
}

/// All rows of one reported hour for one selection (all tenants or one).
pub(crate) struct HourRows {
    hour: i64,
    on_time: std::ops::Range<usize>,
    late: Vec<(u32, u8)>,
}

impl HourRows {
    pub fn len(&self) -> usize {
        self.on_time.len() + self.late.len()
    }

    /// The `i`-th row of the hour; `i < len()`.
    pub fn key(&self, i: usize) -> RowKey {
        if i < self.on_time.len() {
            RowKey { reported_hour: self.hour, slot: (self.on_time.start + i) as u32, lag: 0 }
        } else {
            let (slot, lag) = self.late[i - self.on_time.len()];
            RowKey { reported_hour: self.hour, slot, lag }
        }
    }
}

/// The generator of one stamp.
pub(crate) struct StampData {
    seed: u64,
    tenants: Vec<String>,
    meters_per_tenant: usize,
    meters: Vec<MeterText>,
    slots: Vec<Slot>,
    late_per_hour: usize,
    late_stride: u64,
    variants: bool,
    tags_object: EmbeddedJson,
    tags_string: EmbeddedJson,
    info_vm: EmbeddedJson,
    info_other: EmbeddedJson,
}

impl StampData {
    pub fn new(seed: u64, stamp_index: usize, spec: &StampSpec) -> Self {
        let seed = mix(&[seed, stamp_index as u64, 0x7573_6167_6564_6174]);
        let tenants: Vec<String> =
            (0..spec.tenants).map(|t| deterministic_guid(seed, 1000 + t as u64)).collect();
        let table = meter_table();
        let order = shuffled_indices(table.len(), seed);
        let meters: Vec<MeterText> = table.iter().map(meter_text).collect();
        let mut slots = Vec::with_capacity(spec.tenants * spec.meters_per_tenant);
        for (t, subscription) in tenants.iter().enumerate() {
            for k in 0..spec.meters_per_tenant {
                let meter = order[(t * 3 + k) % order.len()];
                slots.push(slot(t, k, subscription, meter, &table[meter]));
            }
        }
        let pool = slots.len() as u64 * MAX_LAG_HOURS;
        Self {
            seed,
            tenants,
            meters_per_tenant: spec.meters_per_tenant,
            meters,
            late_per_hour: spec.late_rows_per_window.min(pool as usize),
            late_stride: coprime_stride(pool),
            variants: spec.variants,
            slots,
            tags_object: EmbeddedJson::new(TAGS_OBJECT),
            tags_string: EmbeddedJson::new(TAGS_STRING),
            info_vm: EmbeddedJson::new(INFO_VM),
            info_other: EmbeddedJson::new(INFO_OTHER),
        }
    }

    /// Tenant subscription GUIDs, in row order.
    pub fn tenants(&self) -> &[String] {
        &self.tenants
    }

    /// Index of a tenant subscription (case-insensitive), if it is one of this stamp's.
    pub fn tenant_index(&self, subscription: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.eq_ignore_ascii_case(subscription))
    }

    /// The rows reported in `hour` (hours since the Unix epoch), for all tenants or one.
    pub fn hour_rows(&self, hour: i64, tenant: Option<usize>) -> HourRows {
        let on_time = match tenant {
            Some(t) => t * self.meters_per_tenant..(t + 1) * self.meters_per_tenant,
            None => 0..self.slots.len(),
        };
        let pool = self.slots.len() as u64 * MAX_LAG_HOURS;
        let mut late = Vec::new();
        if self.late_per_hour > 0 {
            let offset = mix(&[self.seed, hour as u64, 0x6c61_7465]) % pool;
            for j in 0..self.late_per_hour as u64 {
                let pick = (offset + j * self.late_stride) % pool;
                let slot = (pick % self.slots.len() as u64) as usize;
                let lag = (pick / self.slots.len() as u64 + 1) as u8;
                if tenant.is_none_or(|t| self.slots[slot].tenant == t) {
                    late.push((slot as u32, lag));
                }
            }
        }
        HourRows { hour, on_time, late }
    }

    /// Every row of `[start_hour, end_hour)` in API order, without page artifacts.
    pub fn truth(&self, start_hour: i64, end_hour: i64, tenant: Option<usize>) -> Vec<TruthRow> {
        let mut rows = Vec::new();
        for hour in start_hour..end_hour {
            let hour_rows = self.hour_rows(hour, tenant);
            rows.extend((0..hour_rows.len()).map(|i| self.truth_row(hour_rows.key(i))));
        }
        rows
    }

    fn view(&self, key: RowKey) -> RowView<'_> {
        let slot = &self.slots[key.slot as usize];
        let meter = &self.meters[slot.meter];
        let h = mix(&[self.seed, key.reported_hour as u64, u64::from(key.slot), u64::from(key.lag)]);
        let pick = |shift: u32, modulo: u64| (h >> shift) % modulo;
        let v = self.variants;
        let whole = 1 + pick(28, 8);
        let integer = v && (meter.whole_units || pick(4, 4) == 0);
        let fraction = if meter.whole_units { 0 } else { splitmix64(h) % 10_000_000_000 };
        RowView {
            slot,
            subscription: &self.tenants[slot.tenant],
            meter_id: if v && pick(8, 5) == 0 { &meter.id_lower } else { &meter.id },
            row_type: if v && pick(16, 4) == 0 { TYPE_LEGACY } else { TYPE_ADMIN },
            resource_groups: if v && pick(12, 3) == 0 { "resourcegroups" } else { "resourceGroups" },
            usage_hour: key.reported_hour - i64::from(key.lag),
            quantity: Quantity { whole, fraction: (!integer).then_some(fraction) },
            tags: match (v, pick(20, 3)) {
                (true, 1) => Some(&self.tags_object),
                (true, 2) => Some(&self.tags_string),
                _ => None,
            },
            additional_info: match (v, pick(24, 2)) {
                (true, 1) if meter.is_vm => Some(&self.info_vm),
                (true, 1) => Some(&self.info_other),
                _ => None,
            },
        }
    }

    /// The ground-truth form of one row.
    pub fn truth_row(&self, key: RowKey) -> TruthRow {
        let row = self.view(key);
        TruthRow {
            reported_start: hour_start(key.reported_hour),
            subscription_id: row.subscription.to_owned(),
            meter_id: row.meter_id.to_owned(),
            usage_start: hour_start(row.usage_hour),
            usage_end: hour_start(row.usage_hour + 1),
            quantity: row.quantity.to_string(),
            resource_uri: format!("{}{}{}", row.slot.uri_head, row.resource_groups, row.slot.uri_tail),
            location: "local".to_owned(),
            tags: row.tags.map(|t| t.raw.to_owned()),
            additional_info: row.additional_info.map(|t| t.raw.to_owned()),
        }
    }

    /// Appends the JSON object of one row, exactly as the API serves it.
    pub fn write_row(&self, key: RowKey, out: &mut Vec<u8>, times: &mut HourTexts) {
        let row = self.view(key);
        let (sub, meter) = (row.subscription.as_bytes(), row.meter_id.as_bytes());
        out.extend_from_slice(b"{\"id\":\"/subscriptions/");
        out.extend_from_slice(sub);
        out.extend_from_slice(b"/providers/Microsoft.Commerce.Admin/UsageAggregate/");
        out.extend_from_slice(sub);
        out.push(b'-');
        out.extend_from_slice(meter);
        out.extend_from_slice(b"\",\"name\":\"");
        out.extend_from_slice(sub);
        out.push(b'-');
        out.extend_from_slice(meter);
        out.extend_from_slice(b"\",\"type\":\"");
        out.extend_from_slice(row.row_type.as_bytes());
        out.extend_from_slice(b"\",\"properties\":{\"subscriptionId\":\"");
        out.extend_from_slice(sub);
        out.extend_from_slice(b"\",\"usageStartTime\":\"");
        out.extend_from_slice(times.get(row.usage_hour).as_bytes());
        out.extend_from_slice(b"\",\"usageEndTime\":\"");
        out.extend_from_slice(times.get(row.usage_hour + 1).as_bytes());
        out.extend_from_slice(
            b"\",\"instanceData\":\"{\\\"Microsoft.Resources\\\":{\\\"resourceUri\\\":\\\"",
        );
        out.extend_from_slice(row.slot.uri_head.as_bytes());
        out.extend_from_slice(row.resource_groups.as_bytes());
        out.extend_from_slice(row.slot.uri_tail.as_bytes());
        out.extend_from_slice(b"\\\",\\\"location\\\":\\\"local\\\",\\\"tags\\\":");
        out.extend_from_slice(row.tags.map_or("null", |t| &t.escaped).as_bytes());
        out.extend_from_slice(b",\\\"additionalInfo\\\":");
        out.extend_from_slice(row.additional_info.map_or("null", |t| &t.escaped).as_bytes());
        out.extend_from_slice(b"}}\",\"quantity\":");
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", row.quantity);
        out.extend_from_slice(b",\"meterId\":\"");
        out.extend_from_slice(meter);
        out.extend_from_slice(b"\"}}");
    }
}

/// Formats hour starts as the API does (`2026-11-25T13:00:00+00:00`), remembering recent ones:
/// a page touches only a handful of distinct hours.
#[derive(Default)]
pub(crate) struct HourTexts {
    recent: Vec<(i64, String)>,
}

impl HourTexts {
    pub fn get(&mut self, hour: i64) -> &str {
        let position = match self.recent.iter().position(|(h, _)| *h == hour) {
            Some(position) => position,
            None => {
                if self.recent.len() >= 16 {
                    self.recent.remove(0);
                }
                self.recent.push((hour, format_api_time(hour_start(hour))));
                self.recent.len() - 1
            }
        };
        &self.recent[position].1
    }
}

/// `2026-11-25T13:00:00+00:00`
pub(crate) fn format_api_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Start of an hour given as hours since the Unix epoch (clamped to chrono's range).
pub(crate) fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour.saturating_mul(3600), 0).unwrap_or_default()
}

/// Hours since the Unix epoch of a whole-hour time, `None` when not on the hour.
pub(crate) fn whole_hour(time: DateTime<Utc>) -> Option<i64> {
    let seconds = time.timestamp();
    (seconds % 3600 == 0 && time.timestamp_subsec_nanos() == 0).then_some(seconds / 3600)
}

fn meter_text(meter: &Meter) -> MeterText {
    MeterText {
        id: meter.id.clone(),
        id_lower: meter.id.to_ascii_lowercase(),
        whole_units: meter.counts_whole_units(),
        is_vm: meter.provider == "Compute",
    }
}

fn slot(tenant: usize, k: usize, subscription: &str, meter_index: usize, meter: &Meter) -> Slot {
    let (resource_type, name) = meter.resource_type();
    Slot {
        tenant,
        meter: meter_index,
        uri_head: format!("/subscriptions/{subscription}/"),
        uri_tail: format!("/rg-{}/providers/{resource_type}/{name}-{k}", k % 4),
    }
}

/// A seed-dependent permutation of `0..n` (Fisher-Yates).
fn shuffled_indices(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (mix(&[seed, i as u64, 0x006d_6574_6572]) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// A step coprime to `pool`, so `offset + j * step (mod pool)` visits distinct values.
fn coprime_stride(pool: u64) -> u64 {
    if pool <= 1 {
        return 1;
    }
    let mut stride = (pool as f64 * 0.618_033_988_7) as u64 | 1;
    while gcd(stride, pool) != 1 {
        stride += 1;
    }
    stride
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Escapes JSON text for use inside a JSON string.
fn json_escape(raw: &str) -> String {
    let quoted = serde_json::to_string(raw).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimAuth;
    use std::collections::HashSet;

    fn spec(variants: bool) -> StampSpec {
        let mut spec = StampSpec::generated(1, 0, SimAuth::Adfs { secret: None, certificate_pem: None });
        spec.tenants = 5;
        spec.meters_per_tenant = 7;
        spec.late_rows_per_window = 20;
        spec.variants = variants;
        spec
    }

    #[test]
    fn rows_serialize_to_valid_json_matching_the_truth() {
        let data = StampData::new(42, 0, &spec(true));
        let hour = 494_000;
        let rows = data.hour_rows(hour, None);
        assert_eq!(rows.len(), 5 * 7 + 20);
        let mut times = HourTexts::default();
        for i in 0..rows.len() {
            let mut out = Vec::new();
            data.write_row(rows.key(i), &mut out, &mut times);
            let json: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            let truth = data.truth_row(rows.key(i));
            let props = &json["properties"];
            assert_eq!(props["meterId"], truth.meter_id.as_str());
            let instance: serde_json::Value =
                serde_json::from_str(props["instanceData"].as_str().unwrap()).unwrap();
            let resources = &instance["Microsoft.Resources"];
            assert_eq!(resources["resourceUri"], truth.resource_uri.as_str());
            let tags = truth.tags.as_deref().map(|t| serde_json::from_str(t).unwrap());
            assert_eq!(resources["tags"], tags.unwrap_or(serde_json::Value::Null));
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(&format!("\"quantity\":{},", truth.quantity)));
        }
    }

    #[test]
    fn rows_of_an_hour_are_unique_and_late_rows_lag_one_to_six_hours() {
        let data = StampData::new(7, 1, &spec(false));
        let truth = data.truth(1000, 1010, None);
        let mut per_hour = HashSet::new();
        for row in &truth {
            let lag = (row.reported_start - row.usage_start).num_hours();
            assert!((0..=6).contains(&lag));
            let key = (row.reported_start, &row.subscription_id, &row.meter_id, row.usage_start);
            assert!(per_hour.insert((key, &row.resource_uri)), "duplicate row {row:?}");
        }
    }

    #[test]
    fn filtered_hours_hold_exactly_the_tenants_rows() {
        let data = StampData::new(7, 1, &spec(true));
        let all = data.truth(2000, 2003, None);
        let sub = data.tenants()[2].clone();
        let filtered = data.truth(2000, 2003, Some(2));
        let expected: Vec<_> = all.into_iter().filter(|r| r.subscription_id == sub).collect();
        let mut a = filtered.clone();
        let mut b = expected;
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
