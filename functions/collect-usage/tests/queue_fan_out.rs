//! Queue fan-out on real SQS (moto, through the AWS SDK): the timer's messages, the SQS-triggered
//! worker given the documented Lambda SQS event, simulated stamps over HTTPS and a real database. The
//! test plays the Lambda event source mapping: it receives messages, invokes a worker with one record
//! per invocation (a bounded pool, like `maximum_concurrency`), and deletes what the worker did not
//! report as a batch item failure.
//!
//! It runs twice. On SQLite the workers are tasks of this process calling `sqs::work_batch`. On
//! PostgreSQL they are [`WORKER_PROCESSES`] `collect-usage` processes, the Lambda bootstrap itself,
//! each in a sandbox of its own (a Runtime API on a local port, configured from the environment as
//! Lambda configures it), committing concurrently to one database; the timers are two of those
//! processes invoked with EventBridge's scheduled event, and a worker killed mid-window is a SIGKILL
//! whose sandbox is replaced by a cold start.
//!
//! One run covers: two overlapping timers (every stamp enqueued twice), continuations (a slow stamp
//! whose worker budget holds about one window), a worker killed mid-window (its message comes back
//! after the visibility timeout, once its lease expired), a redelivered message (a delete that was
//! "lost"), a poison stamp (its token is refused) that ends in the dead-letter queue with its stamp
//! and error, shown in its status, a stamp whose first window once takes longer than a whole worker
//! budget (continued, not dead-lettered), and one whose every window does (dead-lettered after
//! `MAX_ATTEMPTS` invocations in a row that committed nothing, saying why). At the end every good stamp
//! holds exactly the simulator's ground truth up to the horizon.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use azs_azure_stack::usage::parse_quantity;
use azs_collect_usage::sqs::{BatchResponse, work_batch};
use azs_core::collect::{CollectSettings, Collector};
use azs_core::fan_out::{DeadLetter, FanOutSettings, StampFanOut};
use azs_core::ports::{ExportFilter, SecretStore, StampQueue, Store, UsageSource};
use azs_core::registration::StampRegistration;
use azs_core::usage::UsageRow;
use azs_core::{Secret, StampId};
use azs_platform_tests::runtime_api::{self, Outcome};
use azs_platform_tests::{Running, spawn};
use azs_store_postgres::{PostgresConfig, PostgresStore};
use chrono::{DateTime, Duration as Hours, Utc};
use serde_json::Value;
use serde_json::json;
use stamp_sim::{Fault, RequestKind, SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

const SECRET: &str = "queue-test-client-secret-51d2";
const LEASE_TTL: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 3;
/// Workers invoked at once (the event source mapping's `maximum_concurrency`); on PostgreSQL, the
/// worker processes alive at any time.
const WORKER_PROCESSES: usize = 3;

/// How long things take on each backend. A worker in this process is given a 1.2 s budget and a
/// 100 ms commit reserve; the `collect-usage` process keeps its built-in 10 s reserve, so its budget
/// (half of a 26 s invocation timeout, from the Runtime API's deadline as on Lambda) leaves 3 s for
/// pulls, and the slow and hanging stamps are slowed to match (a slow window takes about a third of
/// that, so a loaded machine does not push it over).
struct Timing {
    /// Each worker's budget (a pull still going when only the commit reserve is left fails its
    /// window: the budget must hold one whole window).
    budget: Duration,
    /// The time a worker has for pulls: the budget less the commit reserve.
    pulls_within: Duration,
    /// Every usage page of the slow stamp takes this long (about one window per budget).
    slow_page: Duration,
    /// The killed worker's stamp hangs this long on its first usage request, and is killed after
    /// `kill_after` (in the middle of it).
    first_hang: Duration,
    kill_after: Duration,
    visibility: Duration,
}

const IN_PROCESS: Timing = Timing {
    budget: Duration::from_millis(1200),
    pulls_within: Duration::from_millis(1100),
    slow_page: Duration::from_millis(150),
    first_hang: Duration::from_secs(3),
    kill_after: Duration::from_millis(800),
    visibility: Duration::from_secs(3),
};

/// The Lambda function's timeout the sandboxes' Runtime API gives each invocation.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(26);

const PROCESSES: Timing = Timing {
    budget: Duration::from_secs(13),
    pulls_within: Duration::from_secs(3),
    slow_page: Duration::from_millis(500),
    first_hang: Duration::from_secs(6),
    kill_after: Duration::from_millis(1500),
    visibility: Duration::from_secs(5),
};

fn moto_url() -> Option<String> {
    match std::env::var("AZS_USAGE_TEST_MOTO_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("AZS_USAGE_SKIP_MOTO").as_deref() == Ok("1") => {
            eprintln!("NOT RUN: queue fan-out on SQS (AZS_USAGE_SKIP_MOTO=1, no moto)");
            None
        }
        _ => panic!(
            "AZS_USAGE_TEST_MOTO_URL is not set: run `export AZS_USAGE_TEST_MOTO_URL=$(scripts/moto.sh start)`"
        ),
    }
}

