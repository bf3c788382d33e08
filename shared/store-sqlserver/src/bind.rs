//! The one place each statement's parameters are bound: a function per statement, taking typed values
//! in `@P1, @P2, ...` order. A [`Bound`] statement is the only thing a session runs, and it refuses a
//! parameter count that differs from the statement's; the tests call every function, so a mismatch is
//! caught without a server.

use crate::sql::{self, Statement};
use crate::types::Quantity;
use azs_core::status::{DriftCounts, LastVerified, RunRecord};
use azs_core::usage::{RowKey, UsageRow, normalize_subscription_id};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tiberius::{ColumnData, IntoSql, Uuid};

/// A statement with its parameter values.
pub(crate) struct Bound<'a> {
    pub statement: &'static Statement,
    pub params: Vec<ColumnData<'a>>,
}

impl<'a> Bound<'a> {
    fn new(statement: &'static Statement, params: Vec<ColumnData<'a>>) -> Self {
        assert_eq!(
            params.len(),
            statement.params,
            "{} takes {} parameters, {} were bound",
            statement.name,
            statement.params,
            params.len()
        );
        Self { statement, params }
    }
}

/// A statement without parameters that returns rows.
pub(crate) fn none(statement: &'static Statement) -> Bound<'static> {
    Bound::new(statement, vec![])
}

// -- Migrations ----------------------------------------------------------------------------------------

pub(crate) fn applock_acquire(resource: &str, timeout: Duration) -> Bound<'_> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    Bound::new(&sql::APPLOCK_ACQUIRE, vec![resource.into_sql(), ms.into_sql()])
}

pub(crate) fn applock_release(resource: &str) -> Bound<'_> {
    Bound::new(&sql::APPLOCK_RELEASE, vec![resource.into_sql()])
}

pub(crate) fn check_permissions(schema: &str) -> Bound<'_> {
    Bound::new(&sql::CHECK_PERMISSIONS, vec![schema.into_sql()])
}

pub(crate) fn schema_id(schema: &str) -> Bound<'_> {
    Bound::new(&sql::SCHEMA_ID, vec![schema.into_sql()])
}

pub(crate) fn table_id(qualified_name: &str) -> Bound<'_> {
    Bound::new(&sql::TABLE_ID, vec![qualified_name.into_sql()])
}

pub(crate) fn record_migration(version: i32, name: &str) -> Bound<'_> {
    Bound::new(&sql::RECORD_MIGRATION, vec![version.into_sql(), name.into_sql()])
}

pub(crate) fn smoke_convert_key(hex: &str) -> Bound<'_> {
    Bound::new(&sql::SMOKE_CONVERT_KEY, vec![hex.into_sql()])
}

pub(crate) fn smoke_openjson(rows_json: String) -> Bound<'static> {
    Bound::new(&sql::SMOKE_OPENJSON, vec![rows_json.into_sql()])
}

pub(crate) fn smoke_edit_final(billing_subscription_id: &str) -> Bound<'_> {
    Bound::new(&sql::SMOKE_EDIT_FINAL, vec![billing_subscription_id.into_sql()])
}

// -- Stamps --------------------------------------------------------------------------------------------

/// A stamp in column form: GUIDs parsed, times truncated to their columns' precision.
#[derive(Debug, Clone)]
pub(crate) struct StampColumns {
    pub id: Uuid,
    pub name: String,
    pub admin_subscription_id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub application_id: Uuid,
    pub certificate_thumbprint: Option<String>,
    pub admin_arm_endpoint: String,
    pub admin_arm_endpoint_key: String,
    pub token_request_resource_url: Option<String>,
    pub authority_endpoint_url: Option<String>,
    pub is_adfs: bool,
    pub ca_certificate_pem: Option<String>,
    pub credential_secret_name: String,
    pub enabled: bool,
    pub collect_from: DateTime<Utc>,
    pub query_mode: &'static str,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn stamp_registered_as(
    endpoint_key: &str,
    admin_subscription: Uuid,
    except: Option<Uuid>,
) -> Bound<'_> {
    Bound::new(
        &sql::STAMP_REGISTERED_AS,
        vec![endpoint_key.into_sql(), admin_subscription.into_sql(), except.into_sql()],
    )
}

/// @P2..@P16 of INSERT_STAMP and UPDATE_STAMP, which list the same columns in the same order.
fn stamp_fields(s: &StampColumns) -> Vec<ColumnData<'_>> {
    vec![
        s.id.into_sql(),
        s.name.as_str().into_sql(),
        s.admin_subscription_id.into_sql(),
        s.tenant_id.into_sql(),
        s.application_id.into_sql(),
        s.certificate_thumbprint.as_deref().into_sql(),
        s.admin_arm_endpoint.as_str().into_sql(),
        s.admin_arm_endpoint_key.as_str().into_sql(),
        s.token_request_resource_url.as_deref().into_sql(),
        s.authority_endpoint_url.as_deref().into_sql(),
        s.is_adfs.into_sql(),
        s.ca_certificate_pem.as_deref().into_sql(),
        s.credential_secret_name.as_str().into_sql(),
        s.enabled.into_sql(),
        s.collect_from.into_sql(),
        s.query_mode.into_sql(),
    ]
}

