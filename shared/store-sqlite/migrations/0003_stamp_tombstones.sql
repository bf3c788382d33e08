-- 0003: a removed stamp leaves a tombstone with its last watermark.
--
-- Why: removing a stamp and registering it again (same admin ARM endpoint and admin subscription) gave
-- it a new id, a new stamp number and a watermark back at collectFrom, so every hour already collected
-- was stored a second time. A registration that finds the tombstone takes the old id (and so the old
-- stamp number and rows) back and resumes at the tombstone's watermark. Keyed like the stamps' own
-- uniqueness: at most one tombstone per stamp identity; registering consumes it.
CREATE TABLE stamp_tombstones (
    admin_arm_endpoint_key TEXT NOT NULL,
    admin_subscription_key TEXT NOT NULL,
    stamp_id TEXT NOT NULL,
    name TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    removed_at INTEGER NOT NULL,
    PRIMARY KEY (admin_arm_endpoint_key, admin_subscription_key)
) WITHOUT ROWID;
