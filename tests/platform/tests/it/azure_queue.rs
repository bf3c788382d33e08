//! Queue fan-out on Azure, end to end through the packaged custom handler: this test plays the
//! Functions host's part of the Storage Queue bindings (the host cannot be installed here), as the
//! bindings are documented and declared in `functions/azure/app/*/function.json` and `host.json`:
//!
//! - a timer invocation's `Outputs.stampWork` array becomes one queue message per element;
//! - each message is delivered to `POST /stamp-work` as `{"Data": {"work": <text>}, "Metadata":
//!   {"DequeueCount": n, ...}}`, with `n` counting deliveries (1 on the first);
//! - a `200` answer deletes the message and writes `Outputs.continuation` to the same queue and
//!   `Outputs.deadLetter` to `azs-stamp-work-poison`; any other answer, or no answer (the handler
//!   died), leaves the message for redelivery, until `maxDequeueCount` (4) deliveries have failed,
//!   when the host moves the message itself to `-poison`.
//!
//! What it shows (issue 16): a set of stamps is collected exactly, each row once, despite two
//! overlapping timers, a redelivered message, two workers given the same stamp at once, a worker killed
//! in the middle of a window, continuations of a stamp that needs several budgets, and a poison stamp
//! that ends in the poison queue with a letter naming it and its error.

