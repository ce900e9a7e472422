-- Patients whose release treatment asked for (`patient.release` events). An entry is pending
-- until the patient is discharged or sent for admission.
create table release_queue (
    id bigserial primary key,
    patient_id bigint not null check (patient_id > 0),
    time text not null,
    next_state text,
    post_medication text,
    notes text,
    received_at timestamptz not null,
    released_at timestamptz
);

create index release_queue_pending on release_queue (id) where released_at is null;
create index release_queue_patient on release_queue (patient_id);