pub(crate) fn insert_stamp(s: &StampColumns) -> Bound<'_> {
    let mut params = stamp_fields(s);
    params.push(s.created_at.into_sql());
    Bound::new(&sql::INSERT_STAMP, params)
}

pub(crate) fn number_stamp(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::NUMBER_STAMP, vec![stamp.into_sql()])
}

pub(crate) fn insert_status(stamp: Uuid, watermark: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::INSERT_STATUS, vec![stamp.into_sql(), watermark.into_sql()])
}

pub(crate) fn update_stamp(s: &StampColumns) -> Bound<'_> {
    Bound::new(&sql::UPDATE_STAMP, stamp_fields(s))
}

pub(crate) fn delete_stamp(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::DELETE_STAMP, vec![stamp.into_sql()])
}

pub(crate) fn leave_tombstone(stamp: Uuid, removed_at: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::LEAVE_TOMBSTONE, vec![stamp.into_sql(), removed_at.into_sql()])
}

pub(crate) fn tombstone(endpoint_key: &str, admin_subscription: Uuid) -> Bound<'_> {
    Bound::new(&sql::TOMBSTONE, vec![endpoint_key.into_sql(), admin_subscription.into_sql()])
}

pub(crate) fn consume_tombstone(endpoint_key: &str, admin_subscription: Uuid) -> Bound<'_> {
    Bound::new(&sql::CONSUME_TOMBSTONE, vec![endpoint_key.into_sql(), admin_subscription.into_sql()])
}

pub(crate) fn get_stamp(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::GET_STAMP, vec![stamp.into_sql()])
}

pub(crate) fn get_stamp_locked(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::GET_STAMP_LOCKED, vec![stamp.into_sql()])
}

// -- Audit ---------------------------------------------------------------------------------------------

/// An audit record in column form: the stamp id parsed, `changes` as JSON text.
#[derive(Debug, Clone)]
pub(crate) struct AuditColumns<'a> {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub action: &'static str,
    pub stamp_id: Uuid,
    pub stamp_name: &'a str,
    pub subscription: Option<&'a str>,
    pub changes: String,
}

pub(crate) fn insert_audit<'a>(a: &AuditColumns<'a>) -> Bound<'a> {
    Bound::new(
        &sql::INSERT_AUDIT,
        vec![
            a.id.into_sql(),
            a.at.into_sql(),
            a.actor.into_sql(),
            a.action.into_sql(),
            a.stamp_id.into_sql(),
            a.stamp_name.into_sql(),
            a.subscription.into_sql(),
            a.changes.clone().into_sql(),
        ],
    )
}

pub(crate) fn list_audit(
    stamp: Option<Uuid>,
    since: Option<DateTime<Utc>>,
    after: i64,
    limit: i64,
) -> Bound<'static> {
    Bound::new(&sql::LIST_AUDIT, vec![stamp.into_sql(), since.into_sql(), after.into_sql(), limit.into_sql()])
}

// -- Rating --------------------------------------------------------------------------------------------

pub(crate) fn book_currency(book: &str) -> Bound<'_> {
    Bound::new(&sql::BOOK_CURRENCY, vec![book.into_sql()])
}

pub(crate) fn book_version_body(book: &str, version: i64) -> Bound<'_> {
    Bound::new(&sql::BOOK_VERSION_BODY, vec![book.into_sql(), version.into_sql()])
}

/// A price book version's columns, in INSERT_BOOK_VERSION's order.
pub(crate) struct BookVersionColumns<'a> {
    pub book_id: &'a str,
    pub version: i64,
    pub currency: &'a str,
    pub minor_units: i32,
    pub effective_from: DateTime<Utc>,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn insert_book_version<'a>(v: &'a BookVersionColumns<'a>) -> Bound<'a> {
    Bound::new(
        &sql::INSERT_BOOK_VERSION,
        vec![
            v.book_id.into_sql(),
            v.version.into_sql(),
            v.currency.into_sql(),
            v.minor_units.into_sql(),
            v.effective_from.into_sql(),
            v.body.as_str().into_sql(),
            v.created_at.into_sql(),
        ],
    )
}

pub(crate) fn assignment_exists(sub: &str, from: DateTime<Utc>) -> Bound<'_> {
    Bound::new(&sql::ASSIGNMENT_EXISTS, vec![sub.into_sql(), from.into_sql()])
}

pub(crate) fn update_assignment<'a>(sub: &'a str, from: DateTime<Utc>, book: &'a str) -> Bound<'a> {
    Bound::new(&sql::UPDATE_ASSIGNMENT, vec![sub.into_sql(), from.into_sql(), book.into_sql()])
}

pub(crate) fn insert_assignment<'a>(sub: &'a str, from: DateTime<Utc>, book: &'a str) -> Bound<'a> {
    Bound::new(&sql::INSERT_ASSIGNMENT, vec![sub.into_sql(), from.into_sql(), book.into_sql()])
}

