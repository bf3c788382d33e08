//! The usage ledger (`usage_rows`, `quarantined_rows`, `reprocess_log`): a reported window's rows and
//! the stamp's watermark committed in one transaction, fenced by the lease and the watermark; exports
//! read through a portal, a batch at a time.

use crate::{Failure, PostgresStore};
use async_trait::async_trait;
use azs_core::ports::{
    CommitReceipt, ExportFilter, QuarantineReader, StoreError, StoredUsageRow, UsageLedger, WindowCommit,
    WindowWrite,
};
use azs_core::quarantine::{QuarantineEntry, QuarantinedRow, RowLimits, TextUnit};
use azs_core::stamp::StampId;
use azs_core::usage::{UsageRow, normalize_subscription_id};
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use std::collections::HashMap;
use tokio_postgres::Row;

/// Rows per `INSERT .. SELECT FROM unnest(..)`: big enough that a window is a few round trips, small
/// enough that one statement's parameters stay a few MiB.
const INSERT_BATCH: usize = 5_000;
/// Rows fetched from the export's portal at a time.
const EXPORT_BATCH: i32 = 1_000;

/// PostgreSQL keeps a text value up to 1 GB (UTF-8 bytes); quantities are `numeric`, which holds every
/// decimal the core reads exactly. Text may not contain U+0000, which no limit here expresses: such a
/// row refuses its window, naming the field (see [`nul_in`]).
pub const ROW_LIMITS: RowLimits = RowLimits {
    text_unit: TextUnit::Utf8Bytes,
    subscription_id: 1_000_000_000,
    meter_id: 1_000_000_000,
    resource_uri: 1_000_000_000,
    location: 1_000_000_000,
    tags: 1_000_000_000,
    additional_info: 1_000_000_000,
    quantity_decimals: 28,
    quantity_integer_digits: 29,
};

