#!/bin/sh
# Run (sourced) by the postgres image's entrypoint on an empty data directory: creates the
# service's role and database from OPD_DB_ROLE, OPD_DB_PASSWORD (or OPD_DB_PASSWORD_FILE, a
# file holding it) and OPD_DB_NAME with provision-service.sql, as the superuser POSTGRES_USER,
# over the local socket.
if [ -n "${OPD_DB_PASSWORD_FILE:-}" ]; then
    OPD_DB_PASSWORD="$(cat "$OPD_DB_PASSWORD_FILE")"
fi
psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$OPD_DB_ROLE" -v password="$OPD_DB_PASSWORD" -v database="$OPD_DB_NAME" \
    -f /docker-entrypoint-initdb.d/provision-service.sql.in