pub(crate) fn statement_state<'a>(sub: &'a str, month: &'a str) -> Bound<'a> {
    Bound::new(&sql::STATEMENT_STATE, vec![sub.into_sql(), month.into_sql()])
}

/// A statement's columns, in UPDATE_STATEMENT's and INSERT_STATEMENT's order.
pub(crate) struct StatementColumns<'a> {
    pub billing_subscription_id: &'a str,
    pub month: String,
    pub state: &'static str,
    pub body: String,
    pub updated_at: DateTime<Utc>,
}

impl<'a> StatementColumns<'a> {
    fn params(&'a self) -> Vec<ColumnData<'a>> {
        vec![
            self.billing_subscription_id.into_sql(),
            self.month.as_str().into_sql(),
            self.state.into_sql(),
            self.body.as_str().into_sql(),
            self.updated_at.into_sql(),
        ]
    }
}

pub(crate) fn update_statement<'a>(c: &'a StatementColumns<'a>) -> Bound<'a> {
    Bound::new(&sql::UPDATE_STATEMENT, c.params())
}

pub(crate) fn insert_statement<'a>(c: &'a StatementColumns<'a>) -> Bound<'a> {
    Bound::new(&sql::INSERT_STATEMENT, c.params())
}

pub(crate) fn get_statement<'a>(sub: &'a str, month: &'a str) -> Bound<'a> {
    Bound::new(&sql::GET_STATEMENT, vec![sub.into_sql(), month.into_sql()])
}

pub(crate) fn list_statements(month: Option<&str>) -> Bound<'_> {
    Bound::new(&sql::LIST_STATEMENTS, vec![month.into_sql()])
}

pub(crate) fn statements_page<'a>(month: &'a str, after: &'a str, limit: i64) -> Bound<'a> {
    Bound::new(&sql::STATEMENTS_PAGE, vec![month.into_sql(), after.into_sql(), limit.into_sql()])
}

pub(crate) fn final_statements(sub: &str) -> Bound<'_> {
    Bound::new(&sql::FINAL_STATEMENTS, vec![sub.into_sql()])
}

pub(crate) fn verify_history(stamp: Uuid, from: DateTime<Utc>, to: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::VERIFY_HISTORY, vec![stamp.into_sql(), from.into_sql(), to.into_sql()])
}

// -- Status --------------------------------------------------------------------------------------------

pub(crate) fn get_status(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::GET_STATUS, vec![stamp.into_sql()])
}

pub(crate) fn run_started(stamp: Uuid, started: DateTime<Utc>, outcome: &'static str) -> Bound<'static> {
    Bound::new(&sql::RUN_STARTED, vec![stamp.into_sql(), started.into_sql(), outcome.into_sql()])
}

pub(crate) fn run_finished(stamp: Uuid, finished: DateTime<Utc>, record: &RunRecord) -> Bound<'_> {
    Bound::new(
        &sql::RUN_FINISHED,
        vec![
            stamp.into_sql(),
            finished.into_sql(),
            record.outcome.as_str().into_sql(),
            crate::types::count(record.rows_written).into_sql(),
            crate::types::count(record.unmapped_rows).into_sql(),
            record.last_error.as_deref().into_sql(),
            crate::types::count(record.duplicates).into_sql(),
        ],
    )
}

pub(crate) fn record_verified(stamp: Uuid, verified: &LastVerified, drift: &DriftCounts) -> Bound<'static> {
    Bound::new(
        &sql::RECORD_VERIFIED,
        vec![
            stamp.into_sql(),
            crate::types::millis(verified.at).into_sql(),
            crate::types::seconds(verified.range.start).into_sql(),
            crate::types::seconds(verified.range.end).into_sql(),
            crate::types::count(drift.missing).into_sql(),
            crate::types::count(drift.extra).into_sql(),
            crate::types::count(drift.changed).into_sql(),
        ],
    )
}

// -- Leases --------------------------------------------------------------------------------------------

fn lease<'a>(statement: &'static Statement, stamp: Uuid, owner: &'a str, ttl_ms: i32) -> Bound<'a> {
    Bound::new(statement, vec![stamp.into_sql(), owner.into_sql(), ttl_ms.into_sql()])
}

pub(crate) fn lease_take_over(stamp: Uuid, owner: &str, ttl_ms: i32) -> Bound<'_> {
    lease(&sql::LEASE_TAKE_OVER, stamp, owner, ttl_ms)
}

pub(crate) fn lease_create(stamp: Uuid, owner: &str, ttl_ms: i32) -> Bound<'_> {
    lease(&sql::LEASE_CREATE, stamp, owner, ttl_ms)
}

pub(crate) fn lease_renew(stamp: Uuid, owner: &str, ttl_ms: i32) -> Bound<'_> {
    lease(&sql::LEASE_RENEW, stamp, owner, ttl_ms)
}

pub(crate) fn lease_release(stamp: Uuid, owner: &str) -> Bound<'_> {
    Bound::new(&sql::LEASE_RELEASE, vec![stamp.into_sql(), owner.into_sql()])
}

// -- Mappings ------------------------------------------------------------------------------------------

