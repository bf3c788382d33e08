-- 0010: rating (issue 28): price book versions, assignments, statements.
--
-- Why documents: a book version and a statement are read and written whole, never queried inside,
-- and their shapes are the core's (`BookVersion::to_json`, `Statement::to_json`, money as exact
-- decimal strings); columns hold only what is looked up by. The rules the core states are kept here
-- too: a stored version and a final statement are never updated or deleted (the triggers), so no
-- code path, present or future, can rewrite what an invoice was built from.
CREATE TABLE price_book_versions (
    book_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    currency TEXT NOT NULL,
    minor_units INTEGER NOT NULL,
    effective_from INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (book_id, version)
) WITHOUT ROWID;

CREATE TRIGGER price_book_versions_never_change BEFORE UPDATE ON price_book_versions
BEGIN
    SELECT RAISE(ABORT, 'a stored price book version is never edited');
END;

CREATE TRIGGER price_book_versions_never_go BEFORE DELETE ON price_book_versions
BEGIN
    SELECT RAISE(ABORT, 'a stored price book version is never deleted');
END;

-- billing_subscription_id '' is the default assignment.
CREATE TABLE rating_assignments (
    billing_subscription_id TEXT NOT NULL,
    effective_from INTEGER NOT NULL,
    book_id TEXT NOT NULL,
    PRIMARY KEY (billing_subscription_id, effective_from)
) WITHOUT ROWID;

CREATE TABLE statements (
    billing_subscription_id TEXT NOT NULL,
    month TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('draft', 'final')),
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (billing_subscription_id, month)
) WITHOUT ROWID;

CREATE INDEX statements_by_month ON statements (month, billing_subscription_id);

CREATE TRIGGER statements_final_never_change BEFORE UPDATE ON statements WHEN OLD.state = 'final'
BEGIN
    SELECT RAISE(ABORT, 'a final statement never changes');
END;

CREATE TRIGGER statements_final_never_go BEFORE DELETE ON statements WHEN OLD.state = 'final'
BEGIN
    SELECT RAISE(ABORT, 'a final statement is never deleted');
END;

-- Every scheduled verify, kept: a statement is proven by the verifies that covered its month's last
-- reported hours, and the status row keeps only the latest. Filled by a trigger on the status row,
-- so the collector's `record_verified` stays one statement and no verify can be missed. Times as the
-- status row has them: `verified_at` in milliseconds, the range in seconds. No foreign key: a removed
-- stamp's verifies stay with the statements they proved.
CREATE TABLE verify_history (
    stamp_id TEXT NOT NULL,
    verified_at INTEGER NOT NULL,
    verified_from INTEGER NOT NULL,
    verified_to INTEGER NOT NULL,
    drift_missing INTEGER NOT NULL,
    drift_extra INTEGER NOT NULL,
    drift_changed INTEGER NOT NULL,
    PRIMARY KEY (stamp_id, verified_at, verified_from)
) WITHOUT ROWID;

INSERT INTO verify_history
SELECT stamp_id, last_verified_at, verified_from, verified_to, drift_missing, drift_extra, drift_changed
FROM processing_status
WHERE last_verified_at IS NOT NULL AND verified_from IS NOT NULL AND verified_to IS NOT NULL
    AND drift_missing IS NOT NULL AND drift_extra IS NOT NULL AND drift_changed IS NOT NULL;

CREATE TRIGGER processing_status_keeps_verifies AFTER UPDATE OF last_verified_at ON processing_status
WHEN NEW.last_verified_at IS NOT NULL AND NEW.verified_from IS NOT NULL AND NEW.verified_to IS NOT NULL
    AND NEW.drift_missing IS NOT NULL AND NEW.drift_extra IS NOT NULL AND NEW.drift_changed IS NOT NULL
BEGIN
    INSERT OR REPLACE INTO verify_history VALUES (NEW.stamp_id, NEW.last_verified_at, NEW.verified_from,
        NEW.verified_to, NEW.drift_missing, NEW.drift_extra, NEW.drift_changed);
END;
