-- 0003: rating (issue 28): price book versions, assignments, statements, and every scheduled verify.
--
-- As in the SQLite store: a book version and a statement are read and written whole, never queried
-- inside, so they are documents in the core's own shapes (money as exact decimal strings, kept as
-- text like the audit's changes); columns hold only what is looked up by. The rules the core states
-- are kept by the database too: a stored version and a final statement are never updated or deleted
-- (the triggers), so no code path, present or future, can rewrite what an invoice was built from.
CREATE TABLE price_book_versions (
    book_id text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    currency text COLLATE "C" NOT NULL,
    minor_units bigint NOT NULL,
    effective_from timestamptz NOT NULL,
    body text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (book_id, version)
);

CREATE FUNCTION price_book_version_never_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a stored price book version is never edited or deleted'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER price_book_versions_never_change BEFORE UPDATE OR DELETE ON price_book_versions
    FOR EACH ROW EXECUTE FUNCTION price_book_version_never_changes();

-- billing_subscription_id '' is the default assignment.
CREATE TABLE rating_assignments (
    billing_subscription_id text COLLATE "C" NOT NULL,
    effective_from timestamptz NOT NULL,
    book_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (billing_subscription_id, effective_from)
);

CREATE TABLE statements (
    billing_subscription_id text COLLATE "C" NOT NULL,
    month text COLLATE "C" NOT NULL,
    state text NOT NULL CHECK (state IN ('draft', 'final')),
    body text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (billing_subscription_id, month)
);

CREATE INDEX statements_by_month ON statements (month, billing_subscription_id);

CREATE FUNCTION final_statement_never_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state = 'final' THEN
        RAISE EXCEPTION 'a final statement never changes and is never deleted'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER statements_final_never_change BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION final_statement_never_changes();

-- Every scheduled verify, kept: a statement is proven by the verifies that covered its month's last
-- reported hours, and the status row keeps only the latest. Filled by a trigger on the status row,
-- so the collector's `record_verified` stays one statement and no verify can be missed. No foreign
-- key: a removed stamp's verifies stay with the statements they proved.
CREATE TABLE verify_history (
    stamp_id text COLLATE "C" NOT NULL,
    verified_at timestamptz NOT NULL,
    verified_from timestamptz NOT NULL,
    verified_to timestamptz NOT NULL,
    drift_missing bigint NOT NULL,
    drift_extra bigint NOT NULL,
    drift_changed bigint NOT NULL,
    PRIMARY KEY (stamp_id, verified_at, verified_from)
);

INSERT INTO verify_history
SELECT stamp_id, last_verified_at, verified_from, verified_to, drift_missing, drift_extra, drift_changed
FROM processing_status
WHERE last_verified_at IS NOT NULL AND verified_from IS NOT NULL AND verified_to IS NOT NULL
    AND drift_missing IS NOT NULL AND drift_extra IS NOT NULL AND drift_changed IS NOT NULL;

CREATE FUNCTION processing_status_keeps_verify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO verify_history VALUES (NEW.stamp_id, NEW.last_verified_at, NEW.verified_from,
        NEW.verified_to, NEW.drift_missing, NEW.drift_extra, NEW.drift_changed)
    ON CONFLICT (stamp_id, verified_at, verified_from) DO UPDATE SET verified_to = excluded.verified_to,
        drift_missing = excluded.drift_missing, drift_extra = excluded.drift_extra,
        drift_changed = excluded.drift_changed;
    RETURN NULL;
END;
$$;

CREATE TRIGGER processing_status_keeps_verifies AFTER UPDATE OF last_verified_at ON processing_status
    FOR EACH ROW
    WHEN (NEW.last_verified_at IS NOT NULL AND NEW.verified_from IS NOT NULL AND NEW.verified_to IS NOT NULL
        AND NEW.drift_missing IS NOT NULL AND NEW.drift_extra IS NOT NULL AND NEW.drift_changed IS NOT NULL)
    EXECUTE FUNCTION processing_status_keeps_verify();