pub(crate) fn lock_stamp(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::LOCK_STAMP, vec![stamp.into_sql()])
}

pub(crate) fn upsert_mapping<'a>(
    stamp: Uuid,
    external: &'a str,
    billing: &'a str,
    updated_at: DateTime<Utc>,
) -> Bound<'a> {
    Bound::new(
        &sql::UPSERT_MAPPING,
        vec![stamp.into_sql(), external.into_sql(), billing.into_sql(), updated_at.into_sql()],
    )
}

pub(crate) fn back_fill<'a>(stamp: Uuid, external: &'a str, billing: &'a str) -> Bound<'a> {
    Bound::new(&sql::BACK_FILL, vec![stamp.into_sql(), external.into_sql(), billing.into_sql()])
}

pub(crate) fn current_mapping(stamp: Uuid, external: &str) -> Bound<'_> {
    Bound::new(&sql::CURRENT_MAPPING, vec![stamp.into_sql(), external.into_sql()])
}

pub(crate) fn stamp_name(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::STAMP_NAME, vec![stamp.into_sql()])
}

pub(crate) fn remove_mapping(stamp: Uuid, external: &str) -> Bound<'_> {
    Bound::new(&sql::REMOVE_MAPPING, vec![stamp.into_sql(), external.into_sql()])
}

pub(crate) fn list_mappings(stamp: Option<Uuid>) -> Bound<'static> {
    Bound::new(&sql::LIST_MAPPINGS, vec![stamp.into_sql()])
}

pub(crate) fn unmapped(stamp: Option<Uuid>) -> Bound<'static> {
    Bound::new(&sql::UNMAPPED, vec![stamp.into_sql()])
}

// -- Ledger --------------------------------------------------------------------------------------------

pub(crate) fn fence_advance(
    stamp: Uuid,
    expected_watermark: DateTime<Utc>,
    new_watermark: DateTime<Utc>,
    owner: &str,
) -> Bound<'_> {
    Bound::new(
        &sql::FENCE_ADVANCE,
        vec![stamp.into_sql(), expected_watermark.into_sql(), new_watermark.into_sql(), owner.into_sql()],
    )
}

pub(crate) fn fence_replace(stamp: Uuid, window_end: DateTime<Utc>, owner: &str) -> Bound<'_> {
    Bound::new(&sql::FENCE_REPLACE, vec![stamp.into_sql(), window_end.into_sql(), owner.into_sql()])
}

pub(crate) fn fence_state(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::FENCE_STATE, vec![stamp.into_sql()])
}

pub(crate) fn delete_window(stamp: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::DELETE_WINDOW, vec![stamp.into_sql(), start.into_sql(), end.into_sql()])
}

/// MERGE_WINDOW with the window's rows and their distinct tenant subscriptions as JSON texts (see
/// [`window_rows`] and [`window_tenants`]).
pub(crate) fn merge_window(
    stamp: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    rows_json: String,
    tenants_json: String,
    billed_json: String,
) -> Bound<'static> {
    Bound::new(
        &sql::MERGE_WINDOW,
        vec![
            stamp.into_sql(),
            start.into_sql(),
            end.into_sql(),
            rows_json.into_sql(),
            tenants_json.into_sql(),
            billed_json.into_sql(),
        ],
    )
}

pub(crate) fn window_billed(stamp: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::WINDOW_BILLED, vec![stamp.into_sql(), start.into_sql(), end.into_sql()])
}

/// MERGE_WINDOW's @P6: `[{"n": subscription key, "b": billing subscription}, ...]`.
pub(crate) fn window_billed_json(billed: &[(String, String)]) -> String {
    let entries: Vec<serde_json::Value> =
        billed.iter().map(|(n, b)| serde_json::json!({ "n": n, "b": b })).collect();
    serde_json::Value::Array(entries).to_string()
}

pub(crate) fn delete_window_quarantine(
    stamp: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Bound<'static> {
    Bound::new(&sql::DELETE_WINDOW_QUARANTINE, vec![stamp.into_sql(), start.into_sql(), end.into_sql()])
}

/// QUARANTINE_WINDOW with a piece of the window's quarantined rows as one JSON text (see
/// [`window_quarantine`]).
pub(crate) fn quarantine_window(
    stamp: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    quarantine_json: String,
) -> Bound<'static> {
    Bound::new(
        &sql::QUARANTINE_WINDOW,
        vec![stamp.into_sql(), start.into_sql(), end.into_sql(), quarantine_json.into_sql()],
    )
}

pub(crate) fn list_quarantine(stamp: Option<Uuid>) -> Bound<'static> {
    Bound::new(&sql::LIST_QUARANTINE, vec![stamp.into_sql()])
}

pub(crate) fn subscriptions_seen(stamp: Uuid, since: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::SUBSCRIPTIONS_SEEN, vec![stamp.into_sql(), since.into_sql()])
}

pub(crate) fn record_reprocess(
    stamp: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reason: &str,
    requested_at: DateTime<Utc>,
) -> Bound<'_> {
    Bound::new(
        &sql::RECORD_REPROCESS,
        vec![stamp.into_sql(), start.into_sql(), end.into_sql(), reason.into_sql(), requested_at.into_sql()],
    )
}

