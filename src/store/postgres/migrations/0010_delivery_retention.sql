-- Finished deliveries by age, for the retention purge (events are kept).
create index webhook_deliveries_finished on webhook_deliveries (updated_at) where status <> 'pending';
