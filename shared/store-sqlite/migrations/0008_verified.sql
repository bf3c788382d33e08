-- 0008: the outcome of the timer job's scheduled verify, per stamp.
--
-- Why: nobody could tell in production whether what is stored still equals what the stamp reports.
-- Once a UTC day the collector re-pulls a stamp's trailing collected hours without writing and records
-- here when (millis), which reported range (seconds, [from, to)) and how many rows differ by key;
-- `status` shows it and the functions publish the drift as a metric an alarm watches. NULL: never
-- verified.
ALTER TABLE processing_status ADD COLUMN last_verified_at INTEGER;
ALTER TABLE processing_status ADD COLUMN verified_from INTEGER;
ALTER TABLE processing_status ADD COLUMN verified_to INTEGER;
ALTER TABLE processing_status ADD COLUMN drift_missing INTEGER;
ALTER TABLE processing_status ADD COLUMN drift_extra INTEGER;
ALTER TABLE processing_status ADD COLUMN drift_changed INTEGER;
