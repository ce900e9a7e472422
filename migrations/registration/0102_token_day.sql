-- The day a queue token belongs to, in one place so that every query agrees on it. A test that
-- counts tokens pins it by replacing the function in its own database, so that a run crossing
-- midnight does not split its count over two days.
create function token_day() returns date
    language sql stable
    as $$ select (now() at time zone 'utc')::date $$;
