//! Registered stamps (`stamps`): the seed's `Config.Connections`. A stamp is the same stamp when its
//! normalised admin ARM endpoint and admin subscription match; registering it twice names the first.

use crate::SqlServerStore;
use crate::bind::{self, StampColumns};
use crate::session::{Failure, Session};
use crate::sql;
use crate::types::{self, guid, guid_text, opt, opt_text, req, stamp_key, text};
use async_trait::async_trait;
use azs_core::audit::{Actor, Attribution, AuditedStampRegistry};
use azs_core::ports::{StampDirectory, StampRegistry, StoreError};
use azs_core::registration::normalize_endpoint;
use azs_core::stamp::{Stamp, StampConnection, StampId, Tombstone};
use chrono::{DateTime, Utc};
use tiberius::{Row, Uuid};

#[async_trait]
impl StampDirectory for SqlServerStore {
    async fn get_stamp(&self, id: &StampId) -> Result<Option<Stamp>, StoreError> {
        let Some(key) = stamp_key(id) else { return Ok(None) };
        self.run("get_stamp", |mut s| {
            Box::pin(async move {
                s.query_one(bind::get_stamp(key)).await?.as_ref().map(stamp_from_row).transpose()
            })
        })
        .await
    }

    async fn list_stamps(&self) -> Result<Vec<Stamp>, StoreError> {
        let mut stamps: Vec<Stamp> = self
            .run("list_stamps", |mut s| {
                Box::pin(async move {
                    s.query(bind::none(&sql::LIST_STAMPS)).await?.iter().map(stamp_from_row).collect()
                })
            })
            .await?;
        // Sorted here, not in SQL: the database's collation and uniqueidentifier order differ from the
        // byte order the SQLite store (and so every caller) sees.
        stamps.sort_by(|a: &Stamp, b: &Stamp| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(stamps)
    }
}

/// The plain writes are the audited ones with nobody named: every change leaves its record.
#[async_trait]
impl StampRegistry for SqlServerStore {
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
        // An admin subscription that is not a GUID cannot have been registered here.
        let Ok(subscription) = types::guid("adminSubscriptionId", &connection.admin_subscription_id) else {
            return Ok(None);
        };
        let endpoint = &endpoint_key(&connection.admin_arm_endpoint);
        self.run("tombstone", |mut s| {
            Box::pin(async move {
                let Some(r) = s.query_one(bind::tombstone(endpoint, subscription)).await? else {
                    return Ok(None);
                };
                Ok(Some(Tombstone {
                    stamp_id: StampId(guid_text(req(&r, 0)?)),
                    name: text(&r, 1)?,
                    watermark: req(&r, 2)?,
                    removed_at: req(&r, 3)?,
                }))
            })
        })
        .await
    }
}

