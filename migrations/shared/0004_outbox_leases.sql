-- The relay claims rows with a lease instead of holding a transaction open while it publishes:
-- a claimed row is skipped by other relays until the lease runs out, so a relay that dies
-- mid-batch leaves its rows to the next one after a short wait (JetStream drops the repeat by
-- Nats-Msg-Id, consumers by event id).
alter table outbox add column claimed_until timestamptz;

-- The relay is now woken in-process, by the request that wrote the event. pg_notify made every
-- committing registration queue on PostgreSQL's single notification lock.
drop trigger outbox_notify on outbox;
drop function outbox_notify();

-- Pruning of published rows looks them up by age.
create index outbox_published_at on outbox (published_at) where published_at is not null;
