-- Queue tokens: one sequence per day (UTC). The counter row is locked by the upsert that
-- advances it, so concurrent requests and several replicas never hand out the same number, and
-- the counter survives restarts because it lives here rather than in a process.
create table token_counters (
    day date primary key,
    last_token bigint not null check (last_token >= 0)
);

-- Every token handed out. The key makes a duplicate token impossible, even after a reset.
create table issued_tokens (
    day date not null,
    token bigint not null check (token > 0),
    patient_id bigint not null references patients (id),
    issued_at timestamptz not null default now(),
    primary key (day, token)
);
