//! Queue fan-out on real SQS (moto, through the AWS SDK): the timer's messages, the SQS-triggered
//! worker (`sqs::work_batch`, given the documented Lambda SQS event), simulated stamps over HTTPS and a
//! real SQLite database. The test plays the Lambda event source mapping: it receives messages, invokes
//! the worker with one record per invocation (a bounded pool, like `maximum_concurrency`), and deletes
//! what the worker did not report as a batch item failure.
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
use azs_core::ports::{ExportFilter, SecretStore, Store, UsageSource};
use azs_core::registration::StampRegistration;
use azs_core::usage::UsageRow;
use azs_core::{Secret, StampId};
use chrono::{DateTime, Duration as Hours, Utc};
use serde_json::json;
use stamp_sim::{Fault, RequestKind, SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const SECRET: &str = "queue-test-client-secret-51d2";
const VISIBILITY: Duration = Duration::from_secs(3);
const LEASE_TTL: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 3;
/// Each worker's budget; the slow stamp's windows take ~0.3-0.5 s, so one fits (a pull still going
/// when only the commit reserve is left fails its window: the budget must hold one whole window).
const BUDGET: Duration = Duration::from_millis(1200);

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

async fn create_queues(config: &aws_config::SdkConfig) -> Queues {
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
        .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY.as_secs().to_string())
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

/// The documented Lambda SQS event for one received message.
fn sqs_event(message: &aws_sdk_sqs::types::Message, arn: &str) -> serde_json::Value {
    let attributes: HashMap<String, String> = message
        .attributes()
        .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect())
        .unwrap_or_default();
    json!({ "Records": [{
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": "us-east-1"
    }]})
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stamps_fanned_out_through_sqs_are_collected_exactly_despite_redelivery_overlap_kills_and_poison() {
    let Some(url) = moto_url() else { return };
    let queues = create_queues(&aws_config_for(&url).await).await;

    // Given seven simulated stamps: 0 plain, 1 slow (continuations), 2 killed mid-window once,
    // 3 whose processed message is redelivered, 4 poison (registered with a wrong secret), 5 whose
    // first window once outlasts a worker's budget, 6 whose every window does,
    let hours = 4;
    let sim =
        Simulator::start(SimulatorConfig { seed: 11, page_size: 7, stamps: (0..7).map(spec).collect() })
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(azs_store_sqlite::SqliteStore::open(dir.path().join("db.sqlite")).unwrap());
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
    // every usage page of stamp 1 takes 0.15 s (one window per worker budget),
    sim.stamp(1).inject(Fault::Slow {
        kind: RequestKind::Usage,
        count: 1000,
        delay: Duration::from_millis(150),
    });
    // and stamp 2's first usage request hangs long enough to kill its worker in the middle of it.
    sim.stamp(2).inject(Fault::Slow { kind: RequestKind::Usage, count: 1, delay: Duration::from_secs(3) });
    // Stamp 5's first usage request takes longer than a whole budget once; stamp 6's always do.
    let too_long = BUDGET + Duration::from_millis(300);
    sim.stamp(5).inject(Fault::Slow { kind: RequestKind::Usage, count: 1, delay: too_long });
    sim.stamp(6).inject(Fault::Slow { kind: RequestKind::Usage, count: 1000, delay: too_long });

    let collector = Collector::new(
        store.clone(),
        secrets.clone(),
        source.clone(),
        CollectSettings {
            concurrency: 4,
            lease_ttl: LEASE_TTL,
            commit_reserve: Duration::from_millis(100),
            ..CollectSettings::default()
        },
    );
    let fan_out = Arc::new(StampFanOut::new(
        store.clone(),
        collector,
        FanOutSettings { continuation_delay: Duration::from_secs(1), max_attempts: MAX_ATTEMPTS },
    ));
    let queue: Arc<dyn azs_core::ports::StampQueue> = Arc::new(azs_queue_sqs::SqsStampQueue::new(
        &aws_config_for(&url).await,
        &queues.url,
        &queues.dead_letter_url,
    ));

    // When two timers fire at once (every stamp enqueued twice),
    let (a, b) =
        tokio::join!(fan_out.enqueue_enabled(queue.as_ref()), fan_out.enqueue_enabled(queue.as_ref()));
    assert_eq!(a.unwrap().len(), 7);
    assert_eq!(b.unwrap().len(), 7);

    // and the event source mapping delivers them to at most 3 workers at a time,
    let pool = Arc::new(tokio::sync::Semaphore::new(3));
    let mut workers = tokio::task::JoinSet::new();
    let (mut killed, mut lost_delete) = (false, false);
    let mut invocations = 0u32;
    let mut deliveries: HashMap<usize, u32> = HashMap::new();
    let mut longest = Duration::ZERO;
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < give_up, "the queue did not drain within 2 minutes");
        let received = queues
            .client
            .receive_message()
            .queue_url(&queues.url)
            .max_number_of_messages(3)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for message in received.messages() {
            let message = message.clone();
            invocations += 1;
            let event = sqs_event(&message, &queues.arn);
            let body = message.body().unwrap_or_default().to_owned();
            if let Some(i) = ids.iter().position(|id| body.contains(&id.0)) {
                *deliveries.entry(i).or_default() += 1;
            }
            let permit = pool.clone().acquire_owned().await.unwrap();
            let (fan_out, queue, client, url) =
                (fan_out.clone(), queue.clone(), queues.client.clone(), queues.url.clone());
            let kill_this = !killed && body.contains(&ids[2].0);
            killed |= kill_this;
            // A delete lost once: the processed message comes back after the visibility timeout.
            let lose_delete = !lost_delete && body.contains(&ids[3].0);
            lost_delete |= lose_delete;
            let worker = workers.spawn(async move {
                let _permit = permit;
                let started = Instant::now();
                let response: BatchResponse =
                    work_batch(&fan_out, queue.as_ref(), event, BUDGET).await.unwrap();
                if response.batch_item_failures.is_empty() && !lose_delete {
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
            if kill_this {
                // The platform ends the worker in the middle of its first window (no delete, lease held).
                tokio::time::sleep(Duration::from_millis(800)).await;
                worker.abort();
            }
        }
        while let Some(done) = workers.try_join_next() {
            if let Ok(elapsed) = done {
                longest = longest.max(elapsed);
            }
        }
        if received.messages().is_empty()
            && workers.is_empty()
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
    eprintln!("invocations {invocations}, longest {longest:?}, deliveries per stamp {deliveries:?}");
    assert!(killed && lost_delete, "the kill and the lost delete happened");
    // the killed worker's and the undeleted message came back (two timer messages + the redelivery),
    assert!(deliveries[&2] >= 3 && deliveries[&3] >= 3, "{deliveries:?}");
    // and the poison stamp was delivered until its last attempt.
    assert!(deliveries[&4] >= MAX_ATTEMPTS, "{deliveries:?}");
    // no worker ran past its budget by more than the last commit's reserve (and the kill),
    assert!(longest < BUDGET + Duration::from_secs(1), "longest invocation {longest:?} vs budget {BUDGET:?}");
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
}
