-- 0009: the audit trail of stamp and mapping changes (issue 24).
--
-- Why: one all-powerful API role and no record of who changed which field of which stamp, so a PATCH
-- that re-pointed a stamp left no trace. Each change writes its record in the change's own
-- transaction. `position` orders the trail (the cursor of `GET /audit`); `at` is when (millis);
-- `changes` is the JSON array of fields with old and new values (secret fields only marked as
-- changed). No foreign key to `stamps`: a removed stamp's history stays.
CREATE TABLE audit_records (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    stamp_id TEXT NOT NULL,
    stamp_name TEXT NOT NULL,
    subscription TEXT,
    changes TEXT NOT NULL
);
CREATE INDEX audit_records_stamp ON audit_records (stamp_id, position);
CREATE INDEX audit_records_at ON audit_records (at);
