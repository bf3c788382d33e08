//! Every T-SQL statement this store sends, as constants, so that tests can check them without a server
//! (see `tests` below): each parses with sqlparser's MsSql dialect (or is on [`UNPARSEABLE`] with the
//! reason), and each declares how many `@Pn` parameters it takes, which `bind.rs` must supply.
//!
//! The only text ever spliced into a statement is `{schema}`, replaced by the validated, bracketed schema
//! name ([`crate::SchemaName`]); every value travels as a parameter.
//!
//! Column types: hour-grained domain times (collect_from, watermark, reported and usage start/end) are
//! `datetime2(0)` UTC; instants (created_at, updated_at, run start/finish, lease expiry, requested_at) are
//! `datetime2(3)` UTC, the millisecond precision the SQLite store keeps, so both stores return the same
//! values. Quantities are `decimal(38, 12)` plus the scale the API sent them with (see `types.rs`).

/// One statement and the number of distinct `@Pn` parameters it takes.
#[derive(Debug)]
pub(crate) struct Statement {
    pub name: &'static str,
    pub sql: &'static str,
    pub params: usize,
}

macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident ($params:literal) = $sql:literal;)*) => {
        $( $(#[$doc])* pub(crate) const $name: Statement =
            Statement { name: stringify!($name), sql: $sql, params: $params }; )*
        /// Every statement, for the static checks.
        #[cfg_attr(not(test), allow(dead_code))]
        pub(crate) const ALL: &[&Statement] = &[$(&$name),*];
    };
}

/// Statements sqlparser cannot parse, and why. They are still checked for their parameter count.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const UNPARSEABLE: &[(&str, &str)] = &[(
    "APPLOCK_ACQUIRE",
    "sqlparser 0.64 does not parse `EXEC @result = procedure` (a procedure's return code into a variable); \
     sp_getapplock reports whether it granted the lock only through that return code",
)];

