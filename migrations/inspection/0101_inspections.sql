-- Inspection reports, the book's `inspection_details`. `time` is free text as the book sends it
-- ("2021/07/12 10:21 AM"); `recorded_at` is when we stored it.
create table inspections (
    id bigserial primary key,
    patient_id bigint not null check (patient_id > 0),
    time text not null,
    observations text,
    medication text,
    tests text,
    notes text,
    recorded_at timestamptz not null default now()
);

create index inspections_patient on inspections (patient_id, id);
