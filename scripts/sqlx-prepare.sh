#!/usr/bin/env bash
# Regenerates .sqlx/, the offline query data that lets the workspace build without a database.
# Run it after changing a query or a migration, and commit .sqlx/.
#
# The query macros check every crate against one database, `opd_schema`, that holds the shared
# tables and every service's tables (table names are unique across services for this reason).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

DATA="$ROOT/target/sqlx-prepare-pg"
PORT="${SQLX_PREPARE_PORT:-55431}"
trap 'pg_stop "$DATA"' EXIT
pg_start "$DATA" "$PORT"
pg_psql "$DATA" "$PORT" -c "drop database if exists opd_schema" -c "create database opd_schema"
for file in $(ls migrations/*/*.sql | awk -F/ '{print $NF" "$0}' | sort -n | cut -d' ' -f2); do
    pg_psql "$DATA" "$PORT" -d opd_schema -f - <"$ROOT/$file" >/dev/null
done

rm -rf .sqlx && mkdir .sqlx
# Touching the sources makes cargo re-expand every query macro.
find shared services -name '*.rs' -exec touch {} +
DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$PORT/opd_schema" SQLX_OFFLINE=false \
    SQLX_OFFLINE_DIR="$ROOT/.sqlx" cargo check --workspace --all-targets --all-features --quiet
log "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