pub(crate) fn export_stamps(from: DateTime<Utc>, to: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::EXPORT_STAMPS, vec![from.into_sql(), to.into_sql()])
}

pub(crate) fn export_windows(stamp: Uuid, from: DateTime<Utc>, to: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::EXPORT_WINDOWS, vec![stamp.into_sql(), from.into_sql(), to.into_sql()])
}

pub(crate) fn export_window_rows(window_no: i64) -> Bound<'static> {
    Bound::new(&sql::EXPORT_WINDOW_ROWS, vec![window_no.into_sql()])
}

pub(crate) fn billing_rows(
    billing_subscription_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Bound<'_> {
    Bound::new(&sql::BILLING_ROWS, vec![billing_subscription_id.into_sql(), from.into_sql(), to.into_sql()])
}

// -- A window's quarantined rows, as QUARANTINE_WINDOW reads them -----------------------------------------

/// One quarantined row as an element of QUARANTINE_WINDOW's JSON array (the keys are its WITH paths).
#[derive(serde::Serialize)]
struct QuarantineRow<'a> {
    /// The key as 32 hex digits, for CONVERT(binary(16), k, 2).
    k: String,
    f: &'a str,
    w: &'a str,
    r: &'a str,
}

/// Quarantined rows (of distinct keys: one INSERT cannot hold a key twice) as one JSON array.
pub(crate) fn window_quarantine(rows: &[&azs_core::quarantine::QuarantinedRow]) -> String {
    let rows: Vec<QuarantineRow<'_>> = rows
        .iter()
        .map(|q| QuarantineRow { k: key_hex(q.key().bytes()), f: &q.field, w: &q.reason, r: &q.raw })
        .collect();
    serde_json::to_string(&rows).expect("strings always serialise")
}

// -- A window's rows, as MERGE_WINDOW reads them ---------------------------------------------------------

/// A key as 32 upper-case hex digits, what `CONVERT(binary(16), k, 2)` reads back into the 16 bytes.
pub(crate) fn key_hex(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A window's row ready to send: its 128-bit key (computed once), the row, its quantity in column form.
pub(crate) struct CheckedRow<'a> {
    pub key: RowKey,
    pub row: &'a UsageRow,
    pub quantity: Quantity,
}

/// One usage row as an element of MERGE_WINDOW's JSON array; the keys are the paths of its OPENJSON
/// WITH clause. Numbers that must stay exact (the quantity), the 128-bit row key (as hex) and times
/// travel as strings that the statement converts exactly.
#[derive(serde::Serialize)]
struct RowJson<'a> {
    k: String,
    s: &'a str,
    n: String,
    m: &'a str,
    us: String,
    ue: String,
    q: String,
    qs: u8,
    r: &'a str,
    l: &'a str,
    t: Option<&'a str>,
    a: Option<&'a str>,
}

