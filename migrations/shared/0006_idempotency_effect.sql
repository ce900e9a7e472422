-- Set in the same transaction as a request's effect, for effects that no state rule refuses when
-- repeated (a new token, a medication, a test result): a repeat after a crash can tell whether
-- the effect was committed before it reruns the request.
alter table idempotency_keys add column effect_committed boolean not null default false;
