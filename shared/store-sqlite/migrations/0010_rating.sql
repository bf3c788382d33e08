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
