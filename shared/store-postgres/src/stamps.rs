//! Registered stamps (`stamps`) and the tombstones removed ones leave. A stamp is the same stamp when
//! its normalised admin ARM endpoint and admin subscription match; registering it twice names the first.

use crate::{Failure, PostgresStore, is_unique_violation};
use async_trait::async_trait;
use azs_core::audit::{Actor, Attribution, AuditedStampRegistry};
use azs_core::ports::{StampDirectory, StampRegistry, StoreError};
use azs_core::registration::normalize_endpoint;
use azs_core::stamp::{Stamp, StampConnection, StampId, Tombstone, UsageQueryMode};
use azs_core::usage::normalize_subscription_id;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

const COLUMNS: &str = "id, name, admin_subscription_id, tenant_id, application_id, certificate_thumbprint, \
    admin_arm_endpoint, token_request_resource_url, authority_endpoint_url, is_adfs, ca_certificate_pem, \
    credential_secret_name, enabled, collect_from, query_mode, created_at";

#[async_trait]
impl StampDirectory for PostgresStore {
    async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError> {
        self.run("get_stamp", |client| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM stamps WHERE id = $1");
                client.query_opt(&sql, &[&id.as_str()]).await?.map(|r| stamp_from_row(&r)).transpose()
            })
        })
        .await
    }

    async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError> {
        self.run("list_stamps", |client| {
            Box::pin(async move {
                let sql = format!("SELECT {COLUMNS} FROM stamps ORDER BY name, id");
                client.query(&sql, &[]).await?.iter().map(stamp_from_row).collect()
            })
        })
        .await
    }
}

/// The plain writes are the audited ones with nobody named: every change leaves its record.
#[async_trait]
impl StampRegistry for PostgresStore {
    async fn insert_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        self.register_stamp(stamp, &Attribution::now(Actor::unattributed())).await
    }

    async fn update_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        self.change_stamp(stamp, false, &Attribution::now(Actor::unattributed())).await
    }

    async fn delete_stamp(&self, id: &StampId) -> Result<bool, StoreError> {
        self.remove_stamp(id, &Attribution::now(Actor::unattributed())).await
    }

    async fn tombstone(&self, connection: &StampConnection) -> Result<Option<Tombstone>, StoreError> {
        let endpoint = endpoint_key(&connection.admin_arm_endpoint);
        let subscription = normalize_subscription_id(&connection.admin_subscription_id);
        let (endpoint, subscription) = (&endpoint, &subscription);
        self.run("tombstone", |client| {
            Box::pin(async move {
                let row = client
                    .query_opt(
                        "SELECT stamp_id, name, watermark, removed_at FROM stamp_tombstones
                         WHERE admin_arm_endpoint_key = $1 AND admin_subscription_key = $2",
                        &[endpoint, subscription],
                    )
                    .await?;
                row.map(|r| {
                    Ok(Tombstone {
                        stamp_id: StampId(r.try_get(0)?),
                        name: r.try_get(1)?,
                        watermark: r.try_get(2)?,
                        removed_at: r.try_get(3)?,
                    })
                })
                .transpose()
            })
        })
        .await
    }
}