statements! {
    // -- Session -------------------------------------------------------------------------------------

    /// Sent as its own batch on every new connection, so it holds for the whole session whatever the
    /// login, the driver or the server's `user options` set:
    /// - the seven SET options SQL Server requires for every write to a table with a filtered index
    ///   (`ix_usage_rows_unmapped`) and for creating one; a wrong one fails the INSERT/UPDATE/MERGE with
    ///   Msg 1934. tiberius's login sets the ODBC flag (ANSI_DEFAULTS-like behaviour) but leaves
    ///   ARITHABORT OFF, and relying on compatibility level >= 90 making ANSI_WARNINGS imply it is
    ///   relying on the database (<https://learn.microsoft.com/sql/relational-databases/indexes/create-filtered-indexes>,
    ///   "Required SET options for filtered indexes");
    /// - any error rolls the whole transaction back on the server, even if the client is gone;
    /// - row counts are reported (fences and leases are decided by them);
    /// - READ COMMITTED (the snapshot flavour where RCSI is on), not whatever a pooled predecessor set.
    SESSION_OPTIONS (0) = "SET ANSI_NULLS ON; SET ANSI_PADDING ON; SET ANSI_WARNINGS ON; SET ARITHABORT ON;
        SET CONCAT_NULL_YIELDS_NULL ON; SET QUOTED_IDENTIFIER ON; SET NUMERIC_ROUNDABORT OFF;
        SET XACT_ABORT ON; SET NOCOUNT OFF; SET IMPLICIT_TRANSACTIONS OFF;
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED";
    BEGIN (0) = "BEGIN TRANSACTION";
    COMMIT (0) = "COMMIT TRANSACTION";
    ROLLBACK (0) = "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION";
    PING (0) = "SELECT 1 AS ok";

    // -- db check (read-only; the trial commit reuses the store's own statements and is rolled back) ---

    CHECK_SERVER (0) = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS product_version,
        CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition,
        CAST(SERVERPROPERTY('EngineEdition') AS int) AS engine_edition,
        DB_NAME() AS database_name";
    /// The current database's collation and tempdb's (temp objects take tempdb's), its compatibility
    /// level (OPENJSON needs 130) and its row-versioning settings; found by name, as START_CHECKS.
    CHECK_DATABASE (0) = "SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Collation') AS nvarchar(128)) AS db_collation,
        CAST(DATABASEPROPERTYEX('tempdb', 'Collation') AS nvarchar(128)) AS tempdb_collation,
        CAST(d.compatibility_level AS int) AS compatibility_level,
        CAST(d.is_read_committed_snapshot_on AS int) AS rcsi,
        CAST(d.snapshot_isolation_state AS int) AS snapshot_state
        FROM sys.databases AS d WHERE d.name = DB_NAME()";
    /// The seven index SET options as this session has them (1 = ON).
    CHECK_SESSION_OPTIONS (0) = "SELECT CAST(SESSIONPROPERTY('ANSI_NULLS') AS int) AS ansi_nulls,
        CAST(SESSIONPROPERTY('ANSI_PADDING') AS int) AS ansi_padding,
        CAST(SESSIONPROPERTY('ANSI_WARNINGS') AS int) AS ansi_warnings,
        CAST(SESSIONPROPERTY('ARITHABORT') AS int) AS arithabort,
        CAST(SESSIONPROPERTY('CONCAT_NULL_YIELDS_NULL') AS int) AS concat_null_yields_null,
        CAST(SESSIONPROPERTY('QUOTED_IDENTIFIER') AS int) AS quoted_identifier,
        CAST(SESSIONPROPERTY('NUMERIC_ROUNDABORT') AS int) AS numeric_roundabort";
    /// What the login may do: create tables and schemas (to migrate), and read and write the schema @P1.
    CHECK_PERMISSIONS (1) = "SELECT HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE TABLE') AS create_table,
        HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE SCHEMA') AS create_schema,
        HAS_PERMS_BY_NAME(@P1, 'SCHEMA', 'ALTER') AS alter_schema,
        HAS_PERMS_BY_NAME(@P1, 'SCHEMA', 'SELECT') AS select_rows,
        HAS_PERMS_BY_NAME(@P1, 'SCHEMA', 'INSERT') AS insert_rows,
        HAS_PERMS_BY_NAME(@P1, 'SCHEMA', 'UPDATE') AS update_rows,
        HAS_PERMS_BY_NAME(@P1, 'SCHEMA', 'DELETE') AS delete_rows";

    // -- db smoke (each risky construct once, inside a transaction that is rolled back) -------------

    /// A 128-bit key as 32 hex digits (@P1) back to its 16 bytes, as MERGE_WINDOW converts row keys.
    SMOKE_CONVERT_KEY (1) = "SELECT CONVERT(binary(16), @P1, 2) AS row_key";
    /// A window's JSON (@P1, as `bind::window_rows` writes it) shredded with MERGE_WINDOW's conversions.
    SMOKE_OPENJSON (1) = "SELECT CONVERT(binary(16), r.row_key, 2) AS row_key, r.usage_start, r.usage_end,
            r.quantity, r.quantity_scale, r.additional_info
        FROM OPENJSON(@P1) WITH (
            row_key nvarchar(max) '$.k',
            usage_start datetime2(0) '$.us',
            usage_end datetime2(0) '$.ue',
            quantity decimal(38, 12) '$.q',
            quantity_scale tinyint '$.qs',
            additional_info nvarchar(max) '$.a'
        ) AS r";

    /// `db smoke`, in a scratch schema: an edit of a final statement past the store's own guard
    /// (UPDATE_STATEMENT skips final rows), so that only tr_statements_final_never_change stands in
    /// its way. An UPDATE that changes nothing still fires the trigger with the row in `deleted`.
    SMOKE_EDIT_FINAL (1) = "UPDATE {schema}.statements SET body = body WHERE billing_subscription_id = @P1";
    /// The transactions open on the session: 0 after an error with XACT_ABORT ON.
    SMOKE_TRANCOUNT (0) = "SELECT @@TRANCOUNT AS open_transactions";

    // -- Migrations ----------------------------------------------------------------------------------

    /// Exclusive, owned by the session (so it survives the migrations' own transactions), waiting at
    /// most @P2 ms. Returns sp_getapplock's code: >= 0 granted, -1 timeout, -2 cancelled, -3 deadlock.
    APPLOCK_ACQUIRE (2) = "DECLARE @result int;
        EXEC @result = sp_getapplock @Resource = @P1, @LockMode = 'Exclusive', @LockOwner = 'Session',
            @LockTimeout = @P2;
        SELECT @result AS result";
    APPLOCK_RELEASE (1) = "EXEC sp_releaseapplock @Resource = @P1, @LockOwner = 'Session'";
    /// What every start requires of the database: row versioning for reads (RCSI), which an export
    /// needs to see each stamp's rows as of one moment while a reprocess replaces some of them, and a
    /// compatibility level of 130 or more, below which OPENJSON (every window's write) is refused. Found
    /// by name: on Azure SQL Database DB_ID() need not equal sys.databases.database_id (that view's ids
    /// are unique per logical server, DB_ID's per database or elastic pool), and the database a
    /// session is connected to always has its row there
    /// (<https://learn.microsoft.com/sql/t-sql/functions/db-id-transact-sql>).
    /// The database's name comes along: a start on a system database is refused.
    START_CHECKS (0) = "SELECT CAST(d.is_read_committed_snapshot_on AS int) AS rcsi,
        CAST(d.compatibility_level AS int) AS compatibility_level,
        CAST(DB_NAME() AS nvarchar(128)) AS database_name
        FROM sys.databases AS d WHERE d.name = DB_NAME()";
    SCHEMA_ID (1) = "SELECT SCHEMA_ID(@P1) AS schema_id";
    /// Alone in its batch, as T-SQL requires.
    CREATE_SCHEMA (0) = "CREATE SCHEMA {schema}";
    TABLE_ID (1) = "SELECT OBJECT_ID(@P1, N'U') AS object_id";
    CREATE_MIGRATIONS_TABLE (0) = "CREATE TABLE {schema}.schema_migrations (
        version int NOT NULL,
        name nvarchar(128) NOT NULL,
        applied_at datetime2(3) NOT NULL,
        CONSTRAINT pk_schema_migrations PRIMARY KEY (version)
    )";
    SCHEMA_VERSION (0) = "SELECT COALESCE(MAX(version), 0) AS version FROM {schema}.schema_migrations";
    RECORD_MIGRATION (2) = "INSERT INTO {schema}.schema_migrations (version, name, applied_at)
        VALUES (@P1, @P2, SYSUTCDATETIME())";

    // -- Migration 1: the initial schema (mirrors the SQLite store's 0001_initial.sql) -----------------

    /// The seed's Config.Connections. tenant_id is NULL for an AD FS stamp's literal tenant `adfs`;
    /// admin_arm_endpoint_key is the normalised endpoint that, with the admin subscription, makes a
    /// second registration of the same stamp a duplicate.
    V1_STAMPS (0) = "CREATE TABLE {schema}.stamps (
        id uniqueidentifier NOT NULL,
        name nvarchar(256) NOT NULL,
        admin_subscription_id uniqueidentifier NOT NULL,
        tenant_id uniqueidentifier NULL,
        application_id uniqueidentifier NOT NULL,
        certificate_thumbprint nvarchar(64) NULL,
        admin_arm_endpoint nvarchar(400) NOT NULL,
        admin_arm_endpoint_key nvarchar(400) NOT NULL,
        token_request_resource_url nvarchar(1000) NULL,
        authority_endpoint_url nvarchar(1000) NULL,
        is_adfs bit NOT NULL,
        ca_certificate_pem nvarchar(max) NULL,
        credential_secret_name nvarchar(400) NOT NULL,
        enabled bit NOT NULL,
        collect_from datetime2(0) NOT NULL,
        query_mode nvarchar(32) NOT NULL,
        created_at datetime2(3) NOT NULL,
        CONSTRAINT pk_stamps PRIMARY KEY (id),
        CONSTRAINT uq_stamps_endpoint_subscription UNIQUE (admin_arm_endpoint_key, admin_subscription_id),
        CONSTRAINT ck_stamps_tenant CHECK (tenant_id IS NOT NULL OR is_adfs = 1)
    )";
    /// A removed stamp's last watermark, keyed like the stamps' own uniqueness (normalised admin ARM
    /// endpoint, admin subscription): at most one per stamp identity. Registering the same stamp again
    /// takes its old id (so its number and rows) back, resumes at this watermark and consumes the
    /// tombstone, so no hour is collected twice (the SQLite store's 0003_stamp_tombstones.sql). No
    /// foreign key: the stamp it names is gone.
    V1_STAMP_TOMBSTONES (0) = "CREATE TABLE {schema}.stamp_tombstones (
        admin_arm_endpoint_key nvarchar(400) NOT NULL,
        admin_subscription_id uniqueidentifier NOT NULL,
        stamp_id uniqueidentifier NOT NULL,
        name nvarchar(256) NOT NULL,
        watermark datetime2(0) NOT NULL,
        removed_at datetime2(3) NOT NULL,
        CONSTRAINT pk_stamp_tombstones PRIMARY KEY (admin_arm_endpoint_key, admin_subscription_id)
    )";
    /// The seed's [dbo].[SubscriptionMapper]; external_subscription_id is normalised (lower-case).
    V1_SUBSCRIPTION_MAPPINGS (0) = "CREATE TABLE {schema}.subscription_mappings (
        stamp_id uniqueidentifier NOT NULL,
        external_subscription_id nvarchar(256) NOT NULL,
        billing_subscription_id nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
        updated_at datetime2(3) NOT NULL,
        CONSTRAINT pk_subscription_mappings PRIMARY KEY (stamp_id, external_subscription_id),
        CONSTRAINT fk_subscription_mappings_stamp FOREIGN KEY (stamp_id)
            REFERENCES {schema}.stamps (id) ON DELETE CASCADE
    )";
    /// Every stamp ever registered, numbered: usage_rows and the tables below carry the 4-byte number
    /// instead of the 16-byte GUID in every key. Only inserted into (like the SQLite store's
    /// stamp_numbers): rows outlive their stamp, and a stamp registered again keeps its number.
    V1_STAMP_NUMBERS (0) = "CREATE TABLE {schema}.stamp_numbers (
        stamp_no int IDENTITY(1, 1) NOT NULL,
        stamp_id uniqueidentifier NOT NULL,
        CONSTRAINT pk_stamp_numbers PRIMARY KEY (stamp_no),
        CONSTRAINT uq_stamp_numbers_id UNIQUE (stamp_id)
    )";
    /// Every (stamp, tenant subscription) ever written, numbered, as in the SQLite store's migrations
    /// 0002 and 0005: the unmapped index is keyed by this number alone (it implies the stamp), and
    /// last_reported (the latest reported window with usage of the subscription) answers "subscriptions
    /// seen in the last 35 days" without scanning weeks of rows. subscription_key is the normalised
    /// (lower-case) form mappings join on. Only inserted into and updated.
    V1_TENANT_NUMBERS (0) = "CREATE TABLE {schema}.tenant_numbers (
        tenant_no int IDENTITY(1, 1) NOT NULL,
        stamp_no int NOT NULL,
        subscription_key nvarchar(256) NOT NULL,
        last_reported datetime2(0) NULL,
        CONSTRAINT pk_tenant_numbers PRIMARY KEY (tenant_no),
        CONSTRAINT uq_tenant_numbers_key UNIQUE (stamp_no, subscription_key),
        CONSTRAINT fk_tenant_numbers_stamp FOREIGN KEY (stamp_no) REFERENCES {schema}.stamp_numbers (stamp_no)
    )";
    /// Every reported window a stamp committed, numbered in the order windows were first committed.
    /// usage_rows is clustered on (window_no, row_key): a window's rows are appended at the end of the
    /// table (a new window has the highest number) instead of at one insertion point per stamp in its
    /// middle, and one stamp's rows of an hour are still contiguous, found through uq_usage_windows (see
    /// the store README, "Key layout"). A replaced window keeps its number.
    V1_USAGE_WINDOWS (0) = "CREATE TABLE {schema}.usage_windows (
        window_no bigint IDENTITY(1, 1) NOT NULL,
        stamp_no int NOT NULL,
        reported_start datetime2(0) NOT NULL,
        reported_end datetime2(0) NOT NULL,
        CONSTRAINT pk_usage_windows PRIMARY KEY (window_no),
        CONSTRAINT uq_usage_windows UNIQUE (stamp_no, reported_start),
        CONSTRAINT fk_usage_windows_stamp FOREIGN KEY (stamp_no) REFERENCES {schema}.stamp_numbers (stamp_no)
    )";
    /// Usage rows as the API sent them, keyed by (window, row key): the window gives the stamp and the
    /// reported window (its start is copied into the row, never changed after, for the billing
    /// index's key), the row key is the 128-bit azs_core::usage::RowKey (first 16 bytes of
    /// SHA-256 over the canonical row), binary(16). External subscription ids are kept as sent
    /// (nvarchar: not guaranteed to be GUIDs); tenant_no gives the normalised form mappings join on.
    /// No foreign keys (a check per inserted row; the commit writes both sides): rows outlive their
    /// stamp, whose number stays.
    V1_USAGE_ROWS (0) = "CREATE TABLE {schema}.usage_rows (
        window_no bigint NOT NULL,
        row_key binary(16) NOT NULL,
        reported_start datetime2(0) NOT NULL,
        tenant_no int NOT NULL,
        subscription_id nvarchar(256) NOT NULL,
        billing_subscription_id nvarchar(256) COLLATE Latin1_General_100_BIN2 NULL,
        meter_id nvarchar(128) NOT NULL,
        usage_start datetime2(0) NOT NULL,
        usage_end datetime2(0) NOT NULL,
        quantity decimal(38, 12) NOT NULL,
        quantity_scale tinyint NOT NULL,
        resource_uri nvarchar(4000) NOT NULL,
        location nvarchar(256) NOT NULL,
        tags nvarchar(max) NULL,
        additional_info nvarchar(max) NULL,
        CONSTRAINT pk_usage_rows PRIMARY KEY CLUSTERED (window_no, row_key)
    )";
    /// A 40,000-row window's MERGE is one statement taking about 40,000 key locks on usage_rows (and as
    /// many on its unmapped index while rows are unmapped); from 5,000 locks on one table or index SQL
    /// Server 2019/2022 tries to escalate to an exclusive TABLE lock, held until the commit, which makes
    /// every other stamp's commit (and the webhook's back-fills) wait for this one: concurrent stamps
    /// serialised behind the largest window. (Exports do not wait: under RCSI readers take no shared
    /// locks.) Disabled for this table: the row locks of one window cost a few MB of lock memory
    /// instead. Azure SQL's optimized locking makes the question moot there.
    V1_USAGE_ROWS_LOCK_ESCALATION (0) = "ALTER TABLE {schema}.usage_rows SET (LOCK_ESCALATION = DISABLE)";
    /// Only unmapped rows, by tenant number (which implies the stamp): back-filling a new mapping and
    /// listing unmapped subscriptions read it. An entry is about 40 bytes (the 4-byte number, the
    /// clustered key's 24, two datetime2(0)) instead of about 130 (a GUID, a 36-character nvarchar key
    /// and the old 30-byte clustered key), so more of the index stays in memory.
    V1_USAGE_ROWS_UNMAPPED (0) = "CREATE INDEX ix_usage_rows_unmapped
        ON {schema}.usage_rows (tenant_no) INCLUDE (usage_start, usage_end)
        WHERE billing_subscription_id IS NULL";
    /// Only mapped rows, by billing subscription: a statement reads one billing subscription's rows
    /// (`BILLING_ROWS`), and the timer builds one for each. Without it every statement scanned every
    /// stamp's windows of the month. Keyed on the row's reported start next (its window's, copied
    /// into the row for this key), so a month is one range of the index, not the subscription's whole
    /// history, then the window number. Covering (every column BILLING_ROWS reads from the row is
    /// included): without it each row was a key lookup into the clustered index, where it lies among
    /// every other subscription's rows of its window, which on SQLite made a 2,000-subscription
    /// statement pass 20.1 s against 7.7-9.0 s covered (the same change, migration 0012 there).
    /// `(max)` columns may be included columns, not key columns.
    V1_USAGE_ROWS_BILLING (0) = "CREATE INDEX ix_usage_rows_billing
        ON {schema}.usage_rows (billing_subscription_id, reported_start, window_no)
        INCLUDE (subscription_id, meter_id, usage_start, usage_end, quantity, quantity_scale,
            resource_uri, location, tags, additional_info)
        WHERE billing_subscription_id IS NOT NULL";
    /// The seed's AzsHubUsageRecordProcessingStatusData; born with the stamp, watermark = collect_from.
    V1_PROCESSING_STATUS (0) = "CREATE TABLE {schema}.processing_status (
        stamp_id uniqueidentifier NOT NULL,
        watermark datetime2(0) NOT NULL,
        last_run_started datetime2(3) NULL,
        last_run_finished datetime2(3) NULL,
        outcome nvarchar(32) NOT NULL,
        rows_written bigint NOT NULL,
        unmapped_rows bigint NOT NULL,
        last_error nvarchar(max) NULL,
        duplicate_rows bigint NOT NULL CONSTRAINT df_processing_status_duplicate_rows DEFAULT 0,
        last_verified_at datetime2(3) NULL,
        verified_from datetime2(0) NULL,
        verified_to datetime2(0) NULL,
        drift_missing bigint NULL,
        drift_extra bigint NULL,
        drift_changed bigint NULL,
        CONSTRAINT pk_processing_status PRIMARY KEY (stamp_id),
        CONSTRAINT fk_processing_status_stamp FOREIGN KEY (stamp_id)
            REFERENCES {schema}.stamps (id) ON DELETE CASCADE
    )";
    /// Named by the stamp alone, never by a window or watermark; expires on the server's clock.
    V1_STAMP_LEASES (0) = "CREATE TABLE {schema}.stamp_leases (
        stamp_id uniqueidentifier NOT NULL,
        owner nvarchar(256) NOT NULL,
        expires_at datetime2(3) NOT NULL,
        CONSTRAINT pk_stamp_leases PRIMARY KEY (stamp_id),
        CONSTRAINT fk_stamp_leases_stamp FOREIGN KEY (stamp_id)
            REFERENCES {schema}.stamps (id) ON DELETE CASCADE
    )";
    /// Operators' reprocessing requests; kept after the stamp is deleted, like its rows.
    /// Rows a stamp sent that usage_rows cannot hold exactly, kept verbatim (see azs_core::quarantine),
    /// written in the same transaction as their window. Keyed like usage rows: (stamp, reported window
    /// start, the first 128 bits of SHA-256 over the raw JSON), clustered in the order windows append.
    /// No foreign key: entries outlive their stamp, like its rows.
    V1_QUARANTINED_ROWS (0) = "CREATE TABLE {schema}.quarantined_rows (
        stamp_id uniqueidentifier NOT NULL,
        reported_start datetime2(0) NOT NULL,
        row_key binary(16) NOT NULL,
        reported_end datetime2(0) NOT NULL,
        field nvarchar(256) NOT NULL,
        reason nvarchar(max) NOT NULL,
        raw nvarchar(max) NOT NULL,
        quarantined_at datetime2(3) NOT NULL,
        CONSTRAINT pk_quarantined_rows PRIMARY KEY (stamp_id, reported_start, row_key)
    )";
    V1_REPROCESS_LOG (0) = "CREATE TABLE {schema}.reprocess_log (
        id bigint IDENTITY(1, 1) NOT NULL,
        stamp_id uniqueidentifier NOT NULL,
        range_start datetime2(0) NOT NULL,
        range_end datetime2(0) NOT NULL,
        reason nvarchar(max) NOT NULL,
        requested_at datetime2(3) NOT NULL,
        CONSTRAINT pk_reprocess_log PRIMARY KEY (id)
    )";

    /// Who changed which stamp or mapping, when, and which fields from what to what (the SQLite store's
    /// 0009_audit.sql): written in the change's own transaction. `position` orders the trail (the
    /// cursor of `GET /audit`); `changes` is the JSON array of field changes (secret fields only marked
    /// as changed). No foreign key: a removed stamp's history stays. `actor` is 512 wide: the core
    /// keeps 256 characters of an identity, and each may be two UTF-16 units.
    V1_AUDIT_RECORDS (0) = "CREATE TABLE {schema}.audit_records (
        position bigint IDENTITY(1, 1) NOT NULL,
        id uniqueidentifier NOT NULL,
        at datetime2(3) NOT NULL,
        actor nvarchar(512) NOT NULL,
        action nvarchar(32) NOT NULL,
        stamp_id uniqueidentifier NOT NULL,
        stamp_name nvarchar(256) NOT NULL,
        subscription nvarchar(256) NULL,
        changes nvarchar(max) NOT NULL,
        CONSTRAINT pk_audit_records PRIMARY KEY (position),
        CONSTRAINT uq_audit_records_id UNIQUE (id)
    )";
    V1_AUDIT_RECORDS_STAMP (0) = "CREATE INDEX ix_audit_records_stamp ON {schema}.audit_records (stamp_id, position)";

    // -- Rating (issue 28): price book versions, assignments, statements, every scheduled verify ----
    // As in the SQLite store (0010_rating.sql): a version and a statement are documents in the core's
    // shapes, read and written whole; columns hold only what is looked up by, in a binary collation so
    // ids order as the other stores order them. The never-edit rules are kept by triggers too, so no
    // code path, present or future, can rewrite what an invoice was built from.

    V1_PRICE_BOOK_VERSIONS (0) = "CREATE TABLE {schema}.price_book_versions (
        book_id nvarchar(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
        version bigint NOT NULL,
        currency nvarchar(16) COLLATE Latin1_General_100_BIN2 NOT NULL,
        minor_units int NOT NULL,
        effective_from datetime2(0) NOT NULL,
        body nvarchar(max) NOT NULL,
        created_at datetime2(3) NOT NULL,
        CONSTRAINT pk_price_book_versions PRIMARY KEY (book_id, version)
    )";
    V1_PRICE_BOOK_VERSIONS_NEVER_CHANGE (0) = "CREATE TRIGGER {schema}.tr_price_book_versions_never_change
        ON {schema}.price_book_versions AFTER UPDATE, DELETE AS
        BEGIN
            SET NOCOUNT ON;
            IF EXISTS (SELECT 1 FROM deleted)
                THROW 51000, 'a stored price book version is never edited or deleted', 1;
        END";
    /// billing_subscription_id '' is the default assignment.
    V1_RATING_ASSIGNMENTS (0) = "CREATE TABLE {schema}.rating_assignments (
        billing_subscription_id nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
        effective_from datetime2(0) NOT NULL,
        book_id nvarchar(128) COLLATE Latin1_General_100_BIN2 NOT NULL,
        CONSTRAINT pk_rating_assignments PRIMARY KEY (billing_subscription_id, effective_from)
    )";
    V1_STATEMENTS (0) = "CREATE TABLE {schema}.statements (
        billing_subscription_id nvarchar(256) COLLATE Latin1_General_100_BIN2 NOT NULL,
        month nvarchar(7) COLLATE Latin1_General_100_BIN2 NOT NULL,
        state nvarchar(8) NOT NULL CONSTRAINT ck_statements_state CHECK (state IN (N'draft', N'final')),
        body nvarchar(max) NOT NULL,
        updated_at datetime2(3) NOT NULL,
        CONSTRAINT pk_statements PRIMARY KEY (billing_subscription_id, month)
    )";
    V1_STATEMENTS_BY_MONTH (0) = "CREATE INDEX ix_statements_by_month ON {schema}.statements (month, billing_subscription_id)";
    V1_STATEMENTS_FINAL_NEVER_CHANGE (0) = "CREATE TRIGGER {schema}.tr_statements_final_never_change
        ON {schema}.statements AFTER UPDATE, DELETE AS
        BEGIN
            SET NOCOUNT ON;
            IF EXISTS (SELECT 1 FROM deleted WHERE state = N'final')
                THROW 51000, 'a final statement never changes and is never deleted', 1;
        END";
    /// Every scheduled verify, kept (the status row keeps only the latest): filled by the trigger
    /// below, so `record_verified` stays one statement and no verify can be missed. No foreign key: a
    /// removed stamp's verifies stay with the statements they proved.
    V1_VERIFY_HISTORY (0) = "CREATE TABLE {schema}.verify_history (
        stamp_id uniqueidentifier NOT NULL,
        verified_at datetime2(3) NOT NULL,
        verified_from datetime2(0) NOT NULL,
        verified_to datetime2(0) NOT NULL,
        drift_missing bigint NOT NULL,
        drift_extra bigint NOT NULL,
        drift_changed bigint NOT NULL,
        CONSTRAINT pk_verify_history PRIMARY KEY (stamp_id, verified_at, verified_from)
    )";
    /// NOCOUNT inside: the store decides fences by the row counts of its own statements.
    V1_PROCESSING_STATUS_KEEPS_VERIFIES (0) = "CREATE TRIGGER {schema}.tr_processing_status_keeps_verifies
        ON {schema}.processing_status AFTER UPDATE AS
        BEGIN
            SET NOCOUNT ON;
            IF UPDATE(last_verified_at)
            BEGIN
                DELETE h FROM {schema}.verify_history AS h
                    JOIN inserted AS i ON h.stamp_id = i.stamp_id AND h.verified_at = i.last_verified_at
                        AND h.verified_from = i.verified_from;
                INSERT INTO {schema}.verify_history (stamp_id, verified_at, verified_from, verified_to,
                        drift_missing, drift_extra, drift_changed)
                    SELECT stamp_id, last_verified_at, verified_from, verified_to, drift_missing, drift_extra,
                        drift_changed
                    FROM inserted
                    WHERE last_verified_at IS NOT NULL AND verified_from IS NOT NULL AND verified_to IS NOT NULL
                        AND drift_missing IS NOT NULL AND drift_extra IS NOT NULL AND drift_changed IS NOT NULL;
            END;
        END";

    // -- Dropping the schema (tests, and an operator's uninstall) -------------------------------------

    DROP_STAMP_LEASES (0) = "DROP TABLE IF EXISTS {schema}.stamp_leases";
    DROP_PROCESSING_STATUS (0) = "DROP TABLE IF EXISTS {schema}.processing_status";
    DROP_SUBSCRIPTION_MAPPINGS (0) = "DROP TABLE IF EXISTS {schema}.subscription_mappings";
    DROP_USAGE_ROWS (0) = "DROP TABLE IF EXISTS {schema}.usage_rows";
    DROP_USAGE_WINDOWS (0) = "DROP TABLE IF EXISTS {schema}.usage_windows";
    DROP_TENANT_NUMBERS (0) = "DROP TABLE IF EXISTS {schema}.tenant_numbers";
    DROP_STAMP_NUMBERS (0) = "DROP TABLE IF EXISTS {schema}.stamp_numbers";
    DROP_QUARANTINED_ROWS (0) = "DROP TABLE IF EXISTS {schema}.quarantined_rows";
    DROP_REPROCESS_LOG (0) = "DROP TABLE IF EXISTS {schema}.reprocess_log";
    DROP_AUDIT_RECORDS (0) = "DROP TABLE IF EXISTS {schema}.audit_records";
    DROP_PRICE_BOOK_VERSIONS (0) = "DROP TABLE IF EXISTS {schema}.price_book_versions";
    DROP_RATING_ASSIGNMENTS (0) = "DROP TABLE IF EXISTS {schema}.rating_assignments";
    DROP_STATEMENTS (0) = "DROP TABLE IF EXISTS {schema}.statements";
    DROP_VERIFY_HISTORY (0) = "DROP TABLE IF EXISTS {schema}.verify_history";
    DROP_STAMPS (0) = "DROP TABLE IF EXISTS {schema}.stamps";
    DROP_STAMP_TOMBSTONES (0) = "DROP TABLE IF EXISTS {schema}.stamp_tombstones";
    DROP_MIGRATIONS_TABLE (0) = "DROP TABLE IF EXISTS {schema}.schema_migrations";
    DROP_SCHEMA (0) = "DROP SCHEMA IF EXISTS {schema}";

    // -- Rating ----------------------------------------------------------------------------------------

    /// Before a book's versions are compared and added, in their transaction: importers take turns
    /// (imports are rare), so two of one book never both find a version missing.
    LOCK_PRICE_BOOKS (0) = "SELECT TOP (1) book_id FROM {schema}.price_book_versions WITH (TABLOCKX, HOLDLOCK)";
    BOOK_CURRENCY (1) = "SELECT TOP (1) currency FROM {schema}.price_book_versions WHERE book_id = @P1";
    BOOK_VERSION_BODY (2) = "SELECT body FROM {schema}.price_book_versions WHERE book_id = @P1 AND version = @P2";
    INSERT_BOOK_VERSION (7) = "INSERT INTO {schema}.price_book_versions
            (book_id, version, currency, minor_units, effective_from, body, created_at)
        VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7)";
    LIST_BOOK_VERSIONS (0) = "SELECT book_id, currency, minor_units, body FROM {schema}.price_book_versions
        ORDER BY book_id, effective_from";
    /// Locked until the transaction ends, so the UPDATE or INSERT after it cannot race another.
    ASSIGNMENT_EXISTS (2) = "SELECT book_id FROM {schema}.rating_assignments WITH (UPDLOCK, HOLDLOCK)
        WHERE billing_subscription_id = @P1 AND effective_from = @P2";
    UPDATE_ASSIGNMENT (3) = "UPDATE {schema}.rating_assignments SET book_id = @P3
        WHERE billing_subscription_id = @P1 AND effective_from = @P2";
    INSERT_ASSIGNMENT (3) = "INSERT INTO {schema}.rating_assignments (billing_subscription_id, effective_from, book_id)
        VALUES (@P1, @P2, @P3)";
    LIST_ASSIGNMENTS (0) = "SELECT billing_subscription_id, effective_from, book_id FROM {schema}.rating_assignments
        ORDER BY billing_subscription_id, effective_from";
    /// Locked until the transaction ends, as ASSIGNMENT_EXISTS.
    STATEMENT_STATE (2) = "SELECT state FROM {schema}.statements WITH (UPDLOCK, HOLDLOCK)
        WHERE billing_subscription_id = @P1 AND month = @P2";
    /// Never a final one (the WHERE, and the trigger behind it).
    UPDATE_STATEMENT (5) = "UPDATE {schema}.statements SET state = @P3, body = @P4, updated_at = @P5
        WHERE billing_subscription_id = @P1 AND month = @P2 AND state <> N'final'";
    INSERT_STATEMENT (5) = "INSERT INTO {schema}.statements (billing_subscription_id, month, state, body, updated_at)
        VALUES (@P1, @P2, @P3, @P4, @P5)";
    GET_STATEMENT (2) = "SELECT body FROM {schema}.statements WHERE billing_subscription_id = @P1 AND month = @P2";
    LIST_STATEMENTS (1) = "SELECT body FROM {schema}.statements WHERE @P1 IS NULL OR month = @P1
        ORDER BY billing_subscription_id, month";
    /// A page of month @P1 after billing subscription @P2 (N'' from the first: every id follows it),
    /// at most @P3: a seek on ix_statements_by_month. The column's Latin1_General_100_BIN2 decides
    /// both the comparison and the order (the parameter takes the column's collation), so ids
    /// compare by code point, as on the other stores.
    STATEMENTS_PAGE (3) = "SELECT TOP (@P3) body FROM {schema}.statements
        WHERE month = @P1 AND billing_subscription_id > @P2
        ORDER BY billing_subscription_id";
    FINAL_STATEMENTS (1) = "SELECT body FROM {schema}.statements
        WHERE billing_subscription_id = @P1 AND state = N'final' ORDER BY month";
    VERIFY_HISTORY (3) = "SELECT verified_at, verified_from, verified_to, drift_missing, drift_extra, drift_changed
        FROM {schema}.verify_history
        WHERE stamp_id = @P1 AND verified_from < @P3 AND verified_to > @P2
        ORDER BY verified_at, verified_from";

    // -- Stamps --------------------------------------------------------------------------------------

    /// The stamp (other than @P3) registered with this endpoint and admin subscription. UPDLOCK +
    /// HOLDLOCK keep the answer true until the transaction ends (a concurrent registration waits).
    STAMP_REGISTERED_AS (3) = "SELECT id FROM {schema}.stamps WITH (UPDLOCK, HOLDLOCK)
        WHERE admin_arm_endpoint_key = @P1 AND admin_subscription_id = @P2 AND (@P3 IS NULL OR id <> @P3)";
    INSERT_STAMP (17) = "INSERT INTO {schema}.stamps (id, name, admin_subscription_id, tenant_id,
            application_id, certificate_thumbprint, admin_arm_endpoint, admin_arm_endpoint_key,
            token_request_resource_url, authority_endpoint_url, is_adfs, ca_certificate_pem,
            credential_secret_name, enabled, collect_from, query_mode, created_at)
        VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10, @P11, @P12, @P13, @P14, @P15, @P16, @P17)";
    /// The stamp's number, once: a stamp registered again (after a delete) keeps the number its rows
    /// carry. Two registrations of one id racing: the unique constraint lets one win (the other fails
    /// on the stamps primary key anyway).
    NUMBER_STAMP (1) = "INSERT INTO {schema}.stamp_numbers (stamp_id)
        SELECT @P1 WHERE NOT EXISTS (SELECT 1 FROM {schema}.stamp_numbers WHERE stamp_id = @P1)";
    /// Collection starts at collect_from: the status row is the watermark, born with the stamp.
    INSERT_STATUS (2) = "INSERT INTO {schema}.processing_status
            (stamp_id, watermark, outcome, rows_written, unmapped_rows)
        VALUES (@P1, @P2, N'pending', 0, 0)";
    /// created_at (registration time) and the watermark (progress) never change here.
    UPDATE_STAMP (16) = "UPDATE {schema}.stamps SET name = @P2, admin_subscription_id = @P3,
            tenant_id = @P4, application_id = @P5, certificate_thumbprint = @P6, admin_arm_endpoint = @P7,
            admin_arm_endpoint_key = @P8, token_request_resource_url = @P9, authority_endpoint_url = @P10,
            is_adfs = @P11, ca_certificate_pem = @P12, credential_secret_name = @P13, enabled = @P14,
            collect_from = @P15, query_mode = @P16
        WHERE id = @P1";
    /// Before DELETE_STAMP, in its transaction: the stamp's identity and watermark become its tombstone
    /// (@P2: when), replacing an older tombstone of the same identity. UPDLOCK + HOLDLOCK on the stamp
    /// row: a concurrent removal of the same stamp waits, then finds no stamp and leaves nothing. The
    /// same on the status row: under READ_COMMITTED_SNAPSHOT an unlocked read would see the watermark
    /// before a window commit in flight, and a re-registration would collect that window again; locked,
    /// the removal waits for the commit and keeps its watermark (a later commit is fenced off: no status
    /// row). Lock order stamps, then processing_status; commit_window never locks stamps.
    LEAVE_TOMBSTONE (2) = "MERGE INTO {schema}.stamp_tombstones AS t
        USING (SELECT s.admin_arm_endpoint_key, s.admin_subscription_id, s.id, s.name, p.watermark
            FROM {schema}.stamps AS s WITH (UPDLOCK, HOLDLOCK)
            JOIN {schema}.processing_status AS p WITH (UPDLOCK, HOLDLOCK) ON p.stamp_id = s.id
            WHERE s.id = @P1) AS src
        ON t.admin_arm_endpoint_key = src.admin_arm_endpoint_key
            AND t.admin_subscription_id = src.admin_subscription_id
        WHEN MATCHED THEN
            UPDATE SET stamp_id = src.id, name = src.name, watermark = src.watermark, removed_at = @P2
        WHEN NOT MATCHED BY TARGET THEN
            INSERT (admin_arm_endpoint_key, admin_subscription_id, stamp_id, name, watermark, removed_at)
            VALUES (src.admin_arm_endpoint_key, src.admin_subscription_id, src.id, src.name, src.watermark, @P2);";
    /// Status, lease and mappings go with it (ON DELETE CASCADE); usage rows stay.
    DELETE_STAMP (1) = "DELETE FROM {schema}.stamps WHERE id = @P1";
    /// The tombstone of a removed stamp with this normalised endpoint (@P1) and admin subscription (@P2).
    TOMBSTONE (2) = "SELECT stamp_id, name, watermark, removed_at FROM {schema}.stamp_tombstones
        WHERE admin_arm_endpoint_key = @P1 AND admin_subscription_id = @P2";
    /// In INSERT_STAMP's transaction: a registration of a removed stamp consumes its tombstone (the
    /// registrar resumed from it).
    CONSUME_TOMBSTONE (2) = "DELETE FROM {schema}.stamp_tombstones
        WHERE admin_arm_endpoint_key = @P1 AND admin_subscription_id = @P2";
    GET_STAMP (1) = "SELECT id, name, admin_subscription_id, tenant_id, application_id,
            certificate_thumbprint, admin_arm_endpoint, token_request_resource_url, authority_endpoint_url,
            is_adfs, ca_certificate_pem, credential_secret_name, enabled, collect_from, query_mode, created_at
        FROM {schema}.stamps WHERE id = @P1";
    LIST_STAMPS (0) = "SELECT id, name, admin_subscription_id, tenant_id, application_id,
            certificate_thumbprint, admin_arm_endpoint, token_request_resource_url, authority_endpoint_url,
            is_adfs, ca_certificate_pem, credential_secret_name, enabled, collect_from, query_mode, created_at
        FROM {schema}.stamps";

    /// GET_STAMP inside a change's transaction, locked until it ends: the audit record's old values are
    /// the ones the change replaces.
    GET_STAMP_LOCKED (1) = "SELECT id, name, admin_subscription_id, tenant_id, application_id,
            certificate_thumbprint, admin_arm_endpoint, token_request_resource_url, authority_endpoint_url,
            is_adfs, ca_certificate_pem, credential_secret_name, enabled, collect_from, query_mode, created_at
        FROM {schema}.stamps WITH (UPDLOCK, HOLDLOCK) WHERE id = @P1";

    // -- Audit ---------------------------------------------------------------------------------------

    /// Before INSERT_AUDIT, in its transaction: the table locked exclusively until the transaction
    /// ends, so writers take turns and positions (IDENTITY) become visible in the order they were
    /// drawn: a reader paging by position never passes one that commits later. Readers (RCSI) do not
    /// wait; changes to stamps and mappings are rare.
    LOCK_AUDIT (0) = "SELECT TOP (1) position FROM {schema}.audit_records WITH (TABLOCKX, HOLDLOCK)";
    INSERT_AUDIT (8) = "INSERT INTO {schema}.audit_records
            (id, at, actor, action, stamp_id, stamp_name, subscription, changes)
        VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8)";
    /// Oldest first from after position @P3, at most @P4, of stamp @P1 (all when NULL) and at or after
    /// @P2 (all when NULL).
    LIST_AUDIT (4) = "SELECT TOP (@P4) position, id, at, actor, action, stamp_id, stamp_name, subscription,
            changes
        FROM {schema}.audit_records
        WHERE (@P1 IS NULL OR stamp_id = @P1) AND (@P2 IS NULL OR at >= @P2) AND position > @P3
        ORDER BY position";

    // -- Processing status ---------------------------------------------------------------------------

    /// The quarantine count is read, not kept: a seek on the quarantine's primary key.
    GET_STATUS (1) = "SELECT p.stamp_id, p.watermark, p.last_run_started, p.last_run_finished, p.outcome,
            p.rows_written, p.unmapped_rows, p.last_error,
            (SELECT COUNT_BIG(*) FROM {schema}.quarantined_rows AS q WHERE q.stamp_id = p.stamp_id) AS quarantined_rows,
            p.duplicate_rows, p.last_verified_at, p.verified_from, p.verified_to, p.drift_missing,
            p.drift_extra, p.drift_changed
        FROM {schema}.processing_status AS p WHERE p.stamp_id = @P1";
    LIST_STATUSES (0) = "SELECT p.stamp_id, p.watermark, p.last_run_started, p.last_run_finished, p.outcome,
            p.rows_written, p.unmapped_rows, p.last_error,
            (SELECT COUNT_BIG(*) FROM {schema}.quarantined_rows AS q WHERE q.stamp_id = p.stamp_id) AS quarantined_rows,
            p.duplicate_rows, p.last_verified_at, p.verified_from, p.verified_to, p.drift_missing,
            p.drift_extra, p.drift_changed
        FROM {schema}.processing_status AS p";
    RUN_STARTED (3) = "UPDATE {schema}.processing_status SET last_run_started = @P2, outcome = @P3
        WHERE stamp_id = @P1";
    /// The scheduled verify's outcome replaces the previous one.
    RECORD_VERIFIED (7) = "UPDATE {schema}.processing_status SET last_verified_at = @P2, verified_from = @P3,
            verified_to = @P4, drift_missing = @P5, drift_extra = @P6, drift_changed = @P7
        WHERE stamp_id = @P1";
    /// duplicate_rows accumulates over runs (@P7: the run's exact duplicates dropped).
    RUN_FINISHED (7) = "UPDATE {schema}.processing_status SET last_run_finished = @P2, outcome = @P3,
            rows_written = @P4, unmapped_rows = @P5, last_error = @P6, duplicate_rows = duplicate_rows + @P7
        WHERE stamp_id = @P1";

    // -- Leases --------------------------------------------------------------------------------------

    /// Takes over the stamp's lease row if it is ours or expired: one atomic conditional write.
    LEASE_TAKE_OVER (3) = "UPDATE {schema}.stamp_leases
        SET owner = @P2, expires_at = DATEADD(millisecond, @P3, SYSUTCDATETIME())
        WHERE stamp_id = @P1 AND (owner = @P2 OR expires_at < SYSUTCDATETIME())";
    /// Creates the lease row when there is none; of two racing creators the primary key lets one win.
    LEASE_CREATE (3) = "INSERT INTO {schema}.stamp_leases (stamp_id, owner, expires_at)
        SELECT @P1, @P2, DATEADD(millisecond, @P3, SYSUTCDATETIME())
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.stamp_leases WHERE stamp_id = @P1)";
    LEASE_RENEW (3) = "UPDATE {schema}.stamp_leases SET expires_at = DATEADD(millisecond, @P3, SYSUTCDATETIME())
        WHERE stamp_id = @P1 AND owner = @P2";
    LEASE_RELEASE (2) = "DELETE FROM {schema}.stamp_leases WHERE stamp_id = @P1 AND owner = @P2";

    // -- Mappings ------------------------------------------------------------------------------------

    /// Locks the stamp's status row until the transaction ends. commit_window updates the same row
    /// first thing, so a mapping and a window commit of one stamp never interleave: either the window's
    /// rows see the new mapping, or the back-fill sees the window's rows (under RCSI too).
    LOCK_STAMP (1) = "SELECT stamp_id FROM {schema}.processing_status WITH (UPDLOCK, HOLDLOCK)
        WHERE stamp_id = @P1";
    /// No HOLDLOCK needed: LOCK_STAMP already serialises every writer of this stamp's mappings.
    UPSERT_MAPPING (4) = "MERGE INTO {schema}.subscription_mappings AS t
        USING (SELECT @P1 AS stamp_id, @P2 AS external_subscription_id) AS s
        ON t.stamp_id = s.stamp_id AND t.external_subscription_id = s.external_subscription_id
        WHEN MATCHED THEN UPDATE SET billing_subscription_id = @P3, updated_at = @P4
        WHEN NOT MATCHED BY TARGET THEN
            INSERT (stamp_id, external_subscription_id, billing_subscription_id, updated_at)
            VALUES (@P1, @P2, @P3, @P4);";
    /// Only rows still unmapped: rows already mapped keep the subscription they were invoiced under.
    /// A seek on the unmapped index by the stamp's tenant number for @P2.
    BACK_FILL (3) = "UPDATE {schema}.usage_rows SET billing_subscription_id = @P3
        WHERE billing_subscription_id IS NULL AND tenant_no = (
            SELECT t.tenant_no FROM {schema}.tenant_numbers AS t
            JOIN {schema}.stamp_numbers AS sn ON sn.stamp_no = t.stamp_no
            WHERE sn.stamp_id = @P1 AND t.subscription_key = @P2)";
    /// The billing subscription a tenant subscription maps to now, and the stamp's name (for the audit
    /// record); read after LOCK_STAMP, which keeps it true until the transaction ends.
    CURRENT_MAPPING (2) = "SELECT m.billing_subscription_id, s.name
        FROM {schema}.subscription_mappings AS m JOIN {schema}.stamps AS s ON s.id = m.stamp_id
        WHERE m.stamp_id = @P1 AND m.external_subscription_id = @P2";
    STAMP_NAME (1) = "SELECT name FROM {schema}.stamps WHERE id = @P1";
    REMOVE_MAPPING (2) = "DELETE FROM {schema}.subscription_mappings
        WHERE stamp_id = @P1 AND external_subscription_id = @P2";
    LIST_MAPPINGS (1) = "SELECT stamp_id, external_subscription_id, billing_subscription_id, updated_at
        FROM {schema}.subscription_mappings WHERE @P1 IS NULL OR stamp_id = @P1";
    /// Registered stamps only: a deleted stamp's rows stay, but there is nothing left to map them to.
    /// Read from the unmapped index alone (tenant_no, usage times), grouped by tenant number.
    UNMAPPED (1) = "SELECT s.id, t.subscription_key, COUNT_BIG(*) AS row_count,
            MIN(u.usage_start) AS first_usage, MAX(u.usage_end) AS last_usage
        FROM {schema}.stamps AS s
        JOIN {schema}.stamp_numbers AS sn ON sn.stamp_id = s.id
        JOIN {schema}.tenant_numbers AS t ON t.stamp_no = sn.stamp_no
        JOIN {schema}.usage_rows AS u ON u.tenant_no = t.tenant_no
        WHERE u.billing_subscription_id IS NULL AND (@P1 IS NULL OR s.id = @P1)
        GROUP BY s.id, t.subscription_key";

    // -- Usage ledger --------------------------------------------------------------------------------

    /// The tenant subscriptions with usage in reported windows since @P2 (per-subscriber collection
    /// asks for them beside the stamp's list): the stamp's tenant numbers, not weeks of rows.
    SUBSCRIPTIONS_SEEN (2) = "SELECT t.subscription_key
        FROM {schema}.tenant_numbers AS t JOIN {schema}.stamp_numbers AS sn ON sn.stamp_no = t.stamp_no
        WHERE sn.stamp_id = @P1 AND t.last_reported >= @P2";

    /// Advance: the window must start at the watermark and the lease must be ours; the watermark moves
    /// to the window's end. Row count 0 means fenced off. UPDLOCK because under READ_COMMITTED_SNAPSHOT
    /// a plain read of the lease sees its last committed version and locks nothing: another runner's
    /// take-over could commit between this check and ours; with the lock it waits for our commit.
    FENCE_ADVANCE (4) = "UPDATE {schema}.processing_status SET watermark = @P3
        WHERE stamp_id = @P1 AND watermark = @P2
            AND EXISTS (SELECT 1 FROM {schema}.stamp_leases AS l WITH (UPDLOCK)
                WHERE l.stamp_id = @P1 AND l.owner = @P4)";
    /// Replace: the window must end at or before the watermark and the lease must be ours; the
    /// watermark stays (the no-op update locks the status row, and UPDLOCK the lease, as in
    /// FENCE_ADVANCE).
    FENCE_REPLACE (3) = "UPDATE {schema}.processing_status SET watermark = watermark
        WHERE stamp_id = @P1 AND watermark >= @P2
            AND EXISTS (SELECT 1 FROM {schema}.stamp_leases AS l WITH (UPDLOCK)
                WHERE l.stamp_id = @P1 AND l.owner = @P3)";
    /// Why a fence refused: the watermark and the lease as they are.
    FENCE_STATE (1) = "SELECT p.watermark, l.owner
        FROM {schema}.processing_status AS p
        LEFT JOIN {schema}.stamp_leases AS l ON l.stamp_id = p.stamp_id
        WHERE p.stamp_id = @P1";
    /// Replace (without remap), before the old rows go: the billing subscription each tenant
    /// subscription's mapped rows carry in the window (the greatest, should edits have left two), so
    /// that the new rows keep it (MERGE_WINDOW's @P6).
    WINDOW_BILLED (3) = "SELECT tn.subscription_key, MAX(u.billing_subscription_id) AS billing_subscription_id
        FROM {schema}.usage_windows AS w
        JOIN {schema}.stamp_numbers AS sn ON sn.stamp_no = w.stamp_no
        JOIN {schema}.usage_rows AS u ON u.window_no = w.window_no
        JOIN {schema}.tenant_numbers AS tn ON tn.tenant_no = u.tenant_no
        WHERE sn.stamp_id = @P1 AND w.reported_start >= @P2 AND w.reported_start < @P3
            AND u.billing_subscription_id IS NOT NULL
        GROUP BY tn.subscription_key";
    /// Replace: the window's old rows go, in the same transaction as the new ones come (the windows'
    /// numbers stay; the new rows take the freed key range).
    DELETE_WINDOW (3) = "DELETE FROM {schema}.usage_rows
        WHERE window_no IN (SELECT w.window_no FROM {schema}.usage_windows AS w
            JOIN {schema}.stamp_numbers AS sn ON sn.stamp_no = w.stamp_no
            WHERE sn.stamp_id = @P1 AND w.reported_start >= @P2 AND w.reported_start < @P3)";
    /// The window's rows into the ledger, sent as nvarchar(max) JSON parameters (@P4, see
    /// `bind::window_rows`) of at most `WINDOW_CHUNK_ROWS` rows, this batch once per chunk in the
    /// commit's one transaction (a window in one piece peaked at hundreds of MB in the client, see the
    /// README, "Window memory"), and shredded here with OPENJSON: no bulk-load metadata to get wrong
    /// (tiberius declares a bulk column from the value's length, not the table's), no 2,100-parameter
    /// limit, a handful of round trips per large window. Every statement of the batch can run again for
    /// the same window: the window's and tenants' numbers are found or made, rows already there are
    /// left alone. Every value is a JSON string converted exactly: the 128-bit row key as 32 hex digits
    /// (CONVERT style 2, no 0x), quantities by the WITH clause's decimal, times as ISO 8601. Text
    /// columns are read as nvarchar(max), so a value too long for its column fails the INSERT (Msg 2628,
    /// ANSI_WARNINGS ON) instead of being cut short; the store refuses such a row before sending it
    /// anyway, naming stamp, window and field. OPENJSON's text takes the database's collation; the joins
    /// say so explicitly (COLLATE DATABASE_DEFAULT) so a restored database whose collation differs from
    /// the server's cannot fail with Msg 468.
    ///
    /// In order, inside the commit's transaction (the fence already serialises this stamp's writers):
    /// the stamp's number; the window's number (a new one, the highest, the first time the window is
    /// committed; one committed again with another end, i.e. replaced by a differently sized window,
    /// takes the new end, so its new rows export with the end they were written under); the tenant
    /// numbers of @P5 (the window's distinct subscription keys, a small JSON
    /// array of `{"n": key}`) created or their last_reported moved to this window; then the MERGE:
    /// rows already stored (same window, same row key) are left alone, new ones are mapped here, in
    /// SQL. Returns how many rows were written and how many of those had no mapping.
    ///
    /// A new row's billing subscription is @P6's for its tenant subscription if there is one (a JSON
    /// array of `{"n": key, "b": billing}`: what the subscription was billed under in the window before
    /// a reprocess replaced it, see WINDOW_BILLED; `[]` otherwise), else the current mapping's.
    MERGE_WINDOW (6) = "DECLARE @stamp_no int = (SELECT stamp_no FROM {schema}.stamp_numbers WHERE stamp_id = @P1);
        INSERT INTO {schema}.usage_windows (stamp_no, reported_start, reported_end)
            SELECT @stamp_no, @P2, @P3
            WHERE NOT EXISTS (SELECT 1 FROM {schema}.usage_windows
                WHERE stamp_no = @stamp_no AND reported_start = @P2);
        DECLARE @window_no bigint = (SELECT window_no FROM {schema}.usage_windows
            WHERE stamp_no = @stamp_no AND reported_start = @P2);
        UPDATE {schema}.usage_windows SET reported_end = @P3 WHERE window_no = @window_no AND reported_end <> @P3;
        MERGE INTO {schema}.tenant_numbers AS t
        USING (SELECT DISTINCT k.subscription_key
            FROM OPENJSON(@P5) WITH (subscription_key nvarchar(256) '$.n') AS k) AS src
        ON t.stamp_no = @stamp_no AND t.subscription_key = src.subscription_key COLLATE DATABASE_DEFAULT
        WHEN MATCHED AND (t.last_reported IS NULL OR t.last_reported < @P2) THEN
            UPDATE SET last_reported = @P2
        WHEN NOT MATCHED BY TARGET THEN
            INSERT (stamp_no, subscription_key, last_reported) VALUES (@stamp_no, src.subscription_key, @P2);
        DECLARE @written TABLE (unmapped bit NOT NULL);
        MERGE INTO {schema}.usage_rows AS t
        USING (
            SELECT CONVERT(binary(16), r.row_key, 2) AS row_key, tn.tenant_no, r.subscription_id,
                COALESCE(kept.b COLLATE Latin1_General_100_BIN2, m.billing_subscription_id) AS billing_subscription_id, r.meter_id,
                r.usage_start, r.usage_end, r.quantity,
                r.quantity_scale, r.resource_uri, r.location, r.tags, r.additional_info
            FROM OPENJSON(@P4) WITH (
                row_key nvarchar(max) '$.k',
                subscription_id nvarchar(max) '$.s',
                subscription_key nvarchar(256) '$.n',
                meter_id nvarchar(max) '$.m',
                usage_start datetime2(0) '$.us',
                usage_end datetime2(0) '$.ue',
                quantity decimal(38, 12) '$.q',
                quantity_scale tinyint '$.qs',
                resource_uri nvarchar(max) '$.r',
                location nvarchar(max) '$.l',
                tags nvarchar(max) '$.t',
                additional_info nvarchar(max) '$.a'
            ) AS r
            JOIN {schema}.tenant_numbers AS tn
                ON tn.stamp_no = @stamp_no AND tn.subscription_key = r.subscription_key COLLATE DATABASE_DEFAULT
            LEFT JOIN {schema}.subscription_mappings AS m
                ON m.stamp_id = @P1 AND m.external_subscription_id = r.subscription_key COLLATE DATABASE_DEFAULT
            LEFT JOIN OPENJSON(@P6) WITH (
                n nvarchar(256) '$.n',
                b nvarchar(max) '$.b'
            ) AS kept ON kept.n = r.subscription_key COLLATE DATABASE_DEFAULT
        ) AS src
        ON t.window_no = @window_no AND t.row_key = src.row_key
        WHEN NOT MATCHED BY TARGET THEN
            INSERT (window_no, row_key, reported_start, tenant_no, subscription_id, billing_subscription_id,
                meter_id, usage_start, usage_end, quantity, quantity_scale, resource_uri, location, tags,
                additional_info)
            VALUES (@window_no, src.row_key, @P2, src.tenant_no, src.subscription_id, src.billing_subscription_id,
                src.meter_id, src.usage_start, src.usage_end, src.quantity, src.quantity_scale,
                src.resource_uri, src.location, src.tags, src.additional_info)
        OUTPUT CASE WHEN inserted.billing_subscription_id IS NULL THEN 1 ELSE 0 END INTO @written (unmapped);
        SELECT COUNT_BIG(*) AS rows_written, COALESCE(SUM(CAST(unmapped AS bigint)), 0) AS unmapped_rows
        FROM @written";
    /// Replace: the window's quarantine goes with its rows; the re-pull decides what is held back.
    DELETE_WINDOW_QUARANTINE (3) = "DELETE FROM {schema}.quarantined_rows
        WHERE stamp_id = @P1 AND reported_start >= @P2 AND reported_start < @P3";
    /// The window's quarantined rows, in the commit's transaction, as ONE nvarchar(max) JSON parameter
    /// (@P4, see `bind::window_quarantine`) shredded with OPENJSON like MERGE_WINDOW's rows; keys arrive
    /// as 32 hex digits (style 2: no 0x). A row already quarantined for the window is left alone, so a
    /// re-pull never stores it twice. The row count is how many were new.
    QUARANTINE_WINDOW (4) = "INSERT INTO {schema}.quarantined_rows
            (stamp_id, reported_start, row_key, reported_end, field, reason, raw, quarantined_at)
        SELECT @P1, @P2, CONVERT(binary(16), q.k, 2), @P3, q.field, q.reason, q.raw, SYSUTCDATETIME()
        FROM OPENJSON(@P4) WITH (
            k nvarchar(max) '$.k',
            field nvarchar(max) '$.f',
            reason nvarchar(max) '$.w',
            raw nvarchar(max) '$.r'
        ) AS q
        WHERE NOT EXISTS (SELECT 1 FROM {schema}.quarantined_rows AS e
            WHERE e.stamp_id = @P1 AND e.reported_start = @P2 AND e.row_key = CONVERT(binary(16), q.k, 2))";
    /// One stamp's quarantine (@P1) or everyone's (NULL); ordered by the caller (GUIDs sort differently
    /// in SQL Server than as text).
    LIST_QUARANTINE (1) = "SELECT stamp_id, reported_start, reported_end, row_key, field, reason, raw,
            quarantined_at
        FROM {schema}.quarantined_rows WHERE @P1 IS NULL OR stamp_id = @P1";
    /// Only for a registered stamp: row count 0 means unknown.
    RECORD_REPROCESS (5) = "INSERT INTO {schema}.reprocess_log
            (stamp_id, range_start, range_end, reason, requested_at)
        SELECT @P1, @P2, @P3, @P4, @P5
        WHERE EXISTS (SELECT 1 FROM {schema}.stamps WHERE id = @P1)";
    /// The stamps that committed windows reported in [@P1, @P2), for an export of every stamp (a scan
    /// of usage_windows: one row per stamp and hour, not per usage row).
    EXPORT_STAMPS (2) = "SELECT DISTINCT sn.stamp_id
        FROM {schema}.usage_windows AS w JOIN {schema}.stamp_numbers AS sn ON sn.stamp_no = w.stamp_no
        WHERE w.reported_start >= @P1 AND w.reported_start < @P2";
    /// One stamp's windows reported in [@P2, @P3), in order: a seek on uq_usage_windows.
    EXPORT_WINDOWS (3) = "SELECT w.window_no, w.reported_start, w.reported_end
        FROM {schema}.usage_windows AS w JOIN {schema}.stamp_numbers AS sn ON sn.stamp_no = w.stamp_no
        WHERE sn.stamp_id = @P1 AND w.reported_start >= @P2 AND w.reported_start < @P3
        ORDER BY w.reported_start";
    /// One window's rows in the export's order: one clustered range seek (the window's rows are
    /// contiguous) and a sort of that window alone. One query per window rather than per stamp: the
    /// export order (usage start within the hour) is not the index's, and a month of a large stamp
    /// in one query would be one sort of millions of rows in tempdb. Each window is still read in one
    /// committed state (RCSI), so a reprocess never shows half of an hour.
    EXPORT_WINDOW_ROWS (1) = "SELECT billing_subscription_id, subscription_id, meter_id, usage_start, usage_end,
            quantity, quantity_scale, resource_uri, location, tags, additional_info
        FROM {schema}.usage_rows WHERE window_no = @P1
        ORDER BY usage_start, row_key";
    /// One billing subscription's rows reported in [@P2, @P3): one range of ix_usage_rows_billing
    /// (the row's reported start is its window's), which covers the row's columns, each row's window
    /// joined for its stamp and reported end, sorted within the range.
    /// The order is total (a window and a row key make a row unique), so a narrower range gives the
    /// same rows in the same order as a wider one.
    BILLING_ROWS (3) = "SELECT sn.stamp_id, r.reported_start, w.reported_end, r.billing_subscription_id,
            r.subscription_id, r.meter_id, r.usage_start, r.usage_end, r.quantity, r.quantity_scale,
            r.resource_uri, r.location, r.tags, r.additional_info
        FROM {schema}.usage_rows AS r
            JOIN {schema}.usage_windows AS w ON w.window_no = r.window_no
            JOIN {schema}.stamp_numbers AS sn ON sn.stamp_no = w.stamp_no
        WHERE r.billing_subscription_id = @P1 AND r.reported_start >= @P2 AND r.reported_start < @P3
        ORDER BY r.reported_start, w.stamp_no, r.usage_start, r.row_key";
}

