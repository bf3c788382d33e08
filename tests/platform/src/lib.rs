//! What the platform tests share: where the packaged artifacts are, the documented fixtures, the Azure
//! custom handler started as the Functions host starts it, and the Lambda Runtime API emulator.

pub mod runtime_api;

use anyhow::{Context, Result, bail};
pub use azs_testkit::ground_truth::{Comparable, assert_same_rows};
use reqwest::StatusCode;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"))
}

/// A packaged artifact; fails with the command that makes it when it is missing.
pub fn artifact(relative: &str) -> PathBuf {
    let path = target_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run scripts/package.sh --debug (after cargo test --workspace --no-run) or \
         scripts/package.sh first",
        path.display()
    );
    path
}

/// A fixture from the platforms' documentation (the test kit's copy of shared/reference/fixtures).
pub fn fixture(name: &str) -> Value {
    azs_testkit::fixtures::json(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Lines a child process writes on stdout, kept for assertions (the functions log JSON lines there).
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn capture(&self, stdout: impl std::io::Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A process ended when dropped.
pub struct Running {
    pub child: Child,
    pub stdout: Output,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `program` with `env` (and nothing of ours inherited), capturing its stdout.
pub fn spawn(program: &Path, env: &[(&str, String)]) -> Result<Running> {
    let mut command = azs_testkit::process::scrubbed(program);
    command.envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
    let stdout = Output::default();
    stdout.capture(child.stdout.take().expect("piped stdout"));
    Ok(Running { child, stdout })
}

/// The Azure custom handler started alone, as the Functions host starts it.
pub struct Handler {
    pub process: Running,
    pub base: String,
    /// When the process was spawned.
    pub spawned: Instant,
    /// From spawn to the first 200 on `GET /` (the host's readiness probe).
    pub ready_after: Duration,
}

impl Handler {
    /// The packaged `handler` with `FUNCTIONS_CUSTOMHANDLER_PORT` and `env`; returns once `GET /` answers.
    pub async fn start(env: &[(&str, String)]) -> Result<Handler> {
        let port = free_port();
        let mut env = env.to_vec();
        env.push(("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string()));
        let started = Instant::now();
        let mut process = spawn(&artifact("functionapp/app/handler"), &env)?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{base}/")).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok(Handler { process, base, spawned: started, ready_after: started.elapsed() });
            }
            if let Some(status) = process.child.try_wait()? {
                bail!("the handler exited with {status} before answering GET /");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the handler did not answer GET / within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// The moto endpoint the lead's test runner exported, or one started with `scripts/moto.sh`.
pub fn moto_url() -> Result<String> {
    if let Ok(url) = std::env::var("AZS_USAGE_TEST_MOTO_URL")
        && !url.trim().is_empty()
    {
        return Ok(url);
    }
    script("moto.sh", &["start"], &[])
}

/// `cargo lambda watch` (the Lambda APIs) and both functions, running through `scripts/lambda-watch.sh`;
/// stopped when dropped. One at a time:
/// the script keeps one emulator per target directory, and the tests that start it with their own
/// environment share one test process.
pub struct LambdaWatch {
    pub base: String,
    _exclusive: std::sync::MutexGuard<'static, ()>,
}

impl LambdaWatch {
    /// Starts the emulator with `env` passed on to the functions (see the script's header).
    pub fn start(env: &[(&str, String)]) -> Result<LambdaWatch> {
        static EMULATOR: Mutex<()> = Mutex::new(());
        // A test that failed while holding the emulator stopped it on the way out (Drop).
        let exclusive = EMULATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let base = script("lambda-watch.sh", &["start"], env)?;
        Ok(LambdaWatch { base, _exclusive: exclusive })
    }

    /// The emulator's log, then each function's output (for a failed assertion's message).
    pub fn log(&self) -> String {
        ["log", "collect-usage.log", "register-stamp.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(target_dir().join("lambda-watch").join(name));
                format!("--- {name}\n{}", text.unwrap_or_default())
            })
            .collect()
    }

    /// POSTs `body` as JSON to `path` on the emulator (a function URL path such as
    /// `/lambda-url/register-stamp/stamps`); the answer's status and body (JSON, else the text).
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        // Bounded generously: a collection run against simulated stamps takes seconds.
        const ANSWER_WITHIN: Duration = Duration::from_secs(5 * 60);
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(body)
            .timeout(ANSWER_WITHIN)
            .send()
            .await
            .expect("the emulator answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Invokes `function` with `event` through the Runtime API emulator's Invoke endpoint.
    pub async fn invoke(&self, function: &str, event: &Value) -> (StatusCode, Value) {
        self.post(&format!("/2015-03-31/functions/{function}/invocations"), event).await
    }
}

/// A stamp's ground truth, every field (see `azs_testkit::ground_truth`), sorted.
pub fn expected_usage_rows(truth: &[stamp_sim::TruthRow]) -> Vec<Comparable> {
    azs_testkit::ground_truth::truth_rows(truth.to_vec())
}

/// Every usage row in a SQLite database, every field, sorted; empty when there is no database yet.
pub fn stored_usage_rows(db: &Path) -> Vec<Comparable> {
    azs_testkit::ground_truth::sqlite_rows(db, None)
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        let _ = script("lambda-watch.sh", &["stop"], &[]);
    }
}

/// Runs `scripts/NAME ARGS` with `env` and returns its stdout's last line.
fn script(name: &str, args: &[&str], env: &[(&str, String)]) -> Result<String> {
    let path = repo_root().join("scripts").join(name);
    let mut command = Command::new(&path);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|n| n.starts_with("AZS_USAGE_") && n != "AZS_USAGE_TEST_MOTO_URL") {
            command.env_remove(&name);
        }
    }
    let out = command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!("{} {} failed with {}", path.display(), args.join(" "), out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.lines().last().unwrap_or_default().trim().to_owned())
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
