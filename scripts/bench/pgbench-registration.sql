-- Registration's own statements (services/registration), one transaction per registration.
\set id random(1, 9000000000000000)
BEGIN;
insert into patients (id, full_name, address, sex, phone)
    values (:id, 'bench patient', '44, sw19, london', 'female', 711000000)
    on conflict (id) do nothing;
insert into token_counters (day, last_token) values (token_day(), 1)
    on conflict (day) do update set last_token = token_counters.last_token + 1
    returning last_token \gset
insert into issued_tokens (day, token, patient_id) values (token_day(), :last_token, :id);
insert into outbox (id, subject, event_type, source, payload)
    values (gen_random_uuid(), 'patient.register', 'opd.patient.registered.v1', '/opd/registration',
            json_build_object('id', :id, 'token', :last_token));
COMMIT;
