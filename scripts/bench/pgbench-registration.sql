-- Registration's own statement (services/registration/src/token_counter.rs, `register`): the
-- patient, the day's next token and the outbox row, in one statement and its implicit
-- transaction.
-- Keys grow in time order, as the services' do (UUIDv7 event ids); bench.py passes
-- -D n=0 -D base=<a fresh range>.
\set n :n + 1
\set id :base + :client_id * 10000000000 + :n
with patient as (
    insert into patients (id, full_name, address, sex, email, phone, remarks)
    values (:id, 'bench patient', '44, sw19, london', 'female', null, 711000000, null)
    on conflict (id) do nothing
    returning id
), counter as (
    insert into token_counters (day, last_token)
    select token_day(), 1 from patient
    on conflict (day) do update set last_token = token_counters.last_token + 1
    returning day, last_token
), issued as (
    insert into issued_tokens (day, token, patient_id)
    select day, last_token, :id from counter
    returning token
), announced as (
    insert into outbox (id, subject, event_type, source, request_id, payload)
    select ('00000000-0000-7000-8000-' || lpad(to_hex(:id), 12, '0'))::uuid, 'patient.register', 'opd.patient.registered.v1', '/opd/registration',
           null, json_build_object('id', :id::bigint, 'token', token)
    from issued
)
select token from issued;
