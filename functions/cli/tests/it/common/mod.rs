//! Shared set-up for the end-to-end tests: simulated stamps, a fresh database and secret file, and
//! the real `azs-usage` binary run as a separate process (so it can be killed and run in parallel).

use azs_core::ports::{ExportFilter, Store};
use azs_store_postgres::{PostgresConfig, PostgresStore};
use azs_store_sqlite::SqliteStore;
use chrono::{DateTime, Duration, Utc};
use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec, TestCertificate};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub const SECRET: &str = "e2e-client-secret-7c41";

pub struct World {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub certificate: TestCertificate,
    pub collect_from: DateTime<Utc>,
    /// Stamp ids as registered, in simulator order.
    pub stamp_ids: Vec<String>,
    /// Where `azs-usage` keeps its data: a SQLite file in `dir`, or a PostgreSQL database.
    pub backend: Backend,
}

/// The database a world's `azs-usage` runs use.
pub enum Backend {
    /// `azs-usage.db` in the world's directory.
    Sqlite,
    /// A database made for this world on the test PostgreSQL server (see [`postgres_server_url`]).
    /// (The settings boxed: they are most of the enum's size.)
    Postgres { url: String, name: String, config: Box<PostgresConfig> },
}

/// The test PostgreSQL server's URL: `AZS_USAGE_TEST_POSTGRES`, or else the one
/// `scripts/postgres.sh start` brings up (installing PostgreSQL if needed; it keeps running for the
/// next test, `scripts/postgres.sh stop` ends it).
pub fn postgres_server_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = std::env::var("AZS_USAGE_TEST_POSTGRES").ok().filter(|s| !s.trim().is_empty()) {
            return url;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/postgres.sh");
        let out =
            Command::new("bash").args([script, "start"]).stderr(Stdio::inherit()).output().unwrap_or_else(
                |e| panic!("AZS_USAGE_TEST_POSTGRES is not set and {script} could not run: {e}"),
            );
        assert!(
            out.status.success(),
            "AZS_USAGE_TEST_POSTGRES is not set and `scripts/postgres.sh start` failed ({})",
            out.status
        );
        String::from_utf8(out.stdout).expect("a UTF-8 URL").trim().to_owned()
    })
}

impl Backend {
    /// A fresh database of its own on the test PostgreSQL server.
    pub async fn fresh_postgres(purpose: &str) -> Backend {
        let server = postgres_server_url();
        let admin = PostgresStore::lazy(PostgresConfig::parse(server).expect("a PostgreSQL URL")).unwrap();
        let name = format!("azs_usage_e2e_{purpose}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        admin.create_database(&name).await.expect("the test database is created");
        let mut url = url::Url::parse(server).expect("a PostgreSQL URL");
        url.set_path(&format!("/{name}"));
        let config = PostgresConfig::parse(url.as_str()).unwrap();
        eprintln!("end-to-end test on PostgreSQL database {name} ({})", config.address());
        Backend::Postgres { url: url.to_string(), name, config: Box::new(config) }
    }
}

// The ground-truth comparison every test of the workspace shares (every field, see azs-testkit).
pub use azs_testkit::ground_truth::{Comparable, assert_same_rows, json_canonical};

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_azs-usage")
}

impl World {
    /// Starts the simulator with `specs` and registers every stamp through `azs-usage stamp add`.
    pub async fn start(
        specs: impl FnOnce(&TestCertificate) -> Vec<StampSpec>,
        hours: i64,
        page_size: usize,
    ) -> World {
        World::start_on(Backend::Sqlite, specs, hours, page_size).await
    }

