-- Discharge records. `state` is "discharge" or "admission"; an admission is also announced as
-- a `patient.admission` event.
create table discharges (
    id bigserial primary key,
    patient_id bigint not null check (patient_id > 0),
    time text not null,
    state text not null check (state in ('discharge', 'admission')),
    post_medication text,
    notes text,
    next_visit text,
    recorded_at timestamptz not null default now()
);

create index discharges_patient on discharges (patient_id, id);
