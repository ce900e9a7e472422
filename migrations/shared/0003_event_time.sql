-- When each handled event was produced (its ce-time), beside when it was handled
-- (processed_at): the hop latency from producer to consumer, kept by the services themselves so
-- that the benchmark and an operator read the same figure.
alter table processed_events add column event_time timestamptz;

create index processed_events_processed_at on processed_events (processed_at);
