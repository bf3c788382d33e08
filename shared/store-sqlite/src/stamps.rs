//! Registered stamps (`stamps`): the seed's `Config.Connections`. A stamp is the same stamp when its
//! normalised admin ARM endpoint and admin subscription match; registering it twice names the first.

use crate::SqliteStore;
use crate::codec::{get_millis, get_query_mode, get_secs, millis, query_mode_name, secs};
use crate::db::Failure;
use async_trait::async_trait;
use azs_core::audit::{Actor, Attribution, AuditedStampRegistry};
use azs_core::ports::{StampDirectory, StampRegistry, StoreError};
use azs_core::registration::normalize_endpoint;
use azs_core::stamp::{Stamp, StampConnection, StampId, Tombstone};
use azs_core::usage::normalize_subscription_id;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior};

const COLUMNS: &str = "id, name, admin_subscription_id, tenant_id, application_id, certificate_thumbprint, \
    admin_arm_endpoint, token_request_resource_url, authority_endpoint_url, is_adfs, ca_certificate_pem, \
    credential_secret_name, enabled, collect_from, query_mode, created_at";

#[async_trait]
impl StampDirectory for SqliteStore {
    async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError> {
        let id = id.clone();
        self.run(move |db| {
            db.read(|conn| {
                let sql = format!("SELECT {COLUMNS} FROM stamps WHERE id = ?1");
                Ok(conn.prepare_cached(&sql)?.query_row([id.as_str()], stamp_from_row).optional()?)
            })
        })
        .await
    }

    async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError> {
        self.run(|db| {
            db.read(|conn| {
                let sql = format!("SELECT {COLUMNS} FROM stamps ORDER BY name, id");
                let mut stmt = conn.prepare_cached(&sql)?;
                let stamps = stmt.query_map([], stamp_from_row)?.collect::<Result<Vec<_>, _>>()?;
                Ok(stamps)
            })
        })
        .await
    }
}

/// The plain writes are the audited ones with nobody named: every change leaves its record.
#[async_trait]
impl StampRegistry for SqliteStore {
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
        let (endpoint, subscription) = (
            endpoint_key(&connection.admin_arm_endpoint),
            normalize_subscription_id(&connection.admin_subscription_id),
        );
        self.run(move |db| {
            db.read(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT stamp_id, name, watermark, removed_at FROM stamp_tombstones
                         WHERE admin_arm_endpoint_key = ?1 AND admin_subscription_key = ?2",
                    )?
                    .query_row((endpoint.as_str(), subscription.as_str()), |r| {
                        Ok(Tombstone {
                            stamp_id: StampId(r.get(0)?),
                            name: r.get(1)?,
                            watermark: get_secs(r, 2)?,
                            removed_at: get_millis(r, 3)?,
                        })
                    })
                    .optional()?)
            })
        })
        .await
    }
}

#[async_trait]
impl AuditedStampRegistry for SqliteStore {
    async fn register_stamp(&self, stamp: &Stamp, by: &Attribution) -> Result<(), StoreError> {
        let (stamp, by) = (stamp.clone(), by.clone());
        self.run(move |db| db.write(|conn| insert(conn, &stamp, &by))).await
    }

    async fn change_stamp(
        &self,
        stamp: &Stamp,
        credential_replaced: bool,
        by: &Attribution,
    ) -> Result<(), StoreError> {
        let (stamp, by) = (stamp.clone(), by.clone());
        self.run(move |db| db.write(|conn| update(conn, &stamp, credential_replaced, &by))).await
    }

    async fn remove_stamp(&self, id: &StampId, by: &Attribution) -> Result<bool, StoreError> {
        let (id, by) = (id.clone(), by.clone());
        // Status, lease and mappings go with the stamp (ON DELETE CASCADE); usage rows and the stamp's
        // number stay, so what was collected can still be exported and invoiced. The tombstone keeps
        // the watermark, so registering the stamp again resumes instead of collecting twice.
        self.run(move |db| db.write(|conn| delete(conn, &id, &by))).await
    }
}

/// A stamp as its row: one list of named parameters for the INSERT and the UPDATE, so that a column
/// cannot be written by one and forgotten by the other. The lookup keys (normalised endpoint and
/// subscription) are derived here, next to the values they come from.
struct StampRow<'a> {
    stamp: &'a Stamp,
    admin_subscription_key: String,
    admin_arm_endpoint_key: String,
    collect_from: i64,
    query_mode: &'static str,
}

