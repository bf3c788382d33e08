//! The usage ledger (`usage_rows`, `reprocess_log`): a reported window's rows and the stamp's watermark
//! committed in one transaction, fenced by the lease and the watermark; exports streamed in order.

use crate::SqliteStore;
use crate::codec::{get_millis, get_quantity, get_secs, now_millis, secs};
use crate::db::{Database, Failure};
use async_trait::async_trait;
use azs_core::ports::{
    CommitReceipt, ExportFilter, QuarantineReader, StoreError, StoredUsageRow, UsageLedger, WindowCommit,
    WindowWrite,
};
use azs_core::quarantine::{QuarantineEntry, QuarantinedRow, RowLimits, TextUnit};
use azs_core::stamp::StampId;
use azs_core::usage::{UsageRow, normalize_subscription_id};
use azs_core::window::ReportedWindow;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;
use std::sync::Arc;

/// Rows handed from the reading thread to the sink at a time. A batch's buffer stays under glibc's
/// mmap threshold (128 KiB, as `azs_process` sets it), so it comes from the heap and its memory is
/// reused: at 512 rows (about 143 KB) every batch was mapped and unmapped again, a page fault per
/// 4 KiB, 1.8 million of them in a 21.6-million-row statement pass.
const EXPORT_BATCH: usize = 256;
const _: () = assert!(EXPORT_BATCH * std::mem::size_of::<StoredUsageRow>() < 128 * 1024);

/// SQLite's own limit on a text value (SQLITE_MAX_LENGTH, 1,000,000,000 bytes in the bundled build);
/// quantities are stored as their exact decimal text, so every decimal the core reads fits.
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
impl QuarantineReader for SqliteStore {
    async fn quarantine(&self, stamp: Option<&StampId>) -> Result<Vec<QuarantineEntry>, StoreError> {
        let stamp = stamp.cloned();
        self.run(move |db| {
            db.read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT stamp_id, reported_start, reported_end, field, reason, raw, quarantined_at
                     FROM quarantined_rows WHERE ?1 IS NULL OR stamp_id = ?1
                     ORDER BY stamp_id, reported_start, row_key, row_key_low",
                )?;
                let entries = stmt
                    .query_map([stamp.as_ref().map(StampId::as_str)], |r| {
                        Ok(QuarantineEntry {
                            stamp_id: StampId(r.get(0)?),
                            window: ReportedWindow { start: get_secs(r, 1)?, end: get_secs(r, 2)? },
                            field: r.get(3)?,
                            reason: r.get(4)?,
                            raw: r.get(5)?,
                            quarantined_at: get_millis(r, 6)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(entries)
            })
        })
        .await
    }
}

#[async_trait]
impl UsageLedger for SqliteStore {
    fn row_limits(&self) -> RowLimits {
        ROW_LIMITS
    }

    async fn commit_window(&self, commit: WindowCommit<'_>) -> Result<CommitReceipt, StoreError> {
        // Windows take their turn here rather than on the writer connection's lock, so stamps queueing
        // to write park no blocking threads meanwhile.
        let _turn = self.commit_turn.lock().await;
        // The blocking pool needs owned data; the rows move along, only the names are copied.
        let commit = OwnedCommit {
            stamp: commit.stamp.clone(),
            window: commit.window,
            lease_owner: commit.lease_owner.to_owned(),
            write: commit.write,
            rows: commit.rows,
            quarantined: commit.quarantined,
        };
        self.run(move |db| db.write(|conn| commit_window(conn, &commit))).await
    }

    async fn export_rows(
        &self,
        filter: &ExportFilter,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        let filter = filter.clone();
        self.stream(move |db, batches| export(db, &filter, batches), sink).await
    }

    async fn billing_rows(
        &self,
        billing_subscription_id: &str,
        from: chrono::DateTime<chrono::Utc>,
        to: Option<chrono::DateTime<chrono::Utc>>,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        let sub = billing_subscription_id.to_owned();
        let range = (secs(from), to.map_or(i64::MAX, secs));
        self.stream(move |db, batches| billing_export(db, &sub, range, batches), sink).await
    }