#[async_trait]
impl AuditedStampRegistry for PostgresStore {
    async fn register_stamp(&self, stamp: &Stamp, by: &Attribution) -> Result<(), StoreError> {
        self.run("insert_stamp", |mut client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                insert_in(&tx, stamp).await?;
                crate::audit::write(&tx, &by.registered(stamp)).await?;
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    async fn change_stamp(
        &self,
        stamp: &Stamp,
        credential_replaced: bool,
        by: &Attribution,
    ) -> Result<(), StoreError> {
        self.run("update_stamp", |mut client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                if let Some(existing) = registered_as(&tx, &stamp.connection, Some(&stamp.id)).await? {
                    return Err(StoreError::DuplicateStamp(existing).into());
                }
                // The record's old values are the stored ones, read locked in this transaction.
                let old = stored(&tx, &stamp.id, "FOR NO KEY UPDATE")
                    .await?
                    .ok_or_else(|| StoreError::UnknownStamp(stamp.id.clone()))?;
                let row = StampRow::of(stamp);
                // created_at is when the stamp was registered, and the watermark is progress: neither
                // changes here.
                let changed = tx
                    .execute(
                        "UPDATE stamps SET name = $2, admin_subscription_id = $3, admin_subscription_key = $4,
                             tenant_id = $5, application_id = $6, certificate_thumbprint = $7,
                             admin_arm_endpoint = $8, admin_arm_endpoint_key = $9,
                             token_request_resource_url = $10, authority_endpoint_url = $11, is_adfs = $12,
                             ca_certificate_pem = $13, credential_secret_name = $14, enabled = $15,
                             collect_from = $16, query_mode = $17
                         WHERE id = $1",
                        &row.params(),
                    )
                    .await
                    .map_err(|e| raced(e, "another registration took this admin ARM endpoint and subscription"))?;
                if changed == 0 {
                    return Err(StoreError::UnknownStamp(stamp.id.clone()).into());
                }
                if let Some(record) = by.updated(&old, stamp, credential_replaced) {
                    crate::audit::write(&tx, &record).await?;
                }
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }

    async fn remove_stamp(&self, id: &StampId, by: &Attribution) -> Result<bool, StoreError> {
        // Status, lease and mappings go with the stamp (ON DELETE CASCADE); usage rows and the stamp's
        // number stay, so what was collected can still be exported and invoiced. The tombstone keeps
        // the watermark, so registering the stamp again resumes instead of collecting twice.
        self.run("delete_stamp", |mut client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                let Some(stamp) = stored(&tx, id, "FOR UPDATE").await? else { return Ok(false) };
                tx.execute(
                    "INSERT INTO stamp_tombstones (admin_arm_endpoint_key, admin_subscription_key, stamp_id,
                         name, watermark, removed_at)
                     SELECT s.admin_arm_endpoint_key, s.admin_subscription_key, s.id, s.name, p.watermark, now()
                     FROM stamps s JOIN processing_status p ON p.stamp_id = s.id WHERE s.id = $1
                     ON CONFLICT (admin_arm_endpoint_key, admin_subscription_key) DO UPDATE SET
                         stamp_id = excluded.stamp_id, name = excluded.name, watermark = excluded.watermark,
                         removed_at = excluded.removed_at",
                    &[&id.as_str()],
                )
                .await?;
                let deleted = tx.execute("DELETE FROM stamps WHERE id = $1", &[&id.as_str()]).await? == 1;
                if deleted {
                    crate::audit::write(&tx, &by.removed(&stamp)).await?;
                }
                tx.commit().await?;
                Ok(deleted)
            })
        })
        .await
    }
}

/// The stamp as stored, read inside the caller's transaction with `lock` (`FOR UPDATE`...).
async fn stored(tx: &impl GenericClient, id: &StampId, lock: &str) -> Result<Option<Stamp>, Failure> {
    let sql = format!("SELECT {COLUMNS} FROM stamps WHERE id = $1 {lock}");
    tx.query_opt(&sql, &[&id.as_str()]).await?.map(|r| stamp_from_row(&r)).transpose()
}

/// A stamp as its row: one list of parameters for the INSERT and the UPDATE, so that a column cannot
/// be written by one and forgotten by the other.
struct StampRow<'a> {
    stamp: &'a Stamp,
    admin_subscription_key: String,
    admin_arm_endpoint_key: String,
    query_mode: &'static str,
}

impl<'a> StampRow<'a> {
    fn of(stamp: &'a Stamp) -> Self {
        StampRow {
            stamp,
            admin_subscription_key: normalize_subscription_id(&stamp.connection.admin_subscription_id),
            admin_arm_endpoint_key: endpoint_key(&stamp.connection.admin_arm_endpoint),
            query_mode: query_mode_name(stamp.query_mode),
        }
    }

    /// `$1`..`$17`: every column but `stamp_no` and `created_at`.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let (stamp, c) = (self.stamp, &self.stamp.connection);
        vec![
            &stamp.id.0,
            &stamp.name,
            &c.admin_subscription_id,
            &self.admin_subscription_key,
            &c.tenant_id,
            &c.application_id,
            &c.certificate_thumbprint,
            &c.admin_arm_endpoint,
            &self.admin_arm_endpoint_key,
            &c.token_request_resource_url,
            &c.authority_endpoint_url,
            &c.is_adfs,
            &c.ca_certificate_pem,
            &stamp.credential_secret_name,
            &stamp.enabled,
            &stamp.collect_from,
            &self.query_mode,
        ]
    }
}