impl<'a> StampRow<'a> {
    fn of(stamp: &'a Stamp) -> Self {
        StampRow {
            stamp,
            admin_subscription_key: normalize_subscription_id(&stamp.connection.admin_subscription_id),
            admin_arm_endpoint_key: endpoint_key(&stamp.connection.admin_arm_endpoint),
            collect_from: secs(stamp.collect_from),
            query_mode: query_mode_name(stamp.query_mode),
        }
    }

    /// Every column but `created_at`, which only the INSERT writes.
    fn params(&self) -> Vec<(&'static str, &dyn ToSql)> {
        let (stamp, c) = (self.stamp, &self.stamp.connection);
        vec![
            (":id", &stamp.id.0),
            (":name", &stamp.name),
            (":admin_subscription_id", &c.admin_subscription_id),
            (":admin_subscription_key", &self.admin_subscription_key),
            (":tenant_id", &c.tenant_id),
            (":application_id", &c.application_id),
            (":certificate_thumbprint", &c.certificate_thumbprint),
            (":admin_arm_endpoint", &c.admin_arm_endpoint),
            (":admin_arm_endpoint_key", &self.admin_arm_endpoint_key),
            (":token_request_resource_url", &c.token_request_resource_url),
            (":authority_endpoint_url", &c.authority_endpoint_url),
            (":is_adfs", &c.is_adfs),
            (":ca_certificate_pem", &c.ca_certificate_pem),
            (":credential_secret_name", &stamp.credential_secret_name),
            (":enabled", &stamp.enabled),
            (":collect_from", &self.collect_from),
            (":query_mode", &self.query_mode),
        ]
    }
}

fn insert(conn: &mut Connection, stamp: &Stamp, by: &Attribution) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    insert_in(&tx, stamp)?;
    crate::audit::write(&tx, &by.registered(stamp))?;
    tx.commit()?;
    Ok(())
}

/// [`insert`] inside the caller's write transaction (`db check`'s trial commit rolls it back).
pub(crate) fn insert_in(tx: &Connection, stamp: &Stamp) -> Result<(), Failure> {
    if let Some(existing) = registered_as(tx, &stamp.connection, None)? {
        return Err(StoreError::DuplicateStamp(existing).into());
    }
    let id = stamp.id.as_str();
    tx.execute("INSERT INTO stamp_numbers (stamp_id) VALUES (?1) ON CONFLICT (stamp_id) DO NOTHING", [id])?;
    let (row, created_at) = (StampRow::of(stamp), millis(stamp.created_at));
    let mut params = row.params();
    params.push((":created_at", &created_at));
    tx.execute(
        "INSERT INTO stamps (id, stamp_no, name, admin_subscription_id, admin_subscription_key, tenant_id,
             application_id, certificate_thumbprint, admin_arm_endpoint, admin_arm_endpoint_key,
             token_request_resource_url, authority_endpoint_url, is_adfs, ca_certificate_pem,
             credential_secret_name, enabled, collect_from, query_mode, created_at)
         VALUES (:id, (SELECT stamp_no FROM stamp_numbers WHERE stamp_id = :id), :name, :admin_subscription_id,
             :admin_subscription_key, :tenant_id, :application_id, :certificate_thumbprint, :admin_arm_endpoint,
             :admin_arm_endpoint_key, :token_request_resource_url, :authority_endpoint_url, :is_adfs,
             :ca_certificate_pem, :credential_secret_name, :enabled, :collect_from, :query_mode, :created_at)",
        params.as_slice(),
    )?;
    // A registration of a removed stamp consumes its tombstone (the caller resumed from it).
    tx.execute(
        "DELETE FROM stamp_tombstones WHERE admin_arm_endpoint_key = ?1 AND admin_subscription_key = ?2",
        (
            endpoint_key(&stamp.connection.admin_arm_endpoint),
            normalize_subscription_id(&stamp.connection.admin_subscription_id),
        ),
    )?;
    // Collection starts at collect_from: the status row is the watermark, born with the stamp.
    tx.execute(
        "INSERT INTO processing_status (stamp_id, watermark, outcome) VALUES (?1, ?2, 'pending')",
        (id, secs(stamp.collect_from)),
    )?;
    Ok(())
}

fn delete(conn: &mut Connection, id: &StampId, by: &Attribution) -> Result<bool, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(stamp) = stored(&tx, id)? else { return Ok(false) };
    crate::audit::write(&tx, &by.removed(&stamp))?;
    tx.execute(
        "INSERT INTO stamp_tombstones (admin_arm_endpoint_key, admin_subscription_key, stamp_id, name,
             watermark, removed_at)
         SELECT s.admin_arm_endpoint_key, s.admin_subscription_key, s.id, s.name, p.watermark, ?2
         FROM stamps s JOIN processing_status p ON p.stamp_id = s.id WHERE s.id = ?1
         ON CONFLICT (admin_arm_endpoint_key, admin_subscription_key) DO UPDATE SET
             stamp_id = excluded.stamp_id, name = excluded.name, watermark = excluded.watermark,
             removed_at = excluded.removed_at",
        (id.as_str(), millis(chrono::Utc::now())),
    )?;
    let deleted = tx.execute("DELETE FROM stamps WHERE id = ?1", [id.as_str()])? == 1;
    tx.commit()?;
    Ok(deleted)
}

