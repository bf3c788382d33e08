-- 0007: exact duplicate rows dropped, counted per stamp over all runs.
--
-- Why: a stamp that sends the same row twice in one window (a page boundary repeated, a retried page)
-- has the copy dropped by the row key; that used to be only logged, so nobody could tell a stamp that
-- repeats itself from a healthy one. Each run adds its window receipts' duplicates here.
ALTER TABLE processing_status ADD COLUMN duplicate_rows INTEGER NOT NULL DEFAULT 0;
