//! Static checks of the schema (`sql.rs`) against rules of SQL Server that sqlparser does not know and
//! that would otherwise first show on a real server: what an index key may hold, which words are
//! reserved, how a trigger's THROW must be written, and whether every text the core admits fits its
//! column whole. Each check is shown to have teeth on a broken example.

use crate::sql::{self, Statement};
use azs_core::audit::Actor;
use azs_core::mapping::{SubscriptionMapping, is_billing_subscription_id};
use azs_core::rating::Month;
use azs_core::rating::book::is_book_id;
use azs_core::registration::MAX_NAME_LEN;
use azs_core::stamp::StampId;

/// A table as its CREATE TABLE declares it: each column with its type (`nvarchar(128)`,
/// `decimal(38, 12)`), and each key (primary key, unique constraint) with its columns.
struct Table {
    name: String,
    columns: Vec<(String, String)>,
    keys: Vec<Vec<String>>,
}

impl Table {
    fn column_type(&self, column: &str) -> Option<&str> {
        self.columns.iter().find(|(c, _)| c == column).map(|(_, t)| t.as_str())
    }
}

/// The text between the first `(` at or after `from` and its matching `)`.
fn parenthesised(text: &str, from: usize) -> &str {
    let open = from + text[from..].find('(').expect("an opening parenthesis");
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {text}")
}

fn names(list: &str) -> Vec<String> {
    list.split(',').map(|c| c.trim().to_owned()).collect()
}

fn table(statement: &Statement) -> Option<Table> {
    let rest = statement.sql.strip_prefix("CREATE TABLE {schema}.")?;
    let name = rest[..rest.find(' ').unwrap()].to_owned();
    let (mut columns, mut keys) = (Vec::new(), Vec::new());
    for line in rest.lines().skip(1).map(str::trim) {
        if line.starts_with("CONSTRAINT") {
            if let Some(at) = line.find("PRIMARY KEY").or_else(|| line.find("UNIQUE")) {
                keys.push(names(parenthesised(line, at)));
            }
        } else if !line.starts_with(')') && !line.starts_with("REFERENCES") && !line.is_empty() {
            let (column, declared) = line.split_once(' ').unwrap();
            // The type runs to its closing parenthesis (`decimal(38, 12)`) or the next space.
            let end = match (declared.find('('), declared.find(' ')) {
                (Some(open), space) if space.is_none_or(|s| open < s) => declared.find(')').unwrap() + 1,
                (_, Some(space)) => space,
                _ => declared.trim_end_matches(',').len(),
            };
            columns.push((column.to_owned(), declared[..end].trim_end_matches(',').to_owned()));
        }
    }
    Some(Table { name, columns, keys })
}

fn tables() -> Vec<Table> {
    sql::ALL.iter().copied().filter_map(table).collect()
}

