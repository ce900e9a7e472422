-- The W3C trace context of the request that wrote the event: the relay sends it as the message's
-- `traceparent` header, and the consumer's handling continues the trace.
alter table outbox add column traceparent text;
