-- 0004: mapped rows indexed by billing subscription and reported start.
--
-- Why: a statement is built from one billing subscription's rows since the month began (issue 28),
-- and the timer builds one for every billing subscription. Without this index each statement read
-- every stamp's rows of the month: 10,000 statements read the month 10,000 times. Unmapped rows
-- (never billed) are left out, as usage_rows_unmapped leaves out mapped ones.
CREATE INDEX usage_rows_billing ON usage_rows (billing_subscription_id, reported_start)
    WHERE billing_subscription_id IS NOT NULL;
