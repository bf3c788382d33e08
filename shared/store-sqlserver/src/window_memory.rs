//! A window's way to the wire, without a server: what `examples/window_memory.rs` measures. Not part of
//! the store's API.
//!
//! It runs the store's own preparation of a commit (`checked_rows`, the chunking, the JSON texts of each
//! MERGE_WINDOW and each QUARANTINE_WINDOW) and then encodes each chunk's parameters the way tiberius 0.13 encodes an RPC request
//! before its first packet is written: `Connection::send` (src/client/connection.rs) encodes the whole
//! request into one `BytesMut` that grows as it is written, and an `nvarchar(max)` string parameter is
//! written as PLP, one `put_u16_le` per UTF-16 unit (src/tds/codec/column_data.rs,
//! `ColumnData::String(Some(_))` with no type info). tiberius keeps that encoder private, so the loop
//! below is a copy of it into a `Vec<u8>` (BytesMut grows through `Vec::reserve`, the same doubling).

use crate::bind;
use crate::ledger::{checked_rows, quarantine_chunks, window_chunks};
use azs_core::ports::{WindowCommit, WindowWrite};
use azs_core::quarantine::QuarantinedRow;
use azs_core::stamp::StampId;
use azs_core::usage::UsageRow;
use azs_core::window::ReportedWindow;

/// What one window's encoding took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// MERGE_WINDOW requests (chunks) sent.
    pub requests: usize,
    /// QUARANTINE_WINDOW requests (chunks) sent.
    pub quarantine_requests: usize,
    /// The largest JSON text of the rows in one request, in bytes.
    pub largest_json: usize,
    /// The largest encoded request buffer of either kind (its capacity, what was allocated), in bytes.
    pub largest_request: usize,
}

/// How the window went out before chunking: one request, and its text copied once more on its way to
/// the encoder (`ToSql::to_sql` of an owned `ColumnData` is a clone; see `session::reborrow`).
/// The quarantine, too, went out as one request.
pub const BEFORE: Sending = Sending {
    chunk_rows: usize::MAX,
    quarantine_chunk_rows: usize::MAX,
    quarantine_chunk_bytes: usize::MAX,
    copies_text: true,
};
/// How it goes out now.
pub const NOW: Sending = Sending {
    chunk_rows: crate::WINDOW_CHUNK_ROWS,
    quarantine_chunk_rows: crate::QUARANTINE_CHUNK_ROWS,
    quarantine_chunk_bytes: crate::QUARANTINE_CHUNK_BYTES,
    copies_text: false,
};

/// How a window's rows and quarantined rows are handed to the encoder.
#[derive(Debug, Clone, Copy)]
pub struct Sending {
    pub chunk_rows: usize,
    pub quarantine_chunk_rows: usize,
    pub quarantine_chunk_bytes: usize,
    pub copies_text: bool,
}

/// Prepares and encodes `rows` and `quarantined` as one window's commit does when `sending`. Each
/// request's buffers are dropped before the next is built, as in the commit's loops.
pub fn encode_window(
    stamp: &StampId,
    window: ReportedWindow,
    rows: Vec<UsageRow>,
    quarantined: Vec<QuarantinedRow>,
    sending: Sending,
) -> Encoded {
    let commit =
        WindowCommit { stamp, window, lease_owner: "bench", write: WindowWrite::Advance, rows, quarantined };
    let checked = checked_rows(&commit).expect("the benchmark's rows fit the columns");
    let mut encoded = Encoded { requests: 0, quarantine_requests: 0, largest_json: 0, largest_request: 0 };
    for chunk in window_chunks(&checked, sending.chunk_rows) {
        let rows_json = bind::window_rows(chunk);
        let tenants_json = bind::window_tenants(chunk);
        let copy = sending.copies_text.then(|| rows_json.clone());
        let mut request = Vec::new();
        for text in [rows_json.as_str(), tenants_json.as_str(), "[]"] {
            put_plp_nvarchar(&mut request, text);
        }
        encoded.requests += 1;
        encoded.largest_json = encoded.largest_json.max(rows_json.len());
        encoded.largest_request = encoded.largest_request.max(request.capacity());
        drop(copy);
    }
    let quarantine =
        quarantine_chunks(&commit.quarantined, sending.quarantine_chunk_rows, sending.quarantine_chunk_bytes);
    for chunk in &quarantine {
        let json = bind::window_quarantine(chunk);
        let copy = sending.copies_text.then(|| json.clone());
        let mut request = Vec::new();
        put_plp_nvarchar(&mut request, &json);
        encoded.quarantine_requests += 1;
        encoded.largest_json = encoded.largest_json.max(json.len());
        encoded.largest_request = encoded.largest_request.max(request.capacity());
        drop(copy);
    }
    encoded
}

/// tiberius 0.13's encoding of an `nvarchar(max)` parameter value (type, max marker, collation, unknown
/// PLP length, one chunk of UTF-16 units, terminator).
fn put_plp_nvarchar(dst: &mut Vec<u8>, s: &str) {
    dst.push(0xE7);
    dst.extend_from_slice(&[0xff, 0xff]);
    dst.extend_from_slice(&[0; 5]);
    dst.extend_from_slice(&0xffff_ffff_ffff_fffe_u64.to_le_bytes());
    let len_pos = dst.len();
    dst.extend_from_slice(&0u32.to_le_bytes());
    let mut length = 0u32;
    for unit in s.encode_utf16() {
        length += 1;
        dst.extend_from_slice(&unit.to_le_bytes());
    }
    if length > 0 {
        dst.extend_from_slice(&0u32.to_le_bytes());
    }
    dst[len_pos..len_pos + 4].copy_from_slice(&(length * 2).to_le_bytes());
}
