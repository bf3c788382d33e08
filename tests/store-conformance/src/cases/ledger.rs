//! `UsageLedger::commit_window`: a window's rows and the watermark in one transaction, fenced by the
//! lease and by the watermark; each row stored once by (stamp, reported window start, fingerprint).

use crate::fixtures::*;
use azs_core::ports::{CommitReceipt, Store, StoreError, WindowWrite};
use azs_core::usage::UsageRow;
use std::sync::Arc;

pub async fn committing_a_window_stores_its_rows_and_moves_the_watermark_to_its_end(store: Arc<dyn Store>) {
    // Given a leased stamp at its first hour, and that hour's rows
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let window = hour(COLLECT_FROM);
    let rows = vec![
        vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "2.0"),
        vm_usage(TENANT_A, "web-02", "2026-10-31T23:00:00Z", "4.0"),
        vm_usage(TENANT_B, "db-01", "2026-10-31T22:00:00Z", "8.0"),
    ];

    // When the window is committed
    let receipt = advance(store.as_ref(), &s.id, window, &rows).await;

    // Then every row is stored with its window, and the watermark is the window's end
    assert_eq!(receipt, CommitReceipt { rows_written: 3, duplicates: 0, unmapped_rows: 3, quarantined: 0 });
    let stored = rows_of(store.as_ref(), &s.id).await;
    let mut got: Vec<UsageRow> = stored.iter().map(|r| r.row.clone()).collect();
    let mut want = rows.clone();
    got.sort_by(|a, b| a.resource_uri.cmp(&b.resource_uri));
    want.sort_by(|a, b| a.resource_uri.cmp(&b.resource_uri));
    assert_eq!(got, want);
    assert!(stored.iter().all(|r| r.window == window && r.stamp_id == s.id));
    assert_eq!(watermark(store.as_ref(), &s.id).await, window.end);
}

pub async fn an_empty_window_still_moves_the_watermark(store: Arc<dyn Store>) {
    // Given a leased stamp
    let s = registered_and_leased(store.as_ref(), "quiet").await;

    // When an hour with no usage at all is committed
    let receipt = advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &[]).await;

    // Then nothing is stored and the next window starts after it
    assert_eq!(receipt, CommitReceipt::default());
    assert_eq!(watermark(store.as_ref(), &s.id).await, hour(COLLECT_FROM).end);
    assert!(rows_of(store.as_ref(), &s.id).await.is_empty());
}

pub async fn committing_the_same_window_twice_is_fenced_and_changes_nothing(store: Arc<dyn Store>) {
    // Given a committed window
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let window = hour(COLLECT_FROM);
    let rows = vec![vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "2.5")];
    advance(store.as_ref(), &s.id, window, &rows).await;

    // When the same window is committed again (a zombie run, or an overlapping one)
    let again = commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Advance, &rows).await;

    // Then it is fenced off: the watermark has moved past its start
    let e = again.expect_err("a second commit of the same window must be fenced");
    assert!(is_fenced(&e, &s.id, window), "expected Fenced for {window}, got {e:?}");
    // And the totals are what the first commit stored
    let stored = rows_of(store.as_ref(), &s.id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(total(&stored), quantity("2.5"));
    assert_eq!(watermark(store.as_ref(), &s.id).await, window.end);
}

pub async fn a_window_that_does_not_start_at_the_watermark_is_fenced(store: Arc<dyn Store>) {
    // Given a stamp whose watermark is its first hour
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let rows = vec![vm_usage(TENANT_A, "web-01", "2026-11-01T00:00:00Z", "1")];

    // When a later hour is committed first (it would leave a gap)
    let later = hour("2026-11-01T01:00:00Z");
    let e = commit(store.as_ref(), &s.id, later, RUN, WindowWrite::Advance, &rows).await.unwrap_err();

    // Then it is fenced and nothing moves
    assert!(is_fenced(&e, &s.id, later), "expected Fenced, got {e:?}");
    assert_eq!(watermark(store.as_ref(), &s.id).await, s.collect_from);
    assert!(rows_of(store.as_ref(), &s.id).await.is_empty());
}