/// `CREATE [UNIQUE] INDEX name ON {schema}.table (columns)`: the table and the key's columns.
fn index_key(statement: &Statement) -> Option<(String, Vec<String>)> {
    let sql = statement.sql;
    if !sql.starts_with("CREATE INDEX") && !sql.starts_with("CREATE UNIQUE") {
        return None;
    }
    let at = sql.find(" ON {schema}.")? + " ON {schema}.".len();
    let table: String = sql[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    Some((table, names(parenthesised(sql, at))))
}

/// The bytes a key column of type `declared` takes, `None` for a (max) type, which no index key may
/// hold. Panics on a type this list does not know, so a new one is sized here before it is used.
fn key_bytes(declared: &str) -> Option<usize> {
    let size = |t: &str| -> usize {
        let inner = &t[t.find('(').unwrap() + 1..t.find(')').unwrap()];
        inner.split(',').next().unwrap().trim().parse().unwrap_or_else(|_| panic!("size of {t}"))
    };
    let t = declared.to_ascii_lowercase();
    if t.contains("(max)") {
        return None;
    }
    Some(match t.as_str() {
        "uniqueidentifier" => 16,
        "bigint" => 8,
        "int" => 4,
        "smallint" => 2,
        "tinyint" | "bit" => 1,
        t if t.starts_with("nvarchar(") || t.starts_with("nchar(") => 2 * size(t),
        t if t.starts_with("varchar(") || t.starts_with("binary(") || t.starts_with("varbinary(") => size(t),
        t if t.starts_with("datetime2(") => match size(t) {
            0..=2 => 6,
            3..=4 => 7,
            _ => 8,
        },
        t if t.starts_with("decimal(") => match size(t) {
            1..=9 => 5,
            10..=19 => 9,
            20..=28 => 13,
            _ => 17,
        },
        other => panic!("no key size known for type {other}"),
    })
}

/// Why a key of `columns` on `table` would be refused: a column the table lacks, a (max) column
/// (Msg 1919), or more than 900 bytes, the most a clustered key may hold (a longer nonclustered key
/// is created with a warning and its inserts fail once a row's key passes the limit).
fn key_problems(table: &Table, columns: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bytes = 0;
    for column in columns {
        match table.column_type(column).map(|t| (t, key_bytes(t))) {
            None => problems.push(format!("{}.{column} is not a column", table.name)),
            Some((t, None)) => {
                problems.push(format!("{}.{column} is {t}, which no index key may hold", table.name))
            }
            Some((_, Some(n))) => bytes += n,
        }
    }
    if bytes > 900 {
        problems.push(format!(
            "the key ({}) of {} takes {bytes} bytes, over 900",
            columns.join(", "),
            table.name
        ));
    }
    problems
}

#[test]
fn no_index_key_holds_a_max_column_or_more_than_900_bytes() {
    let tables = tables();
    let find =
        |name: &str| tables.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no table {name}"));
    let mut keys: Vec<(&Table, Vec<String>)> =
        tables.iter().flat_map(|t| t.keys.iter().map(move |k| (t, k.clone()))).collect();
    keys.extend(sql::ALL.iter().filter_map(|s| index_key(s)).map(|(table, key)| (find(&table), key)));
    assert!(keys.len() >= 25, "every key was seen ({})", keys.len());
    let problems: Vec<String> = keys.iter().flat_map(|(t, k)| key_problems(t, k)).collect();
    assert!(problems.is_empty(), "{problems:#?}");

    // The check has teeth: a statement's body, and a key longer than a clustered key may be.
    let statements = find("statements");
    assert_eq!(key_problems(statements, &["body".into()]).len(), 1);
    let tombstones = find("stamp_tombstones");
    let long = ["admin_arm_endpoint_key", "name"].map(String::from);
    assert!(key_problems(tombstones, &long)[0].contains("over 900"), "{:?}", key_problems(tombstones, &long));
}

/// `CREATE INDEX ... (key) INCLUDE (columns)`: the table and the included columns.
fn index_includes(statement: &Statement) -> Option<(String, Vec<String>)> {
    let (table, _) = index_key(statement)?;
    let at = statement.sql.find(" INCLUDE (")? + " INCLUDE ".len();
    Some((table, names(parenthesised(statement.sql, at))))
}

#[test]
fn every_included_column_is_a_column_of_its_table() {
    // A covering index names the columns a read needs besides its key; a misspelt one is Msg 1911
    // when the migration runs, on a server this machine does not have.
    let tables = tables();
    let includes: Vec<(String, Vec<String>)> = sql::ALL.iter().filter_map(|s| index_includes(s)).collect();
    assert!(includes.iter().any(|(t, c)| t == "usage_rows" && c.contains(&"additional_info".to_owned())));
    for (table, columns) in includes {
        let t = tables.iter().find(|t| t.name == table).unwrap_or_else(|| panic!("no table {table}"));
        for c in columns {
            assert!(t.column_type(&c).is_some(), "{table}.{c} is included but is not a column");
        }
    }
}

/// SQL Server's reserved keywords (<https://learn.microsoft.com/sql/t-sql/language-elements/reserved-keywords-transact-sql>):
/// an identifier spelled like one must be bracketed, or the statement does not parse (Msg 156).
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    "ADD", "ALL", "ALTER", "AND", "ANY", "AS", "ASC", "AUTHORIZATION", "BACKUP", "BEGIN", "BETWEEN", "BREAK",
    "BROWSE", "BULK", "BY", "CASCADE", "CASE", "CHECK", "CHECKPOINT", "CLOSE", "CLUSTERED", "COALESCE",
    "COLLATE", "COLUMN", "COMMIT", "COMPUTE", "CONSTRAINT", "CONTAINS", "CONTAINSTABLE", "CONTINUE",
    "CONVERT", "CREATE", "CROSS", "CURRENT", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP",
    "CURRENT_USER", "CURSOR", "DATABASE", "DBCC", "DEALLOCATE", "DECLARE", "DEFAULT", "DELETE", "DENY",
    "DESC", "DISK", "DISTINCT", "DISTRIBUTED", "DOUBLE", "DROP", "DUMP", "ELSE", "END", "ERRLVL", "ESCAPE",
    "EXCEPT", "EXEC", "EXECUTE", "EXISTS", "EXIT", "EXTERNAL", "FETCH", "FILE", "FILLFACTOR", "FOR",
    "FOREIGN", "FREETEXT", "FREETEXTTABLE", "FROM", "FULL", "FUNCTION", "GOTO", "GRANT", "GROUP", "HAVING",
    "HOLDLOCK", "IDENTITY", "IDENTITY_INSERT", "IDENTITYCOL", "IF", "IN", "INDEX", "INNER", "INSERT",
    "INTERSECT", "INTO", "IS", "JOIN", "KEY", "KILL", "LEFT", "LIKE", "LINENO", "LOAD", "MERGE", "NATIONAL",
    "NOCHECK", "NONCLUSTERED", "NOT", "NULL", "NULLIF", "OF", "OFF", "OFFSETS", "ON", "OPEN",
    "OPENDATASOURCE", "OPENQUERY", "OPENROWSET", "OPENXML", "OPTION", "OR", "ORDER", "OUTER", "OVER",
    "PERCENT", "PIVOT", "PLAN", "PRECISION", "PRIMARY", "PRINT", "PROC", "PROCEDURE", "PUBLIC", "RAISERROR",
    "READ", "READTEXT", "RECONFIGURE", "REFERENCES", "REPLICATION", "RESTORE", "RESTRICT", "RETURN", "REVERT",
    "REVOKE", "RIGHT", "ROLLBACK", "ROWCOUNT", "ROWGUIDCOL", "RULE", "SAVE", "SCHEMA", "SECURITYAUDIT",
    "SELECT", "SEMANTICKEYPHRASETABLE", "SEMANTICSIMILARITYDETAILSTABLE", "SEMANTICSIMILARITYTABLE",
    "SESSION_USER", "SET", "SETUSER", "SHUTDOWN", "SOME", "STATISTICS", "SYSTEM_USER", "TABLE", "TABLESAMPLE",
    "TEXTSIZE", "THEN", "TO", "TOP", "TRAN", "TRANSACTION", "TRIGGER", "TRUNCATE", "TRY_CONVERT", "TSEQUAL",
    "UNION", "UNIQUE", "UNPIVOT", "UPDATE", "UPDATETEXT", "USE", "USER", "VALUES", "VARYING", "VIEW",
    "WAITFOR", "WHEN", "WHERE", "WHILE", "WITH", "WRITETEXT",
];

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Every name this store gives: tables, columns, constraints, indexes, triggers, and the aliases and
/// OPENJSON columns its statements declare (`AS x`, `name type '$.path'`).
fn given_names() -> Vec<String> {
    let mut found = Vec::new();
    for t in tables() {
        found.push(t.name.clone());
        found.extend(t.columns.iter().map(|(c, _)| c.clone()));
    }
    for statement in sql::ALL {
        let words: Vec<&str> = statement
            .sql
            .split(|c: char| c.is_whitespace() || "(),;".contains(c))
            .filter(|w| !w.is_empty())
            .collect();
        for pair in words.windows(2) {
            let named = matches!(pair[0], "AS" | "CONSTRAINT" | "INDEX" | "TRIGGER" | "DECLARE");
            // (`AS BEGIN` opens a trigger's body.)
            if named && pair[1] != "BEGIN" {
                found.push(pair[1].trim_start_matches("{schema}.").trim_start_matches('@').to_owned());
            }
        }
        // OPENJSON ... WITH (name type '$.path', ...): the name before each path's type.
        for with in statement.sql.match_indices("WITH (").map(|(at, _)| parenthesised(statement.sql, at)) {
            found.extend(
                with.split(',')
                    .filter(|c| c.contains("'$."))
                    .map(|c| c.split_whitespace().next().unwrap().to_owned()),
            );
        }
    }
    found.retain(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !n.is_empty());
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_name_the_store_gives_is_a_reserved_keyword() {
    let names = given_names();
    for expected in
        ["statements", "month", "state", "position", "actor", "r", "kept", "tr_statements_final_never_change"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} was seen: {names:?}");
    }
    let reserved: Vec<&String> = names.iter().filter(|n| is_reserved(n)).collect();
    assert!(reserved.is_empty(), "reserved keywords used as names (bracket or rename them): {reserved:?}");
    assert!(is_reserved("key") && is_reserved("Percent") && !is_reserved("month"), "the check has teeth");
}

