//! The cases, one module per port. Each function is one behaviour, named as its specification.

mod audit;
mod export;
mod leases;
mod ledger;
mod mappings;
mod quarantine;
mod stamps;
mod status;

use crate::Case;

macro_rules! cases {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$(Case { name: stringify!($name), run: |store| Box::pin($module::$name(store)) }),*]
    };
}

pub(crate) fn all() -> Vec<Case> {
    cases![
        stamps::registering_the_same_admin_endpoint_and_subscription_again_names_the_existing_stamp,
        stamps::a_registered_stamp_reads_back_exactly_as_written,
        stamps::updating_a_stamp_changes_its_connection_but_not_its_progress,
        stamps::deleting_a_stamp_removes_its_status_lease_and_mappings_but_keeps_its_rows,
        stamps::removing_a_stamp_leaves_a_tombstone_with_its_watermark_that_registering_consumes,
        status::registering_a_stamp_creates_its_status_with_the_watermark_at_collect_from,
        status::a_run_records_its_start_and_its_finish,
        status::a_verify_outcome_is_recorded_in_the_status_and_replaced_by_the_next,
        ledger::committing_a_window_stores_its_rows_and_moves_the_watermark_to_its_end,
        ledger::an_empty_window_still_moves_the_watermark,
        ledger::committing_the_same_window_twice_is_fenced_and_changes_nothing,
        ledger::a_window_that_does_not_start_at_the_watermark_is_fenced,
        ledger::a_commit_by_anyone_but_the_lease_holder_is_fenced,
        ledger::committing_to_an_unknown_stamp_is_refused,
        ledger::exact_duplicates_within_one_window_are_stored_once,
        ledger::a_late_reported_row_for_an_hour_already_seen_is_kept_as_additional_usage,
        ledger::replacing_a_window_swaps_its_rows_and_leaves_the_watermark,
        ledger::replacing_a_window_that_was_not_collected_yet_is_fenced,
        ledger::quantities_round_trip_exactly,
        ledger::reprocessing_requests_are_recorded_for_registered_stamps,
        quarantine::a_row_over_the_stores_limits_is_quarantined_with_its_window_and_the_watermark_moves_on,
        quarantine::a_quarantined_row_is_stored_once_however_often_its_window_is_pulled,
        quarantine::replacing_a_window_replaces_its_quarantine_and_leaves_other_windows_alone,
        quarantine::the_quarantine_is_listed_per_stamp,
        mappings::rows_are_mapped_when_written_and_unmapped_rows_are_counted,
        mappings::setting_a_mapping_back_fills_only_that_subscriptions_unmapped_rows,
        mappings::a_changed_mapping_applies_to_new_rows_and_leaves_mapped_rows_alone,
        mappings::replacing_a_window_keeps_the_billing_subscription_its_rows_were_billed_under_unless_remapped,
        mappings::unmapped_lists_each_subscription_with_its_rows_and_usage_span,
        mappings::mappings_are_listed_per_stamp_and_removed_by_any_casing,
        mappings::setting_many_mappings_is_all_or_nothing,
        leases::a_lease_is_exclusive_while_it_lasts,
        leases::a_lease_is_reentrant_for_its_owner,
        leases::an_expired_lease_can_be_taken_over_and_fences_the_old_owner,
        leases::a_released_lease_is_free_at_once_and_only_its_owner_can_release_it,
        leases::renewing_extends_only_the_owners_lease,
        export::export_streams_rows_in_stamp_reported_and_usage_order,
        export::export_filters_by_stamp_and_reported_range,
        export::an_export_stops_when_its_sink_fails,
        export::a_billing_subscriptions_rows_are_read_alone_in_reported_order_over_every_stamp,
        audit::a_stamp_change_is_recorded_with_who_when_and_each_changed_fields_old_and_new_value,
        audit::a_refused_change_writes_no_audit_record,
        audit::mapping_changes_are_recorded_with_the_subscription_and_the_old_and_new_billing_subscription,
        audit::a_removed_stamps_history_stays_with_its_removal_and_last_values,
        audit::the_trail_is_listed_in_the_order_written_by_stamp_time_and_cursor,
    ]
}
