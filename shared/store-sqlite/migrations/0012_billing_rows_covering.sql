-- 0012: the billing index holds every column a billing read returns, in the read's order.
--
-- Why: 0011's index found a subscription's rows, but each row then lay in its reported hour's window
-- among every other subscription's rows: a statement read descended the table's B-tree once per row,
-- one page read for every few rows (20.1 s of a 2,000-subscription pass, 13 of them reading). With
-- the columns in the index, one subscription's rows are one contiguous range of its leaves, already
-- in the statement's order (no sort), and the table is not touched (7.7-9.0 s for the same pass).
-- The price is room: mapped rows are stored twice (a 1.66 GB benchmark file became 2.71 GB) and each
-- mapped row written costs a wider index entry. Unmapped rows stay out of it, as before.
-- Rebuilding it on a large existing file reads usage_rows once, inside the migration's transaction.
DROP INDEX usage_rows_billing;
CREATE INDEX usage_rows_billing ON usage_rows (
    billing_subscription_id, reported_start, stamp_no, usage_start, row_key, row_key_low,
    reported_end, subscription_id, meter_id, usage_end, quantity, resource_uri, location, tags,
    additional_info
) WHERE billing_subscription_id IS NOT NULL;
