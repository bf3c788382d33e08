-- 0002: number each stamp's tenant subscriptions, and index unmapped rows by that number.
--
-- Why: every row of a fresh installation is unmapped, and each went into usage_rows_unmapped under its
-- 36-character subscription key. Those entries are big (about 50 bytes) and land all over the index
-- (one key per tenant), so a window's inserts dirtied pages across an index that outgrows the page
-- cache: writing unmapped rows ran at half the speed of mapped ones. A tenant number makes the entry
-- two small integers (about 10 bytes), so the whole index stays in cache far longer.

-- Every (stamp, tenant subscription) ever written, numbered. Like stamp_numbers, only inserted into:
-- rows outlive mappings and stamps. subscription_key is the normalised (lower-case) form.
CREATE TABLE tenant_numbers (
    tenant_no INTEGER PRIMARY KEY,
    stamp_no INTEGER NOT NULL,
    subscription_key TEXT NOT NULL,
    UNIQUE (stamp_no, subscription_key)
);

INSERT INTO tenant_numbers (stamp_no, subscription_key)
    SELECT DISTINCT stamp_no, subscription_key FROM usage_rows ORDER BY stamp_no, subscription_key;

-- NULL only between this ALTER and the UPDATE below; every row written afterwards carries its number.
ALTER TABLE usage_rows ADD COLUMN tenant_no INTEGER;
UPDATE usage_rows SET tenant_no = (
    SELECT t.tenant_no FROM tenant_numbers t
    WHERE t.stamp_no = usage_rows.stamp_no AND t.subscription_key = usage_rows.subscription_key
);

-- The number implies the stamp, so it alone is the key. Still only unmapped rows are indexed.
DROP INDEX usage_rows_unmapped;
CREATE INDEX usage_rows_unmapped ON usage_rows (tenant_no) WHERE billing_subscription_id IS NULL;