    async fn subscriptions_seen(
        &self,
        stamp: &StampId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let stamp = stamp.clone();
        self.run(move |db| {
            db.read(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT t.subscription_key FROM tenant_numbers t JOIN stamp_numbers s ON s.stamp_no = t.stamp_no
                     WHERE s.stamp_id = ?1 AND t.last_reported >= ?2 ORDER BY t.subscription_key",
                )?;
                let keys = stmt.query_map((stamp.as_str(), secs(since)), |r| r.get(0))?.collect::<Result<_, _>>()?;
                Ok(keys)
            })
        })
        .await
    }

    async fn stored_windows(
        &self,
        stamp: &StampId,
        range: ReportedWindow,
    ) -> Result<Vec<ReportedWindow>, StoreError> {
        let stamp = stamp.clone();
        // A range of the usage key's index (stamp_no, reported_start, ...): a span overlapping the
        // range starts less than LONGEST_SPAN_HOURS before it.
        let lookback = i64::from(azs_core::window::LONGEST_SPAN_HOURS - 1) * 3600;
        let (start, end) = (secs(range.start), secs(range.end));
        self.run(move |db| {
            db.read(|conn| {
                let mut stmt = conn.prepare_cached(STORED_WINDOWS)?;
                let windows = stmt
                    .query_map((stamp.as_str(), start - lookback, end, start), |r| {
                        Ok(ReportedWindow { start: get_secs(r, 0)?, end: get_secs(r, 1)? })
                    })?
                    .collect::<Result<_, _>>()?;
                Ok(windows)
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
        let (stamp, reason) = (stamp.clone(), reason.to_owned());
        self.run(move |db| {
            db.write(|conn| {
                let known = conn
                    .query_row("SELECT 1 FROM stamps WHERE id = ?1", [stamp.as_str()], |_| Ok(()))
                    .optional()?;
                if known.is_none() {
                    return Err(StoreError::UnknownStamp(stamp.clone()).into());
                }
                conn.execute(
                    "INSERT INTO reprocess_log (stamp_id, range_start, range_end, reason, requested_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (stamp.as_str(), secs(window.start), secs(window.end), reason.as_str(), now_millis()),
                )?;
                Ok(())
            })
        })
        .await
    }
}

impl SqliteStore {
    /// Runs `read` on a reading thread that walks the rows and hands them over in small batches
    /// through a bounded channel, each row to `sink`: memory stays at a few batches whatever the
    /// read's size.
    async fn stream(
        &self,
        read: impl FnOnce(&Database, &Batches) -> Result<(), StoreError> + Send + 'static,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        let (batches, mut received) = tokio::sync::mpsc::channel::<Vec<StoredUsageRow>>(4);
        let db = Arc::clone(&self.db);
        let reader = tokio::task::spawn_blocking(move || read(&db, &batches));
        let mut exported = 0u64;
        let mut sink_failed = None;
        'batches: while let Some(batch) = received.recv().await {
            for row in batch {
                if let Err(e) = sink(row) {
                    sink_failed = Some(e);
                    break 'batches;
                }
                exported += 1;
            }
        }
        // Closing the channel stops the reading thread at its next batch.
        drop(received);
        let read =
            reader.await.map_err(|e| StoreError::Other(format!("export task ended abnormally: {e}")))?;
        if let Some(e) = sink_failed {
            return Err(StoreError::Other(format!("export stopped after {exported} rows: {e}")));
        }
        read?;
        Ok(exported)
    }
}

/// Where a reading thread sends its rows.
type Batches = tokio::sync::mpsc::Sender<Vec<StoredUsageRow>>;

/// The distinct reported windows of a stamp's rows and quarantined rows that start in `[?2, ?3)` and
/// end after `?4`: those overlapping the range `[?4, ?3)`, `?2` being as far back as a span can start.
pub(crate) const STORED_WINDOWS: &str = "SELECT reported_start, reported_end FROM usage_rows
        WHERE stamp_no = (SELECT stamp_no FROM stamp_numbers WHERE stamp_id = ?1)
            AND reported_start >= ?2 AND reported_start < ?3 AND reported_end > ?4
    UNION
    SELECT reported_start, reported_end FROM quarantined_rows
        WHERE stamp_id = ?1 AND reported_start >= ?2 AND reported_start < ?3 AND reported_end > ?4
    ORDER BY reported_start";

pub(crate) struct OwnedCommit {
    pub stamp: StampId,
    pub window: ReportedWindow,
    pub lease_owner: String,
    pub write: WindowWrite,
    pub rows: Vec<UsageRow>,
    pub quarantined: Vec<QuarantinedRow>,
}

const INSERT_ROW: &str = "INSERT INTO usage_rows (stamp_no, reported_start, reported_end, row_key,
        subscription_id, subscription_key, billing_subscription_id, meter_id, usage_start, usage_end,
        quantity, resource_uri, location, tags, additional_info, tenant_no, row_key_low)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
    ON CONFLICT (stamp_no, reported_start, row_key, row_key_low) DO NOTHING";

const TENANT_NO: &str = "SELECT tenant_no FROM tenant_numbers WHERE stamp_no = ?1 AND subscription_key = ?2";
/// Remembers the latest reported window each tenant subscription had rows in (see migration 0005).
const TENANT_REPORTED: &str = "UPDATE tenant_numbers SET last_reported = max(coalesce(last_reported, ?2), ?2)
    WHERE tenant_no = ?1";
const NEW_TENANT_NO: &str =
    "INSERT INTO tenant_numbers (stamp_no, subscription_key) VALUES (?1, ?2) RETURNING tenant_no";

pub(crate) const DELETE_WINDOW: &str =
    "DELETE FROM usage_rows WHERE stamp_no = ?1 AND reported_start >= ?2 AND reported_start < ?3";
/// Replacing a window replaces its quarantine too: the re-pull decides what is held back.
const DELETE_WINDOW_QUARANTINE: &str =
    "DELETE FROM quarantined_rows WHERE stamp_id = ?1 AND reported_start >= ?2 AND reported_start < ?3";
const INSERT_QUARANTINED: &str = "INSERT INTO quarantined_rows (stamp_id, reported_start, reported_end,
        row_key, row_key_low, field, reason, raw, quarantined_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (stamp_id, reported_start, row_key, row_key_low) DO NOTHING";

fn commit_window(conn: &mut Connection, c: &OwnedCommit) -> Result<CommitReceipt, Failure> {
    // IMMEDIATE takes the write lock now, so the checks below still hold when the rows land.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let receipt = commit_in(&tx, c)?;
    tx.commit()?;
    Ok(receipt)
}

/// [`commit_window`] inside the caller's write transaction (`db check`'s trial commit rolls it back).
pub(crate) fn commit_in(tx: &Connection, c: &OwnedCommit) -> Result<CommitReceipt, Failure> {
    let fenced = |reason: String| -> Failure {
        StoreError::Fenced { stamp: c.stamp.clone(), window: c.window, reason }.into()
    };
    let (stamp_no, watermark, holder) = tx
        .prepare_cached(
            "SELECT s.stamp_no, p.watermark, l.owner
             FROM stamps s JOIN processing_status p ON p.stamp_id = s.id
                 LEFT JOIN stamp_leases l ON l.stamp_id = s.id
             WHERE s.id = ?1",
        )?
        .query_row([c.stamp.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<String>>(2)?))
        })
        .optional()?
        .ok_or_else(|| StoreError::UnknownStamp(c.stamp.clone()))?;

    match holder {
        Some(owner) if owner == c.lease_owner => {}
        Some(owner) => return Err(fenced(format!("the stamp's lease is held by {owner}"))),
        None => return Err(fenced("the stamp's lease is not held".into())),
    }
    let (start, end) = (secs(c.window.start), secs(c.window.end));
    let watermark_text = || {
        chrono::DateTime::from_timestamp(watermark, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| watermark.to_string())
    };
    match c.write {
        WindowWrite::Advance if watermark != start => {
            return Err(fenced(format!(
                "the watermark is at {}, not at the window's start",
                watermark_text()
            )));
        }
        WindowWrite::Replace { .. } if end > watermark => {
            return Err(fenced(format!(
                "only collected hours can be replaced and the watermark is at {}",
                watermark_text()
            )));
        }
        WindowWrite::Replace { .. } | WindowWrite::Advance => {}
    }
    // Read before the old rows go: what each tenant subscription was billed under in this window.
    let billed = match c.write {
        WindowWrite::Replace { remap: false } => billed_in_window(tx, stamp_no, start, end)?,
        WindowWrite::Replace { remap: true } | WindowWrite::Advance => HashMap::new(),
    };
    if let WindowWrite::Replace { .. } = c.write {
        tx.prepare_cached(DELETE_WINDOW)?.execute((stamp_no, start, end))?;
        tx.prepare_cached(DELETE_WINDOW_QUARANTINE)?.execute((c.stamp.as_str(), start, end))?;
    }

    let mut receipt = insert_rows(tx, stamp_no, c, &billed)?;
    if !c.quarantined.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_QUARANTINED)?;
        let now = now_millis();
        for q in &c.quarantined {
            let (key_high, key_low) = q.key().halves();
            receipt.quarantined += insert.execute(rusqlite::params![
                c.stamp.as_str(),
                start,
                end,
                key_high,
                key_low,
                q.field,
                q.reason,
                q.raw,
                now
            ])? as u64;
        }
    }

    if c.write == WindowWrite::Advance {
        tx.prepare_cached("UPDATE processing_status SET watermark = ?2 WHERE stamp_id = ?1")?
            .execute((c.stamp.as_str(), end))?;
    }
    Ok(receipt)
}

