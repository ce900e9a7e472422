-- Visits announced by `patient.register` events: a patient with a token for a day. A visit is
-- pending until the patient is inspected.
create table visits (
    registered_on date not null,
    token bigint not null check (token > 0),
    patient_id bigint not null check (patient_id > 0),
    registered_at timestamptz not null,
    inspected_at timestamptz,
    primary key (registered_on, token)
);

create index visits_pending on visits (registered_on, token) where inspected_at is null;
create index visits_patient on visits (patient_id);