fn update(
    conn: &mut Connection,
    stamp: &Stamp,
    credential_replaced: bool,
    by: &Attribution,
) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(existing) = registered_as(&tx, &stamp.connection, Some(&stamp.id))? {
        return Err(StoreError::DuplicateStamp(existing).into());
    }
    // The record's old values are the stored ones, read under this write transaction.
    let old = stored(&tx, &stamp.id)?.ok_or_else(|| StoreError::UnknownStamp(stamp.id.clone()))?;
    if let Some(record) = by.updated(&old, stamp, credential_replaced) {
        crate::audit::write(&tx, &record)?;
    }
    // created_at is when the stamp was registered, and the watermark is progress: neither changes here.
    let changed = tx.execute(
        "UPDATE stamps SET name = :name, admin_subscription_id = :admin_subscription_id,
             admin_subscription_key = :admin_subscription_key, tenant_id = :tenant_id,
             application_id = :application_id, certificate_thumbprint = :certificate_thumbprint,
             admin_arm_endpoint = :admin_arm_endpoint, admin_arm_endpoint_key = :admin_arm_endpoint_key,
             token_request_resource_url = :token_request_resource_url,
             authority_endpoint_url = :authority_endpoint_url, is_adfs = :is_adfs,
             ca_certificate_pem = :ca_certificate_pem, credential_secret_name = :credential_secret_name,
             enabled = :enabled, collect_from = :collect_from, query_mode = :query_mode
         WHERE id = :id",
        StampRow::of(stamp).params().as_slice(),
    )?;
    if changed == 0 {
        return Err(StoreError::UnknownStamp(stamp.id.clone()).into());
    }
    tx.commit()?;
    Ok(())
}

/// The stamp as stored, read inside the caller's transaction.
fn stored(tx: &Connection, id: &StampId) -> rusqlite::Result<Option<Stamp>> {
    let sql = format!("SELECT {COLUMNS} FROM stamps WHERE id = ?1");
    tx.prepare_cached(&sql)?.query_row([id.as_str()], stamp_from_row).optional()
}

/// The stamp's name, read inside the caller's transaction (for a mapping's audit record).
pub(crate) fn name_of(tx: &Connection, id: &StampId) -> rusqlite::Result<Option<String>> {
    tx.prepare_cached("SELECT name FROM stamps WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()
}

/// The id of the stamp (other than `except`) registered with this admin ARM endpoint and subscription.
fn registered_as(
    conn: &Connection,
    connection: &StampConnection,
    except: Option<&StampId>,
) -> rusqlite::Result<Option<StampId>> {
    conn.prepare_cached(
        "SELECT id FROM stamps WHERE admin_arm_endpoint_key = ?1 AND admin_subscription_key = ?2
             AND id IS NOT ?3",
    )?
    .query_row(
        (
            endpoint_key(&connection.admin_arm_endpoint),
            normalize_subscription_id(&connection.admin_subscription_id),
            except.map(StampId::as_str),
        ),
        |r| r.get(0).map(StampId),
    )
    .optional()
}

/// Hosts are case-insensitive; the URL parser lower-cases scheme and host and the trailing slash goes.
fn endpoint_key(endpoint: &str) -> String {
    normalize_endpoint(endpoint.trim())
}

fn stamp_from_row(r: &Row<'_>) -> rusqlite::Result<Stamp> {
    Ok(Stamp {
        id: StampId(r.get(0)?),
        name: r.get(1)?,
        connection: StampConnection {
            admin_subscription_id: r.get(2)?,
            tenant_id: r.get(3)?,
            application_id: r.get(4)?,
            certificate_thumbprint: r.get(5)?,
            admin_arm_endpoint: r.get(6)?,
            token_request_resource_url: r.get(7)?,
            authority_endpoint_url: r.get(8)?,
            is_adfs: r.get(9)?,
            ca_certificate_pem: r.get(10)?,
        },
        credential_secret_name: r.get(11)?,
        enabled: r.get(12)?,
        collect_from: get_secs(r, 13)?,
        query_mode: get_query_mode(r, 14)?,
        created_at: get_millis(r, 15)?,
    })
}
