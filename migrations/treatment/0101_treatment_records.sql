-- Medication given and tests taken; `time` is free text as the book sends it.
create table medications (
    id bigserial primary key,
    patient_id bigint not null check (patient_id > 0),
    time text not null,
    dose text not null,
    notes text,
    recorded_at timestamptz not null default now()
);

create index medications_patient on medications (patient_id, id);

create table test_records (
    id bigserial primary key,
    patient_id bigint not null check (patient_id > 0),
    time text not null,
    test_name text not null,
    results text,
    status text,
    notes text,
    recorded_at timestamptz not null default now()
);

create index test_records_patient on test_records (patient_id, id);

-- Release requests sent on to the release service as `patient.release`.
create table release_requests (
    id bigserial primary key,
    patient_id bigint not null check (patient_id > 0),
    time text not null,
    next_state text not null,
    post_medication text,
    notes text,
    requested_at timestamptz not null default now()
);
