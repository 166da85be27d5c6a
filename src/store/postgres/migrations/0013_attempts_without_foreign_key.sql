-- An attempt is written only for a delivery the same statement has just
-- locked by updating it (`record_attempts`), and deleted in the statement
-- that deletes its delivery (`purge_finished_deliveries`), so no attempt
-- outlives its delivery without the foreign key. Its per-row check (a
-- trigger, a lookup of the delivery and a key-share lock on a row the
-- statement already holds) was a quarter of each record's time, the
-- largest part of a backlog's drain in the database (BENCHMARKS.md), and
-- made a record for a delivery purged meanwhile fail its whole batch.
alter table webhook_attempts drop constraint webhook_attempts_event_id_endpoint_id_fkey;
