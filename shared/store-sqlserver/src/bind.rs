//! The one place each statement's parameters are bound: a function per statement, taking typed values
//! in `@P1, @P2, ...` order. A [`Bound`] statement is the only thing a session runs, and it refuses a
//! parameter count that differs from the statement's; the tests call every function, so a mismatch is
//! caught without a server.

use crate::sql::{self, Statement};
use crate::types::Quantity;
use azs_core::status::RunRecord;
use azs_core::usage::{UsageRow, normalize_subscription_id};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tiberius::{ColumnData, IntoSql, TokenRow, Uuid};

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

pub(crate) fn insert_status(stamp: Uuid, watermark: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::INSERT_STATUS, vec![stamp.into_sql(), watermark.into_sql()])
}

pub(crate) fn update_stamp(s: &StampColumns) -> Bound<'_> {
    Bound::new(&sql::UPDATE_STAMP, stamp_fields(s))
}

pub(crate) fn delete_stamp(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::DELETE_STAMP, vec![stamp.into_sql()])
}

pub(crate) fn get_stamp(stamp: Uuid) -> Bound<'static> {
    Bound::new(&sql::GET_STAMP, vec![stamp.into_sql()])
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

pub(crate) fn merge_staged(stamp: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::MERGE_STAGED, vec![stamp.into_sql(), start.into_sql(), end.into_sql()])
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

pub(crate) fn export_rows(stamp: Uuid, from: DateTime<Utc>, to: DateTime<Utc>) -> Bound<'static> {
    Bound::new(&sql::EXPORT_ROWS, vec![stamp.into_sql(), from.into_sql(), to.into_sql()])
}

// -- The staging table ---------------------------------------------------------------------------------

/// The columns of `#staging` in the order [`staging_row`] fills them (CREATE_STAGING's order).
pub(crate) const STAGING_COLUMNS: &[&str] = &[
    "row_key",
    "subscription_id",
    "subscription_key",
    "meter_id",
    "usage_start",
    "usage_end",
    "quantity",
    "quantity_scale",
    "resource_uri",
    "location",
    "tags",
    "additional_info",
];

/// One usage row for the bulk load into `#staging`.
pub(crate) fn staging_row(row: &UsageRow, quantity: Quantity) -> TokenRow<'_> {
    let mut r = TokenRow::with_capacity(STAGING_COLUMNS.len());
    r.push(row.fingerprint().into_sql());
    r.push(row.subscription_id.as_str().into_sql());
    r.push(normalize_subscription_id(&row.subscription_id).into_sql());
    r.push(row.meter_id.as_str().into_sql());
    r.push(crate::types::seconds(row.usage_start).into_sql());
    r.push(crate::types::seconds(row.usage_end).into_sql());
    r.push(quantity.value.into_sql());
    r.push(quantity.sent_scale.into_sql());
    r.push(row.resource_uri.as_str().into_sql());
    r.push(row.location.as_str().into_sql());
    r.push(row.tags.as_deref().into_sql());
    r.push(row.additional_info.as_deref().into_sql());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::status::RunOutcome;
    use sqlparser::ast::{CreateTable, Statement as Ast};
    use sqlparser::dialect::MsSqlDialect;
    use sqlparser::parser::Parser;
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
            last_error: None,
        };
        let bound = [
            applock_acquire("r", Duration::from_secs(1)),
            applock_release("r"),
            schema_id("azs_usage"),
            check_permissions("azs_usage"),
            table_id("[azs_usage].[schema_migrations]"),
            record_migration(1, "initial"),
            stamp_registered_as("k", id, None),
            insert_stamp(&s),
            insert_status(id, t()),
            update_stamp(&s),
            delete_stamp(id),
            get_stamp(id),
            get_status(id),
            run_started(id, t(), "running"),
            run_finished(id, t(), &record),
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
            merge_staged(id, t(), t()),
            record_reprocess(id, t(), t(), "why", t()),
            export_stamps(t(), t()),
            export_rows(id, t(), t()),
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

    #[test]
    fn staging_rows_fill_the_staging_table_columns_in_order_with_their_types() {
        let parsed = Parser::parse_sql(&MsSqlDialect {}, sql::CREATE_STAGING.sql).unwrap();
        let Ast::CreateTable(CreateTable { columns, .. }) = &parsed[0] else { panic!("not a CREATE TABLE") };
        let names: Vec<String> = columns.iter().map(|c| c.name.value.clone()).collect();
        assert_eq!(names, STAGING_COLUMNS);

        let row = UsageRow {
            subscription_id: "8E8CD5A6-05B6-4B9D-9B5A-4E8F3C1D2A10".into(),
            meter_id: "m".into(),
            usage_start: t(),
            usage_end: t(),
            quantity: "2.4000000000".parse().unwrap(),
            resource_uri: "/r".into(),
            location: "local".into(),
            tags: None,
            additional_info: Some("{}".into()),
        };
        let q = Quantity::new(row.quantity).unwrap();
        let token = staging_row(&row, q);
        let values: Vec<&ColumnData> = token.iter().collect();
        assert_eq!(values.len(), STAGING_COLUMNS.len());
        assert!(matches!(values[0], ColumnData::I64(Some(k)) if *k == row.fingerprint()));
        assert!(
            matches!(values[2], ColumnData::String(Some(k)) if k == "8e8cd5a6-05b6-4b9d-9b5a-4e8f3c1d2a10")
        );
        assert!(matches!(values[4], ColumnData::DateTime2(Some(_))));
        assert!(matches!(values[6], ColumnData::Numeric(Some(n)) if n.scale() == 10));
        assert!(matches!(values[7], ColumnData::U8(Some(10))));
        assert!(matches!(values[10], ColumnData::String(None)));
    }
}
