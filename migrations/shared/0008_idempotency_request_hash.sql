-- A key needs only to recognise its request again, not to keep it: a SHA-256 of the body takes
-- the place of the body (the answer stays, for the replay). The body column stays, nullable and
-- no longer written, so that an instance of the previous version still running during a rolling
-- upgrade can go on inserting; rows it writes are compared by the hash of their body.
alter table idempotency_keys add column request_hash bytea;
update idempotency_keys set request_hash = sha256(request_body) where request_body is not null;
alter table idempotency_keys alter column request_body drop not null;
