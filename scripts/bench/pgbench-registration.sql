-- Registration's own statement (services/registration/src/token_counter.rs, `register_all`)
-- with one registration in it, as the service runs it when registrations arrive one at a
-- time: the patient, the day's next token and the outbox row, in one statement and its
-- implicit transaction. (pgbench runs one per transaction at every client count: the
-- service's grouping of concurrent registrations is not in this floor.)
-- Keys grow in time order, as the services' do (UUIDv7 event ids); bench.py passes
-- -D n=0 -D base=<a fresh range>.
\set n :n + 1
\set id :base + :client_id * 10000000000 + :n
with input as (
    select *
    from unnest(array[:id]::bigint[], array['bench patient']::text[],
                array['44, sw19, london']::text[], array['female']::text[], array[null]::text[],
                array[711000000]::bigint[], array[null]::text[],
                array[('00000000-0000-7000-8000-' || lpad(to_hex(:id::bigint), 12, '0'))::uuid],
                array[null]::text[], array[null]::text[], array[null]::text[])
         with ordinality as input (id, full_name, address, sex, email, phone, remarks,
                                   event_id, request_id, caller, traceparent, nth)
), candidate as (
    select distinct on (id) * from input order by id, nth
), patient as (
    insert into patients (id, full_name, address, sex, email, phone, remarks)
    select id, full_name, address, sex, email, phone, remarks from candidate
    on conflict (id) do nothing
    returning id
), admitted as (
    select candidate.*, row_number() over (order by candidate.nth) as place
    from candidate join patient using (id)
), counter as (
    insert into token_counters (day, last_token)
    select token_day(), count(*) from admitted having count(*) > 0
    on conflict (day) do update
        set last_token = token_counters.last_token + excluded.last_token
    returning day, last_token
), issued as (
    insert into issued_tokens (day, token, patient_id)
    select counter.day,
           counter.last_token - (select count(*) from admitted) + admitted.place,
           admitted.id
    from admitted cross join counter
    returning token, patient_id
), announced as (
    insert into outbox (id, subject, event_type, source, request_id, caller, traceparent,
                        payload)
    select admitted.event_id, 'patient.register', 'opd.patient.registered.v1',
           '/opd/registration', admitted.request_id, admitted.caller, admitted.traceparent,
           json_build_object('id', admitted.id, 'token', issued.token, 'site', 'hospital')
    from issued join admitted on admitted.id = issued.patient_id
)
select admitted.event_id, issued.token from issued join admitted on admitted.id = issued.patient_id;