#[async_trait]
impl QuarantineReader for PostgresStore {
    async fn quarantine(&self, stamp: Option<&StampId>) -> Result<Vec<QuarantineEntry>, StoreError> {
        let stamp = stamp.map(StampId::as_str);
        self.run("quarantine", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT stamp_id, reported_start, reported_end, field, reason, raw, quarantined_at
                         FROM quarantined_rows WHERE $1::text IS NULL OR stamp_id = $1
                         ORDER BY stamp_id, reported_start, row_key, row_key_low",
                        &[&stamp],
                    )
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(QuarantineEntry {
                            stamp_id: StampId(r.try_get(0)?),
                            window: ReportedWindow { start: r.try_get(1)?, end: r.try_get(2)? },
                            field: r.try_get(3)?,
                            reason: r.try_get(4)?,
                            raw: r.try_get(5)?,
                            quarantined_at: r.try_get(6)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }
}

#[async_trait]
impl UsageLedger for PostgresStore {
    fn row_limits(&self) -> RowLimits {
        ROW_LIMITS
    }

    async fn commit_window(&self, commit: WindowCommit<'_>) -> Result<CommitReceipt, StoreError> {
        if let Some(field) = commit.rows.iter().find_map(nul_in) {
            return Err(StoreError::Other(format!(
                "stamp {}: window {}: a row's {field} contains U+0000, which PostgreSQL text cannot hold",
                commit.stamp, commit.window
            )));
        }
        let commit = &commit;
        self.run("commit_window", |mut client| {
            Box::pin(async move {
                let tx = client.transaction().await?;
                let receipt = commit_in(&tx, commit).await?;
                tx.commit().await?;
                Ok(receipt)
            })
        })
        .await
    }

    async fn export_rows(
        &self,
        filter: &ExportFilter,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        // Not retried: once a row has gone to the sink, starting over would hand it rows twice.
        let mut client = self.connection().await.map_err(StoreError::from)?;
        export(&mut client, filter, sink).await.map_err(StoreError::from)
    }

    async fn billing_rows(
        &self,
        billing_subscription_id: &str,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        // Not retried, as the export: rows may have gone to the sink already.
        let mut client = self.connection().await.map_err(StoreError::from)?;
        billing_export(&mut client, billing_subscription_id, (from, to), sink).await.map_err(StoreError::from)
    }

    async fn subscriptions_seen(
        &self,
        stamp: &StampId,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        self.run("subscriptions_seen", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT t.subscription_key FROM tenant_subscriptions t
                             JOIN stamp_numbers s ON s.stamp_no = t.stamp_no
                         WHERE s.stamp_id = $1 AND t.last_reported >= $2 ORDER BY t.subscription_key",
                        &[&stamp.as_str(), &since],
                    )
                    .await?;
                rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
            })
        })
        .await
    }

    async fn stored_windows(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<ReportedWindow>, StoreError> {
        // A range of the usage key's index (stamp_no, reported_start, ...): a span overlapping the
        // range starts less than LONGEST_SPAN_HOURS before it.
        let lookback = chrono::Duration::hours(i64::from(azs_core::window::LONGEST_SPAN_HOURS) - 1);
        let earliest = range.start - lookback;
        let earliest = &earliest;
        self.run("stored_windows", |client| {
            Box::pin(async move {
                let rows = client
                    .query(
                        "SELECT reported_start, reported_end FROM usage_rows
                             WHERE stamp_no = (SELECT stamp_no FROM stamp_numbers WHERE stamp_id = $1)
                                 AND reported_start >= $2 AND reported_start < $3 AND reported_end > $4
                         UNION
                         SELECT reported_start, reported_end FROM quarantined_rows
                             WHERE stamp_id = $1 AND reported_start >= $2 AND reported_start < $3
                                 AND reported_end > $4
                         ORDER BY 1, 2",
                        &[&stamp.as_str(), earliest, &range.end, &range.start],
                    )
                    .await?;
                rows.iter().map(|r| Ok(ReportedWindow { start: r.try_get(0)?, end: r.try_get(1)? })).collect()
            })
        })
        .await
    }

    async fn record_reprocess(
        &self,
        stamp: &StampId,
        window: ReportedWindow,
        reason: &str,
    ) -> Result<(), StoreError> {
        let reason = crate::storable(reason);
        let reason = reason.as_ref();
        self.run("record_reprocess", |client| {
            Box::pin(async move {
                let inserted = client
                    .execute(
                        "INSERT INTO reprocess_log (stamp_id, range_start, range_end, reason, requested_at)
                         SELECT id, $2, $3, $4, now() FROM stamps WHERE id = $1",
                        &[&stamp.as_str(), &window.start, &window.end, &reason],
                    )
                    .await?;
                if inserted == 0 {
                    return Err(StoreError::UnknownStamp(stamp.clone()).into());
                }
                Ok(())
            })
        })
        .await
    }
}

/// The first text field of `row` holding U+0000, named as the usage API names it.
fn nul_in(row: &UsageRow) -> Option<&'static str> {
    let fields = [
        ("subscriptionId", Some(row.subscription_id.as_str())),
        ("meterId", Some(row.meter_id.as_str())),
        ("instanceData.resourceUri", Some(row.resource_uri.as_str())),
        ("instanceData.location", Some(row.location.as_str())),
        ("instanceData.tags", row.tags.as_deref()),
        ("instanceData.additionalInfo", row.additional_info.as_deref()),
    ];
    fields.into_iter().find(|(_, v)| v.is_some_and(|v| v.contains('\0'))).map(|(name, _)| name)
}

