-- The least any registration must do: store the patient and its event, in one transaction.
\set id random(1, 9000000000000000)
BEGIN;
insert into patients (id, full_name, address, sex, phone)
    values (:id, 'bench patient', '44, sw19, london', 'female', 711000000);
insert into outbox (id, subject, event_type, source, payload)
    values (gen_random_uuid(), 'patient.register', 'opd.patient.registered.v1', '/opd/registration',
            json_build_object('id', :id, 'token', 1));
COMMIT;
