//! `LeaseStore`: one run per stamp. A lease is exclusive, re-entrant for its owner, expires, is
//! renewed only by its owner, and is free at once when released.

use crate::fixtures::*;
use azs_core::ports::{Store, WindowWrite};
use std::sync::Arc;
use std::time::Duration;

pub async fn a_lease_is_exclusive_while_it_lasts(store: Arc<dyn Store>) {
    // Given a stamp leased by one run
    let s = stamp("eu-1");
    store.insert_stamp(&s).await.unwrap();
    assert!(store.try_acquire(&s.id, RUN, LEASE).await.unwrap());

    // When another run tries to take it
    let taken = store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap();

    // Then it is refused, and the lease is still the first run's
    assert!(!taken);
    assert!(store.renew(&s.id, RUN, LEASE).await.unwrap());
    assert!(!store.renew(&s.id, OTHER_RUN, LEASE).await.unwrap());
}

pub async fn a_lease_is_reentrant_for_its_owner(store: Arc<dyn Store>) {
    // Given a stamp leased by a run
    let s = stamp("eu-1");
    store.insert_stamp(&s).await.unwrap();
    assert!(store.try_acquire(&s.id, RUN, LEASE).await.unwrap());

    // When the same run asks again (a retried call, or a reprocess inside the run)
    let again = store.try_acquire(&s.id, RUN, LEASE).await.unwrap();

    // Then it still holds it, and others are still kept out
    assert!(again);
    assert!(!store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap());
}

pub async fn an_expired_lease_can_be_taken_over_and_fences_the_old_owner(store: Arc<dyn Store>) {
    // Given a run whose short lease has lapsed (it stalled, or died)
    let s = stamp("eu-1");
    store.insert_stamp(&s).await.unwrap();
    assert!(store.try_acquire(&s.id, RUN, Duration::from_millis(200)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // When another run takes the stamp
    let taken = store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap();

    // Then it gets it, and the stalled run can neither renew nor commit any more
    assert!(taken);
    assert!(!store.renew(&s.id, RUN, LEASE).await.unwrap());
    let window = hour(COLLECT_FROM);
    let rows = vec![vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1")];
    let e = commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Advance, &rows).await.unwrap_err();
    assert!(is_fenced(&e, &s.id, window), "expected Fenced, got {e:?}");
    // And the new holder commits the window once
    let receipt =
        commit(store.as_ref(), &s.id, window, OTHER_RUN, WindowWrite::Advance, &rows).await.unwrap();
    assert_eq!(receipt.rows_written, 1);
}

pub async fn a_released_lease_is_free_at_once_and_only_its_owner_can_release_it(store: Arc<dyn Store>) {
    // Given a stamp leased by a run
    let s = stamp("eu-1");
    store.insert_stamp(&s).await.unwrap();
    assert!(store.try_acquire(&s.id, RUN, LEASE).await.unwrap());

    // When someone else "releases" it, nothing happens
    store.release(&s.id, OTHER_RUN).await.unwrap();
    assert!(!store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap());

    // When its owner releases it, another run can take it straight away
    store.release(&s.id, RUN).await.unwrap();
    assert!(store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap());
    // And releasing a lease one no longer holds is harmless
    store.release(&s.id, RUN).await.unwrap();
    assert!(!store.try_acquire(&s.id, RUN, LEASE).await.unwrap());
}

pub async fn renewing_extends_only_the_owners_lease(store: Arc<dyn Store>) {
    // Given a short lease
    let s = stamp("eu-1");
    store.insert_stamp(&s).await.unwrap();
    assert!(store.try_acquire(&s.id, RUN, Duration::from_millis(300)).await.unwrap());

    // When its owner renews it for longer, and a stranger tries to renew it
    assert!(store.renew(&s.id, RUN, LEASE).await.unwrap());
    assert!(!store.renew(&s.id, OTHER_RUN, LEASE).await.unwrap());

    // Then it outlives its first expiry: nobody else can take it after the short lease would have ended
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap());
}