/// The distinct `@Pn` placeholders of `sql`, in ascending order.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn placeholders(sql: &str) -> Vec<usize> {
    let bytes = sql.as_bytes();
    let mut found = std::collections::BTreeSet::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'@' && bytes[i + 1] == b'P' {
            let digits: String = sql[i + 2..].chars().take_while(char::is_ascii_digit).collect();
            // `@Pn` followed by more identifier characters is some other variable, not a parameter.
            let next = sql[i + 2 + digits.len()..].chars().next();
            if !digits.is_empty() && !next.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                found.insert(digits.parse().expect("digits"));
            }
            i += 2 + digits.len();
        } else {
            i += 1;
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SchemaName;
    use sqlparser::dialect::MsSqlDialect;
    use sqlparser::parser::Parser;

    fn rendered(statement: &Statement) -> String {
        SchemaName::parse("azs_usage").unwrap().render(statement.sql)
    }

    #[test]
    fn every_statement_parses_as_t_sql_unless_listed_as_unparseable_with_a_reason() {
        let mut failures = Vec::new();
        for statement in ALL {
            let parsed = Parser::parse_sql(&MsSqlDialect {}, &rendered(statement));
            let listed = UNPARSEABLE.iter().find(|(name, _)| *name == statement.name);
            match (parsed, listed) {
                (Ok(_), None) => {}
                (Err(e), None) => failures.push(format!("{} does not parse: {e}", statement.name)),
                (Ok(_), Some(_)) => failures
                    .push(format!("{} parses now: take it off UNPARSEABLE so it is checked", statement.name)),
                (Err(_), Some((_, reason))) => assert!(!reason.is_empty()),
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn the_parse_check_has_teeth() {
        // (It is lenient too: it accepts `MERGE INTO t USING s ON WHEN`, so it catches some errors, not all.)
        for broken in ["UPDATE t SET WHERE a = @P1", "SELECT a FROM WHERE", "INSERT INTO t (a VALUES (@P1)"] {
            assert!(Parser::parse_sql(&MsSqlDialect {}, broken).is_err(), "{broken} parsed");
        }
    }

    #[test]
    fn the_unparseable_list_names_only_real_statements() {
        for (name, _) in UNPARSEABLE {
            assert!(ALL.iter().any(|s| s.name == *name), "{name} is not a statement");
        }
    }

    #[test]
    fn each_statement_declares_exactly_the_parameters_it_uses_numbered_from_one() {
        for statement in ALL {
            let used = placeholders(statement.sql);
            let expected: Vec<usize> = (1..=statement.params).collect();
            assert_eq!(used, expected, "{}: placeholders used vs declared", statement.name);
        }
    }

    #[test]
    fn the_current_database_is_found_in_sys_databases_by_name_never_by_db_id() {
        // On Azure SQL Database DB_ID() and sys.databases.database_id can differ: a lookup by id finds
        // no row and every start would be refused for settings that are in fact right.
        for statement in ALL.iter().filter(|s| s.sql.contains("sys.databases")) {
            assert!(
                !statement.sql.contains("DB_ID()"),
                "{} looks the database up by DB_ID()",
                statement.name
            );
            assert!(statement.sql.contains("WHERE d.name = DB_NAME()"), "{}", statement.name);
        }
        assert!(START_CHECKS.sql.contains("is_read_committed_snapshot_on"));
        assert!(START_CHECKS.sql.contains("compatibility_level"));
        assert!(START_CHECKS.sql.contains("CAST(DB_NAME() AS nvarchar(128)) AS database_name"));
    }

    #[test]
    fn statement_names_are_unique() {
        let mut names: Vec<_> = ALL.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn no_statement_splices_anything_but_the_schema_name() {
        for statement in ALL {
            let without_schema = statement.sql.replace("{schema}", "");
            assert!(
                !without_schema.contains('{') && !without_schema.contains('}'),
                "{} has a template hole other than {{schema}}",
                statement.name
            );
        }
    }

    /// The options SQL Server lists as required for filtered indexes, and the value each must have.
    const INDEX_SET_OPTIONS: &[(&str, &str)] = &[
        ("ANSI_NULLS", "ON"),
        ("ANSI_PADDING", "ON"),
        ("ANSI_WARNINGS", "ON"),
        ("ARITHABORT", "ON"),
        ("CONCAT_NULL_YIELDS_NULL", "ON"),
        ("QUOTED_IDENTIFIER", "ON"),
        ("NUMERIC_ROUNDABORT", "OFF"),
    ];

    #[test]
    fn every_session_sets_the_seven_index_options_the_filtered_index_needs() {
        let set: Vec<(String, String)> = SESSION_OPTIONS
            .sql
            .split(';')
            .filter_map(|s| {
                let words: Vec<&str> = s.split_whitespace().collect();
                match words.as_slice() {
                    ["SET", option, value] => Some((option.to_string(), value.to_string())),
                    _ => None,
                }
            })
            .collect();
        for (option, value) in INDEX_SET_OPTIONS {
            let found: Vec<_> = set.iter().filter(|(o, _)| o == option).collect();
            assert_eq!(found.len(), 1, "{option} is set exactly once");
            assert_eq!(found[0].1, *value, "{option}");
        }
        assert!(set.contains(&("XACT_ABORT".into(), "ON".into())));
        assert!(set.contains(&("NOCOUNT".into(), "OFF".into())));
    }

    #[test]
    fn no_temp_table_and_the_openjson_text_meets_the_mapping_table_in_the_database_collation() {
        for statement in ALL {
            assert!(
                !statement.sql.contains('#'),
                "{} uses a temp object (tempdb's collation)",
                statement.name
            );
        }
        assert!(MERGE_WINDOW.sql.contains("= r.subscription_key COLLATE DATABASE_DEFAULT"));
    }

    #[test]
    fn the_window_is_read_as_text_wide_enough_that_nothing_is_silently_cut() {
        // OPENJSON's WITH clause converts like CAST: into nvarchar(n) it would truncate without an error.
        // The one exception is the subscription key, joined to nvarchar(256) key columns: read at their
        // width so the join compares like types (a MAX side cannot seek), and never longer, because a
        // row whose subscription id is wider than that is quarantined before it is sent (bind::too_long)
        // and the key is that id trimmed and lower-cased.
        assert_eq!(crate::bind::SUBSCRIPTION_ID_WIDTH, 256);
        let key = "'$.n'";
        let with = &MERGE_WINDOW.sql
            [MERGE_WINDOW.sql.find("WITH (").unwrap()..MERGE_WINDOW.sql.find(") AS r").unwrap()];
        for line in with.lines().filter(|l| l.contains("char")) {
            let width = if line.contains(key) { "nvarchar(256)" } else { "nvarchar(max)" };
            assert!(line.contains(width), "{line}");
        }
        assert_eq!(MERGE_WINDOW.sql.matches(&format!("nvarchar(256) {key}")).count(), 3);
        assert!(!MERGE_WINDOW.sql.contains(&format!("nvarchar(max) {key}")));
    }

    /// The `@name` variables of `sql` (not `@Pn` parameters, not `@@` functions), each with the text
    /// before its first use.
    fn variables(sql: &str) -> Vec<(String, &str)> {
        let mut seen = Vec::new();
        let mut rest = sql;
        while let Some(at) = rest.find('@') {
            let before = &sql[..sql.len() - rest.len() + at];
            let name: String =
                rest[at + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let is_parameter =
                name.starts_with('P') && name.len() > 1 && name[1..].chars().all(|c| c.is_ascii_digit());
            if !name.is_empty() && !is_parameter && !seen.iter().any(|(n, _)| *n == name) {
                seen.push((name.clone(), before));
            }
            rest = &rest[at + 1 + name.len().max(1)..];
        }
        seen
    }

    #[test]
    fn every_variable_is_declared_before_its_first_use() {
        // sqlparser accepts an undeclared variable; SQL Server refuses the whole batch (Msg 137).
        const PROCEDURE_ARGUMENTS: &[&str] = &["Resource", "LockMode", "LockOwner", "LockTimeout"];
        for statement in ALL {
            for (name, before) in variables(statement.sql) {
                if PROCEDURE_ARGUMENTS.contains(&name.as_str()) {
                    continue;
                }
                assert!(
                    before.trim_end().ends_with("DECLARE"),
                    "{}: @{name} is used before it is declared",
                    statement.name
                );
            }
        }
        let declared: Vec<String> = variables(MERGE_WINDOW.sql).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            declared,
            ["stamp_no", "window_no", "written"],
            "the check sees the window batch's variables"
        );
        let (name, before) = variables("SELECT @x; DECLARE @x int").remove(0);
        assert!(name == "x" && !before.trim_end().ends_with("DECLARE"), "the check has teeth");
    }

    /// Each table the migrations create, with its columns (the first word of each column line).
    fn tables() -> Vec<(String, Vec<String>)> {
        tables_with(|_| true)
    }

    /// Per table, the names of its columns whose definition line passes `keep`.
    fn tables_with(keep: impl Fn(&str) -> bool) -> Vec<(String, Vec<String>)> {
        ALL.iter()
            .filter_map(|s| {
                let rest = s.sql.strip_prefix("CREATE TABLE {schema}.")?;
                let name = rest[..rest.find(' ').unwrap()].to_owned();
                let columns = rest
                    .lines()
                    .skip(1)
                    .map(str::trim)
                    .filter(|l| !l.starts_with("CONSTRAINT") && !l.starts_with(')') && !l.is_empty())
                    .filter(|l| keep(l))
                    .map(|l| l[..l.find(' ').unwrap_or(l.len())].to_owned())
                    .collect();
                Some((name, columns))
            })
            .collect()
    }

    /// `alias.column` references in `segment` whose alias names a table (`{schema}.table AS alias`)
    /// but whose column that table does not have.
    fn unknown_columns(segment: &str, tables: &[(String, Vec<String>)]) -> Vec<String> {
        let mut aliases = Vec::new();
        for (table, columns) in tables {
            let mut rest = segment;
            let marker = format!("{{schema}}.{table} AS ");
            while let Some(at) = rest.find(&marker) {
                let alias: String = rest[at + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                aliases.push((alias, columns));
                rest = &rest[at + marker.len()..];
            }
        }
        let mut unknown = Vec::new();
        for (alias, columns) in &aliases {
            let mut rest = segment;
            let reference = format!("{alias}.");
            while let Some(at) = rest.find(&reference) {
                let preceded_by_word = segment[..segment.len() - rest.len() + at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '}');
                let column: String = rest[at + reference.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !preceded_by_word && !column.is_empty() && !columns.contains(&column) {
                    unknown.push(format!("{alias}.{column}"));
                }
                rest = &rest[at + reference.len()..];
            }
        }
        unknown
    }

    #[test]
    fn every_aliased_column_reference_names_a_column_of_its_table() {
        // sqlparser knows no schema: a statement naming a column the table does not have (one the
        // layout moved, say usage_rows.stamp_id) parses, and SQL Server refuses it (Msg 207).
        let tables = tables();
        assert!(tables.iter().any(|(t, c)| t == "usage_rows" && c.contains(&"row_key".to_owned())));
        let mut failures = Vec::new();
        for statement in ALL {
            // Aliases are scoped per statement of a batch (MERGE_WINDOW's two MERGEs both use `t`).
            for segment in statement.sql.split(';') {
                for unknown in unknown_columns(segment, &tables) {
                    failures.push(format!("{}: {unknown}", statement.name));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        let broken = "SELECT u.stamp_id FROM {schema}.usage_rows AS u";
        assert_eq!(unknown_columns(broken, &tables), ["u.stamp_id"], "the check has teeth");
    }

    /// The table the first of `prefixes` found in `segment` names (`{schema}.table`), and where its name
    /// starts.
    fn target_table(segment: &str, prefixes: &[&str]) -> Option<(String, usize)> {
        prefixes.iter().find_map(|prefix| {
            let at = segment.find(prefix)? + prefix.len();
            let name: String =
                segment[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            Some((name, at))
        })
    }

    /// The columns an INSERT into `{schema}.table` (or a MERGE's `INSERT (…)` into its target) lists
    /// that the table does not have.
    fn unknown_inserted_columns(segment: &str, tables: &[(String, Vec<String>)]) -> Vec<String> {
        let Some((table, listed)) = inserted_columns(segment) else { return Vec::new() };
        let columns =
            &tables.iter().find(|(t, _)| *t == table).unwrap_or_else(|| panic!("no table {table}")).1;
        listed.iter().filter(|c| !columns.contains(c)).map(|c| format!("{table}.{c}")).collect()
    }

    /// The table an INSERT into `{schema}.table` (or a MERGE's `INSERT (…)` into its target) writes,
    /// and the columns it lists.
    fn inserted_columns(segment: &str) -> Option<(String, Vec<String>)> {
        let (table, at) = target_table(segment, &["INSERT INTO {schema}.", "MERGE INTO {schema}."])?;
        let rest = &segment[at..];
        // INSERT INTO t (…): the list follows the name; MERGE INTO t …: the list of its INSERT (…).
        let after_name = &rest[table.len()..];
        let open = if after_name.trim_start().starts_with('(') {
            rest.len() - after_name.trim_start().len()
        } else {
            rest.find("INSERT (")? + "INSERT ".len()
        };
        let list = &rest[open + 1..open + rest[open..].find(')').unwrap()];
        Some((table, list.split(',').map(|c| c.trim().to_owned()).collect()))
    }

    /// The columns an `UPDATE {schema}.table SET …` (or a MERGE's `UPDATE SET …` of its target) assigns
    /// that the table does not have.
    fn unknown_updated_columns(segment: &str, tables: &[(String, Vec<String>)]) -> Vec<String> {
        let Some((table, at)) = target_table(segment, &["UPDATE {schema}.", "MERGE INTO {schema}."]) else {
            return Vec::new();
        };
        let columns =
            &tables.iter().find(|(t, _)| *t == table).unwrap_or_else(|| panic!("no table {table}")).1;
        let Some(set) = segment[at..].find("SET ") else { return Vec::new() };
        let assignments = &segment[at + set + "SET ".len()..];
        let assignments = &assignments[..assignments.find("WHERE").unwrap_or(assignments.len())];
        let assignments = &assignments[..assignments.find("WHEN ").unwrap_or(assignments.len())];
        assignments
            .split(',')
            .filter_map(|item| {
                let (left, _) = item.split_once('=')?;
                let left = left.trim();
                left.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then_some(left)
            })
            .filter(|c| !columns.iter().any(|k| k == c))
            .map(|c| format!("{table}.{c}"))
            .collect()
    }

    #[test]
    fn every_updated_column_is_a_column_of_the_table() {
        let tables = tables();
        let mut failures = Vec::new();
        let mut checked = 0;
        for statement in ALL {
            for segment in statement.sql.split(';').filter(|s| s.contains("UPDATE")) {
                checked += 1;
                for unknown in unknown_updated_columns(segment, &tables) {
                    failures.push(format!("{}: {unknown}", statement.name));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(checked >= 10, "the UPDATEs were seen ({checked})");
        let broken =
            "UPDATE {schema}.stamp_leases SET expires_at = DATEADD(millisecond, @P3, SYSUTCDATETIME()),
            stamp_no = 1 WHERE stamp_id = @P1";
        assert_eq!(
            unknown_updated_columns(broken, &tables),
            ["stamp_leases.stamp_no"],
            "the check has teeth"
        );
        let merge = "MERGE INTO {schema}.tenant_numbers AS t USING (SELECT 1 AS a) AS src ON 1 = 1
            WHEN MATCHED THEN UPDATE SET last_seen = @P2 WHEN NOT MATCHED BY TARGET THEN INSERT (stamp_no) VALUES (1)";
        assert_eq!(
            unknown_updated_columns(merge, &tables),
            ["tenant_numbers.last_seen"],
            "MERGE updates too"
        );
    }

    #[test]
    fn every_inserted_column_is_a_column_of_the_table() {
        let tables = tables();
        let mut failures = Vec::new();
        let mut checked = 0;
        for statement in ALL.iter().filter(|s| !s.sql.starts_with("CREATE")) {
            for segment in statement.sql.split(';') {
                if segment.contains("INSERT") {
                    checked += 1;
                }
                for unknown in unknown_inserted_columns(segment, &tables) {
                    failures.push(format!("{}: {unknown}", statement.name));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(checked >= 10, "the INSERTs and MERGEs were seen ({checked})");
        let broken = "INSERT INTO {schema}.usage_windows (stamp_id, reported_start) VALUES (@P1, @P2)";
        assert_eq!(
            unknown_inserted_columns(broken, &tables),
            ["usage_windows.stamp_id"],
            "the check has teeth"
        );
        let merge = "MERGE INTO {schema}.usage_rows AS t USING (SELECT 1 AS a) AS src ON 1 = 1
            WHEN NOT MATCHED BY TARGET THEN INSERT (window_no, stamp_id) VALUES (1, 2)";
        assert_eq!(unknown_inserted_columns(merge, &tables), ["usage_rows.stamp_id"], "MERGE inserts too");
    }

    /// Per table, the columns an INSERT must name: NOT NULL, without a DEFAULT, not an IDENTITY.
    fn required_columns() -> Vec<(String, Vec<String>)> {
        tables_with(|l| l.contains("NOT NULL") && !l.contains("DEFAULT") && !l.contains("IDENTITY"))
    }

    /// The required columns (see [`required_columns`]) an INSERT into `{schema}.table` (or a MERGE's
    /// `INSERT (…)`) leaves out: each one a Msg 515 on every call, found on a server only.
    fn missing_required_columns(segment: &str, required: &[(String, Vec<String>)]) -> Vec<String> {
        let Some((table, listed)) = inserted_columns(segment) else { return Vec::new() };
        let columns =
            &required.iter().find(|(t, _)| *t == table).unwrap_or_else(|| panic!("no table {table}")).1;
        columns.iter().filter(|c| !listed.contains(c)).map(|c| format!("{table}.{c}")).collect()
    }

    #[test]
    fn every_insert_names_each_column_that_is_not_null_without_a_default() {
        let required = required_columns();
        let rows = &required.iter().find(|(t, _)| t == "usage_rows").unwrap().1;
        assert!(
            rows.contains(&"reported_start".to_owned()) && !rows.contains(&"tags".to_owned()),
            "{rows:?}"
        );
        let mut failures = Vec::new();
        for statement in ALL.iter().filter(|s| !s.sql.starts_with("CREATE")) {
            for segment in statement.sql.split(';') {
                for missing in missing_required_columns(segment, &required) {
                    failures.push(format!("{}: {missing}", statement.name));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
        let broken = "INSERT INTO {schema}.usage_windows (stamp_no, reported_start) VALUES (@P1, @P2)";
        assert_eq!(
            missing_required_columns(broken, &required),
            ["usage_windows.reported_end"],
            "the check has teeth"
        );
        let merge = MERGE_WINDOW.sql.replace("row_key, reported_start, tenant_no", "row_key, tenant_no");
        let merge = merge.split(';').find(|s| s.contains("MERGE INTO {schema}.usage_rows")).unwrap();
        assert_eq!(
            missing_required_columns(merge, &required),
            ["usage_rows.reported_start"],
            "MERGE inserts too"
        );
    }

    #[test]
    fn placeholder_scan_ignores_other_variables_and_counts_repeats_once() {
        assert_eq!(placeholders("SELECT @P1, @P1, @P10 FROM t WHERE x = @P2"), vec![1, 2, 10]);
        assert_eq!(placeholders("DECLARE @Page int; SELECT @P3_x, @result"), Vec::<usize>::new());
    }
}
