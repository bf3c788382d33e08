-- 0005: when each tenant subscription last had usage stored, per stamp.
--
-- Why: in per-subscriber mode a stamp is asked about each subscription on its current tenant list; a
-- subscription deleted from the list still has usage reported for its last hours. The collector also
-- asks for every subscription with usage in the last 35 days (azs_core::collect::SEEN_SUBSCRIPTIONS),
-- and reads them here instead of scanning weeks of usage rows on every run. Written with each window's
-- rows, in the same transaction.
ALTER TABLE tenant_numbers ADD COLUMN last_reported INTEGER;
UPDATE tenant_numbers SET last_reported = (
    SELECT max(u.reported_start) FROM usage_rows u WHERE u.tenant_no = tenant_numbers.tenant_no
);
CREATE INDEX tenant_numbers_last_reported ON tenant_numbers (stamp_no, last_reported);