    /// [`World::start`] with `azs-usage` keeping its data in `backend`.
    pub async fn start_on(
        backend: Backend,
        specs: impl FnOnce(&TestCertificate) -> Vec<StampSpec>,
        hours: i64,
        page_size: usize,
    ) -> World {
        clear_of_the_turn_of_the_hour().await;
        let certificate = stamp_sim::generate_test_certificate("e2e-collector").expect("test certificate");
        let specs = specs(&certificate);
        let sim = Simulator::start(SimulatorConfig { seed: 7, page_size, stamps: specs })
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let collect_from = azs_core::window::floor_hour(Utc::now()) - Duration::hours(hours + 1);
        let mut world = World { sim, dir, certificate, collect_from, stamp_ids: Vec::new(), backend };
        std::fs::write(world.path("ca.pem"), world.sim.ca_pem()).unwrap();
        let pem = format!("{}\n{}", world.certificate.certificate_pem, world.certificate.private_key_pem);
        std::fs::write(world.path("client.pem"), pem).unwrap();
        for i in 0..world.sim.stamps().len() {
            let id = world.register(i, true).await;
            world.stamp_ids.push(id);
        }
        world
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn database(&self) -> PathBuf {
        self.path("azs-usage.db")
    }

    /// The world's `AZS_USAGE_DATABASE`.
    pub fn database_setting(&self) -> String {
        match &self.backend {
            Backend::Sqlite => format!("sqlite:{}", self.database().display()),
            Backend::Postgres { url, .. } => url.clone(),
        }
    }

    /// The world's database as the store ports see it.
    pub async fn store(&self) -> std::sync::Arc<dyn Store> {
        match &self.backend {
            Backend::Sqlite => {
                std::sync::Arc::new(SqliteStore::open(self.database()).expect("database opens"))
            }
            Backend::Postgres { config, .. } => std::sync::Arc::new(
                PostgresStore::connect(config.as_ref().clone()).await.expect("database opens"),
            ),
        }
    }

    /// Drops the world's PostgreSQL database (a SQLite file goes with the directory).
    pub async fn finish(self) {
        if let Backend::Postgres { name, .. } = &self.backend {
            let admin = PostgresStore::lazy(PostgresConfig::parse(postgres_server_url()).unwrap()).unwrap();
            admin.drop_database(name).await.expect("the test database is dropped");
        }
    }

    /// `azs-usage` with this world's database and secret file, and none of our variables inherited
    /// from the shell that runs the tests (the test kit's launcher); `stamp add` writes the secret file.
    pub fn cli(&self) -> Command {
        let mut c = azs_testkit::process::scrubbed(exe());
        c.env("AZS_USAGE_DATABASE", self.database_setting())
            .env("AZS_USAGE_SECRETS", format!("file:{}", self.path("secrets.json").display()))
            .env("AZS_USAGE_SETTLE_DELAY", "1h")
            // The simulated stamps listen on loopback: admitted only when named.
            .env("AZS_USAGE_ALLOWED_STAMP_HOSTS", "127.0.0.1")
            // The scheduled verify re-pulls a day once per stamp: off unless a test is about it, so
            // that the other tests' faults and request counts meet only the collection they test.
            .env("AZS_USAGE_VERIFY_TRAILING_HOURS", "0")
            .stdin(Stdio::null());
        c
    }

    pub async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cli();
        c.args(args);
        tokio::task::spawn_blocking(move || c.output().expect("azs-usage runs")).await.unwrap()
    }

