-- Idempotency-Key on POST requests: the first request with a key runs and its answer is kept;
-- a repeat with the same key gets that answer again instead of repeating the effect.
create table idempotency_keys (
    key text primary key,
    method text not null,
    path text not null,
    request_body bytea not null,
    -- Null while the first request runs.
    status smallint,
    content_type text,
    response_body bytea,
    created_at timestamptz not null default now(),
    completed_at timestamptz
);

create index idempotency_keys_created_at on idempotency_keys (created_at);
