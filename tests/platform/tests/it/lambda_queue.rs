//! Queue fan-out on AWS through the function as Lambda runs it: `collect-usage` under cargo-lambda's
//! Runtime API emulator with `AZS_USAGE_FAN_OUT=queue`, its queues on moto's SQS. The timer event makes
//! it enqueue; the documented SQS event (what the event source mapping sends) makes the same executable
//! collect. The queue semantics themselves (redelivery, overlap, kills, continuations, redrive) are
//! proven against moto in `functions/collect-usage/tests/queue_fan_out.rs`; this test proves the
//! deployed entry point: event recognition, the queue settings read from the environment, the SQS
//! adapter inside the function, and the batch response.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use azs_platform_tests::{
    LambdaWatch, assert_same_rows, expected_usage_rows, fixture, moto_url, stored_usage_rows,
};
use chrono::{DateTime, Duration as Hours, DurationRound, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stamp_sim::{SimAuth, Simulator, SimulatorConfig, StampSpec};

const SECRET: &str = "sim-queue-secret";
async fn sqs_client(moto: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await;
    Client::new(&config)
}

async fn create_queue(client: &Client, name: &str) -> (String, String) {
    let url = client.create_queue().queue_name(name).send().await.unwrap().queue_url.unwrap();
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let arn = attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
    (url, arn)
}

/// The queue's messages, received once each (and deleted, as the event source mapping does).
async fn receive_all(client: &Client, url: &str) -> Vec<Message> {
    let mut messages = Vec::new();
    loop {
        let received = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        if received.messages().is_empty() {
            return messages;
        }
        for message in received.messages() {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            messages.push(message.clone());
        }
    }
}

#[tokio::test]
#[ignore = "needs scripts/package.sh and cargo lambda watch; run by scripts/test.sh"]
async fn the_timer_enqueues_each_stamp_and_the_same_function_collects_it_from_the_sqs_event() {
    // Given a simulated stamp, a stamp-work queue and its dead-letter queue on moto, and the functions
    // under the emulator in queue mode,
    let auth = SimAuth::AzureAd { secret: Some(SECRET.into()), certificate_pem: None };
    let sim = Simulator::start(SimulatorConfig {
        seed: 23,
        stamps: vec![StampSpec::generated(23, 0, auth)],
        ..Default::default()
    })
    .await
    .unwrap();
    let moto = moto_url().unwrap();
    let sqs = sqs_client(&moto).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (work_url, work_arn) = create_queue(&sqs, &format!("azs-stamp-work-{suffix}")).await;
    let (dead_letter_url, _) = create_queue(&sqs, &format!("azs-stamp-work-dlq-{suffix}")).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("usage.db");
    let watch = LambdaWatch::start(&[
        ("AZS_USAGE_TEST_MOTO_URL", moto.clone()),
        ("AZS_USAGE_DATABASE", format!("sqlite:{}", db.display())),
        ("AZS_USAGE_SECRET_PREFIX", format!("azs-usage-queue-{suffix}/")),
        ("AZS_USAGE_TIME_BUDGET", "5m".to_owned()),
        ("AZS_USAGE_FAN_OUT", "queue".to_owned()),
        ("AZS_USAGE_STAMP_QUEUE_URL", work_url.clone()),
        ("AZS_USAGE_DEAD_LETTER_QUEUE_URL", dead_letter_url.clone()),
    ])
    .unwrap();
    let stamp = sim.stamp(0);
    let collect_from = Utc::now().duration_trunc(Hours::hours(1)).unwrap() - Hours::hours(4);
    let registration = json!({
        "name": "sim-queued",
        "adminSubscriptionId": stamp.admin_subscription_id(),
        "tenantId": stamp.tenant_id(),
        "applicationId": stamp.application_id(),
        "adminArmEndpoint": stamp.admin_arm_endpoint(),
        "applicationSecret": SECRET,
        "caCertificate": sim.ca_pem(),
        "collectFrom": collect_from.to_rfc3339(),
    });
    let (status, created) = watch.post("/lambda-url/register-stamp/stamps?verify=true", &registration).await;
    assert_eq!(status, StatusCode::CREATED, "{created}\n{}", watch.log());
    let stamp_id = created["id"].as_str().unwrap().to_owned();

    // When the schedule fires, the timer enqueues the stamp and collects nothing itself,
    let (status, enqueued) =
        watch.invoke("collect-usage", &fixture("aws-eventbridge-scheduled-event.json")).await;
    assert_eq!(status, StatusCode::OK, "{enqueued}\n{}", watch.log());
    assert_eq!(enqueued, json!({ "enqueued": [stamp_id] }));
    let work = receive_all(&sqs, &work_url).await;
    assert_eq!(work.len(), 1);
    let message: Value = serde_json::from_str(work[0].body().unwrap()).unwrap();
    assert_eq!((message["stampId"].as_str(), message["reason"].as_str()), (Some(&*stamp_id), Some("timer")));
    assert!(stored_usage_rows(&db).is_empty(), "the timer collected rows itself");

    // and the event source mapping hands the message to the same function, which collects the stamp.
    let horizon = Utc::now().duration_trunc(Hours::hours(1)).unwrap() - Hours::hours(1);
    let (status, batch) = watch.invoke("collect-usage", &azs_testkit::sqs::event(&work, &work_arn)).await;
    assert_eq!(status, StatusCode::OK, "{batch}\n{}", watch.log());
    assert_eq!(batch, json!({ "batchItemFailures": [] }));

    // Then every reported hour since collectFrom is stored, exactly as the stamp serves it, with no
    // continuation left on the queue (the stamp is current),
    let watermark = watermark(&db);
    assert!(watermark >= horizon, "the stamp is not current: {watermark}");
    let expected = expected_usage_rows(&stamp.ground_truth(collect_from, watermark));
    assert!(!expected.is_empty());
    assert_same_rows(&stamp_id, &stored_usage_rows(&db), &expected);
    assert!(receive_all(&sqs, &work_url).await.is_empty(), "a continuation was enqueued for a current stamp");

    // and a message that is not stamp work is moved to the dead-letter queue at once, as our letter.
    sqs.send_message().queue_url(&work_url).message_body("not stamp work").send().await.unwrap();
    let junk = receive_all(&sqs, &work_url).await;
    let (status, batch) = watch.invoke("collect-usage", &azs_testkit::sqs::event(&junk, &work_arn)).await;
    assert_eq!(status, StatusCode::OK, "{batch}\n{}", watch.log());
    assert_eq!(batch, json!({ "batchItemFailures": [] }));
    let letters = receive_all(&sqs, &dead_letter_url).await;
    assert_eq!(letters.len(), 1);
    let letter: Value = serde_json::from_str(letters[0].body().unwrap()).unwrap();
    assert_eq!(letter["stampId"], Value::Null, "{letter}");
    assert!(letter["error"].as_str().unwrap().starts_with("the message is not stamp work"), "{letter}");
    assert_same_rows(&stamp_id, &stored_usage_rows(&db), &expected);
}

fn watermark(db: &std::path::Path) -> DateTime<Utc> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let seconds: i64 = conn.query_row("SELECT watermark FROM processing_status", [], |r| r.get(0)).unwrap();
    DateTime::from_timestamp(seconds, 0).unwrap()
}
