-- 0001: the schema, as the SQLite store's migrations 0001-0008 leave it, in PostgreSQL's terms.
--
-- Times are timestamptz (hour-grained domain times and instants alike). Keys and ids are text with
-- the "C" collation: they compare and sort byte by byte, as in SQLite, whatever the database's locale.
-- Quantities are numeric without a declared precision: every exact decimal the core reads fits, and its
-- scale is kept.

-- Every stamp id ever registered, numbered. Usage rows carry the number so that their key is small;
-- rows outlive their stamp, so this table is only ever inserted into.
CREATE TABLE stamp_numbers (
    stamp_no bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stamp_id text COLLATE "C" NOT NULL UNIQUE
);

-- One row per registered stamp and how to reach it. The *_key columns are the normalised forms that
-- make a second registration of the same stamp a duplicate.
CREATE TABLE stamps (
    id text COLLATE "C" PRIMARY KEY,
    stamp_no bigint NOT NULL UNIQUE REFERENCES stamp_numbers (stamp_no),
    name text COLLATE "C" NOT NULL,
    admin_subscription_id text NOT NULL,
    admin_subscription_key text COLLATE "C" NOT NULL,
    tenant_id text NOT NULL,
    application_id text NOT NULL,
    certificate_thumbprint text,
    admin_arm_endpoint text NOT NULL,
    admin_arm_endpoint_key text COLLATE "C" NOT NULL,
    token_request_resource_url text,
    authority_endpoint_url text,
    is_adfs boolean NOT NULL,
    ca_certificate_pem text,
    credential_secret_name text NOT NULL,
    enabled boolean NOT NULL,
    collect_from timestamptz NOT NULL,
    query_mode text NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (admin_arm_endpoint_key, admin_subscription_key)
);

-- A stamp's tenant subscription (normalised, lower case) and the subscription the billing system invoices.
CREATE TABLE subscription_mappings (
    stamp_id text COLLATE "C" NOT NULL REFERENCES stamps (id) ON DELETE CASCADE,
    external_subscription_id text COLLATE "C" NOT NULL,
    billing_subscription_id text COLLATE "C" NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (stamp_id, external_subscription_id)
);

-- Usage rows exactly as the API sent them, keyed by (stamp, reported window start, the row's 128-bit
-- key as two bigints: azs_core::usage::RowKey::halves). billing_subscription_id is set at write time
-- from the mapping, NULL while unmapped. No foreign key: stamp_numbers is never deleted from.
CREATE TABLE usage_rows (
    stamp_no bigint NOT NULL,
    reported_start timestamptz NOT NULL,
    reported_end timestamptz NOT NULL,
    row_key bigint NOT NULL,
    row_key_low bigint NOT NULL,
    subscription_id text NOT NULL,
    subscription_key text COLLATE "C" NOT NULL,
    billing_subscription_id text COLLATE "C",
    meter_id text NOT NULL,
    usage_start timestamptz NOT NULL,
    usage_end timestamptz NOT NULL,
    quantity numeric NOT NULL,
    resource_uri text NOT NULL,
    location text NOT NULL,
    tags text,
    additional_info text,
    PRIMARY KEY (stamp_no, reported_start, row_key, row_key_low)
);
-- Only unmapped rows: back-filling a new mapping and listing unmapped subscriptions read it.
CREATE INDEX usage_rows_unmapped ON usage_rows (stamp_no, subscription_key)
    WHERE billing_subscription_id IS NULL;

-- When each tenant subscription last had usage stored, per stamp (per-subscriber collection also asks
-- for subscriptions seen lately). Written with each window's rows, in the same transaction.
CREATE TABLE tenant_subscriptions (
    stamp_no bigint NOT NULL,
    subscription_key text COLLATE "C" NOT NULL,
    last_reported timestamptz NOT NULL,
    PRIMARY KEY (stamp_no, subscription_key)
);

-- Per stamp: how far usage is complete (watermark) and what the last run and verify did. Created with
-- the stamp, watermark = collect_from; only a window commit moves the watermark.
CREATE TABLE processing_status (
    stamp_id text COLLATE "C" PRIMARY KEY REFERENCES stamps (id) ON DELETE CASCADE,
    watermark timestamptz NOT NULL,
    last_run_started timestamptz,
    last_run_finished timestamptz,
    outcome text NOT NULL,
    rows_written bigint NOT NULL DEFAULT 0,
    unmapped_rows bigint NOT NULL DEFAULT 0,
    duplicate_rows bigint NOT NULL DEFAULT 0,
    last_error text,
    last_verified_at timestamptz,
    verified_from timestamptz,
    verified_to timestamptz,
    drift_missing bigint,
    drift_extra bigint,
    drift_changed bigint
);

-- One run works on a stamp at a time. The lease is named by the stamp alone and expires (server time).
CREATE TABLE stamp_leases (
    stamp_id text COLLATE "C" PRIMARY KEY REFERENCES stamps (id) ON DELETE CASCADE,
    owner text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Operators' reprocessing requests. Kept after the stamp is deleted, like its rows.
CREATE TABLE reprocess_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stamp_id text COLLATE "C" NOT NULL,
    range_start timestamptz NOT NULL,
    range_end timestamptz NOT NULL,
    reason text NOT NULL,
    requested_at timestamptz NOT NULL
);

-- A removed stamp's last watermark, so that registering it again resumes instead of collecting twice.
CREATE TABLE stamp_tombstones (
    admin_arm_endpoint_key text COLLATE "C" NOT NULL,
    admin_subscription_key text COLLATE "C" NOT NULL,
    stamp_id text COLLATE "C" NOT NULL,
    name text NOT NULL,
    watermark timestamptz NOT NULL,
    removed_at timestamptz NOT NULL,
    PRIMARY KEY (admin_arm_endpoint_key, admin_subscription_key)
);

-- Rows a stamp sent that the store cannot hold exactly, kept verbatim with the field and rule broken,
-- keyed like usage rows (the key is over the raw JSON). Entries outlive their stamp.
CREATE TABLE quarantined_rows (
    stamp_id text COLLATE "C" NOT NULL,
    reported_start timestamptz NOT NULL,
    reported_end timestamptz NOT NULL,
    row_key bigint NOT NULL,
    row_key_low bigint NOT NULL,
    field text NOT NULL,
    reason text NOT NULL,
    raw text NOT NULL,
    quarantined_at timestamptz NOT NULL,
    PRIMARY KEY (stamp_id, reported_start, row_key, row_key_low)
);