/// What is wrong with each `THROW n, 'message', state;` of `sql`: SQL Server requires a number of
/// 50000 or more, a state of 0 to 255, a message of at most 2,048 characters in which `%` is reserved,
/// and the statement before THROW ended by `;` (or THROW as the body of an IF or a BEGIN).
fn throw_problems(sql: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (at, _) in sql.match_indices("THROW ") {
        let before = sql[..at].trim_end();
        if !(before.ends_with(';') || before.ends_with(')') || before.ends_with("BEGIN")) {
            problems.push(format!(
                "the statement before THROW is not ended by ';': …{}",
                &before[before.len().saturating_sub(30)..]
            ));
        }
        let rest = &sql[at + "THROW ".len()..];
        let rest = &rest[..rest.find(';').expect("THROW ends with ';'")];
        let (number, rest) = rest.split_once(',').expect("THROW number, message, state");
        let (message, state) = rest.rsplit_once(',').expect("THROW number, message, state");
        match number.trim().parse::<i64>() {
            Ok(n) if (50_000..=i64::from(i32::MAX)).contains(&n) => {}
            _ => problems.push(format!("THROW number {} is not 50000 to 2147483647", number.trim())),
        }
        let message = message.trim().trim_start_matches('N').trim_matches('\'');
        if message.contains('%') {
            problems.push(format!("THROW message {message:?} holds '%', which THROW reserves"));
        }
        if message.chars().count() > 2048 {
            problems.push("THROW message is longer than 2048 characters".into());
        }
        if state.trim().parse::<u8>().is_err() {
            problems.push(format!("THROW state {} is not 0 to 255", state.trim()));
        }
    }
    problems
}

