-- The least any registration must do: store the patient and its event, in one transaction.
-- Keys grow in time order, as the services' do (UUIDv7 event ids); bench.py passes
-- -D n=0 -D base=<a fresh range>.
\set n :n + 1
\set id :base + :client_id * 10000000000 + :n
BEGIN;
insert into patients (id, full_name, address, sex, phone)
    values (:id, 'bench patient', '44, sw19, london', 'female', 711000000);
insert into outbox (id, subject, event_type, source, payload)
    values (('00000000-0000-7000-8000-' || lpad(to_hex(:id), 12, '0'))::uuid, 'patient.register', 'opd.patient.registered.v1', '/opd/registration',
            json_build_object('id', :id, 'token', 1));
COMMIT;