#[async_trait]
impl AuditedStampRegistry for SqlServerStore {
    async fn register_stamp(&self, stamp: &Stamp, by: &Attribution) -> Result<(), StoreError> {
        let columns = columns(stamp)?;
        let (columns, record) = (&columns, &by.registered(stamp));
        self.run("insert_stamp", |mut s| {
            Box::pin(async move {
                s.begin().await?;
                let result = async {
                    insert_in(&mut s, columns).await?;
                    crate::audit::write(&mut s, record).await
                }
                .await;
                s.finish(result).await
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
        if stamp_key(&stamp.id).is_none() {
            return Err(StoreError::UnknownStamp(stamp.id.clone()));
        }
        let columns = columns(stamp)?;
        let columns = &columns;
        self.run("update_stamp", |mut s| {
            Box::pin(async move { update(&mut s, columns, stamp, credential_replaced, by).await })
        })
        .await
    }

    async fn remove_stamp(&self, id: &StampId, by: &Attribution) -> Result<bool, StoreError> {
        let Some(key) = stamp_key(id) else { return Ok(false) };
        // Status, lease and mappings go with the stamp (ON DELETE CASCADE); usage rows and the stamp's
        // number stay, so what was collected can still be exported and invoiced. The tombstone keeps
        // the watermark, so registering the stamp again resumes instead of collecting twice.
        let removed_at = types::millis(chrono::Utc::now());
        self.run("delete_stamp", |mut s| Box::pin(async move { delete(&mut s, key, removed_at, by).await }))
            .await
    }
}

/// Hosts are case-insensitive; the URL parser lower-cases scheme and host and the trailing slash goes.
/// The key of the stamps' uniqueness and of their tombstones.
fn endpoint_key(endpoint: &str) -> String {
    normalize_endpoint(endpoint.trim())
}

pub(crate) fn columns(stamp: &Stamp) -> Result<StampColumns, StoreError> {
    let c = &stamp.connection;
    Ok(StampColumns {
        id: guid("stamp id", stamp.id.as_str())?,
        name: stamp.name.clone(),
        admin_subscription_id: guid("adminSubscriptionId", &c.admin_subscription_id)?,
        tenant_id: types::tenant(&c.tenant_id, c.is_adfs)?,
        application_id: guid("applicationId", &c.application_id)?,
        certificate_thumbprint: c.certificate_thumbprint.clone(),
        admin_arm_endpoint: c.admin_arm_endpoint.clone(),
        admin_arm_endpoint_key: endpoint_key(&c.admin_arm_endpoint),
        token_request_resource_url: c.token_request_resource_url.clone(),
        authority_endpoint_url: c.authority_endpoint_url.clone(),
        is_adfs: c.is_adfs,
        ca_certificate_pem: c.ca_certificate_pem.clone(),
        credential_secret_name: stamp.credential_secret_name.clone(),
        enabled: stamp.enabled,
        collect_from: types::seconds(stamp.collect_from),
        query_mode: types::query_mode_name(stamp.query_mode),
        created_at: types::millis(stamp.created_at),
    })
}

pub(crate) async fn insert(s: &mut Session, columns: &StampColumns) -> Result<(), Failure> {
    s.begin().await?;
    let result = insert_in(s, columns).await;
    s.finish(result).await
}

/// [`insert`] inside the session's open transaction.
async fn insert_in(s: &mut Session, columns: &StampColumns) -> Result<(), Failure> {
    if let Some(existing) = registered_as(s, columns, None).await? {
        return Err(StoreError::DuplicateStamp(existing).into());
    }
    s.execute(bind::number_stamp(columns.id)).await?;
    s.execute(bind::insert_stamp(columns)).await?;
    // A registration of a removed stamp consumes its tombstone (the caller resumed from it).
    s.execute(bind::consume_tombstone(&columns.admin_arm_endpoint_key, columns.admin_subscription_id))
        .await?;
    s.execute(bind::insert_status(columns.id, columns.collect_from)).await?;
    Ok(())
}

/// Leaves the stamp's tombstone, records the removal with the stamp's last values and removes it, in
/// one transaction.
async fn delete(
    s: &mut Session,
    key: Uuid,
    removed_at: DateTime<Utc>,
    by: &Attribution,
) -> Result<bool, Failure> {
    s.begin().await?;
    let result = async {
        let Some(stamp) = s.query_one(bind::get_stamp_locked(key)).await? else { return Ok(false) };
        let stamp = stamp_from_row(&stamp)?;
        s.execute(bind::leave_tombstone(key, removed_at)).await?;
        let deleted = s.execute(bind::delete_stamp(key)).await? == 1;
        if deleted {
            crate::audit::write(s, &by.removed(&stamp)).await?;
        }
        Ok(deleted)
    }
    .await;
    s.finish(result).await
}

/// Updates the stamp and records the fields that changed from the stored ones, in one transaction.
async fn update(
    s: &mut Session,
    columns: &StampColumns,
    stamp: &Stamp,
    credential_replaced: bool,
    by: &Attribution,
) -> Result<(), Failure> {
    s.begin().await?;
    let result = async {
        if let Some(existing) = registered_as(s, columns, Some(columns.id)).await? {
            return Err(StoreError::DuplicateStamp(existing).into());
        }
        // The record's old values are the stored ones, read locked in this transaction.
        let old = match s.query_one(bind::get_stamp_locked(columns.id)).await? {
            Some(row) => stamp_from_row(&row)?,
            None => return Err(StoreError::UnknownStamp(stamp.id.clone()).into()),
        };
        if s.execute(bind::update_stamp(columns)).await? == 0 {
            return Err(StoreError::UnknownStamp(stamp.id.clone()).into());
        }
        if let Some(record) = by.updated(&old, stamp, credential_replaced) {
            crate::audit::write(s, &record).await?;
        }
        Ok(())
    }
    .await;
    s.finish(result).await
}

/// The stamp (other than `except`) registered with this admin ARM endpoint and subscription.
async fn registered_as(
    s: &mut Session,
    columns: &StampColumns,
    except: Option<Uuid>,
) -> Result<Option<StampId>, Failure> {
    let row = s
        .query_one(bind::stamp_registered_as(
            &columns.admin_arm_endpoint_key,
            columns.admin_subscription_id,
            except,
        ))
        .await?;
    Ok(match row {
        Some(row) => Some(StampId(guid_text(req(&row, 0)?))),
        None => None,
    })
}

fn stamp_from_row(r: &Row) -> Result<Stamp, Failure> {
    Ok(Stamp {
        id: StampId(guid_text(req(r, 0)?)),
        name: text(r, 1)?,
        connection: StampConnection {
            admin_subscription_id: guid_text(req(r, 2)?),
            tenant_id: types::tenant_text(opt(r, 3)?),
            application_id: guid_text(req(r, 4)?),
            certificate_thumbprint: opt_text(r, 5)?,
            admin_arm_endpoint: text(r, 6)?,
            token_request_resource_url: opt_text(r, 7)?,
            authority_endpoint_url: opt_text(r, 8)?,
            is_adfs: req(r, 9)?,
            ca_certificate_pem: opt_text(r, 10)?,
        },
        credential_secret_name: text(r, 11)?,
        enabled: req(r, 12)?,
        collect_from: req(r, 13)?,
        query_mode: types::query_mode(req(r, 14)?)?,
        created_at: req(r, 15)?,
    })
}

#[cfg(test)]
mod tests {
    //! The static counterpart of the conformance case
    //! `removing_a_stamp_leaves_a_tombstone_with_its_watermark_that_registering_consumes`: everything
    //! of it that can be checked without a server (the case itself runs with AZS_USAGE_TEST_SQLSERVER).
    use super::*;
    use crate::sql;
    use azs_store_conformance::fixtures;

    /// The columns of a `CONSTRAINT name KIND (a, b)` line of `table`.
    fn constraint_columns(table: &sql::Statement, constraint: &str) -> Vec<String> {
        let line = table.sql.lines().find(|l| l.contains(constraint)).expect("the constraint");
        let list = &line[line.find('(').unwrap() + 1..line.rfind(')').unwrap()];
        list.split(',').map(|c| c.trim().to_owned()).collect()
    }

    #[test]
    fn a_tombstone_is_keyed_like_the_stamps_own_uniqueness_and_found_by_the_same_identity_in_any_casing() {
        // Given a registered stamp and the same stamp's connection written in another casing, with a
        // trailing slash (as the conformance case looks it up)
        let stamp = fixtures::stamp("eu-1");
        let stored = columns(&stamp).unwrap();
        let mut same = stamp.connection.clone();
        same.admin_arm_endpoint = format!("{}/", same.admin_arm_endpoint.to_uppercase());
        same.admin_subscription_id = same.admin_subscription_id.to_uppercase();

        // When the lookup's key is derived from it
        let endpoint = endpoint_key(&same.admin_arm_endpoint);
        let subscription = types::guid("adminSubscriptionId", &same.admin_subscription_id).unwrap();

        // Then it is the key the stamp was stored under, which is the tombstone's primary key
        assert_eq!(
            (endpoint.as_str(), subscription),
            (stored.admin_arm_endpoint_key.as_str(), stored.admin_subscription_id)
        );
        assert_eq!(
            constraint_columns(&sql::V1_STAMP_TOMBSTONES, "pk_stamp_tombstones"),
            constraint_columns(&sql::V1_STAMPS, "uq_stamps_endpoint_subscription"),
        );
        for statement in [&sql::TOMBSTONE, &sql::CONSUME_TOMBSTONE] {
            assert!(
                statement.sql.contains("WHERE admin_arm_endpoint_key = @P1 AND admin_subscription_id = @P2"),
                "{} looks the tombstone up by the stamp's identity",
                statement.name
            );
        }
        assert!(sql::V1_STAMP_TOMBSTONES.sql.contains("admin_arm_endpoint_key nvarchar(400) NOT NULL"));
        assert!(sql::V1_STAMPS.sql.contains("admin_arm_endpoint_key nvarchar(400) NOT NULL"));
    }

    #[test]
    fn removing_a_stamp_keeps_its_watermark_and_registering_it_again_consumes_the_tombstone() {
        let leave = sql::LEAVE_TOMBSTONE.sql;
        // The watermark kept is the stamp's status row's, read in the removal's transaction before the
        // cascade deletes it (locked: a window commit in flight finishes first, and its watermark is the
        // one kept), and a second removal of the same identity replaces the older tombstone.
        assert!(
            leave.contains(
                "JOIN {schema}.processing_status AS p WITH (UPDLOCK, HOLDLOCK) ON p.stamp_id = s.id"
            )
        );
        assert!(leave.contains("WHEN MATCHED THEN"));
        assert!(leave.contains("UPDATE SET stamp_id = src.id, name = src.name, watermark = src.watermark"));
        assert!(leave.contains("WHEN NOT MATCHED BY TARGET THEN"));
        assert!(leave.contains("ON t.admin_arm_endpoint_key = src.admin_arm_endpoint_key"));
        assert!(leave.trim_end().ends_with(';'), "T-SQL requires a MERGE to end with a semicolon");
        // The migration that creates it is version 1 (it never ran anywhere before tombstones existed).
        let v1: Vec<&str> = crate::schema::MIGRATIONS[0].statements.iter().map(|s| s.name).collect();
        assert!(v1.contains(&"V1_STAMP_TOMBSTONES"));
        // Removal and registration run these statements (no server here to watch them run; the
        // conformance case does).
        let source = include_str!("stamps.rs");
        let delete = &source[source.find("async fn delete(").unwrap()..];
        let (leaves, deletes) =
            (delete.find("bind::leave_tombstone").unwrap(), delete.find("bind::delete_stamp").unwrap());
        assert!(leaves < deletes, "the tombstone is left before the stamp (and its status) go");
        assert!(delete[..deletes].contains("s.begin()"), "in one transaction");
        let insert = &source[source.find("async fn insert_in(").unwrap()..];
        let insert = &insert[..insert.find("\n}\n").unwrap()];
        assert!(insert.contains("bind::consume_tombstone"), "registering consumes the tombstone");
        let register = &source[source.find("async fn register_stamp(").unwrap()..];
        let register = &register[..register.find("\n    }\n").unwrap()];
        let (begins, inserts) = (register.find("s.begin()").unwrap(), register.find("insert_in(").unwrap());
        assert!(
            begins < inserts && register.contains("crate::audit::write"),
            "its audit record in its transaction"
        );
    }
}
