-- Tokens count per site and day (docs/architecture.md, "Sites"): a visit is known by its day,
-- site and token. Visits from before there were sites were the hospital's.
alter table visits add column site text not null default 'hospital'
    check (site ~ '^[a-z][a-z0-9-]{0,31}$');
alter table visits drop constraint visits_pkey;
alter table visits add primary key (registered_on, site, token);

-- The pending list's cursor: a page ends at an entry, and the next one starts after that
-- entry's place in the queue (day, token, site), which the cursor is looked up by.
alter table visits add column entry bigint generated always as identity unique;

drop index visits_pending;
create index visits_pending on visits (registered_on, token, site) where inspected_at is null;
