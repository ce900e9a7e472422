-- Who made the HTTP call behind an event: the subject of the caller's bearer token (never the
-- token), sent as the CloudEvents extension header `ce-caller`.
alter table outbox add column caller text;
