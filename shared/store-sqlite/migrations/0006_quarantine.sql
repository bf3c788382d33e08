-- 0006: the quarantine: rows a stamp sent that the store cannot hold exactly, kept verbatim.
--
-- Why: one such row used to fail its window on every run, so the stamp stopped at that hour for good.
-- Now the row is kept here (the JSON the stamp sent, the field and the rule it broke) in the same
-- transaction as the rest of its window, and the watermark moves on (see azs_core::quarantine).
-- Keyed like usage rows: (stamp, reported window start, first 128 bits of SHA-256 over the raw JSON as
-- two integers), so pulling the same window again never stores a row twice. The stamp id is kept as
-- text (not stamp_numbers): the table stays small, and entries outlive their stamp like its rows.
CREATE TABLE quarantined_rows (
    stamp_id TEXT NOT NULL,
    reported_start INTEGER NOT NULL,
    reported_end INTEGER NOT NULL,
    row_key INTEGER NOT NULL,
    row_key_low INTEGER NOT NULL,
    field TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    quarantined_at INTEGER NOT NULL,
    PRIMARY KEY (stamp_id, reported_start, row_key, row_key_low)
) WITHOUT ROWID;
