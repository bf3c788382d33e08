-- 0004, after every row's key is recomputed: the unique key over the full 128 bits.
CREATE UNIQUE INDEX usage_rows_key ON usage_rows (stamp_no, reported_start, row_key, row_key_low);
