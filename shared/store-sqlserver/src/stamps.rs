//! Registered stamps (`stamps`): the seed's `Config.Connections`. A stamp is the same stamp when its
//! normalised admin ARM endpoint and admin subscription match; registering it twice names the first.

use crate::SqlServerStore;
use crate::bind::{self, StampColumns};
use crate::session::{Failure, Session};
use crate::sql;
use crate::types::{self, guid, guid_text, opt, opt_text, req, stamp_key, text};
use async_trait::async_trait;
use azs_core::ports::{StampDirectory, StampRegistry, StoreError};
use azs_core::registration::normalize_endpoint;
use azs_core::stamp::{Stamp, StampConnection, StampId, Tombstone};
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

#[async_trait]
impl StampRegistry for SqlServerStore {
    async fn insert_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        let columns = columns(stamp)?;
        let columns = &columns;
        self.run("insert_stamp", |mut s| Box::pin(async move { insert(&mut s, columns).await })).await
    }

    async fn update_stamp(&self, stamp: &Stamp) -> Result<(), StoreError> {
        if stamp_key(&stamp.id).is_none() {
            return Err(StoreError::UnknownStamp(stamp.id.clone()));
        }
        let columns = columns(stamp)?;
        let (columns, id) = (&columns, &stamp.id);
        self.run("update_stamp", |mut s| Box::pin(async move { update(&mut s, columns, id).await })).await
    }

    async fn delete_stamp(&self, id: &StampId) -> Result<bool, StoreError> {
        let Some(key) = stamp_key(id) else { return Ok(false) };
        // Status, lease and mappings go with the stamp (ON DELETE CASCADE); usage rows stay, so what
        // was collected can still be exported and invoiced.
        self.run("delete_stamp", |mut s| {
            Box::pin(async move { Ok(s.execute(bind::delete_stamp(key)).await? == 1) })
        })
        .await
    }

    /// Not kept on SQL Server yet: its tombstone table needs schema migration 3, which must follow
    /// version 2. Until then a removed stamp registered again starts at its collectFrom.
    async fn tombstone(&self, _connection: &StampConnection) -> Result<Option<Tombstone>, StoreError> {
        Ok(None)
    }
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
        admin_arm_endpoint_key: normalize_endpoint(c.admin_arm_endpoint.trim()),
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
    let result = async {
        if let Some(existing) = registered_as(s, columns, None).await? {
            return Err(StoreError::DuplicateStamp(existing).into());
        }
        s.execute(bind::number_stamp(columns.id)).await?;
        s.execute(bind::insert_stamp(columns)).await?;
        s.execute(bind::insert_status(columns.id, columns.collect_from)).await?;
        Ok(())
    }
    .await;
    s.finish(result).await
}

async fn update(s: &mut Session, columns: &StampColumns, id: &StampId) -> Result<(), Failure> {
    s.begin().await?;
    let result = async {
        if let Some(existing) = registered_as(s, columns, Some(columns.id)).await? {
            return Err(StoreError::DuplicateStamp(existing).into());
        }
        if s.execute(bind::update_stamp(columns)).await? == 0 {
            return Err(StoreError::UnknownStamp(id.clone()).into());
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