async fn aws_config_for(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

struct Queues {
    client: Client,
    url: String,
    arn: String,
    dead_letter_url: String,
}

async fn create_queues(config: &aws_config::SdkConfig, visibility: Duration) -> Queues {
    let client = Client::new(config);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let dead_letter_url = client
        .create_queue()
        .queue_name(format!("azs-stamp-work-dlq-{suffix}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = queue_arn(&client, &dead_letter_url).await;
    // As Terraform sets it: SQS's own redrive one receive after our named dead letter.
    let redrive =
        json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": (MAX_ATTEMPTS + 1).to_string() });
    let url = client
        .create_queue()
        .queue_name(format!("azs-stamp-work-{suffix}"))
        .attributes(QueueAttributeName::VisibilityTimeout, visibility.as_secs().to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = queue_arn(&client, &url).await;
    Queues { client, url, arn, dead_letter_url }
}

async fn queue_arn(client: &Client, url: &str) -> String {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
}

/// Messages on the queue, visible, in flight or delayed.
async fn depth(client: &Client, url: &str) -> u64 {
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let map = attributes.attributes().unwrap();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ]
    .iter()
    .map(|k| map.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
    .sum()
}

fn spec(index: usize) -> StampSpec {
    StampSpec {
        tenants: 3,
        meters_per_tenant: 3,
        late_rows_per_window: 2,
        duplicate_across_pages: true,
        ..StampSpec::generated(
            11,
            index,
            SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None },
        )
    }
}

/// (reported hour, row key), sorted: equal lists mean the same rows, each once.
type Rows = Vec<(DateTime<Utc>, u128)>;

fn truth(sim: &Simulator, i: usize, from: DateTime<Utc>, until: DateTime<Utc>) -> Rows {
    let mut rows: Rows = sim
        .stamp(i)
        .ground_truth(from, until)
        .into_iter()
        .map(|t| {
            let row = UsageRow {
                quantity: parse_quantity(&t.quantity).unwrap(),
                subscription_id: t.subscription_id,
                meter_id: t.meter_id,
                usage_start: t.usage_start,
                usage_end: t.usage_end,
                resource_uri: t.resource_uri,
                location: t.location,
                tags: t.tags,
                additional_info: t.additional_info,
            };
            (t.reported_start, u128::from_be_bytes(row.key().0))
        })
        .collect();
    rows.sort();
    rows
}

async fn stored(store: &dyn Store, id: &StampId) -> Rows {
    let mut rows = Rows::new();
    let filter = ExportFilter { stamps: vec![id.clone()], ..Default::default() };
    store
        .export_rows(&filter, &mut |s| {
            rows.push((s.window.start, u128::from_be_bytes(s.row.key().0)));
            Ok(())
        })
        .await
        .unwrap();
    rows.sort();
    rows
}

/// The PostgreSQL server the test command started (`scripts/postgres.sh start` prints its URL).
fn postgres_server_url() -> String {
    match std::env::var("AZS_USAGE_TEST_POSTGRES") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "AZS_USAGE_TEST_POSTGRES is not set: run `export AZS_USAGE_TEST_POSTGRES=$(scripts/postgres.sh start)`"
        ),
    }
}

/// A database of the test's own on the test server: its URL and its name (to drop it).
async fn fresh_postgres_database() -> (String, String) {
    let server = postgres_server_url();
    let admin = PostgresStore::lazy(PostgresConfig::parse(&server).expect("a PostgreSQL URL")).unwrap();
    let name = format!("azs_usage_queue_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    admin.create_database(&name).await.expect("the test database is created");
    let mut url = url::Url::parse(&server).expect("a PostgreSQL URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
}

async fn drop_postgres_database(name: &str) {
    let admin = PostgresStore::lazy(PostgresConfig::parse(&postgres_server_url()).unwrap()).unwrap();
    admin.drop_database(name).await.expect("the test database is dropped");
}

/// One Lambda sandbox: a `collect-usage` process and the Runtime API it polls.
struct Sandbox {
    process: Running,
    events: mpsc::UnboundedSender<Value>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl Sandbox {
    /// A cold start: the bootstrap with the function's environment, polling a Runtime API of its own.
    async fn start(env: &[(&'static str, String)]) -> Sandbox {
        let (api, events, outcomes) = runtime_api::serve(PROCESS_TIMEOUT).await;
        let mut env = env.to_vec();
        env.push(("AWS_LAMBDA_RUNTIME_API", api));
        let process = spawn(Path::new(env!("CARGO_BIN_EXE_collect-usage")), &env).unwrap();
        Sandbox { process, events, outcomes }
    }

    /// Hands the function `event`; its response, or `None` when `kill_after` passed first, and then
    /// the process was killed (SIGKILL) mid-invocation.
    async fn invoke(
        mut self,
        event: Value,
        kill_after: Option<Duration>,
    ) -> (Option<Value>, Option<Sandbox>) {
        self.events.send(event).unwrap();
        let answer = async {
            match tokio::time::timeout(Duration::from_secs(60), self.outcomes.recv()).await {
                Ok(Some(Outcome::Response(response))) => response,
                Ok(Some(Outcome::Error(error))) => {
                    panic!("the worker process failed the invocation: {error}")
                }
                Ok(None) | Err(_) => panic!(
                    "the worker process gave no answer within 60 s; its output:\n{}",
                    self.process.stdout.lines().join("\n")
                ),
            }
        };
        match kill_after {
            None => (Some(answer.await), Some(self)),
            Some(after) => match tokio::time::timeout(after, answer).await {
                Ok(response) => (Some(response), Some(self)),
                // Dropping the sandbox ends its process with SIGKILL (`Running`'s drop).
                Err(_) => (None, None),
            },
        }
    }
}

/// Where the event source mapping's invocations run.
enum Workers {
    /// Tasks of this process calling `work_batch`, at most `WORKER_PROCESSES` at a time.
    Tasks { fan_out: Arc<StampFanOut>, queue: Arc<dyn StampQueue>, pool: Arc<Semaphore> },
    /// `collect-usage` processes: idle sandboxes wait on `idle`; a killed one is replaced by a cold start.
    Processes {
        env: Vec<(&'static str, String)>,
        idle: tokio::sync::Mutex<mpsc::UnboundedReceiver<Sandbox>>,
        back: mpsc::UnboundedSender<Sandbox>,
        cold_starts: AtomicUsize,
    },
}

/// A worker taken from the pool for one invocation.
enum Worker {
    Task(tokio::sync::OwnedSemaphorePermit),
    Process(Sandbox),
}

impl Workers {
    async fn processes(env: Vec<(&'static str, String)>) -> Workers {
        let (back, idle) = mpsc::unbounded_channel();
        for _ in 0..WORKER_PROCESSES {
            back.send(Sandbox::start(&env).await).unwrap();
        }
        Workers::Processes {
            env,
            idle: tokio::sync::Mutex::new(idle),
            back,
            cold_starts: WORKER_PROCESSES.into(),
        }
    }

    /// Waits for a free worker.
    async fn take(&self) -> Worker {
        match self {
            Workers::Tasks { pool, .. } => Worker::Task(pool.clone().acquire_owned().await.unwrap()),
            Workers::Processes { idle, .. } => Worker::Process(idle.lock().await.recv().await.unwrap()),
        }
    }

    /// One invocation with the SQS `event` on `worker`; `None` when the worker was killed after
    /// `kill_after` (a killed process's sandbox is replaced by a cold start). The worker is handed back
    /// for [`Workers::give_back`].
    async fn invoke(
        &self,
        worker: Worker,
        event: Value,
        kill_after: Option<Duration>,
    ) -> (Option<BatchResponse>, Worker) {
        match (self, worker) {
            (Workers::Tasks { fan_out, queue, .. }, Worker::Task(permit)) => {
                let work = work_batch(fan_out, queue.as_ref(), event, IN_PROCESS.budget);
                let response = match kill_after {
                    // The platform ends the worker in the middle of its window (no delete, lease held).
                    Some(after) => tokio::time::timeout(after, work).await.ok(),
                    None => Some(work.await),
                };
                (response.map(Result::unwrap), Worker::Task(permit))
            }
            (Workers::Processes { env, cold_starts, .. }, Worker::Process(sandbox)) => {
                let (response, sandbox) = sandbox.invoke(event, kill_after).await;
                let sandbox = match sandbox {
                    Some(sandbox) => sandbox,
                    None => {
                        cold_starts.fetch_add(1, Ordering::Relaxed);
                        Sandbox::start(env).await
                    }
                };
                let response = response.map(|r| serde_json::from_value(r).expect("a batch response"));
                (response, Worker::Process(sandbox))
            }
            _ => unreachable!("a pool hands out its own kind of worker"),
        }
    }

    /// A worker is free again.
    fn give_back(&self, worker: Worker) {
        match (self, worker) {
            (Workers::Tasks { .. }, Worker::Task(permit)) => drop(permit),
            (Workers::Processes { back, .. }, Worker::Process(sandbox)) => back.send(sandbox).unwrap(),
            _ => unreachable!("a pool takes back its own kind of worker"),
        }
    }

    /// Two timers firing at once: each enqueues every enabled stamp (on PostgreSQL, two worker
    /// processes invoked with EventBridge's scheduled event, in `AZS_USAGE_FAN_OUT=queue`).
    async fn fire_two_timers(&self) -> (usize, usize) {
        match self {
            Workers::Tasks { fan_out, queue, .. } => {
                let (a, b) = tokio::join!(
                    fan_out.enqueue_enabled(queue.as_ref()),
                    fan_out.enqueue_enabled(queue.as_ref())
                );
                (a.unwrap().len(), b.unwrap().len())
            }
            Workers::Processes { .. } => {
                let event = azs_platform_tests::fixture("aws-eventbridge-scheduled-event.json");
                let timer = |worker| async {
                    let Worker::Process(sandbox) = worker else { unreachable!() };
                    let (response, sandbox) = sandbox.invoke(event.clone(), None).await;
                    self.give_back(Worker::Process(sandbox.unwrap()));
                    response.unwrap()["enqueued"].as_array().map_or(0, Vec::len)
                };
                let (first, second) = (self.take().await, self.take().await);
                tokio::join!(timer(first), timer(second))
            }
        }
    }

    fn cold_starts(&self) -> usize {
        match self {
            Workers::Tasks { .. } => 0,
            Workers::Processes { cold_starts, .. } => cold_starts.load(Ordering::Relaxed),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stamps_fanned_out_through_sqs_are_collected_exactly_despite_redelivery_overlap_kills_and_poison() {
    let Some(url) = moto_url() else { return };
    fan_out_scenario(&url, Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_processes_committing_to_one_postgresql_database_collect_every_stamp_exactly() {
    let Some(url) = moto_url() else { return };
    fan_out_scenario(&url, Backend::PostgresProcesses).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// SQLite, workers as tasks of this process.
    Sqlite,
    /// One PostgreSQL database, workers as `collect-usage` processes.
    PostgresProcesses,
}

async fn fan_out_scenario(url: &str, backend: Backend) {
    let timing = match backend {
        Backend::Sqlite => &IN_PROCESS,
        Backend::PostgresProcesses => &PROCESSES,
    };
    let queues = create_queues(&aws_config_for(url).await, timing.visibility).await;
    // Given seven simulated stamps: 0 plain, 1 slow (continuations), 2 killed mid-window once,
    // 3 whose processed message is redelivered, 4 poison (registered with a wrong secret), 5 whose
    // first window once outlasts a worker's budget, 6 whose every window does,
    let hours = 4;
    let sim =
        Simulator::start(SimulatorConfig { seed: 11, page_size: 7, stamps: (0..7).map(spec).collect() })
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let postgres = match backend {
        Backend::Sqlite => None,
        Backend::PostgresProcesses => Some(fresh_postgres_database().await),
    };
    let store: Arc<dyn Store> = match &postgres {
        None => Arc::new(azs_store_sqlite::SqliteStore::open(dir.path().join("db.sqlite")).unwrap()),
        Some((url, _)) => {
            Arc::new(PostgresStore::connect(PostgresConfig::parse(url).unwrap()).await.unwrap())
        }
    };
    let secrets: Arc<dyn SecretStore> =
        Arc::new(azs_secrets::FileSecretStore::new(dir.path().join("secrets.json"), "azs-usage/"));
    let source: Arc<dyn UsageSource> = Arc::new(
        azs_azure_stack::AzureStackClient::default()
            .with_allowed_hosts(Some(azs_azure_stack::hosts::StampHosts::parse("127.0.0.1").unwrap())),
    );
    // Registration as the webhook does it (validation, verification, the credential into the store).
    let config = azs_app::config::AppConfig::from_lookup(|_| None).unwrap();
    let registrar =
        azs_app::wiring::Services::assemble(config, store.clone(), secrets.clone(), source.clone()).registrar;
    let from = azs_core::window::floor_hour(Utc::now()) - Hours::hours(hours + 1);
    let horizon = azs_core::window::floor_hour(Utc::now() - Hours::hours(1));
    let mut ids = Vec::new();
    for i in 0..7 {
        let s = sim.stamp(i);
        let poison = i == 4;
        let registration = StampRegistration {
            name: Some(format!("queue-{i}")),
            admin_subscription_id: Some(s.admin_subscription_id()),
            tenant_id: Some(s.tenant_id()),
            application_id: Some(s.application_id()),
            admin_arm_endpoint: Some(s.admin_arm_endpoint()),
            is_adfs: Some(false),
            application_secret: Some(Secret::new(if poison { "not-the-secret" } else { SECRET })),
            ca_certificate: Some(sim.ca_pem()),
            collect_from: Some(from.to_rfc3339()),
            enabled: Some(true),
            ..StampRegistration::default()
        };
        ids.push(
            registrar
                .register(registration, !poison, &azs_core::audit::Actor::new("test"))
                .await
                .unwrap()
                .stamp
                .id,
        );
    }
    let poison = ids[4].clone();
    // every usage page of stamp 1 is slow (one window per worker budget),
    sim.stamp(1).inject(Fault::Slow { kind: RequestKind::Usage, count: 1000, delay: timing.slow_page });
    // and stamp 2's first usage request hangs long enough to kill its worker in the middle of it.
    sim.stamp(2).inject(Fault::Slow { kind: RequestKind::Usage, count: 1, delay: timing.first_hang });
    // Stamp 5's first usage request takes longer than a whole budget once; stamp 6's always do.
    let too_long = timing.pulls_within + Duration::from_millis(300);
    sim.stamp(5).inject(Fault::Slow { kind: RequestKind::Usage, count: 1, delay: too_long });
    sim.stamp(6).inject(Fault::Slow { kind: RequestKind::Usage, count: 1000, delay: too_long });

    let workers = match backend {
        Backend::Sqlite => {
            let collector = Collector::new(
                store.clone(),
                secrets.clone(),
                source.clone(),
                CollectSettings {
                    concurrency: 4,
                    lease_ttl: LEASE_TTL,
                    commit_reserve: IN_PROCESS.budget - IN_PROCESS.pulls_within,
                    ..CollectSettings::default()
                },
            );
            let fan_out = Arc::new(StampFanOut::new(
                store.clone(),
                store.clone(),
                collector,
                FanOutSettings { continuation_delay: Duration::from_secs(1), max_attempts: MAX_ATTEMPTS },
            ));
            let queue: Arc<dyn StampQueue> = Arc::new(azs_queue_sqs::SqsStampQueue::new(
                &aws_config_for(url).await,
                &queues.url,
                &queues.dead_letter_url,
            ));
            Workers::Tasks { fan_out, queue, pool: Arc::new(Semaphore::new(WORKER_PROCESSES)) }
        }
        Backend::PostgresProcesses => {
            let database = postgres.as_ref().unwrap().0.clone();
            Workers::processes(vec![
                ("AWS_LAMBDA_FUNCTION_NAME", "azs-usage-collect".to_owned()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
                ("AWS_REGION", "us-east-1".to_owned()),
                ("AWS_ENDPOINT_URL", url.to_owned()),
                ("AWS_ACCESS_KEY_ID", "test".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
                ("AZS_USAGE_DATABASE", database),
                ("AZS_USAGE_SECRETS", format!("file:{}", dir.path().join("secrets.json").display())),
                ("AZS_USAGE_ALLOWED_STAMP_HOSTS", "127.0.0.1".to_owned()),
                ("AZS_USAGE_FAN_OUT", "queue".to_owned()),
                ("AZS_USAGE_STAMP_QUEUE_URL", queues.url.clone()),
                ("AZS_USAGE_DEAD_LETTER_QUEUE_URL", queues.dead_letter_url.clone()),
                ("AZS_USAGE_LEASE_TTL", format!("{}s", LEASE_TTL.as_secs())),
                ("AZS_USAGE_CONTINUATION_DELAY", "1s".to_owned()),
                ("AZS_USAGE_MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
                // One stamp per invocation: a pool of 1 + 4 connections per process.
                ("AZS_USAGE_CONCURRENCY", "1".to_owned()),
                ("AZS_USAGE_LOG", "warn".to_owned()),
            ])
            .await
        }
    };
    let workers = Arc::new(workers);

    // When two timers fire at once (every stamp enqueued twice),
    assert_eq!(workers.fire_two_timers().await, (7, 7));

    // and the event source mapping delivers them to at most WORKER_PROCESSES workers at a time,
    let mut running = tokio::task::JoinSet::new();
    let (mut killed, mut lost_delete) = (false, false);
    let mut invocations = 0u32;
    let mut deliveries: HashMap<usize, u32> = HashMap::new();
    let mut longest = Duration::ZERO;
    // Invocations in flight now, and the most there ever were at once.
    let in_flight = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let give_up = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < give_up, "the queue did not drain within 3 minutes");
        let received = queues
            .client
            .receive_message()
            .queue_url(&queues.url)
            .max_number_of_messages(WORKER_PROCESSES as i32)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for message in received.messages() {
            let message = message.clone();
            invocations += 1;
            let event = azs_testkit::sqs::event(std::slice::from_ref(&message), &queues.arn);
            let body = message.body().unwrap_or_default().to_owned();
            if let Some(i) = ids.iter().position(|id| body.contains(&id.0)) {
                *deliveries.entry(i).or_default() += 1;
            }
            let worker = workers.take().await;
            let (workers, client, url) = (workers.clone(), queues.client.clone(), queues.url.clone());
            let in_flight = in_flight.clone();
            // The platform ends the worker in the middle of its first window (no delete, lease held).
            let kill_this = !killed && body.contains(&ids[2].0);
            killed |= kill_this;
            // A delete lost once: the processed message comes back after the visibility timeout.
            let lose_delete = !lost_delete && body.contains(&ids[3].0);
            lost_delete |= lose_delete;
            let kill_after = kill_this.then_some(timing.kill_after);
            running.spawn(async move {
                let started = Instant::now();
                let now = in_flight.0.fetch_add(1, Ordering::SeqCst) + 1;
                in_flight.1.fetch_max(now, Ordering::SeqCst);
                let (response, worker) = workers.invoke(worker, event, kill_after).await;
                in_flight.0.fetch_sub(1, Ordering::SeqCst);
                workers.give_back(worker);
                if let Some(response) = response
                    && response.batch_item_failures.is_empty()
                    && !lose_delete
                {
                    client
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(message.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
                started.elapsed()
            });
        }
        while let Some(done) = running.try_join_next() {
            longest = longest.max(done.unwrap());
        }
        if received.messages().is_empty()
            && running.is_empty()
            && depth(&queues.client, &queues.url).await == 0
        {
            break;
        }
    }

    // then every good stamp holds exactly its ground truth up to the horizon, each row once,
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| ![4, 6].contains(i)) {
        let status = store.get_status(id).await.unwrap().unwrap();
        // At or past the horizon: a worker that runs after the hour turns has one more hour to pull.
        assert!(status.watermark >= horizon, "stamp {i} is not current: {}", status.watermark);
        let (stored, truth) = (stored(store.as_ref(), id).await, truth(&sim, i, from, status.watermark));
        assert_eq!(stored.len(), truth.len(), "stamp {i}: stored vs ground truth row count");
        assert_eq!(stored, truth, "stamp {i}: stored rows differ from the ground truth");
    }
    let at_once = in_flight.1.load(Ordering::SeqCst);
    eprintln!(
        "invocations {invocations} (at most {at_once} at once), longest {longest:?}, deliveries per stamp \
         {deliveries:?}, worker cold starts {}",
        workers.cold_starts()
    );
    // the workers ran side by side (on PostgreSQL: processes committing to one database at once),
    assert!(at_once >= 2, "at most {at_once} invocation(s) ran at once");
    assert!(killed && lost_delete, "the kill and the lost delete happened");
    // the killed worker's and the undeleted message came back (two timer messages + the redelivery),
    assert!(deliveries[&2] >= 3 && deliveries[&3] >= 3, "{deliveries:?}");
    // and the poison stamp was delivered until its last attempt.
    assert!(deliveries[&4] >= MAX_ATTEMPTS, "{deliveries:?}");
    // no worker ran past its budget by more than the last commit's reserve (and the kill),
    let budget = timing.budget;
    assert!(longest < budget + Duration::from_secs(1), "longest invocation {longest:?} vs budget {budget:?}");
    // the slow stamp needed continuations (more invocations than messages the timers sent),
    assert!(invocations > 14 + 2, "invocations: {invocations}");
    // and the stamp whose window once outlasted a budget was continued, not retried to death.
    assert!(deliveries[&5] >= 3, "{deliveries:?}");

    // and the poison stamp's message is in the dead-letter queue, naming it and its error, once.
    let mut letters = Vec::new();
    loop {
        let received = queues
            .client
            .receive_message()
            .queue_url(&queues.dead_letter_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        if received.messages().is_empty() {
            break;
        }
        for m in received.messages() {
            letters.push(serde_json::from_str::<DeadLetter>(m.body().unwrap()).unwrap());
            queues
                .client
                .delete_message()
                .queue_url(&queues.dead_letter_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let named: HashSet<_> = letters.iter().map(|l| l.stamp_id.clone()).collect();
    let too_slow = ids[6].clone();
    assert_eq!(
        named,
        HashSet::from([Some(poison.clone()), Some(too_slow.clone())]),
        "only the poison stamp and the one whose windows never fit are dead-lettered: {letters:#?}"
    );
    let letter = letters.iter().find(|l| l.stamp_id.as_ref() == Some(&too_slow)).unwrap();
    assert_eq!(letter.attempts, MAX_ATTEMPTS);
    assert!(letter.error.contains("needs more than a worker's whole time budget"), "{}", letter.error);
    let status = store.get_status(&too_slow).await.unwrap().unwrap();
    assert!(status.last_error.unwrap_or_default().starts_with("dead-lettered after"));
    assert_eq!(status.watermark, from, "nothing of a window cut off by the budget was committed");
    let letter = letters.iter().find(|l| l.stamp_id.as_ref() == Some(&poison)).unwrap();
    assert_eq!(letter.attempts, MAX_ATTEMPTS);
    assert!(letter.error.contains(&poison.0) && letter.error.contains("token"), "{}", letter.error);
    assert!(!letter.error.contains("not-the-secret"), "the secret leaked into the dead letter");
    let status = store.get_status(&poison).await.unwrap().unwrap();
    let shown = status.last_error.unwrap_or_default();
    assert!(shown.starts_with(&format!("dead-lettered after {MAX_ATTEMPTS} attempts: ")), "{shown}");
    assert_eq!(status.watermark, from, "nothing of the poison stamp was committed");

    if let Some((_, name)) = &postgres {
        drop(workers);
        drop_postgres_database(name).await;
    }
}