    /// `azs-usage` with extra environment variables.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cli();
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        tokio::task::spawn_blocking(move || c.output().expect("azs-usage runs")).await.unwrap()
    }

    /// Registers simulator stamp `i` with the seed's positional arguments, collecting from `collect_from`.
    pub async fn register(&self, i: usize, verify: bool) -> String {
        self.add(i, verify, Some(self.collect_from)).await
    }

    /// Registers simulator stamp `i` again after `stamp remove`: no `--collect-from`, so it resumes from
    /// its tombstone's watermark.
    pub async fn register_again(&self, i: usize) -> String {
        self.add(i, true, None).await
    }

    async fn add(&self, i: usize, verify: bool, collect_from: Option<DateTime<Utc>>) -> String {
        let s = self.sim.stamp(i);
        let adfs = s.is_adfs();
        let thumbprint = if adfs { self.certificate.thumbprint_hex.clone() } else { "-".into() };
        let from = collect_from.map(|t| t.to_rfc3339());
        let client = self.path("client.pem").display().to_string();
        let mut args = stamp_add_args(&s, &thumbprint, &format!("stamp-{i}"), &self.path("ca.pem"));
        if let Some(from) = from {
            args.extend(["--collect-from".into(), from]);
        }
        if adfs {
            args.extend(["--is-adfs".into(), "--certificate-file".into(), client]);
        }
        if !verify {
            args.push("--no-verify".into());
        }
        let mut c = self.cli();
        c.args(&args);
        if !adfs {
            c.env("AZS_USAGE_APPLICATION_SECRET", SECRET);
        }
        let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
        assert!(out.status.success(), "stamp add failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("registered stamp "))
            .and_then(|l| l.split_whitespace().next())
            .expect("stamp id printed")
            .to_owned()
    }

    /// The simulator's ground truth for stamp `i` from `collect_from` to `until`.
    pub fn truth(&self, i: usize, until: DateTime<Utc>) -> Vec<Comparable> {
        let mut rows: Vec<Comparable> = self
            .sim
            .stamp(i)
            .ground_truth(self.collect_from, until)
            .into_iter()
            .map(Comparable::from_truth)
            .collect();
        rows.sort();
        rows
    }

    /// Every stored row of stamp `i`, sorted.
    pub async fn stored(&self, i: usize) -> Vec<Comparable> {
        let store = self.store().await;
        let filter =
            ExportFilter { stamps: vec![azs_core::StampId(self.stamp_ids[i].clone())], ..Default::default() };
        let mut rows = Vec::new();
        store
            .export_rows(&filter, &mut |s| {
                rows.push(Comparable {
                    reported_start: s.window.start,
                    subscription_id: s.row.subscription_id,
                    meter_id: s.row.meter_id,
                    usage_start: s.row.usage_start,
                    usage_end: s.row.usage_end,
                    quantity: s.row.quantity.to_string(),
                    resource_uri: s.row.resource_uri,
                    location: s.row.location,
                    tags: json_canonical(s.row.tags.as_deref()),
                    additional_info: json_canonical(s.row.additional_info.as_deref()),
                });
                Ok(())
            })
            .await
            .expect("export works");
        rows.sort();
        rows
    }

    /// The watermark the database holds for stamp `i`.
    pub async fn watermark(&self, i: usize) -> DateTime<Utc> {
        let store = self.store().await;
        store.get_status(&azs_core::StampId(self.stamp_ids[i].clone())).await.unwrap().unwrap().watermark
    }

    /// The newest hour a collection may store now (complete and past the 1 h settle delay). Read when a
    /// test asserts; [`World::start`] keeps a test clear of the moment it moves.
    pub fn horizon(&self) -> DateTime<Utc> {
        azs_core::window::floor_hour(Utc::now() - Duration::hours(1))
    }

    /// The reported windows stamp `i`'s rows are stored under, in order: one per hour, or longer where
    /// a catch-up span was committed as one window.
    pub fn stored_windows(&self, i: usize) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let db = rusqlite::Connection::open(self.database()).expect("database opens");
        let mut stmt = db
            .prepare(
                "SELECT DISTINCT u.reported_start, u.reported_end FROM usage_rows u
                 JOIN stamp_numbers s ON s.stamp_no = u.stamp_no WHERE s.stamp_id = ?1 ORDER BY 1",
            )
            .unwrap();
        stmt.query_map([&self.stamp_ids[i]], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .unwrap()
            .map(|w| {
                let (s, e) = w.unwrap();
                (DateTime::from_timestamp(s, 0).unwrap(), DateTime::from_timestamp(e, 0).unwrap())
            })
            .collect()
    }

    /// The ground truth of stamp `i` up to `until`, each row under the stored window that holds the
    /// hour that reported it: what a stamp collected (partly) in catch-up spans must hold. The windows
    /// must not overlap.
    pub fn truth_in_windows(
        &self,
        i: usize,
        until: DateTime<Utc>,
        windows: &[(DateTime<Utc>, DateTime<Utc>)],
    ) -> Vec<Comparable> {
        for pair in windows.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "stamp {i}: stored windows overlap: {pair:?}");
        }
        let mut rows: Vec<Comparable> = self
            .truth(i, until)
            .into_iter()
            .map(|mut r| {
                if let Some((start, _)) =
                    windows.iter().find(|(s, e)| *s <= r.reported_start && r.reported_start < *e)
                {
                    r.reported_start = *start;
                }
                r
            })
            .collect();
        rows.sort();
        rows
    }

    /// [`World::stored_windows`] on either backend: through the store's port on PostgreSQL (whose
    /// answer also names windows holding only quarantined rows; the tests using it quarantine none).
    pub async fn stored_windows_of(&self, i: usize) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        match &self.backend {
            Backend::Sqlite => self.stored_windows(i),
            Backend::Postgres { .. } => {
                let range = azs_core::window::ReportedWindow {
                    start: self.collect_from - Duration::days(2),
                    end: Utc::now() + Duration::days(2),
                };
                let stamp = azs_core::StampId(self.stamp_ids[i].clone());
                let windows = self.store().await.stored_windows(&stamp, range).await.expect("stored windows");
                windows.into_iter().map(|w| (w.start, w.end)).collect()
            }
        }
    }

    /// Asserts that stamp `i` holds exactly its ground truth up to its watermark, each row under its
    /// stored window (an hour, or a catch-up span).
    pub async fn assert_exact_to_watermark(&self, i: usize) {
        let watermark = self.watermark(i).await;
        let windows = self.stored_windows_of(i).await;
        assert_same_rows(i, &self.stored(i).await, &self.truth_in_windows(i, watermark, &windows));
    }

    /// Asserts that stamp `i` is collected up to the horizon and holds exactly its ground truth, each
    /// row under its stored window (an hour, or a catch-up span).
    pub async fn assert_complete_in_windows(&self, i: usize) {
        assert_eq!(self.watermark(i).await, self.horizon(), "stamp {i} is not collected up to the horizon");
        self.assert_exact_to_watermark(i).await;
    }

    /// Asserts that stamp `i`'s stored rows are exactly the ground truth up to its horizon, hour by
    /// hour (a row stored under a catch-up span fails it: see [`Self::assert_complete_in_windows`]).
    pub async fn assert_complete(&self, i: usize) {
        let until = self.horizon();
        assert_eq!(self.watermark(i).await, until, "stamp {i} is not collected up to the horizon");
        let (stored, truth) = (self.stored(i).await, self.truth(i, until));
        assert_same_rows(i, &stored, &truth);
    }
}

