-- 0004: usage rows are keyed by 128 bits of SHA-256 over the canonical row (azs_core::usage::RowKey)
-- instead of a 64-bit XXH3 fingerprint.
--
-- Why: tenants control hashed fields (tags, resource names); a 64-bit non-cryptographic key can be made
-- to collide, and a collision silently dropped a real row as a duplicate. The key is two integers
-- (row_key: the first 8 bytes, row_key_low: the next 8, both big-endian signed) so that index entries
-- stay small integers (see 0001 for why that matters to insert speed).
--
-- Steps: this file drops the old unique index and adds the column; the migration's Rust step then
-- recomputes both halves for every stored row from its stored fields (which are exactly the fields the
-- key is computed over), and 0004_row_key_128_index.sql creates the new unique index. All of it runs in
-- the one migration transaction, so a database is either entirely on the old key or entirely on the new
-- one, and a window re-collected after the upgrade meets its own rows under the same keys: no doubles.
DROP INDEX usage_rows_key;
ALTER TABLE usage_rows ADD COLUMN row_key_low INTEGER NOT NULL DEFAULT 0;