/// Registers `stamp` inside the caller's transaction (`db check`'s trial commit rolls it back).
pub(crate) async fn insert_in(tx: &impl GenericClient, stamp: &Stamp) -> Result<(), Failure> {
    if let Some(existing) = registered_as(tx, &stamp.connection, None).await? {
        return Err(StoreError::DuplicateStamp(existing).into());
    }
    let id = stamp.id.as_str();
    tx.execute("INSERT INTO stamp_numbers (stamp_id) VALUES ($1) ON CONFLICT (stamp_id) DO NOTHING", &[&id])
        .await?;
    let row = StampRow::of(stamp);
    let mut params = row.params();
    params.push(&stamp.created_at);
    tx.execute(
        "INSERT INTO stamps (id, stamp_no, name, admin_subscription_id, admin_subscription_key, tenant_id,
             application_id, certificate_thumbprint, admin_arm_endpoint, admin_arm_endpoint_key,
             token_request_resource_url, authority_endpoint_url, is_adfs, ca_certificate_pem,
             credential_secret_name, enabled, collect_from, query_mode, created_at)
         VALUES ($1, (SELECT stamp_no FROM stamp_numbers WHERE stamp_id = $1), $2, $3, $4, $5, $6, $7, $8, $9,
             $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        &params,
    )
    .await
    // Two registrations of one stamp at once: the loser looks again and names the winner.
    .map_err(|e| raced(e, "another registration of this stamp committed first"))?;
    // A registration of a removed stamp consumes its tombstone (the caller resumed from it).
    tx.execute(
        "DELETE FROM stamp_tombstones WHERE admin_arm_endpoint_key = $1 AND admin_subscription_key = $2",
        &[&row.admin_arm_endpoint_key, &row.admin_subscription_key],
    )
    .await?;
    // Collection starts at collect_from: the status row is the watermark, born with the stamp.
    tx.execute(
        "INSERT INTO processing_status (stamp_id, watermark, outcome) VALUES ($1, $2, 'pending')",
        &[&id, &stamp.collect_from],
    )
    .await?;
    Ok(())
}

fn raced(e: tokio_postgres::Error, what: &str) -> Failure {
    if is_unique_violation(&e) { Failure::Raced(what.to_owned()) } else { Failure::Pg(e) }
}

/// The id of the stamp (other than `except`) registered with this admin ARM endpoint and subscription.
async fn registered_as(
    client: &impl GenericClient,
    connection: &StampConnection,
    except: Option<&StampId>,
) -> Result<Option<StampId>, Failure> {
    let row = client
        .query_opt(
            "SELECT id FROM stamps WHERE admin_arm_endpoint_key = $1 AND admin_subscription_key = $2
                 AND id IS DISTINCT FROM $3",
            &[
                &endpoint_key(&connection.admin_arm_endpoint),
                &normalize_subscription_id(&connection.admin_subscription_id),
                &except.map(StampId::as_str),
            ],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0).map(StampId)).transpose()?)
}

/// Hosts are case-insensitive; the URL parser lower-cases scheme and host and the trailing slash goes.
fn endpoint_key(endpoint: &str) -> String {
    normalize_endpoint(endpoint.trim())
}

fn query_mode_name(mode: UsageQueryMode) -> &'static str {
    match mode {
        UsageQueryMode::AllTenants => "all-tenants",
        UsageQueryMode::PerSubscriber => "per-subscriber",
    }
}

fn stamp_from_row(r: &Row) -> Result<Stamp, Failure> {
    let mode: String = r.try_get(14)?;
    let query_mode = match mode.as_str() {
        "all-tenants" => UsageQueryMode::AllTenants,
        "per-subscriber" => UsageQueryMode::PerSubscriber,
        other => return Err(StoreError::Other(format!("stamp row: unknown query mode {other:?}")).into()),
    };
    Ok(Stamp {
        id: StampId(r.try_get(0)?),
        name: r.try_get(1)?,
        connection: StampConnection {
            admin_subscription_id: r.try_get(2)?,
            tenant_id: r.try_get(3)?,
            application_id: r.try_get(4)?,
            certificate_thumbprint: r.try_get(5)?,
            admin_arm_endpoint: r.try_get(6)?,
            token_request_resource_url: r.try_get(7)?,
            authority_endpoint_url: r.try_get(8)?,
            is_adfs: r.try_get(9)?,
            ca_certificate_pem: r.try_get(10)?,
        },
        credential_secret_name: r.try_get(11)?,
        enabled: r.try_get(12)?,
        collect_from: r.try_get(13)?,
        query_mode,
        created_at: r.try_get(15)?,
    })
}
