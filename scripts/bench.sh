#!/usr/bin/env bash
# The benchmark: a release build of the native stack (scripts/dev.sh, with its state in
# target/bench/dev), loaded with wrk from this machine, compared with pgbench on the same
# PostgreSQL instance. Unattended and bounded (about ten minutes after the build); prints a
# table and writes target/bench/results.json. docs/benchmarks.md explains every figure.
#
#   scripts/bench.sh                   everything, 10 s per point
#   BENCH_DURATION=5 scripts/bench.sh  shorter points
#   BENCH_PHASES=board scripts/bench.sh  some phases only (scripts/bench/bench.py lists them);
#                                      board: 1,000 event streams on one board instance while
#                                      patients register at 100/s for BENCH_BOARD_S (30) s
#   BENCH_DURABLE=1 scripts/bench.sh   PostgreSQL flushing every commit to disk (fsync,
#                                      synchronous_commit, full_page_writes), as a hospital
#                                      runs it; the pgbench floors share the instance, so they
#                                      flush too. Without it the development stack's fsync=off
#   BENCH_PG_OPTIONS="-c …" scripts/bench.sh  more PostgreSQL settings for a profiling run
#                                      (auto_explain, …), applied last
#   BENCH_BOOK_URL=http://127.0.0.1:9290 scripts/bench.sh  the book's sample, running there on
#                                      an empty table, measured in the same run (registration
#                                      and view points right after ours); see docs/benchmarks.md
#
# It uses the ports of scripts/dev.sh, so stop a running dev stack first.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

ensure_rust_toolchain
ensure_tool wrk wrk
ensure_tool curl curl
ensure_tool psql postgresql-client
PATH="$(ensure_postgres):$PATH"   # pgbench ships with the server
export OPD_DEV_DIR="$ROOT/target/bench/dev" OPD_DEV_PROFILE=release
# Every request would otherwise write a log line: the figures are for the services, not the disk.
export OPD_LOG__FILTER="${OPD_LOG__FILTER:-warn}"
# Where PostgreSQL spends its time, statement by statement.
export PG_EXTRA_OPTIONS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
if [ "${BENCH_DURABLE:-0}" = 1 ]; then
    # After common.sh's own -c fsync=off: the last setting of a name wins.
    PG_EXTRA_OPTIONS="$PG_EXTRA_OPTIONS -c fsync=on -c synchronous_commit=on -c full_page_writes=on"
fi
# For a profiling run, more server settings (auto_explain, say), last so that they win.
PG_EXTRA_OPTIONS="$PG_EXTRA_OPTIONS ${BENCH_PG_OPTIONS:-}"

if curl -fsS -o /dev/null http://127.0.0.1:9090/healthz 2>/dev/null; then
    die "something already answers on port 9090 (scripts/dev.sh up?): stop it first"
fi
trap 'scripts/dev.sh clean >/dev/null 2>&1 || true' EXIT
scripts/dev.sh clean >/dev/null 2>&1 || true
scripts/dev.sh up >/dev/null
# The board phase's many screens (opd-board-load).
SQLX_OFFLINE=true cargo build --quiet --release -p opd-drills
# The bearer token register.lua and view.lua send, with the role of every stage of a visit.
OPD_TOKEN="$(scripts/dev.sh token registrar clinician discharge --subject bench)"
export OPD_TOKEN
log "platform up (release build); benchmarking"
timeout 1200 python3 scripts/bench/bench.py
