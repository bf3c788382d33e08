//! The documented Lambda SQS event (what an event source mapping sends), built from messages received
//! from a real queue, with `aws_lambda_events`' types: the shape the worker reads, written once.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::Message;
use serde_json::Value;

/// The event for `messages` received from the queue `arn`, as JSON (a Lambda payload).
pub fn event(messages: &[Message], arn: &str) -> Value {
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(|m| record(m, arn)).collect();
    serde_json::to_value(event).expect("an SQS event serializes")
}

fn record(message: &Message, arn: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id().map(str::to_owned);
    record.receipt_handle = message.receipt_handle().map(str::to_owned);
    record.body = message.body().map(str::to_owned);
    record.md5_of_body = message.md5_of_body().map(str::to_owned);
    // `ApproximateReceiveCount` among them: the worker's attempt number.
    record.attributes = message
        .attributes()
        .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), v.clone())).collect())
        .unwrap_or_default();
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(arn.to_owned());
    record.aws_region = Some("us-east-1".to_owned());
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::MessageSystemAttributeName;

    #[test]
    fn a_received_message_becomes_the_documented_record() {
        // Given a message as ReceiveMessage returns it, on its second delivery
        let message = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("{\"stamp\":\"s\"}")
            .md5_of_body("abc")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .build();

        // When it is turned into the Lambda event
        let event = event(&[message], "arn:aws:sqs:us-east-1:000000000000:q");

        // Then the record carries the documented field names and values
        let record = &event["Records"][0];
        assert_eq!(record["messageId"], "m-1");
        assert_eq!(record["receiptHandle"], "r-1");
        assert_eq!(record["body"], "{\"stamp\":\"s\"}");
        assert_eq!(record["md5OfBody"], "abc");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], "arn:aws:sqs:us-east-1:000000000000:q");
        assert_eq!(record["awsRegion"], "us-east-1");
        assert_eq!(event["Records"].as_array().map(Vec::len), Some(1));
    }
}