/// Rows, their quarantine and the watermark, inside the caller's transaction (`db check`'s trial
/// commit rolls it back).
///
/// The fence: the stamp row is locked `FOR SHARE` (a mapping being set waits, see `mappings`), the
/// status row `FOR UPDATE` (a second commit of the same stamp waits here, then sees the watermark this
/// one moved) and the lease row `FOR SHARE` (a takeover waits until this commit is done; a commit after
/// a takeover sees the new owner). Under READ COMMITTED each later statement sees what committed
/// before it, so the checks below still hold when the rows land.
pub(crate) async fn commit_in(tx: &Transaction<'_>, c: &WindowCommit<'_>) -> Result<CommitReceipt, Failure> {
    let fenced = |reason: String| -> Failure {
        StoreError::Fenced { stamp: c.stamp.clone(), window: c.window, reason }.into()
    };
    let stamp = c.stamp.as_str();
    let stamp_no: i64 = tx
        .query_opt("SELECT stamp_no FROM stamps WHERE id = $1 FOR SHARE", &[&stamp])
        .await?
        .ok_or_else(|| StoreError::UnknownStamp(c.stamp.clone()))?
        .try_get(0)?;
    let watermark: DateTime<Utc> = tx
        .query_opt("SELECT watermark FROM processing_status WHERE stamp_id = $1 FOR UPDATE", &[&stamp])
        .await?
        .ok_or_else(|| StoreError::UnknownStamp(c.stamp.clone()))?
        .try_get(0)?;
    let holder: Option<String> = tx
        .query_opt("SELECT owner FROM stamp_leases WHERE stamp_id = $1 FOR SHARE", &[&stamp])
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    match holder {
        Some(owner) if owner == c.lease_owner => {}
        Some(owner) => return Err(fenced(format!("the stamp's lease is held by {owner}"))),
        None => return Err(fenced("the stamp's lease is not held".into())),
    }
    let watermark_text = || watermark.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    match c.write {
        WindowWrite::Advance if watermark != c.window.start => {
            return Err(fenced(format!(
                "the watermark is at {}, not at the window's start",
                watermark_text()
            )));
        }
        WindowWrite::Replace { .. } if c.window.end > watermark => {
            return Err(fenced(format!(
                "only collected hours can be replaced and the watermark is at {}",
                watermark_text()
            )));
        }
        WindowWrite::Replace { .. } | WindowWrite::Advance => {}
    }
    let (start, end) = (c.window.start, c.window.end);
    // Read before the old rows go: what each tenant subscription was billed under in this window.
    let billed = match c.write {
        WindowWrite::Replace { remap: false } => billed_in_window(tx, stamp_no, start, end).await?,
        WindowWrite::Replace { remap: true } | WindowWrite::Advance => HashMap::new(),
    };
    if let WindowWrite::Replace { .. } = c.write {
        tx.execute(
            "DELETE FROM usage_rows WHERE stamp_no = $1 AND reported_start >= $2 AND reported_start < $3",
            &[&stamp_no, &start, &end],
        )
        .await?;
        // Replacing a window replaces its quarantine too: the re-pull decides what is held back.
        tx.execute(
            "DELETE FROM quarantined_rows WHERE stamp_id = $1 AND reported_start >= $2 AND reported_start < $3",
            &[&stamp, &start, &end],
        )
        .await?;
    }

    let mut receipt = insert_rows(tx, stamp_no, c, &billed).await?;
    receipt.quarantined = insert_quarantined(tx, c).await?;

    if c.write == WindowWrite::Advance {
        tx.execute("UPDATE processing_status SET watermark = $2 WHERE stamp_id = $1", &[&stamp, &end])
            .await?;
    }
    Ok(receipt)
}

