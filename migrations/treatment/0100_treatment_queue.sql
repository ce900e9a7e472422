-- Patients sent for treatment by inspection (`patient.treatment` events). An entry is pending
-- until a medication record is written for the patient.
create table treatment_queue (
    id bigserial primary key,
    patient_id bigint not null check (patient_id > 0),
    medication text,
    tests text,
    notes text,
    received_at timestamptz not null,
    treated_at timestamptz
);

create index treatment_queue_pending on treatment_queue (id) where treated_at is null;
create index treatment_queue_patient on treatment_queue (patient_id);
