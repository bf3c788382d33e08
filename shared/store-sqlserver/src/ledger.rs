//! The usage ledger (`usage_rows`, `reprocess_log`): a reported window's rows and the stamp's watermark
//! committed in one transaction, fenced by the lease and the watermark; exports streamed in order.
//!
//! A commit: the rows are checked (quantities must fit exactly, text must fit its column) and
//! de-duplicated by key; then one transaction moves the watermark (the fenced UPDATE comes first, so it
//! also locks the stamp against a concurrent `set_mapping`), deletes the window's old rows (and
//! quarantine) when replacing, MERGEs the rows in as JSON arrays of at most [`WINDOW_CHUNK_ROWS`] each
//! (OPENJSON), mapping them in SQL, and inserts the window's quarantined rows (OPENJSON arrays of at
//! most [`QUARANTINE_CHUNK_ROWS`] rows or about [`QUARANTINE_CHUNK_BYTES`] of raw text each).
//!
//! The collector never hands over a row over [`ROW_LIMITS`] (it quarantines it, see
//! `azs_core::quarantine`); the checks here are the last line, for any other caller.

use crate::SqlServerStore;
use crate::bind::{self, CheckedRow};
use crate::session::{Failure, Session};
use crate::types::{self, Quantity, guid_text, opt, opt_text, req, stamp_key, text};
use async_trait::async_trait;
use azs_core::ports::{
    CommitReceipt, ExportFilter, QuarantineReader, StoreError, StoredUsageRow, UsageLedger, WindowCommit,
    WindowWrite,
};
use azs_core::quarantine::{QuarantineEntry, QuarantinedRow, RowLimits, TextUnit};
use azs_core::stamp::StampId;
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use tiberius::Uuid;
use tiberius::numeric::Numeric;

/// What `usage_rows` holds exactly: the nvarchar(n) widths of its text columns (UTF-16 code units;
/// tags and additional info are nvarchar(max), 2^30 - 1 units) and decimal(38, 12). A test checks
/// these against the schema's text.
pub const ROW_LIMITS: RowLimits = RowLimits {
    text_unit: TextUnit::Utf16,
    subscription_id: bind::SUBSCRIPTION_ID_WIDTH,
    meter_id: bind::METER_ID_WIDTH,
    resource_uri: bind::RESOURCE_URI_WIDTH,
    location: bind::LOCATION_WIDTH,
    tags: NVARCHAR_MAX,
    additional_info: NVARCHAR_MAX,
    quantity_decimals: types::QUANTITY_SCALE,
    quantity_integer_digits: types::QUANTITY_INTEGER_DIGITS,
};

/// nvarchar(max)'s limit in characters (2 GB of UTF-16).
const NVARCHAR_MAX: usize = (1 << 30) - 1;

