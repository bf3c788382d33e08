//! End to end: in per-subscriber mode, a subscription deleted from the stamp's list keeps being asked
//! for while it had usage recently, so its last hours arrive.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_subscriptions_last_hours_arrive_in_per_subscriber_mode() {
    // Given a per-subscriber stamp collected up to two hours before the horizon
    let world = World::start(|_| vec![spec(0, aad(), 3)], 5, 50).await;
    let db = rusqlite::Connection::open(world.database()).unwrap();
    db.execute("UPDATE stamps SET query_mode = 'per-subscriber'", []).unwrap();
    let horizon = world.horizon();
    let early = (horizon - chrono::Duration::hours(2)).timestamp();
    // (the settle delay holds the collection back two more hours this time)
    let out = world.run_with(&["collect"], &[("AZS_USAGE_SETTLE_DELAY", "3h")]).await;
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(world.watermark(0).await.timestamp(), early);

    // When one subscription is deleted from the stamp's list (its usage for the last hours remains)
    let deleted = world.sim.stamp(0).tenant_subscriptions()[1].clone();
    world.sim.stamp(0).delete_subscription(&deleted);
    let out = world.run(&["collect"]).await;

    // Then the remaining hours are complete, the deleted subscription's included
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    world.assert_complete(0).await;
    let last_hours = world.stored(0).await.into_iter().filter(|r| r.reported_start.timestamp() >= early);
    assert!(
        last_hours.into_iter().any(|r| r.subscription_id.eq_ignore_ascii_case(&deleted)),
        "the deleted subscription's last hours are stored"
    );
}