/// The billing subscription each tenant subscription's mapped rows carry in a stored window (the
/// greatest, should an operator's edits have left two): what a reprocess keeps them billed under.
async fn billed_in_window(
    tx: &Transaction<'_>,
    stamp_no: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<HashMap<String, String>, Failure> {
    let rows = tx
        .query(
            "SELECT subscription_key, max(billing_subscription_id) FROM usage_rows
             WHERE stamp_no = $1 AND reported_start >= $2 AND reported_start < $3
                 AND billing_subscription_id IS NOT NULL
             GROUP BY subscription_key",
            &[&stamp_no, &start, &end],
        )
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

const INSERT_ROWS: &str = "WITH inserted AS (
        INSERT INTO usage_rows (stamp_no, reported_start, reported_end, row_key, row_key_low,
            subscription_id, subscription_key, billing_subscription_id, meter_id, usage_start, usage_end,
            quantity, resource_uri, location, tags, additional_info)
        SELECT $1, $2, $3, k, kl, sid, skey, bill, meter, us, ue, q::numeric, uri, loc, tags, info
        FROM unnest($4::int8[], $5::int8[], $6::text[], $7::text[], $8::text[], $9::text[],
            $10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[], $14::text[], $15::text[],
            $16::text[]) AS r (k, kl, sid, skey, bill, meter, us, ue, q, uri, loc, tags, info)
        ON CONFLICT (stamp_no, reported_start, row_key, row_key_low) DO NOTHING
        RETURNING billing_subscription_id)
    SELECT count(*), count(*) FILTER (WHERE billing_subscription_id IS NULL) FROM inserted";

/// Remembers the latest reported window each tenant subscription had rows in.
const TENANTS_REPORTED: &str = "INSERT INTO tenant_subscriptions (stamp_no, subscription_key, last_reported)
    SELECT $1, k, $2 FROM unnest($3::text[]) AS t (k)
    ON CONFLICT (stamp_no, subscription_key) DO UPDATE
        SET last_reported = greatest(tenant_subscriptions.last_reported, excluded.last_reported)";

/// Inserts the window's rows a batch at a time, each mapped by `billed` (what its subscription was
/// billed under in the window before a reprocess) or else by the current mappings.
async fn insert_rows(
    tx: &Transaction<'_>,
    stamp_no: i64,
    c: &WindowCommit<'_>,
    billed: &HashMap<String, String>,
) -> Result<CommitReceipt, Failure> {
    // Mapping happens here, at write time, against the mappings as they are inside this transaction.
    let mappings: HashMap<String, String> = tx
        .query(
            "SELECT external_subscription_id, billing_subscription_id FROM subscription_mappings
             WHERE stamp_id = $1",
            &[&c.stamp.as_str()],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, Failure>>()?;
    // A window has far fewer tenant subscriptions than rows: normalise and map each once.
    let mut tenants: HashMap<&str, (String, Option<&str>)> = HashMap::new();
    for row in &c.rows {
        tenants.entry(row.subscription_id.as_str()).or_insert_with(|| {
            let key = normalize_subscription_id(&row.subscription_id);
            let billing = billed.get(&key).or_else(|| mappings.get(&key)).map(String::as_str);
            (key, billing)
        });
    }
    if !tenants.is_empty() {
        let mut keys: Vec<&str> = tenants.values().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        tx.execute(TENANTS_REPORTED, &[&stamp_no, &c.window.start, &keys]).await?;
    }

    let insert = tx.prepare_cached(INSERT_ROWS).await?;
    let mut receipt = CommitReceipt::default();
    for batch in c.rows.chunks(INSERT_BATCH) {
        let mut columns = Columns::with_capacity(batch.len());
        for row in batch {
            let (key, billing) = &tenants[row.subscription_id.as_str()];
            columns.push(row, key, *billing);
        }
        let counts = tx
            .query_one(
                &insert,
                &[
                    &stamp_no,
                    &c.window.start,
                    &c.window.end,
                    &columns.key_high,
                    &columns.key_low,
                    &columns.subscription_id,
                    &columns.subscription_key,
                    &columns.billing,
                    &columns.meter_id,
                    &columns.usage_start,
                    &columns.usage_end,
                    &columns.quantity,
                    &columns.resource_uri,
                    &columns.location,
                    &columns.tags,
                    &columns.additional_info,
                ],
            )
            .await?;
        let written = crate::status::get_u64(&counts, 0)?;
        receipt.rows_written += written;
        receipt.unmapped_rows += crate::status::get_u64(&counts, 1)?;
        receipt.duplicates += batch.len() as u64 - written;
    }
    Ok(receipt)
}

/// One batch of rows as the column arrays `unnest` takes.
struct Columns<'a> {
    key_high: Vec<i64>,
    key_low: Vec<i64>,
    subscription_id: Vec<&'a str>,
    subscription_key: Vec<&'a str>,
    billing: Vec<Option<&'a str>>,
    meter_id: Vec<&'a str>,
    usage_start: Vec<DateTime<Utc>>,
    usage_end: Vec<DateTime<Utc>>,
    /// The exact decimal text (scale kept), cast to numeric by the server.
    quantity: Vec<String>,
    resource_uri: Vec<&'a str>,
    location: Vec<&'a str>,
    tags: Vec<Option<&'a str>>,
    additional_info: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Columns {
            key_high: Vec::with_capacity(n),
            key_low: Vec::with_capacity(n),
            subscription_id: Vec::with_capacity(n),
            subscription_key: Vec::with_capacity(n),
            billing: Vec::with_capacity(n),
            meter_id: Vec::with_capacity(n),
            usage_start: Vec::with_capacity(n),
            usage_end: Vec::with_capacity(n),
            quantity: Vec::with_capacity(n),
            resource_uri: Vec::with_capacity(n),
            location: Vec::with_capacity(n),
            tags: Vec::with_capacity(n),
            additional_info: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, row: &'a UsageRow, key: &'a str, billing: Option<&'a str>) {
        let (high, low) = row.key().halves();
        self.key_high.push(high);
        self.key_low.push(low);
        self.subscription_id.push(&row.subscription_id);
        self.subscription_key.push(key);
        self.billing.push(billing);
        self.meter_id.push(&row.meter_id);
        self.usage_start.push(row.usage_start);
        self.usage_end.push(row.usage_end);
        self.quantity.push(row.quantity.to_string());
        self.resource_uri.push(&row.resource_uri);
        self.location.push(&row.location);
        self.tags.push(row.tags.as_deref());
        self.additional_info.push(row.additional_info.as_deref());
    }
}

/// The window's quarantined rows; returns how many were new.
async fn insert_quarantined(tx: &Transaction<'_>, c: &WindowCommit<'_>) -> Result<u64, Failure> {
    if c.quarantined.is_empty() {
        return Ok(0);
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO quarantined_rows (stamp_id, reported_start, reported_end, row_key, row_key_low,
                 field, reason, raw, quarantined_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
             ON CONFLICT (stamp_id, reported_start, row_key, row_key_low) DO NOTHING",
        )
        .await?;
    let mut inserted = 0;
    for q in &c.quarantined {
        let (high, low) = q.key().halves();
        let (field, reason, raw) = quarantine_text(q);
        inserted += tx
            .execute(
                &insert,
                &[&c.stamp.as_str(), &c.window.start, &c.window.end, &high, &low, &field, &reason, &raw],
            )
            .await?;
    }
    Ok(inserted)
}

/// A quarantined row's text as PostgreSQL can hold it: the rare U+0000 (which text cannot hold) is
/// written as the JSON escape it stood for. The row's key is over the original, so it never changes.
fn quarantine_text(q: &QuarantinedRow) -> (String, String, String) {
    let clean = |s: &str| if s.contains('\0') { s.replace('\0', "\\u0000") } else { s.to_owned() };
    (clean(&q.field), clean(&q.reason), clean(&q.raw))
}

const EXPORT_STAMP_ROWS: &str =
    "SELECT reported_start, reported_end, subscription_id, billing_subscription_id,
        meter_id, usage_start, usage_end, quantity::text, resource_uri, location, tags, additional_info
    FROM usage_rows
    WHERE stamp_no = $1 AND ($2::timestamptz IS NULL OR reported_start >= $2)
        AND ($3::timestamptz IS NULL OR reported_start < $3)
    ORDER BY reported_start, usage_start, row_key, row_key_low";

/// Reads the filtered rows stamp by stamp (in stamp id order; rows of deleted stamps included) in one
/// read-only snapshot, through a portal a batch at a time, handing each row to `sink`.
async fn export(
    client: &mut deadpool_postgres::Object,
    filter: &ExportFilter,
    sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
) -> Result<u64, Failure> {
    let tx = snapshot(client).await?;
    let stamps = export_stamps(&tx, filter).await?;
    let statement = tx.prepare(EXPORT_STAMP_ROWS).await?;
    let mut exported = 0u64;
    for (stamp_no, stamp_id) in stamps {
        let portal = tx.bind(&statement, &[&stamp_no, &filter.from, &filter.to]).await?;
        drain(&tx, &portal, &mut exported, |r| stored_row(&stamp_id, r), sink).await?;
    }
    tx.commit().await?;
    Ok(exported)
}

/// A read-only transaction that sees the database as of its first read (REPEATABLE READ), so a long
/// read never shows half of a window a reprocess is replacing meanwhile.
async fn snapshot(client: &mut deadpool_postgres::Object) -> Result<Transaction<'_>, Failure> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    Ok(tx)
}

/// Hands every row of `portal`, read a batch at a time, to `sink`, counting them in `exported`.
async fn drain(
    tx: &Transaction<'_>,
    portal: &tokio_postgres::Portal,
    exported: &mut u64,
    read: impl Fn(&Row) -> Result<StoredUsageRow, Failure>,
    sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
) -> Result<(), Failure> {
    loop {
        let rows = tx.query_portal(portal, EXPORT_BATCH).await?;
        if rows.is_empty() {
            return Ok(());
        }
        for r in &rows {
            if let Err(e) = sink(read(r)?) {
                return Err(StoreError::Other(format!("export stopped after {exported} rows: {e}")).into());
            }
            *exported += 1;
        }
    }
}

/// One billing subscription's rows reported in `[$2, $3)`: a range of `usage_rows_billing` (migration
/// 0004). The order is total (stamp and row key make a row unique), so a narrower range is a suffix
/// of a wider one's rows.
const BILLING_ROWS: &str = "SELECT u.reported_start, u.reported_end, u.subscription_id,
        u.billing_subscription_id, u.meter_id, u.usage_start, u.usage_end, u.quantity::text,
        u.resource_uri, u.location, u.tags, u.additional_info, s.stamp_id
    FROM usage_rows u JOIN stamp_numbers s ON s.stamp_no = u.stamp_no
    WHERE u.billing_subscription_id = $1 AND u.reported_start >= $2
        AND ($3::timestamptz IS NULL OR u.reported_start < $3)
    ORDER BY u.reported_start, u.stamp_no, u.usage_start, u.row_key, u.row_key_low";

/// Reads one billing subscription's rows (see [`BILLING_ROWS`]) in one read-only snapshot, through a
/// portal a batch at a time, handing each row to `sink`.
async fn billing_export(
    client: &mut deadpool_postgres::Object,
    billing_subscription_id: &str,
    (from, to): (DateTime<Utc>, Option<DateTime<Utc>>),
    sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
) -> Result<u64, Failure> {
    let tx = snapshot(client).await?;
    let statement = tx.prepare_cached(BILLING_ROWS).await?;
    let portal = tx.bind(&statement, &[&billing_subscription_id, &from, &to]).await?;
    let mut exported = 0u64;
    drain(&tx, &portal, &mut exported, |r| stored_row(&StampId(r.try_get(12)?), r), sink).await?;
    tx.commit().await?;
    Ok(exported)
}

/// The stamps to export, in id order: the filter's, or every stamp that ever had a number.
async fn export_stamps(tx: &Transaction<'_>, filter: &ExportFilter) -> Result<Vec<(i64, StampId)>, Failure> {
    let rows = if filter.stamps.is_empty() {
        tx.query("SELECT stamp_no, stamp_id FROM stamp_numbers ORDER BY stamp_id", &[]).await?
    } else {
        let wanted: Vec<&str> = filter.stamps.iter().map(StampId::as_str).collect();
        tx.query(
            "SELECT stamp_no, stamp_id FROM stamp_numbers WHERE stamp_id = ANY($1) ORDER BY stamp_id",
            &[&wanted],
        )
        .await?
    };
    rows.iter().map(|r| Ok((r.try_get(0)?, StampId(r.try_get(1)?)))).collect()
}

fn stored_row(stamp_id: &StampId, r: &Row) -> Result<StoredUsageRow, Failure> {
    let quantity: String = r.try_get(7)?;
    // Exact: numeric's text keeps the scale it was written with, so it never needs rounding.
    let quantity = rust_decimal::Decimal::from_str_exact(&quantity)
        .map_err(|e| StoreError::Other(format!("stored quantity {quantity:?}: {e}")))?;
    Ok(StoredUsageRow {
        stamp_id: stamp_id.clone(),
        window: ReportedWindow { start: r.try_get(0)?, end: r.try_get(1)? },
        billing_subscription_id: r.try_get(3)?,
        row: UsageRow {
            subscription_id: r.try_get(2)?,
            meter_id: r.try_get(4)?,
            usage_start: r.try_get(5)?,
            usage_end: r.try_get(6)?,
            quantity,
            resource_uri: r.try_get(8)?,
            location: r.try_get(9)?,
            tags: r.try_get(10)?,
            additional_info: r.try_get(11)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_in_any_text_field_is_named() {
        let mut row = azs_core::check::probe_row();
        assert_eq!(nul_in(&row), None);
        row.tags = Some("{\"a\":\"b\0\"}".into());
        assert_eq!(nul_in(&row), Some("instanceData.tags"));
    }
}