/// `datetime2(0)`'s ISO 8601 form (SQL Server converts it the same way whatever the session's
/// DATEFORMAT or language).
fn iso_seconds(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The window's rows as one JSON array, in the order given: MERGE_WINDOW's @P4.
pub(crate) fn window_rows(rows: &[CheckedRow<'_>]) -> String {
    let rows: Vec<RowJson<'_>> = rows
        .iter()
        .map(|&CheckedRow { key, row, ref quantity }| RowJson {
            k: key_hex(key.bytes()),
            s: &row.subscription_id,
            n: normalize_subscription_id(&row.subscription_id),
            m: &row.meter_id,
            us: iso_seconds(row.usage_start),
            ue: iso_seconds(row.usage_end),
            q: quantity.value.to_string(),
            qs: quantity.sent_scale,
            r: &row.resource_uri,
            l: &row.location,
            t: row.tags.as_deref(),
            a: row.additional_info.as_deref(),
        })
        .collect();
    serde_json::to_string(&rows).expect("strings and numbers always serialise")
}

/// One tenant subscription key as an element of MERGE_WINDOW's @P5.
#[derive(serde::Serialize)]
struct TenantJson {
    n: String,
}

/// The distinct normalised subscription keys of the window's rows as one JSON array: MERGE_WINDOW's
/// @P5, which numbers them (tenant_numbers) before the rows that carry the numbers are merged.
pub(crate) fn window_tenants(rows: &[CheckedRow<'_>]) -> String {
    let keys: std::collections::BTreeSet<String> =
        rows.iter().map(|r| normalize_subscription_id(&r.row.subscription_id)).collect();
    let keys: Vec<TenantJson> = keys.into_iter().map(|n| TenantJson { n }).collect();
    serde_json::to_string(&keys).expect("strings always serialise")
}

/// The widths of `usage_rows`' bounded text columns, in UTF-16 code units as nvarchar(n) counts them,
/// with the name the API gives each field.
pub(crate) const TEXT_WIDTHS: &[(&str, usize)] = &[
    ("subscriptionId", SUBSCRIPTION_ID_WIDTH),
    ("meterId", METER_ID_WIDTH),
    ("resourceUri", RESOURCE_URI_WIDTH),
    ("location", LOCATION_WIDTH),
];
pub(crate) const SUBSCRIPTION_ID_WIDTH: usize = 256;
pub(crate) const METER_ID_WIDTH: usize = 128;
pub(crate) const RESOURCE_URI_WIDTH: usize = 4000;
pub(crate) const LOCATION_WIDTH: usize = 256;

/// The first field of `row` longer than its column, with its length.
pub(crate) fn too_long(row: &UsageRow) -> Option<(&'static str, usize, usize)> {
    let values = [&row.subscription_id, &row.meter_id, &row.resource_uri, &row.location];
    TEXT_WIDTHS.iter().zip(values).find_map(|((field, width), value)| {
        let length = value.encode_utf16().count();
        (length > *width).then_some((*field, length, *width))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::status::RunOutcome;
    use std::collections::BTreeSet;

    fn t() -> DateTime<Utc> {
        "2026-11-25T13:00:00Z".parse().unwrap()
    }

    fn stamp() -> StampColumns {
        StampColumns {
            id: Uuid::nil(),
            name: "n".into(),
            admin_subscription_id: Uuid::nil(),
            tenant_id: None,
            application_id: Uuid::nil(),
            certificate_thumbprint: None,
            admin_arm_endpoint: "https://adminmanagement.local.azurestack.external".into(),
            admin_arm_endpoint_key: "https://adminmanagement.local.azurestack.external".into(),
            token_request_resource_url: None,
            authority_endpoint_url: None,
            is_adfs: true,
            ca_certificate_pem: None,
            credential_secret_name: "s".into(),
            enabled: true,
            collect_from: t(),
            query_mode: "all-tenants",
            created_at: t(),
        }
    }

    /// Calls every binding function once (each asserts its count) and returns the statements bound.
    fn bind_everything() -> BTreeSet<&'static str> {
        let (id, s) = (Uuid::nil(), stamp());
        let record = RunRecord {
            outcome: RunOutcome::Succeeded,
            finished: t(),
            rows_written: 1,
            unmapped_rows: 0,
            duplicates: 0,
            last_error: None,
        };
        let version = BookVersionColumns {
            book_id: "b",
            version: 1,
            currency: "EUR",
            minor_units: 2,
            effective_from: t(),
            body: "{}".into(),
            created_at: t(),
        };
        let statement = StatementColumns {
            billing_subscription_id: "c",
            month: "2026-11".into(),
            state: "draft",
            body: "{}".into(),
            updated_at: t(),
        };
        let bound = [
            applock_acquire("r", Duration::from_secs(1)),
            applock_release("r"),
            schema_id("azs_usage"),
            check_permissions("azs_usage"),
            table_id("[azs_usage].[schema_migrations]"),
            record_migration(1, "initial"),
            smoke_convert_key("00"),
            smoke_openjson("[]".into()),
            smoke_edit_final("azs-usage-smoke"),
            stamp_registered_as("k", id, None),
            number_stamp(id),
            insert_stamp(&s),
            insert_status(id, t()),
            update_stamp(&s),
            delete_stamp(id),
            leave_tombstone(id, t()),
            tombstone("k", id),
            consume_tombstone("k", id),
            get_stamp(id),
            get_stamp_locked(id),
            insert_audit(&AuditColumns {
                id,
                at: t(),
                actor: "cli:ops",
                action: "stamp.update",
                stamp_id: id,
                stamp_name: "n",
                subscription: None,
                changes: "[]".into(),
            }),
            list_audit(Some(id), Some(t()), 0, 10),
            current_mapping(id, "e"),
            stamp_name(id),
            get_status(id),
            run_started(id, t(), "running"),
            run_finished(id, t(), &record),
            record_verified(
                id,
                &LastVerified { at: t(), range: azs_core::window::ReportedWindow { start: t(), end: t() } },
                &DriftCounts::default(),
            ),
            lease_take_over(id, "o", 1),
            lease_create(id, "o", 1),
            lease_renew(id, "o", 1),
            lease_release(id, "o"),
            lock_stamp(id),
            upsert_mapping(id, "e", "b", t()),
            back_fill(id, "e", "b"),
            remove_mapping(id, "e"),
            list_mappings(None),
            unmapped(Some(id)),
            fence_advance(id, t(), t(), "o"),
            fence_replace(id, t(), "o"),
            fence_state(id),
            delete_window(id, t(), t()),
            merge_window(id, t(), t(), "[]".into(), "[]".into(), "[]".into()),
            window_billed(id, t(), t()),
            delete_window_quarantine(id, t(), t()),
            quarantine_window(id, t(), t(), "[]".into()),
            list_quarantine(None),
            record_reprocess(id, t(), t(), "why", t()),
            export_stamps(t(), t()),
            export_windows(id, t(), t()),
            export_window_rows(1),
            billing_rows("cust-a", t(), t()),
            subscriptions_seen(id, t()),
            book_currency("b"),
            book_version_body("b", 1),
            insert_book_version(&version),
            assignment_exists("", t()),
            update_assignment("", t(), "b"),
            insert_assignment("", t(), "b"),
            statement_state("c", "2026-11"),
            update_statement(&statement),
            insert_statement(&statement),
            get_statement("c", "2026-11"),
            list_statements(None),
            statements_page("2026-11", "c", 10),
            final_statements("c"),
            verify_history(id, t(), t()),
            none(&sql::SCHEMA_VERSION),
            none(&sql::LIST_STAMPS),
            none(&sql::LIST_STATUSES),
        ];
        bound.iter().map(|b| b.statement.name).collect()
    }

    #[test]
    fn every_binding_supplies_exactly_the_parameters_its_statement_declares() {
        // Bound::new panics on a mismatch; reaching the end means every count matched.
        bind_everything();
    }

    #[test]
    fn every_statement_with_parameters_has_a_binding() {
        let bound = bind_everything();
        for statement in sql::ALL.iter().filter(|s| s.params > 0) {
            assert!(bound.contains(statement.name), "{} has no binding function", statement.name);
        }
    }

    #[test]
    #[should_panic(expected = "GET_STAMP takes 1 parameters, 2 were bound")]
    fn a_wrong_parameter_count_is_refused_before_anything_is_sent() {
        Bound::new(&sql::GET_STAMP, vec![1i32.into_sql(), 2i32.into_sql()]);
    }

    #[test]
    fn insert_and_update_bind_the_stamp_columns_in_the_same_order() {
        let s = stamp();
        let insert = insert_stamp(&s);
        let update = update_stamp(&s);
        assert_eq!(format!("{:?}", &insert.params[..16]), format!("{:?}", update.params));
    }

    fn usage_row() -> UsageRow {
        UsageRow {
            subscription_id: "8E8CD5A6-05B6-4B9D-9B5A-4E8F3C1D2A10".into(),
            meter_id: "m".into(),
            usage_start: t(),
            usage_end: t() + chrono::Duration::hours(1),
            quantity: "2.4000000000".parse().unwrap(),
            resource_uri: "/r/\u{e9}\"quoted\"".into(),
            location: "local".into(),
            tags: None,
            additional_info: Some("{\"ServiceType\":\"A1\"}".into()),
        }
    }

    /// The `'$.x'` paths of the OPENJSON WITH clause that reads `param` in MERGE_WINDOW, in order.
    fn paths_of(param: &str, alias: &str) -> Vec<String> {
        let sql = sql::MERGE_WINDOW.sql;
        let start = sql.find(&format!("OPENJSON({param}) WITH (")).expect("an OPENJSON of the parameter");
        let end = start + sql[start..].find(&format!(") AS {alias}")).expect("the clause's end");
        sql[start..end].split("'$.").skip(1).map(|rest| rest[..rest.find('\'').unwrap()].to_owned()).collect()
    }

    /// The paths of the rows' WITH clause (@P4).
    fn with_paths() -> Vec<String> {
        paths_of("@P4", "r")
    }

    #[test]
    fn the_billed_json_has_exactly_the_keys_its_openjson_clause_reads() {
        let json = window_billed_json(&[("8e8c".into(), "billing-x".into())]);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut keys: Vec<String> = parsed[0].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut expected = paths_of("@P6", "kept");
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(parsed[0]["b"], "billing-x");
        assert_eq!(window_billed_json(&[]), "[]");
    }

    fn checked(row: &UsageRow) -> CheckedRow<'_> {
        CheckedRow { key: row.key(), row, quantity: Quantity::new(row.quantity).unwrap() }
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn the_quarantine_json_has_the_keys_its_openjson_clause_reads_one_entry_per_row_and_hex_keys() {
        use azs_core::quarantine::{QuarantinedRow, Unrepresentable};
        let why = Unrepresentable { field: "properties.quantity", rule: "r".into() };
        let a = QuarantinedRow::new("{\"x\":1}".into(), &why);
        let b = QuarantinedRow::new("{\"x\":2}".into(), &why);
        let json = window_quarantine(&[&a, &b]);
        let parsed: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.len(), 2);
        let mut keys: Vec<String> = parsed[0].keys().cloned().collect();
        keys.sort();
        let mut paths: Vec<String> = sql::QUARANTINE_WINDOW
            .sql
            .split("'$.")
            .skip(1)
            .map(|rest| rest[..rest.find('\'').unwrap()].to_owned())
            .collect();
        paths.sort();
        assert_eq!(keys, paths);
        let hex = parsed[0]["k"].as_str().unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        assert_eq!(hex, a.key().bytes().iter().map(|b| format!("{b:02X}")).collect::<String>());
        assert_eq!(parsed[0]["r"], "{\"x\":1}", "the raw row travels verbatim");
    }

    #[test]
    fn the_window_json_has_exactly_the_keys_the_openjson_clause_reads_in_its_order() {
        let row = usage_row();
        let json = window_rows(&[checked(&row)]);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let object = parsed[0].as_object().unwrap();
        let keys: Vec<&String> = object.keys().collect();
        let mut expected = with_paths();
        expected.sort();
        let mut keys_sorted: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        keys_sorted.sort();
        assert_eq!(keys_sorted, expected);
        assert_eq!(with_paths().len(), 12, "one path per usage_rows column written from the window");
    }

    #[test]
    fn the_window_json_carries_exact_values_as_text() {
        let row = usage_row();
        let json = window_rows(&[checked(&row)]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let r = &v[0];
        let k = r["k"].as_str().unwrap();
        assert_eq!(k.len(), 32, "all 128 bits, as 32 hex digits (CONVERT style 2 takes no 0x)");
        assert!(k.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        assert_eq!(unhex(k), row.key().bytes(), "the hex reads back as the key's 16 bytes");
        assert_eq!(r["n"], "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10");
        assert_eq!(r["us"], "2026-11-25T13:00:00");
        assert_eq!(r["ue"], "2026-11-25T14:00:00");
        assert_eq!(r["q"], "2.4000000000");
        assert_eq!(r["qs"], 10);
        assert_eq!(r["r"], row.resource_uri, "escaping survives");
        assert!(r["t"].is_null());
        assert_eq!(r["a"], "{\"ServiceType\":\"A1\"}", "JSON text travels as a string, not an object");
        assert_eq!(window_rows(&[]), "[]");
    }

    #[test]
    fn the_window_rides_in_one_nvarchar_max_parameter_whatever_its_size() {
        let row = usage_row();
        let rows: Vec<_> = (0..200).map(|_| checked(&row)).collect();
        let bound =
            merge_window(Uuid::nil(), t(), t(), window_rows(&rows), window_tenants(&rows), "[]".into());
        assert_eq!(bound.params.len(), 6);
        assert!(matches!(&bound.params[3], ColumnData::String(Some(s)) if s.len() > 4000));
    }

    #[test]
    fn two_rows_whose_first_64_key_bits_collide_are_sent_as_two_rows_with_distinct_128_bit_keys() {
        // Given two different rows whose keys share their first 64 bits: the stand-in for a collision of
        // the legacy 64-bit fingerprint (the old key was exactly 64 bits; a real XXH3 collision cannot be
        // searched for in a test)
        let first = usage_row();
        let mut second = usage_row();
        second.tags = Some("{\"crafted\":\"by a tenant\"}".into());
        let mut forced = *second.key().bytes();
        forced[..8].copy_from_slice(&first.key().bytes()[..8]);
        let (first_key, second_key) = (first.key(), RowKey(forced));
        assert_eq!(first_key.halves().0, second_key.halves().0, "the stand-in collides in 64 bits");
        let rows = [
            checked(&first),
            CheckedRow { key: second_key, row: &second, quantity: Quantity::new(second.quantity).unwrap() },
        ];

        // When the window's JSON is built
        let sent: Vec<serde_json::Value> = serde_json::from_str(&window_rows(&rows)).unwrap();

        // Then both rows travel, each under all 128 bits of its own key, and the MERGE matches stored
        // rows on the whole binary(16) key, never on a 64-bit part of it
        assert_eq!(sent.len(), 2);
        let keys: Vec<Vec<u8>> = sent.iter().map(|r| unhex(r["k"].as_str().unwrap())).collect();
        assert_eq!(keys, vec![first_key.bytes().to_vec(), second_key.bytes().to_vec()]);
        assert_ne!(keys[0], keys[1]);
        let merge = sql::MERGE_WINDOW.sql;
        assert!(merge.contains("CONVERT(binary(16), r.row_key, 2) AS row_key"), "the hex becomes 16 bytes");
        assert!(merge.contains("ON t.window_no = @window_no AND t.row_key = src.row_key"));
        assert!(sql::V1_USAGE_ROWS.sql.contains("row_key binary(16) NOT NULL"));
        assert!(!merge.contains("bigint '$.k'"), "no 64-bit key is read from the JSON");
    }

    #[test]
    fn the_tenant_json_lists_each_normalised_subscription_once_under_the_path_the_statement_reads() {
        let a = usage_row();
        let mut b = usage_row();
        b.subscription_id = a.subscription_id.to_lowercase();
        b.meter_id = "other".into();
        let mut c = usage_row();
        c.subscription_id = "{11111111-2222-3333-4444-555555555555}".into();
        let json = window_tenants(&[checked(&a), checked(&b), checked(&c)]);
        let sent: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = sent.iter().map(|t| t["n"].as_str().unwrap()).collect();
        assert_eq!(keys, ["11111111-2222-3333-4444-555555555555", "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10"]);
        assert!(sent.iter().all(|t| t.len() == 1));
        assert_eq!(paths_of("@P5", "k"), ["n"]);
        assert_eq!(window_tenants(&[]), "[]");
    }

    #[test]
    fn a_field_longer_than_its_column_is_named_with_its_length() {
        let mut row = usage_row();
        assert_eq!(too_long(&row), None);
        row.resource_uri = "\u{1F600}".repeat(2001);
        assert_eq!(
            too_long(&row),
            Some(("resourceUri", 4002, 4000)),
            "counted in UTF-16 units as nvarchar does"
        );
        let mut row = usage_row();
        row.meter_id = "x".repeat(129);
        assert_eq!(too_long(&row), Some(("meterId", 129, 128)));
    }
}
