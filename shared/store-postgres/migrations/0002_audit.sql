-- 0002: the audit trail of stamp and mapping changes (issue 24).
--
-- Each change writes its record in the change's own transaction. `position` orders the trail (the
-- cursor of `GET /audit`); `changes` is the JSON array of fields with old and new values (secret
-- fields only marked as changed), kept as text: jsonb would refuse a \u0000 a field may hold. No
-- foreign key to `stamps`: a removed stamp's history stays.
CREATE TABLE audit_records (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    at timestamptz NOT NULL,
    actor text NOT NULL,
    action text COLLATE "C" NOT NULL,
    stamp_id text COLLATE "C" NOT NULL,
    stamp_name text NOT NULL,
    subscription text COLLATE "C",
    changes text NOT NULL
);
CREATE INDEX audit_records_stamp ON audit_records (stamp_id, position);
CREATE INDEX audit_records_at ON audit_records (at);
