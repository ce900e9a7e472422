-- One service's database and the role it connects as, run by a PostgreSQL superuser with psql:
--   psql -v role=opd_registration -v password=… -v database=opd_registration -f provision-service.sql
-- Used by scripts/dev.sh (one server, four databases) and by docker-compose.yml (one server per
-- service, through init-service-db.sh) alike.
--
-- The role is no superuser and cannot create roles or databases: it owns its one database, so
-- its migrations can create tables there, and nothing else. No other role may connect to that
-- database (PUBLIC's default CONNECT is revoked), and the role may not connect to the server's
-- `postgres` database either.
create role :"role" login password :'password' nosuperuser nocreatedb nocreaterole noreplication;
create database :"database" owner :"role";
revoke connect, temporary on database :"database" from public;
revoke connect, temporary on database postgres from public;