pub async fn a_commit_by_anyone_but_the_lease_holder_is_fenced(store: Arc<dyn Store>) {
    // Given a stamp nobody holds
    let s = stamp("eu-1");
    store.insert_stamp(&s).await.unwrap();
    let window = hour(COLLECT_FROM);
    let rows = vec![vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "1")];

    // When a run commits without the lease
    let e = commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Advance, &rows).await.unwrap_err();
    // Then it is fenced
    assert!(is_fenced(&e, &s.id, window), "no lease held: expected Fenced, got {e:?}");

    // When another run holds the lease and we commit
    assert!(store.try_acquire(&s.id, OTHER_RUN, LEASE).await.unwrap());
    let e = commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Advance, &rows).await.unwrap_err();
    // Then it is fenced too, and nothing was written by either attempt
    assert!(is_fenced(&e, &s.id, window), "lease held by another: expected Fenced, got {e:?}");
    assert_eq!(watermark(store.as_ref(), &s.id).await, s.collect_from);
    assert!(rows_of(store.as_ref(), &s.id).await.is_empty());

    // And the holder's commit of the same window goes through
    let receipt =
        commit(store.as_ref(), &s.id, window, OTHER_RUN, WindowWrite::Advance, &rows).await.unwrap();
    assert_eq!(receipt.rows_written, 1);
}

pub async fn committing_to_an_unknown_stamp_is_refused(store: Arc<dyn Store>) {
    // Given a stamp that was never registered
    let s = stamp("unknown");
    let window = hour(COLLECT_FROM);

    // When a window is committed to it
    let e = commit(store.as_ref(), &s.id, window, RUN, WindowWrite::Advance, &[]).await.unwrap_err();

    // Then the store says it does not know the stamp
    assert!(matches!(&e, StoreError::UnknownStamp(id) if *id == s.id), "got {e:?}");
}

pub async fn exact_duplicates_within_one_window_are_stored_once(store: Arc<dyn Store>) {
    // Given a window whose response repeated a row across a page boundary
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let row = vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "2.4000000000");
    let other = vm_usage(TENANT_A, "web-02", "2026-10-31T23:00:00Z", "2.4000000000");
    let rows = vec![row.clone(), other, row.clone(), row];

    // When it is committed
    let receipt = advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &rows).await;

    // Then the repeated row is stored once and counted as a duplicate
    assert_eq!(receipt, CommitReceipt { rows_written: 2, duplicates: 2, unmapped_rows: 2, quarantined: 0 });
    let stored = rows_of(store.as_ref(), &s.id).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(total(&stored), quantity("4.8"));
}

pub async fn a_late_reported_row_for_an_hour_already_seen_is_kept_as_additional_usage(store: Arc<dyn Store>) {
    // Given usage for 23:00 reported in the window starting 00:00
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let first = hour(COLLECT_FROM);
    let usage = vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "3.0");
    advance(store.as_ref(), &s.id, first, std::slice::from_ref(&usage)).await;

    // When the next window reports a row for the same usage hour, identical in every field
    let second = hour("2026-11-01T01:00:00Z");
    let receipt = advance(store.as_ref(), &s.id, second, std::slice::from_ref(&usage)).await;

    // Then it is kept as additional usage, not taken for a duplicate or a replacement
    assert_eq!(receipt.rows_written, 1);
    assert_eq!(receipt.duplicates, 0);
    let stored = rows_of(store.as_ref(), &s.id).await;
    assert_eq!(stored.iter().map(|r| r.window).collect::<Vec<_>>(), vec![first, second]);
    assert_eq!(total(&stored), quantity("6.0"));
}

