-- Idempotent consumers: the id of every handled event is recorded in the same transaction as
-- its effect, so a redelivered event is recognised and changes nothing.
create table processed_events (
    consumer text not null,
    event_id uuid not null,
    subject text not null,
    processed_at timestamptz not null default now(),
    primary key (consumer, event_id)
);

-- Messages that can never be handled (undecodable, invalid). They are acknowledged so they do
-- not block the stream, and kept here with the reason for an operator to inspect or replay.
create table dead_letters (
    id bigserial primary key,
    consumer text not null,
    stream_sequence bigint not null,
    subject text not null,
    event_id text,
    headers jsonb not null,
    payload bytea not null,
    reason text not null,
    parked_at timestamptz not null default now(),
    unique (consumer, stream_sequence)
);