use azs_platform_tests::{Comparable, Handler, assert_same_rows, fixture, free_port};
use chrono::{DateTime, Duration as Hours, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stamp_sim::{Fault, RequestKind, SimAuth, Simulator, SimulatorConfig, StampSpec};
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const SECRET: &str = "queue-test-secret";
/// host.json `extensions.queues.maxDequeueCount`.
const MAX_DEQUEUE_COUNT: u32 = 4;
const LEASE_TTL: Duration = Duration::from_secs(2);

/// A message as the host keeps it: its text and how often it was delivered.
#[derive(Debug, Clone)]
struct Message {
    text: String,
    dequeue_count: u32,
}

impl Message {
    fn new(text: &Value) -> Self {
        Self { text: text.as_str().expect("a queue output is JSON text").to_owned(), dequeue_count: 0 }
    }

    fn names(&self, stamp_id: &str) -> bool {
        self.text.contains(stamp_id)
    }
}

/// The host's side: the handler it started, its queues `azs-stamp-work` and `azs-stamp-work-poison`.
struct Host {
    handler: Handler,
    env: Vec<(&'static str, String)>,
    work: VecDeque<Message>,
    poison: Vec<String>,
    deliveries: u32,
    /// The worker of this stamp's next message is killed in the middle of its invocation.
    kill_next_of: Option<String>,
}

impl Host {
    /// A timer invocation: its `Outputs.stampWork` messages join the queue. Returns how many.
    async fn timer(&mut self) -> usize {
        let (status, body) =
            invoke(&self.handler.base, "/collect-usage", &fixture("azure-functions-timer-request.json"))
                .await
                .expect("the timer is answered");
        assert_eq!(status, StatusCode::OK, "{body}");
        let messages = body["Outputs"]["stampWork"].as_array().expect("one message per stamp");
        self.work.extend(messages.iter().map(Message::new));
        messages.len()
    }

    /// Delivers messages until the queue is empty.
    async fn drain(&mut self, give_up: Instant) {
        while let Some(message) = self.work.pop_front() {
            assert!(Instant::now() < give_up, "the queue did not drain in time");
            let message = self.deliver(message).await;
            if let Some(message) = message {
                self.work.push_back(message);
            }
        }
    }

    /// One delivery; returns the message when it comes back to the queue.
    async fn deliver(&mut self, mut message: Message) -> Option<Message> {
        message.dequeue_count += 1;
        self.deliveries += 1;
        let request = queue_request(&message);
        if self.kill_next_of.as_ref().is_some_and(|id| message.names(id)) {
            // The worker dies in the middle of its window: no answer, its lease held until it
            // expires. The host starts the handler again; the message comes back.
            self.kill_next_of = None;
            let base = self.handler.base.clone();
            let in_flight = tokio::spawn(async move { invoke(&base, "/stamp-work", &request).await });
            tokio::time::sleep(Duration::from_millis(800)).await;
            self.handler.process.child.kill().unwrap();
            let answer = in_flight.await.unwrap();
            assert!(answer.is_none(), "the killed worker answered: {answer:?}");
            self.handler = Handler::start(&self.env).await.unwrap();
            return self.settle(message, None);
        }
        let answer = invoke(&self.handler.base, "/stamp-work", &request).await;
        self.settle(message, answer)
    }

    /// Two workers given copies of one message at once (two timers' messages for the same stamp).
    /// Returns the rows each wrote.
    async fn deliver_together(&mut self, mut a: Message, mut b: Message) -> [u64; 2] {
        a.dequeue_count += 1;
        b.dequeue_count += 1;
        self.deliveries += 2;
        let (base, request_a, request_b) = (&self.handler.base, queue_request(&a), queue_request(&b));
        let (answer_a, answer_b) =
            tokio::join!(invoke(base, "/stamp-work", &request_a), invoke(base, "/stamp-work", &request_b));
        let written = [&answer_a, &answer_b]
            .map(|answer| answer.as_ref().and_then(|(_, body)| body["ReturnValue"]["rowsWritten"].as_u64()));
        for returned in [self.settle(a, answer_a), self.settle(b, answer_b)].into_iter().flatten() {
            self.work.push_back(returned);
        }
        written.map(|rows| rows.unwrap_or(0))
    }

    /// The host's handling of an invocation's answer (`None`: the handler died): a `200` deletes the
    /// message and writes its outputs; anything else leaves it for redelivery until the last dequeue,
    /// after which the host moves it to `-poison` itself.
    fn settle(&mut self, message: Message, answer: Option<(StatusCode, Value)>) -> Option<Message> {
        match answer {
            Some((StatusCode::OK, body)) => {
                let outputs = &body["Outputs"];
                for text in outputs["continuation"].as_array().into_iter().flatten() {
                    self.work.push_back(Message::new(text));
                }
                for text in outputs["deadLetter"].as_array().into_iter().flatten() {
                    self.poison.push(text.as_str().expect("a letter is JSON text").to_owned());
                }
                None
            }
            _ if message.dequeue_count >= MAX_DEQUEUE_COUNT => {
                self.poison.push(message.text);
                None
            }
            _ => Some(message),
        }
    }
}

/// The host's queue trigger request for one delivery.
fn queue_request(message: &Message) -> Value {
    let mut request = fixture("azure-functions-queue-request.json");
    request["Data"]["work"] = Value::String(message.text.clone());
    request["Metadata"]["DequeueCount"] = json!(message.dequeue_count);
    request
}

async fn invoke(base: &str, path: &str, body: &Value) -> Option<(StatusCode, Value)> {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("X-Azure-Functions-InvocationId", format!("queue-test-{}", free_port()))
        .json(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .ok()?;
    let status = response.status();
    Some((status, response.json().await.ok()?))
}

/// One stamp's stored rows, every field (see `azs_testkit::ground_truth`), sorted.
fn stored(db: &Path, stamp_id: &str) -> Vec<Comparable> {
    azs_testkit::ground_truth::sqlite_rows(db, Some(stamp_id))
}

/// One stamp's ground truth from `from` to `until`, every field, sorted.
fn truth(sim: &Simulator, i: usize, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Comparable> {
    azs_testkit::ground_truth::truth_rows(sim.stamp(i).ground_truth(from, until))
}

/// (watermark, last error) from the stamp's processing status.
fn status(db: &Path, stamp_id: &str) -> (DateTime<Utc>, Option<String>) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT watermark, last_error FROM processing_status WHERE stamp_id = ?1",
        [stamp_id],
        |r| Ok((DateTime::from_timestamp(r.get(0)?, 0).unwrap(), r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn stamps_fanned_out_through_the_host_queue_bindings_are_collected_exactly() {
    // Given four simulated stamps 5 hours behind: 0 plain, 1 slow (needs several budgets),
    // 2 whose first usage request hangs (its worker is killed in the middle of it), 3 poison (a wrong
    // secret, registered unverified),
    let spec = |i| StampSpec {
        tenants: 3,
        meters_per_tenant: 2,
        late_rows_per_window: 1,
        ..StampSpec::generated(17, i, SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None })
    };
    let sim =
        Simulator::start(SimulatorConfig { seed: 17, page_size: 4, stamps: (0..4).map(spec).collect() })
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let env = [
        ("AZS_USAGE_DATABASE", format!("sqlite:{}", db.display())),
        ("AZS_USAGE_SECRETS", format!("file:{}", dir.path().join("secrets.json").display())),
        ("AZS_USAGE_ALLOWED_STAMP_HOSTS", "127.0.0.1".to_owned()),
        ("AZS_USAGE_FAN_OUT", "queue".to_owned()),
        // 10 s of it are the last commit's reserve: one slow hour per invocation.
        ("AZS_USAGE_TIME_BUDGET", "12s".to_owned()),
        ("AZS_USAGE_LEASE_TTL", format!("{}s", LEASE_TTL.as_secs())),
        ("AZS_USAGE_MAX_ATTEMPTS", (MAX_DEQUEUE_COUNT - 1).to_string()),
    ];
    let handler = Handler::start(&env).await.unwrap();
    let from = Utc::now().duration_trunc(Hours::hours(1)).unwrap() - Hours::hours(5);
    let horizon = Utc::now().duration_trunc(Hours::hours(1)).unwrap() - Hours::hours(1);
    let mut ids = Vec::new();
    for i in 0..4 {
        let stamp = sim.stamp(i);
        let poison = i == 3;
        let registration = json!({
            "name": format!("queue-{i}"),
            "adminSubscriptionId": stamp.admin_subscription_id(),
            "tenantId": stamp.tenant_id(),
            "applicationId": stamp.application_id(),
            "adminArmEndpoint": stamp.admin_arm_endpoint(),
            "applicationSecret": if poison { "not-the-secret" } else { SECRET },
            "caCertificate": sim.ca_pem(),
            "collectFrom": from.to_rfc3339(),
        });
        let created = reqwest::Client::new()
            .post(format!("{}/api/stamps?verify={}", handler.base, !poison))
            .json(&registration)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        ids.push(created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }

    // (the faults begin after registration, whose verification asks for usage too)
    sim.stamp(1).inject(Fault::Slow {
        kind: RequestKind::Usage,
        count: 1000,
        delay: Duration::from_millis(400),
    });
    sim.stamp(2).inject(Fault::Slow { kind: RequestKind::Usage, count: 1, delay: Duration::from_secs(3) });

    // When two timers fire (every stamp enqueued twice),
    let mut host = Host {
        handler,
        env: env.to_vec(),
        work: VecDeque::new(),
        poison: Vec::new(),
        deliveries: 0,
        kill_next_of: Some(ids[2].clone()),
    };
    assert_eq!(host.timer().await, 4);
    assert_eq!(host.timer().await, 4);
    // two workers get the slow stamp's two messages at once,
    let (raced, rest): (Vec<Message>, Vec<Message>) = host.work.drain(..).partition(|m| m.names(&ids[1]));
    host.work.extend(rest);
    let [a, b] = <[Message; 2]>::try_from(raced).unwrap();
    let written = host.deliver_together(a, b).await;
    assert!(
        written.contains(&0) && written.iter().sum::<u64>() > 0,
        "one worker wrote, the other left it: {written:?}"
    );
    // the host delivers the rest one at a time, the first worker of stamp 2 killed mid-window,
    let give_up = Instant::now() + Duration::from_secs(120);
    host.drain(give_up).await;
    // a processed message comes back (its delete was lost),
    let replay = Message {
        text: json!({"stampId": ids[0], "reason": "timer", "enqueuedAt": Utc::now()}).to_string(),
        dequeue_count: 1,
    };
    assert!(host.deliver(replay).await.is_none());
    // and the next hour's timer, once the killed worker's lease has expired, finds whoever is behind.
    tokio::time::sleep(LEASE_TTL + Duration::from_millis(200)).await;
    assert_eq!(host.timer().await, 4);
    host.drain(give_up).await;

    eprintln!("{} deliveries, {} letters in the poison queue", host.deliveries, host.poison.len());

    // Then every good stamp holds exactly its ground truth up to the horizon, each row once,
    assert!(host.kill_next_of.is_none(), "stamp 2's worker was killed");
    for (i, id) in ids.iter().enumerate().take(3) {
        let (watermark, error) = status(&db, id);
        // (an hour that ends during the test moves the horizon on by one)
        assert!(watermark >= horizon, "stamp {i} is not current: {watermark}, {error:?}");
        let (stored, truth) = (stored(&db, id), truth(&sim, i, from, watermark));
        assert!(!truth.is_empty());
        assert_same_rows(i, &stored, &truth);
    }
    // the slow stamp was continued (more deliveries than the 12 timer messages, the kill's redelivery,
    // the replay and the poison stamp's 3 x 2 retries),
    assert!(host.deliveries > 12 + 1 + 1 + 6, "deliveries: {}", host.deliveries);
    // and the poison stamp's messages ended in the poison queue as our letters, naming it and the error,
    assert!(!host.poison.is_empty());
    for text in &host.poison {
        let letter: Value = serde_json::from_str(text).unwrap();
        assert_eq!(letter["stampId"], ids[3], "only the poison stamp is dead-lettered: {text}");
        assert_eq!(letter["attempts"], MAX_DEQUEUE_COUNT - 1, "{text}");
        assert!(!letter["error"].as_str().unwrap().is_empty(), "{text}");
        assert!(!text.contains("not-the-secret"), "a secret reached the poison queue: {text}");
    }
    // which its status says, and nothing of it is stored.
    let (watermark, error) = status(&db, &ids[3]);
    assert_eq!(watermark, from);
    assert!(error.as_deref().unwrap_or_default().starts_with("dead-lettered after 3 attempts"), "{error:?}");
    assert!(stored(&db, &ids[3]).is_empty());
}
