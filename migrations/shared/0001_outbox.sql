-- Transactional outbox: a service writes its state change and the events it causes in one
-- transaction; the relay publishes unpublished rows to JetStream and then stamps published_at.
create table outbox (
    id uuid primary key,
    subject text not null,
    event_type text not null,
    source text not null,
    payload json not null,
    request_id text,
    created_at timestamptz not null default now(),
    published_at timestamptz,
    attempts integer not null default 0,
    last_error text
);

create index outbox_unpublished on outbox (id) where published_at is null;

-- Wakes the relay the moment an event is committed, instead of on its next polling tick.
create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('opd_outbox', '');
    return null;
end;
$$;

create trigger outbox_notify
    after insert on outbox
    for each statement execute function outbox_notify();
