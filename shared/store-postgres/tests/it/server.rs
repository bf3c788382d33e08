//! The server the tests run against, and a fresh database on it per test.
//!
//! `AZS_USAGE_TEST_POSTGRES` names a server by URL (`postgres://user:password@host:port/database`;
//! the user may create databases). When it is unset, `scripts/postgres.sh start` installs (if needed)
//! and starts a throw-away server on loopback and prints its URL; it keeps running for the next test
//! binary, and `scripts/postgres.sh stop` ends it.

use azs_store_postgres::{PostgresConfig, PostgresStore, RetryPolicy};
use std::sync::OnceLock;
use std::time::Duration;

pub const SERVER: &str = "AZS_USAGE_TEST_POSTGRES";

/// The server's URL, starting one when none is named.
pub fn url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = std::env::var(SERVER).ok().filter(|s| !s.trim().is_empty()) {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");
        let out = std::process::Command::new("bash")
            .args([script, "start"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("{SERVER} is not set and {script} could not run: {e}"));
        assert!(
            out.status.success(),
            "{SERVER} is not set and `scripts/postgres.sh start` failed ({}); start a server with it, \
             or set {SERVER} to a postgres:// URL",
            out.status
        );
        String::from_utf8(out.stdout).expect("a UTF-8 URL").trim().to_owned()
    })
}

/// A database of its own on the test server, dropped when [`Fresh::drop_now`] is called.
pub struct Fresh {
    pub name: String,
    pub config: PostgresConfig,
    admin: PostgresStore,
}

impl Fresh {
    pub async fn new(purpose: &str) -> Self {
        let config = PostgresConfig::parse(url()).unwrap_or_else(|e| panic!("{SERVER}: {e}")).with_retry(
            RetryPolicy {
                attempts: 4,
                first_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
            },
        );
        let admin = PostgresStore::lazy(config.clone()).expect("the admin pool builds");
        let name = format!("azs_usage_test_{purpose}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        admin.create_database(&name).await.expect("the test database is created");
        let config = config.with_database(&name);
        say(&format!("PostgreSQL tests: database {name} on {}", admin.address()));
        Fresh { name, config, admin }
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> PostgresStore {
        PostgresStore::connect(self.config.clone()).await.expect("the store connects and migrates")
    }

    pub async fn drop_now(self) {
        self.admin.drop_database(&self.name).await.expect("the test database is dropped");
    }
}

/// Writes straight to the process's stderr: the harness captures `eprintln!` of a passing test, and
/// which server a run used must be visible.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