/// The table a `CREATE TRIGGER … ON {schema}.table` fires on.
fn trigger_table(sql: &str) -> String {
    let at = sql.find(" ON {schema}.").expect("a trigger names its table") + " ON {schema}.".len();
    sql[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

#[test]
fn every_trigger_is_an_after_trigger_that_counts_nothing_and_throws_as_sql_server_requires() {
    let triggers: Vec<&Statement> =
        sql::ALL.iter().copied().filter(|s| s.sql.starts_with("CREATE TRIGGER {schema}.")).collect();
    assert_eq!(triggers.len(), 3, "the never-edit triggers and the verify history's");
    for trigger in &triggers {
        let sql = trigger.sql;
        assert!(sql.contains(" AFTER ") && !sql.contains("INSTEAD OF"), "{}: an AFTER trigger", trigger.name);
        // A trigger's own row counts would reach the client beside the statement's: the store decides
        // fences and leases by row counts.
        let body = sql[sql.find(" AS").unwrap() + 3..].trim_start();
        assert!(
            body.starts_with("BEGIN") && body["BEGIN".len()..].trim_start().starts_with("SET NOCOUNT ON;"),
            "{}",
            trigger.name
        );
        let problems = throw_problems(sql);
        assert!(problems.is_empty(), "{}: {problems:#?}", trigger.name);
        // Msg 334: a table with an enabled trigger may not be the target of OUTPUT without INTO.
        let table = trigger_table(sql);
        for statement in sql::ALL {
            let writes = ["INSERT INTO", "UPDATE", "DELETE FROM", "MERGE INTO"]
                .iter()
                .any(|verb| statement.sql.contains(&format!("{verb} {{schema}}.{table}")));
            if let Some(at) = statement.sql.find("OUTPUT ").filter(|_| writes) {
                let output = &statement.sql[at..];
                assert!(
                    output[..output.find(';').unwrap_or(output.len())].contains(" INTO "),
                    "{}: OUTPUT without INTO on {table}",
                    statement.name
                );
            }
        }
    }
    // The checks have teeth.
    assert_eq!(throw_problems("SELECT 1 THROW 5000, 'over 50%', 300;").len(), 4);
    assert!(throw_problems("IF EXISTS (SELECT 1 FROM deleted)\n THROW 51000, 'no', 1;").is_empty());
}

/// The width of `table.column`, an `nvarchar(n)`, in UTF-16 units (what nvarchar counts).
fn width(tables: &[Table], table: &str, column: &str) -> usize {
    let t = tables.iter().find(|t| t.name == table).unwrap_or_else(|| panic!("no table {table}"));
    let declared = t.column_type(column).unwrap_or_else(|| panic!("no column {table}.{column}"));
    let inner = declared.strip_prefix("nvarchar(").and_then(|r| r.strip_suffix(')')).expect("an nvarchar(n)");
    inner.parse().unwrap_or_else(|_| panic!("{table}.{column} is {declared}"))
}

#[test]
fn every_text_the_core_admits_fits_its_column_whole() {
    // A value wider than its column fails its statement (Msg 2628, ANSI_WARNINGS ON): the audited
    // change, the import or the statement is refused with a 500, though the core called it valid.
    let tables = tables();
    let w = |table: &str, column: &str| width(&tables, table, column);
    // The actor: cut at a number of characters, each of which may be two UTF-16 units.
    let widest_actor = Actor::new(&"\u{1F600}".repeat(10_000)).as_str().encode_utf16().count();
    assert!(w("audit_records", "actor") >= widest_actor, "actor: {widest_actor} units");
    // Stamp names: at most MAX_NAME_LEN characters.
    for (table, column) in [("stamps", "name"), ("stamp_tombstones", "name"), ("audit_records", "stamp_name")]
    {
        assert!(w(table, column) >= 2 * MAX_NAME_LEN, "{table}.{column}");
    }
    // Ids the core restricts to ASCII: one unit a character.
    for (table, column) in [("price_book_versions", "book_id"), ("rating_assignments", "book_id")] {
        assert!(!is_book_id(&"a".repeat(w(table, column) + 1)), "{table}.{column}");
    }
    for (table, column) in [
        ("subscription_mappings", "billing_subscription_id"),
        ("usage_rows", "billing_subscription_id"),
        ("rating_assignments", "billing_subscription_id"),
        ("statements", "billing_subscription_id"),
    ] {
        assert!(!is_billing_subscription_id(&"a".repeat(w(table, column) + 1)), "{table}.{column}");
    }
    // Tenant subscriptions: bounded in UTF-8 bytes, never fewer than UTF-16 units.
    let stamp = StampId::new_random();
    for (table, column) in [
        ("subscription_mappings", "external_subscription_id"),
        ("audit_records", "subscription"),
        ("tenant_numbers", "subscription_key"),
    ] {
        let long = "a".repeat(w(table, column) + 1);
        assert!(
            SubscriptionMapping::validated(&stamp, &long, "billing", chrono::Utc::now()).is_err(),
            "{table}.{column}"
        );
    }
    assert!(w("statements", "month") >= Month::new(9998, 12).unwrap().to_string().len());

    // The check has teeth: the actor's old width.
    assert!(256 < widest_actor);
}

#[test]
fn every_billing_subscription_id_column_compares_as_the_core_does() {
    // Billing subscription ids are case-sensitive everywhere else (the core, SQLite, PostgreSQL).
    // A column in the database's default collation (usually case-insensitive) would match `CUST-A`
    // when `cust-a`'s rows are read (`BILLING_ROWS`), and both statements would bill both: every such
    // column is binary-collated, like the rating tables' keys.
    let declared = |sql: &str| -> Vec<String> {
        sql.lines()
            .map(str::trim)
            .filter(|l| l.starts_with("billing_subscription_id "))
            .map(str::to_owned)
            .collect()
    };
    let columns: Vec<String> =
        sql::ALL.iter().filter(|s| s.sql.starts_with("CREATE TABLE")).flat_map(|s| declared(s.sql)).collect();
    assert!(columns.len() >= 4, "{columns:?}");
    for column in &columns {
        assert!(column.contains("COLLATE Latin1_General_100_BIN2"), "{column}");
    }
    // A COALESCE (a CASE) over one of these columns and a text of another collation, such as an
    // OPENJSON column (the database's), has no collation at all: Msg 451/457 when the statement
    // compiles, so every window's commit would fail. Such an expression names the collation.
    let unresolved = |sql: &str| -> Vec<String> {
        sql.match_indices("COALESCE(")
            .map(|(at, _)| parenthesised(sql, at).to_owned())
            .filter(|args| {
                args.contains("billing_subscription_id") && !args.contains("COLLATE Latin1_General_100_BIN2")
            })
            .collect()
    };
    for statement in sql::ALL {
        assert!(unresolved(statement.sql).is_empty(), "{}: {:?}", statement.name, unresolved(statement.sql));
    }
    assert!(!unresolved("SELECT COALESCE(kept.b, m.billing_subscription_id) AS b").is_empty());
    // The check has teeth: the column as it was declared before.
    assert!(
        !declared("CREATE TABLE t (\n        billing_subscription_id nvarchar(256) NULL,\n)")
            .iter()
            .all(|c| c.contains("COLLATE Latin1_General_100_BIN2"))
    );
}