/// The billing subscription each tenant subscription's mapped rows carry in a stored window (the
/// greatest, should an operator's edits have left two): what a reprocess keeps them billed under.
const BILLED_IN_WINDOW: &str = "SELECT subscription_key, max(billing_subscription_id) FROM usage_rows
    WHERE stamp_no = ?1 AND reported_start >= ?2 AND reported_start < ?3
        AND billing_subscription_id IS NOT NULL
    GROUP BY subscription_key";

fn billed_in_window(
    tx: &Connection,
    stamp_no: i64,
    start: i64,
    end: i64,
) -> rusqlite::Result<HashMap<String, String>> {
    tx.prepare_cached(BILLED_IN_WINDOW)?
        .query_map((stamp_no, start, end), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Inserts the window's rows, each mapped by `billed` (what its subscription was billed under in the
/// window before a reprocess) or else by the current mappings.
fn insert_rows(
    tx: &Connection,
    stamp_no: i64,
    c: &OwnedCommit,
    billed: &HashMap<String, String>,
) -> Result<CommitReceipt, Failure> {
    // Mapping happens here, at write time, against the mappings as they are inside this transaction.
    let mappings: HashMap<String, String> = tx
        .prepare_cached(
            "SELECT external_subscription_id, billing_subscription_id FROM subscription_mappings
             WHERE stamp_id = ?1",
        )?
        .query_map([c.stamp.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    // A window has far fewer tenant subscriptions than rows: normalise, map and number each once.
    let mut subscriptions: HashMap<&str, Tenant<'_>> = HashMap::new();

    let (start, end) = (secs(c.window.start), secs(c.window.end));
    let mut insert = tx.prepare_cached(INSERT_ROW)?;
    let mut quantity = String::with_capacity(32);
    let mut receipt = CommitReceipt::default();
    for row in &c.rows {
        let Tenant { key: subscription_key, billing, number: tenant_no } =
            match subscriptions.entry(row.subscription_id.as_str()) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => {
                    let key = normalize_subscription_id(&row.subscription_id);
                    let number = tenant_no(tx, stamp_no, &key)?;
                    tx.prepare_cached(TENANT_REPORTED)?.execute((number, start))?;
                    let billing = billed.get(&key).or_else(|| mappings.get(&key)).map(String::as_str);
                    new.insert(Tenant { number, billing, key })
                }
            };
        quantity.clear();
        write!(quantity, "{}", row.quantity).expect("writing to a String cannot fail");
        let (key_high, key_low) = row.key().halves();
        let inserted = insert.execute(rusqlite::params![
            stamp_no,
            start,
            end,
            key_high,
            row.subscription_id.as_str(),
            subscription_key.as_str(),
            *billing,
            row.meter_id.as_str(),
            secs(row.usage_start),
            secs(row.usage_end),
            quantity.as_str(),
            row.resource_uri.as_str(),
            row.location.as_str(),
            row.tags.as_deref(),
            row.additional_info.as_deref(),
            *tenant_no,
            key_low,
        ])?;
        if inserted == 1 {
            receipt.rows_written += 1;
            if billing.is_none() {
                receipt.unmapped_rows += 1;
            }
        } else {
            receipt.duplicates += 1;
        }
    }
    Ok(receipt)
}

/// A tenant subscription as a window's rows carry it.
struct Tenant<'m> {
    /// Normalised: what mappings join on.
    key: String,
    /// The number that keys the index of unmapped rows (see migration 0002).
    number: i64,
    billing: Option<&'m str>,
}

/// The tenant's number on this stamp, numbered on first sight (inside the window's write transaction,
/// so two writers cannot number one tenant twice).
fn tenant_no(tx: &Connection, stamp_no: i64, key: &str) -> rusqlite::Result<i64> {
    if let Some(no) = tx.prepare_cached(TENANT_NO)?.query_row((stamp_no, key), |r| r.get(0)).optional()? {
        return Ok(no);
    }
    tx.prepare_cached(NEW_TENANT_NO)?.query_row((stamp_no, key), |r| r.get(0))
}

pub(crate) const EXPORT_STAMP_ROWS: &str =
    "SELECT reported_start, reported_end, subscription_id, billing_subscription_id,
        meter_id, usage_start, usage_end, quantity, resource_uri, location, tags, additional_info
    FROM usage_rows
    WHERE stamp_no = ?1 AND reported_start >= ?2 AND reported_start < ?3
    ORDER BY reported_start, usage_start, row_key";

/// Reads the filtered rows stamp by stamp (in stamp id order; rows of deleted stamps included) in one
/// read transaction, and sends them in batches until done or until the receiver is gone.
fn export(db: &Database, filter: &ExportFilter, batches: &Batches) -> Result<(), StoreError> {
    // Not retried: once a batch has gone out, starting over would hand the sink rows twice.
    db.with_reader(|conn| {
        let snapshot = conn.unchecked_transaction().map_err(Failure::from)?;
        let stamps = export_stamps(&snapshot, filter).map_err(Failure::from)?;
        let from = filter.from.map_or(i64::MIN, secs);
        let to = filter.to.map_or(i64::MAX, secs);
        let mut stmt = snapshot.prepare_cached(EXPORT_STAMP_ROWS).map_err(Failure::from)?;
        let mut outbox = Outbox::new(batches);
        for (stamp_no, stamp_id) in stamps {
            let mut rows = stmt.query((stamp_no, from, to)).map_err(Failure::from)?;
            while let Some(r) = rows.next().map_err(Failure::from)? {
                if !outbox.push(stored_row(&stamp_id, r).map_err(Failure::from)?) {
                    return Ok(());
                }
            }
        }
        outbox.flush();
        Ok(())
    })
}

/// Rows on their way to the sink, a batch at a time.
struct Outbox<'a> {
    batches: &'a Batches,
    batch: Vec<StoredUsageRow>,
}

impl<'a> Outbox<'a> {
    fn new(batches: &'a Batches) -> Self {
        Self { batches, batch: Vec::with_capacity(EXPORT_BATCH) }
    }

    /// Adds a row, sending the batch when it is full; `false` once the receiver is gone.
    fn push(&mut self, row: StoredUsageRow) -> bool {
        self.batch.push(row);
        if self.batch.len() < EXPORT_BATCH {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(EXPORT_BATCH));
        self.batches.blocking_send(full).is_ok()
    }

    /// Sends what is left.
    fn flush(self) {
        if !self.batch.is_empty() {
            let _ = self.batches.blocking_send(self.batch);
        }
    }
}

/// One billing subscription's rows reported in `[?2, ?3)`: one contiguous range of the covering
/// `usage_rows_billing` (migration 0012), already in this order, the table untouched. The order is total
/// (stamp and row key make a row unique), so a narrower range is a suffix of a wider one's rows.
pub(crate) const BILLING_ROWS: &str =
    "SELECT s.stamp_id, u.reported_start, u.reported_end, u.subscription_id,
        u.billing_subscription_id, u.meter_id, u.usage_start, u.usage_end, u.quantity, u.resource_uri,
        u.location, u.tags, u.additional_info
    FROM usage_rows u JOIN stamp_numbers s ON s.stamp_no = u.stamp_no
    WHERE u.billing_subscription_id = ?1 AND u.reported_start >= ?2 AND u.reported_start < ?3
    ORDER BY u.reported_start, u.stamp_no, u.usage_start, u.row_key, u.row_key_low";

/// Reads one billing subscription's rows (see [`BILLING_ROWS`]) in one read transaction, and sends
/// them in batches until done or until the receiver is gone.
fn billing_export(
    db: &Database,
    billing_subscription_id: &str,
    (from, to): (i64, i64),
    batches: &Batches,
) -> Result<(), StoreError> {
    db.with_reader(|conn| {
        let mut stmt = conn.prepare_cached(BILLING_ROWS).map_err(Failure::from)?;
        let mut rows = stmt.query((billing_subscription_id, from, to)).map_err(Failure::from)?;
        let mut outbox = Outbox::new(batches);
        // A subscription's rows come from a few stamps, a reported hour's rows from one: the id is
        // compared with the last row's in place and copied only when it changes.
        let mut stamp_id = StampId(String::new());
        while let Some(r) = rows.next().map_err(Failure::from)? {
            let id = r.get_ref(0).map_err(Failure::from)?;
            let id = id.as_str().map_err(|e| Failure::from(rusqlite::Error::from(e)))?;
            if id != stamp_id.as_str() {
                stamp_id = StampId(id.to_owned());
            }
            if !outbox.push(stored_row_at(&stamp_id, r, 1).map_err(Failure::from)?) {
                return Ok(());
            }
        }
        outbox.flush();
        Ok(())
    })
}

/// The stamps to export, in id order: the filter's, or every stamp that ever had a number.
fn export_stamps(conn: &Connection, filter: &ExportFilter) -> rusqlite::Result<Vec<(i64, StampId)>> {
    if filter.stamps.is_empty() {
        let mut stmt =
            conn.prepare_cached("SELECT stamp_no, stamp_id FROM stamp_numbers ORDER BY stamp_id")?;
        return stmt.query_map([], |r| Ok((r.get(0)?, StampId(r.get(1)?))))?.collect();
    }
    let mut wanted: Vec<&StampId> = filter.stamps.iter().collect();
    wanted.sort();
    wanted.dedup();
    let mut stmt = conn.prepare_cached("SELECT stamp_no FROM stamp_numbers WHERE stamp_id = ?1")?;
    let mut found = Vec::with_capacity(wanted.len());
    for id in wanted {
        if let Some(no) = stmt.query_row([id.as_str()], |r| r.get(0)).optional()? {
            found.push((no, id.clone()));
        }
    }
    Ok(found)
}

fn stored_row(stamp_id: &StampId, r: &Row<'_>) -> rusqlite::Result<StoredUsageRow> {
    stored_row_at(stamp_id, r, 0)
}

/// A row whose columns, from `at` on, are [`EXPORT_STAMP_ROWS`]'s.
fn stored_row_at(stamp_id: &StampId, r: &Row<'_>, at: usize) -> rusqlite::Result<StoredUsageRow> {
    Ok(StoredUsageRow {
        stamp_id: stamp_id.clone(),
        window: ReportedWindow { start: get_secs(r, at)?, end: get_secs(r, at + 1)? },
        billing_subscription_id: r.get(at + 3)?,
        row: UsageRow {
            subscription_id: r.get(at + 2)?,
            meter_id: r.get(at + 4)?,
            usage_start: get_secs(r, at + 5)?,
            usage_end: get_secs(r, at + 6)?,
            quantity: get_quantity(r, at + 7)?,
            resource_uri: r.get(at + 8)?,
            location: r.get(at + 9)?,
            tags: r.get(at + 10)?,
            additional_info: r.get(at + 11)?,
        },
    })
}