pub async fn replacing_a_window_swaps_its_rows_and_leaves_the_watermark(store: Arc<dyn Store>) {
    // Given three collected hours
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let hours = [hour("2026-11-01T00:00:00Z"), hour("2026-11-01T01:00:00Z"), hour("2026-11-01T02:00:00Z")];
    for (i, w) in hours.iter().enumerate() {
        let rows = vec![
            vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", &format!("{}.0", i + 1)),
            vm_usage(TENANT_B, "db-01", "2026-10-31T23:00:00Z", "10"),
        ];
        advance(store.as_ref(), &s.id, *w, &rows).await;
    }

    // When the middle hour is re-pulled and replaced with what the API reports now
    let corrected = vec![vm_usage(TENANT_A, "web-01", "2026-10-31T23:00:00Z", "2.5")];
    let receipt =
        commit(store.as_ref(), &s.id, hours[1], RUN, WindowWrite::Replace { remap: false }, &corrected)
            .await
            .unwrap();

    // Then that hour holds exactly the new rows, the others are untouched, and the watermark stays
    assert_eq!(receipt, CommitReceipt { rows_written: 1, duplicates: 0, unmapped_rows: 1, quarantined: 0 });
    let stored = rows_of(store.as_ref(), &s.id).await;
    let of = |w| stored.iter().filter(|r| r.window == w).map(|r| r.row.clone()).collect::<Vec<_>>();
    assert_eq!(of(hours[1]), corrected);
    assert_eq!(of(hours[0]).len(), 2);
    assert_eq!(of(hours[2]).len(), 2);
    assert_eq!(total(&stored), quantity("1.0") + quantity("2.5") + quantity("3.0") + quantity("20"));
    assert_eq!(watermark(store.as_ref(), &s.id).await, hours[2].end);

    // And replacing it again with the same rows changes nothing
    let again =
        commit(store.as_ref(), &s.id, hours[1], RUN, WindowWrite::Replace { remap: false }, &corrected)
            .await
            .unwrap();
    assert_eq!(again.rows_written, 1);
    assert_eq!(rows_of(store.as_ref(), &s.id).await, stored);
}

pub async fn replacing_a_window_that_was_not_collected_yet_is_fenced(store: Arc<dyn Store>) {
    // Given a stamp that has collected one hour
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &[]).await;

    // When the hour at the watermark is "replaced"
    let next = hour("2026-11-01T01:00:00Z");
    let rows = vec![vm_usage(TENANT_A, "web-01", "2026-11-01T00:00:00Z", "1")];
    let e = commit(store.as_ref(), &s.id, next, RUN, WindowWrite::Replace { remap: false }, &rows)
        .await
        .unwrap_err();

    // Then it is fenced: only collected hours can be replaced, and nothing moves
    assert!(is_fenced(&e, &s.id, next), "expected Fenced, got {e:?}");
    assert!(rows_of(store.as_ref(), &s.id).await.is_empty());
    assert_eq!(watermark(store.as_ref(), &s.id).await, next.start);

    // And a replace by a run without the lease is fenced as well
    let e = commit(
        store.as_ref(),
        &s.id,
        hour(COLLECT_FROM),
        OTHER_RUN,
        WindowWrite::Replace { remap: false },
        &rows,
    )
    .await
    .unwrap_err();
    assert!(is_fenced(&e, &s.id, hour(COLLECT_FROM)), "expected Fenced, got {e:?}");
}

pub async fn quantities_round_trip_exactly(store: Arc<dyn Store>) {
    // Given quantities with trailing zeros, tiny and huge ones, and a zero
    let s = registered_and_leased(store.as_ref(), "eu-1").await;
    let texts = ["2.4000000000", "0.0000000001", "123456789012345678.1234567890", "0", "17", "0.5"];
    let rows: Vec<UsageRow> = texts
        .iter()
        .enumerate()
        .map(|(i, q)| vm_usage(TENANT_A, &format!("vm-{i}"), "2026-10-31T23:00:00Z", q))
        .collect();

    // When they are stored and read back
    advance(store.as_ref(), &s.id, hour(COLLECT_FROM), &rows).await;
    let stored = rows_of(store.as_ref(), &s.id).await;

    // Then each comes back as the same decimal with the same scale (its text is unchanged)
    assert_eq!(stored.len(), texts.len());
    for r in &stored {
        let i: usize = r.row.resource_uri.rsplit("vm-").next().unwrap().parse().unwrap();
        assert_eq!(r.row.quantity.to_string(), texts[i], "quantity of vm-{i}");
        assert_eq!(r.row, rows[i]);
    }
}

pub async fn reprocessing_requests_are_recorded_for_registered_stamps(store: Arc<dyn Store>) {
    // Given a registered stamp
    let s = stamp("eu-1");
    store.insert_stamp(&s).await.unwrap();
    let range = azs_core::ReportedWindow::new(t(COLLECT_FROM), t("2026-11-02T00:00:00Z")).unwrap();

    // When an operator asks to reprocess a day, it is recorded
    store.record_reprocess(&s.id, range, "meter fix KB5032 re-pull").await.unwrap();

    // And a request for an unknown stamp is refused
    let unknown = stamp("unknown");
    assert!(matches!(
        store.record_reprocess(&unknown.id, range, "typo").await,
        Err(StoreError::UnknownStamp(id)) if id == unknown.id
    ));
}