#[async_trait]
impl QuarantineReader for SqlServerStore {
    async fn quarantine(&self, stamp: Option<&StampId>) -> Result<Vec<QuarantineEntry>, StoreError> {
        let key = match stamp {
            Some(id) => match stamp_key(id) {
                Some(key) => Some(key),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let mut entries = self
            .run("quarantine", |mut s| {
                Box::pin(async move {
                    s.query(bind::list_quarantine(key))
                        .await?
                        .iter()
                        .map(|r| {
                            let row_key: &[u8] = req(r, 3)?;
                            Ok((
                                row_key.to_vec(),
                                QuarantineEntry {
                                    stamp_id: StampId(guid_text(req(r, 0)?)),
                                    window: ReportedWindow { start: req(r, 1)?, end: req(r, 2)? },
                                    field: text(r, 4)?,
                                    reason: text(r, 5)?,
                                    raw: text(r, 6)?,
                                    quarantined_at: req(r, 7)?,
                                },
                            ))
                        })
                        .collect::<Result<Vec<_>, Failure>>()
                })
            })
            .await?;
        // The SQLite store's order: stamp id as text, window, key bytes.
        entries.sort_by(|(ka, a), (kb, b)| {
            (a.stamp_id.as_str(), a.window.start, ka).cmp(&(b.stamp_id.as_str(), b.window.start, kb))
        });
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    }
}

#[async_trait]
impl UsageLedger for SqlServerStore {
    fn row_limits(&self) -> RowLimits {
        ROW_LIMITS
    }

    async fn commit_window(&self, commit: WindowCommit<'_>) -> Result<CommitReceipt, StoreError> {
        let key = stamp_key(commit.stamp).ok_or_else(|| StoreError::UnknownStamp(commit.stamp.clone()))?;
        let rows = checked_rows(&commit)?;
        let (commit, rows) = (&commit, rows.as_slice());
        self.run("commit_window", |mut s| {
            Box::pin(async move { commit_window(&mut s, key, commit, rows).await })
        })
        .await
    }

    async fn export_rows(
        &self,
        filter: &ExportFilter,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        // Not retried: once rows have gone to the sink, starting over would hand them over twice.
        let mut session = crate::session::checkout(&self.pool).await.map_err(StoreError::from)?;
        export(&mut session, filter, sink).await.map_err(StoreError::from)
    }

    async fn billing_rows(
        &self,
        billing_subscription_id: &str,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
        sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
    ) -> Result<u64, StoreError> {
        // Not retried, as the export: rows may have gone to the sink already.
        let mut session = crate::session::checkout(&self.pool).await.map_err(StoreError::from)?;
        let (from, to) = (types::seconds(from), to.map(types::seconds).unwrap_or_else(latest));
        let mut exported = 0u64;
        session
            .for_each_row(bind::billing_rows(billing_subscription_id, from, to), |r| {
                let stamp_id = StampId(guid_text(req::<Uuid>(&r, 0)?));
                let window = ReportedWindow { start: req(&r, 1)?, end: req(&r, 2)? };
                let row = stored_row(stamp_id, window, &r, 3)?;
                sink(row).map_err(|e| {
                    Failure::other(format!("billing rows stopped after {exported} rows: {e}"))
                })?;
                exported += 1;
                Ok(())
            })
            .await
            .map_err(StoreError::from)?;
        Ok(exported)
    }

    async fn subscriptions_seen(
        &self,
        stamp: &StampId,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let Some(key) = stamp_key(stamp) else { return Ok(Vec::new()) };
        self.run("subscriptions_seen", |mut s| {
            Box::pin(async move {
                let mut keys = s
                    .query(bind::subscriptions_seen(key, since))
                    .await?
                    .iter()
                    .map(|r| text(r, 0))
                    .collect::<Result<Vec<_>, Failure>>()?;
                // The SQLite store's order (the server's depends on the collation).
                keys.sort_unstable();
                Ok(keys)
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
        let key = stamp_key(stamp).ok_or_else(|| StoreError::UnknownStamp(stamp.clone()))?;
        let (start, end) = (types::seconds(window.start), types::seconds(window.end));
        let requested_at = types::millis(Utc::now());
        self.run("record_reprocess", |mut s| {
            Box::pin(async move {
                match s.execute(bind::record_reprocess(key, start, end, reason, requested_at)).await? {
                    0 => Err(StoreError::UnknownStamp(stamp.clone()).into()),
                    _ => Ok(()),
                }
            })
        })
        .await
    }
}

/// The window's distinct rows (first of each 128-bit key) with their quantities in column form, in key
/// order. A quantity the column cannot hold exactly refuses the whole window, naming where it came
/// from.
///
/// Key order because usage_rows is clustered on (window, row key): a window's rows then arrive in the
/// order of the index and go in as appends at its end, filling pages, whenever the MERGE's plan keeps
/// OPENJSON's order (a plan that does not is still correct; its pages are split, not full).
pub(crate) fn checked_rows<'c>(commit: &'c WindowCommit<'_>) -> Result<Vec<CheckedRow<'c>>, StoreError> {
    let mut seen = HashSet::with_capacity(commit.rows.len());
    let mut rows = Vec::with_capacity(commit.rows.len());
    for row in &commit.rows {
        let quantity = Quantity::new(row.quantity).map_err(|e| {
            StoreError::Other(format!(
                "stamp {} window {}: {e} (meter {}, subscription {}, usage from {}); the window was not \
                 stored rather than rounded",
                commit.stamp,
                commit.window,
                row.meter_id,
                row.subscription_id,
                row.usage_start.format("%Y-%m-%dT%H:%M:%SZ"),
            ))
        })?;
        if let Some((field, length, width)) = bind::too_long(row) {
            // Refused rather than cut: a shortened resource URI or meter would bill the wrong thing.
            return Err(StoreError::Other(format!(
                "stamp {} window {}: {field} is {length} characters, longer than its column's {width} \
                 (meter {}, subscription {}, usage from {}); the window was not stored",
                commit.stamp,
                commit.window,
                row.meter_id.chars().take(128).collect::<String>(),
                row.subscription_id.chars().take(256).collect::<String>(),
                row.usage_start.format("%Y-%m-%dT%H:%M:%SZ"),
            )));
        }
        let key = row.key();
        if seen.insert(key) {
            rows.push(CheckedRow { key, row, quantity });
        }
    }
    rows.sort_unstable_by_key(|r| r.key);
    Ok(rows)
}

/// The most rows one MERGE_WINDOW carries. tiberius encodes a whole RPC request (the JSON parameter
/// as UTF-16) into one growing buffer before its first packet leaves, so a window sent in one piece
/// held its JSON text and twice that again at once: a 40,000-row window peaked at hundreds of MB (see
/// the README, "Window memory", and `examples/window_memory.rs`). In chunks of this many rows, all in
/// the window's one fenced transaction, the peak is one chunk's, whatever the window's size; the
/// round trips are a handful per large window.
pub const WINDOW_CHUNK_ROWS: usize = 5_000;

/// The window's rows in the pieces MERGE_WINDOW sends: at most `chunk_rows` each, and one empty piece
/// for an empty window (its MERGE_WINDOW still numbers the window).
pub(crate) fn window_chunks<'r, 'a>(
    rows: &'r [CheckedRow<'a>],
    chunk_rows: usize,
) -> impl Iterator<Item = &'r [CheckedRow<'a>]> {
    let empty: &'r [CheckedRow<'a>] = &[];
    let pieces = rows.chunks(chunk_rows.max(1));
    rows.is_empty().then_some(empty).into_iter().chain(pieces)
}

/// The most quarantined rows one QUARANTINE_WINDOW carries. A window holds up to
/// `AZS_USAGE_MAX_QUARANTINED_PER_WINDOW` of them (1,000 by default), each with the row's whole text:
/// sent as one request they would cost what an unchunked window did (see [`WINDOW_CHUNK_ROWS`]).
pub const QUARANTINE_CHUNK_ROWS: usize = 500;
/// The raw text one QUARANTINE_WINDOW carries at most (UTF-8 bytes; a single larger row goes alone).
/// A quarantined row is often one that is too large to store, so its size bounds the chunk too.
pub const QUARANTINE_CHUNK_BYTES: usize = 4 << 20;

/// The window's quarantined rows, one of each key (the first), in the pieces QUARANTINE_WINDOW sends:
/// at most `chunk_rows` rows and, unless one row alone exceeds it, `chunk_bytes` of raw text each.
/// Distinct across pieces too: the statement skips keys already stored, but not a key twice in one.
pub(crate) fn quarantine_chunks(
    quarantined: &[QuarantinedRow],
    chunk_rows: usize,
    chunk_bytes: usize,
) -> Vec<Vec<&QuarantinedRow>> {
    let mut seen = HashSet::with_capacity(quarantined.len());
    let mut chunks: Vec<Vec<&QuarantinedRow>> = Vec::new();
    let mut bytes = 0;
    for row in quarantined.iter().filter(|q| seen.insert(q.key())) {
        let size = row.raw.len() + row.reason.len() + row.field.len();
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < chunk_rows.max(1) && bytes + size <= chunk_bytes => {
                chunk.push(row);
                bytes += size;
            }
            _ => {
                chunks.push(vec![row]);
                bytes = size;
            }
        }
    }
    chunks
}

pub(crate) async fn commit_window(
    s: &mut Session,
    key: Uuid,
    c: &WindowCommit<'_>,
    rows: &[CheckedRow<'_>],
) -> Result<CommitReceipt, Failure> {
    let (start, end) = (types::seconds(c.window.start), types::seconds(c.window.end));
    // Each chunk's JSON is serialised inside the transaction, a few ms each, so that only one chunk's
    // text exists at a time.
    let quarantine = quarantine_chunks(&c.quarantined, QUARANTINE_CHUNK_ROWS, QUARANTINE_CHUNK_BYTES);
    s.begin().await?;
    let result = async {
        let fence = match c.write {
            WindowWrite::Advance => bind::fence_advance(key, start, end, c.lease_owner),
            WindowWrite::Replace { .. } => bind::fence_replace(key, end, c.lease_owner),
        };
        if s.execute(fence).await? != 1 {
            return Err(fence_refusal(s, key, c).await);
        }
        // Read before the old rows go: what each tenant subscription was billed under in this window.
        let mut billed = Vec::new();
        if c.write == (WindowWrite::Replace { remap: false }) {
            for r in s.query(bind::window_billed(key, start, end)).await?.iter() {
                billed.push((text(r, 0)?, text(r, 1)?));
            }
        }
        if let WindowWrite::Replace { .. } = c.write {
            s.execute(bind::delete_window(key, start, end)).await?;
            s.execute(bind::delete_window_quarantine(key, start, end)).await?;
        }
        let billed_json = bind::window_billed_json(&billed);
        let (mut rows_written, mut unmapped_rows) = (0, 0);
        for chunk in window_chunks(rows, WINDOW_CHUNK_ROWS) {
            let (rows_json, tenants_json) = (bind::window_rows(chunk), bind::window_tenants(chunk));
            let merge = bind::merge_window(key, start, end, rows_json, tenants_json, billed_json.clone());
            let counts = s
                .query_one(merge)
                .await?
                .ok_or_else(|| Failure::other("the window's MERGE returned no counts"))?;
            rows_written += types::unsigned(&counts, 0)?;
            unmapped_rows += types::unsigned(&counts, 1)?;
        }
        let mut quarantined = 0;
        for chunk in &quarantine {
            let json = bind::window_quarantine(chunk);
            quarantined += s.execute(bind::quarantine_window(key, start, end, json)).await?;
        }
        Ok(CommitReceipt {
            rows_written,
            duplicates: (c.rows.len() as u64).saturating_sub(rows_written),
            unmapped_rows,
            quarantined,
        })
    }
    .await;
    s.finish(result).await
}

/// Why the fenced UPDATE changed nothing, in the SQLite store's words.
async fn fence_refusal(s: &mut Session, key: Uuid, c: &WindowCommit<'_>) -> Failure {
    let fenced = |reason: String| -> Failure {
        StoreError::Fenced { stamp: c.stamp.clone(), window: c.window, reason }.into()
    };
    let row = match s.query_one(bind::fence_state(key)).await {
        Ok(Some(row)) => row,
        Ok(None) => return StoreError::UnknownStamp(c.stamp.clone()).into(),
        Err(f) => return f,
    };
    let (watermark, holder) = match (req::<DateTime<Utc>>(&row, 0), opt_text(&row, 1)) {
        (Ok(w), Ok(h)) => (w, h),
        (Err(f), _) | (_, Err(f)) => return f,
    };
    let at = watermark.format("%Y-%m-%dT%H:%M:%SZ");
    match holder {
        Some(owner) if owner != c.lease_owner => fenced(format!("the stamp's lease is held by {owner}")),
        None => fenced("the stamp's lease is not held".into()),
        Some(_) => match c.write {
            WindowWrite::Advance => fenced(format!("the watermark is at {at}, not at the window's start")),
            WindowWrite::Replace { .. } => {
                fenced(format!("only collected hours can be replaced and the watermark is at {at}"))
            }
        },
    }
}

/// Stamp by stamp (in id order; rows of deleted stamps included), each stamp's rows in (reported
/// start, usage start, row key) order, as the SQLite store streams them.
async fn export(
    s: &mut Session,
    filter: &ExportFilter,
    sink: &mut (dyn FnMut(StoredUsageRow) -> Result<(), String> + Send),
) -> Result<u64, Failure> {
    // datetime2's whole range stands in for an open end, so both queries stay simple range seeks.
    let from = filter.from.map(types::seconds).unwrap_or_else(earliest);
    let to = filter.to.map(types::seconds).unwrap_or_else(latest);
    let mut stamps: Vec<Uuid> = if filter.stamps.is_empty() {
        s.query(bind::export_stamps(from, to)).await?.iter().map(|r| req(r, 0)).collect::<Result<_, _>>()?
    } else {
        filter.stamps.iter().filter_map(stamp_key).collect()
    };
    // Lower-case hyphenated text sorts like the bytes of the UUID, which is how Uuid orders.
    stamps.sort_unstable();
    stamps.dedup();

    let mut exported = 0u64;
    for key in stamps {
        let stamp_id = StampId(guid_text(key));
        // A stamp's windows (one per hour: 8,760 a year), then each window's rows (see EXPORT_WINDOW_ROWS).
        let windows = s
            .query(bind::export_windows(key, from, to))
            .await?
            .iter()
            .map(|r| Ok((req::<i64>(r, 0)?, ReportedWindow { start: req(r, 1)?, end: req(r, 2)? })))
            .collect::<Result<Vec<_>, Failure>>()?;
        for (window_no, window) in windows {
            s.for_each_row(bind::export_window_rows(window_no), |r| {
                let row = stored_row(stamp_id.clone(), window, &r, 0)?;
                sink(row)
                    .map_err(|e| Failure::other(format!("export stopped after {exported} rows: {e}")))?;
                exported += 1;
                Ok(())
            })
            .await?;
        }
    }
    Ok(exported)
}

/// A stored row of `stamp_id` in `window` whose columns, from `at` on, are EXPORT_WINDOW_ROWS's.
fn stored_row(
    stamp_id: StampId,
    window: ReportedWindow,
    r: &tiberius::Row,
    at: usize,
) -> Result<StoredUsageRow, Failure> {
    Ok(StoredUsageRow {
        stamp_id,
        window,
        billing_subscription_id: opt_text(r, at)?,
        row: UsageRow {
            subscription_id: text(r, at + 1)?,
            meter_id: text(r, at + 2)?,
            usage_start: req(r, at + 3)?,
            usage_end: req(r, at + 4)?,
            quantity: Quantity::read(req::<Numeric>(r, at + 5)?, req(r, at + 6)?)?,
            resource_uri: text(r, at + 7)?,
            location: text(r, at + 8)?,
            tags: opt_text(r, at + 9)?,
            additional_info: opt(r, at + 10)?.map(|s: &str| s.to_owned()),
        },
    })
}

/// The first instant `datetime2` holds.
fn earliest() -> DateTime<Utc> {
    "0001-01-01T00:00:00Z".parse().expect("a valid time")
}

/// The last whole second `datetime2(0)` holds.
fn latest() -> DateTime<Utc> {
    "9999-12-31T23:59:59Z".parse().expect("a valid time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql;

    /// `nvarchar(n)` of `column` in the schema's usage_rows, or `None` for nvarchar(max).
    fn declared_width(column: &str) -> Option<usize> {
        declared_width_in(&sql::V1_USAGE_ROWS, column)
    }

    fn declared_width_in(table: &sql::Statement, column: &str) -> Option<usize> {
        let sql = table.sql;
        let line = sql
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{column} ")))
            .unwrap_or_else(|| panic!("{column} is not a column of {}", table.name));
        let size = &line[line.find("nvarchar(").expect("an nvarchar column") + 9..];
        let size = &size[..size.find(')').unwrap()];
        (size != "max").then(|| size.parse().unwrap())
    }

    #[test]
    fn the_declared_row_limits_are_the_schemas_column_widths_and_decimal_38_12() {
        assert_eq!(declared_width("subscription_id"), Some(ROW_LIMITS.subscription_id));
        assert_eq!(
            declared_width_in(&sql::V1_TENANT_NUMBERS, "subscription_key"),
            Some(ROW_LIMITS.subscription_id)
        );
        assert_eq!(declared_width("meter_id"), Some(ROW_LIMITS.meter_id));
        assert_eq!(declared_width("resource_uri"), Some(ROW_LIMITS.resource_uri));
        assert_eq!(declared_width("location"), Some(ROW_LIMITS.location));
        assert_eq!(declared_width("tags"), None);
        assert_eq!(declared_width("additional_info"), None);
        assert!(sql::V1_USAGE_ROWS.sql.contains("quantity decimal(38, 12) NOT NULL"));
        assert_eq!(ROW_LIMITS.quantity_decimals, 12);
        assert_eq!(ROW_LIMITS.quantity_integer_digits, 38 - 12);
        assert_eq!(ROW_LIMITS.text_unit, TextUnit::Utf16);
    }

    #[test]
    fn a_row_the_limits_pass_is_accepted_by_the_stores_own_column_checks() {
        // The core's rule and the store's last-line checks agree at each boundary.
        let mut row = azs_core::check::probe_row();
        row.resource_uri = "é".repeat(ROW_LIMITS.resource_uri);
        row.quantity = "12345678901234567890123456.123456789012".parse().unwrap();
        assert_eq!(ROW_LIMITS.check(&row), Ok(()));
        assert_eq!(bind::too_long(&row), None);
        assert!(Quantity::new(row.quantity).is_ok());
        row.resource_uri.push('x');
        assert!(ROW_LIMITS.check(&row).is_err());
        assert!(bind::too_long(&row).is_some());
        row.resource_uri.pop();
        row.quantity = "0.0000000000001".parse().unwrap();
        assert!(ROW_LIMITS.check(&row).is_err());
        assert!(Quantity::new(row.quantity).is_err());
        row.quantity = "123456789012345678901234567".parse().unwrap();
        assert!(ROW_LIMITS.check(&row).is_err());
        assert!(Quantity::new(row.quantity).is_err());
    }

    fn commit_of(rows: Vec<UsageRow>) -> (StampId, Vec<UsageRow>) {
        (StampId("5f0c6f0e-8c1a-4d8e-9a51-0d6c1f1e2a3b".into()), rows)
    }

    #[test]
    fn a_window_is_sent_once_per_128_bit_key_in_key_order() {
        // Given a window with two rows that differ only in a field tenants control, and an exact
        // duplicate of one of them (repeated across a page boundary)
        let first = azs_core::check::probe_row();
        let mut second = first.clone();
        second.tags = Some("{\"owner\":\"someone else\"}".into());
        let (stamp, rows) = commit_of(vec![first.clone(), second.clone(), first.clone()]);
        let commit = WindowCommit {
            stamp: &stamp,
            window: ReportedWindow { start: first.usage_start, end: first.usage_end },
            lease_owner: "run",
            write: WindowWrite::Advance,
            rows,
            quarantined: Vec::new(),
        };

        // When the store prepares it
        let checked = checked_rows(&commit).unwrap();

        // Then each distinct row is sent once under its own full key, ordered like the clustered index
        let keys: Vec<_> = checked.iter().map(|r| r.key).collect();
        let mut expected = vec![first.key(), second.key()];
        expected.sort();
        assert_eq!(keys, expected);
        assert_ne!(first.key(), second.key());
        assert!(checked.iter().all(|r| r.key == r.row.key()));
    }

    #[test]
    fn a_window_is_sent_in_bounded_chunks_that_cover_every_row_once_and_an_empty_one_still_once() {
        let row = azs_core::check::probe_row();
        let checked: Vec<CheckedRow<'_>> = (0..12)
            .map(|_| CheckedRow { key: row.key(), row: &row, quantity: Quantity::new(row.quantity).unwrap() })
            .collect();
        let sizes: Vec<usize> = window_chunks(&checked, 5).map(<[_]>::len).collect();
        assert_eq!(sizes, [5, 5, 2]);
        let sizes: Vec<usize> = window_chunks(&checked[..0], 5).map(<[_]>::len).collect();
        assert_eq!(sizes, [0], "an empty window is one MERGE_WINDOW: it numbers the window");
        assert_eq!(window_chunks(&checked, 0).count(), 12, "a chunk holds at least one row");
        assert!((1_000..=10_000).contains(&WINDOW_CHUNK_ROWS));
    }

    #[test]
    fn a_windows_quarantine_is_sent_in_chunks_bounded_by_rows_and_bytes_each_key_once() {
        use azs_core::quarantine::Unrepresentable;
        let why = Unrepresentable { field: "properties.additionalInfo", rule: "too long".into() };
        let row = |i: usize, size: usize| {
            QuarantinedRow::new(format!("{{\"i\":{i},\"p\":\"{}\"}}", "x".repeat(size)), &why)
        };
        // Given seven rows of about 100 bytes (one of them twice) and one of 1,000,
        let mut quarantined: Vec<QuarantinedRow> = (0..7).map(|i| row(i, 100)).collect();
        quarantined.push(row(3, 100));
        quarantined.insert(4, row(99, 1_000));
        let overhead = why.field.len() + why.to_string().len();
        // when chunked by 3 rows or 400 bytes,
        let chunks = quarantine_chunks(&quarantined, 3, 400 + 3 * overhead);
        // then the large row goes alone, no chunk exceeds either bound, and every key is sent once.
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 1, 1, 3], "{sizes:?}");
        let sent: Vec<_> = chunks.iter().flatten().map(|q| q.key()).collect();
        let distinct: HashSet<_> = sent.iter().collect();
        assert_eq!(sent.len(), 8);
        assert_eq!(distinct.len(), 8, "the repeated row is sent once");
        assert!(quarantine_chunks(&[], 3, 400).is_empty(), "no quarantine, no statement");
        const { assert!(QUARANTINE_CHUNK_ROWS <= 1_000 && QUARANTINE_CHUNK_BYTES <= 16 << 20) };
    }
}