pub fn spec(index: usize, auth: SimAuth, tenants: usize) -> StampSpec {
    StampSpec {
        tenants,
        meters_per_tenant: 5,
        late_rows_per_window: 3,
        duplicate_across_pages: true,
        variants: true,
        ..StampSpec::generated(7, index, auth)
    }
}

/// Stamp `index` as [`spec`] (late rows, casing variants) but without repeats across pages: a stamp
/// that repeats pages holds equal rows in every span of more than one page and is collected hour by
/// hour (`catch_up_spans.rs` shows it).
pub fn no_repeats(index: usize, tenants: usize) -> StampSpec {
    StampSpec { duplicate_across_pages: false, ..spec(index, aad(), tenants) }
}

/// Stamp `index` without page repeats and without variants: its quantities are never integers, so
/// no two of its rows are alike but for their reported hour, and its catch-up spans are never split
/// hour by hour, whatever the hour of day a test runs at (the data is a function of the absolute hour).
pub fn plain(index: usize, tenants: usize) -> StampSpec {
    StampSpec { variants: false, ..no_repeats(index, tenants) }
}

pub fn aad() -> SimAuth {
    SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None }
}

pub fn adfs(certificate: &TestCertificate) -> SimAuth {
    SimAuth::Adfs { secret: None, certificate_pem: Some(certificate.certificate_pem.clone()) }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `stamp add`'s arguments for simulator stamp `s`: its positional connection fields (`thumbprint`: the
/// client certificate's, or `-` for a secret), `--name` and the simulator's CA. Callers add the rest.
pub fn stamp_add_args(
    s: &stamp_sim::SimStampHandle,
    thumbprint: &str,
    name: &str,
    ca: &std::path::Path,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["stamp".into(), "add".into()];
    args.extend([s.admin_subscription_id(), s.tenant_id(), s.application_id()].map(|v| v.to_string()));
    args.extend([thumbprint.into(), s.admin_arm_endpoint().to_string(), "-".into(), "-".into()]);
    args.extend(["--name".into(), name.into(), "--ca-file".into(), ca.display().to_string()]);
    args
}

/// The longest a test of this suite takes from `World::start` to its last assertion, with room for a
/// loaded machine (the chaos test, the longest, takes about 70 s).
const LONGEST_TEST: Duration = Duration::minutes(4);

/// Waits past the turn of the hour when it would come within [`LONGEST_TEST`]. The tests compare what a
/// run collected with the horizon at the time they assert; when the hour turned in between, a complete
/// stamp would look one hour short and a test fail for no fault of the code. Costs at most a few
/// minutes once per hour of test time.
async fn clear_of_the_turn_of_the_hour() {
    let now = Utc::now();
    let turn = azs_core::window::floor_hour(now) + Duration::hours(1);
    if turn - now < LONGEST_TEST {
        let wait = (turn - now + Duration::seconds(2)).to_std().unwrap_or_default();
        eprintln!("waiting {} s for the turn of the hour before starting", wait.as_secs());
        tokio::time::sleep(wait).await;
    }
}
