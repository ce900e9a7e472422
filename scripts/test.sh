#!/usr/bin/env bash
# The one test command. Installs what is missing (nats-server, PostgreSQL), starts a throwaway
# PostgreSQL server, runs cargo fmt --check, clippy with warnings as errors and the whole test
# suite, and cleans up after itself, also on failure. The tests start their own three-node NATS
# clusters (see shared/src/testing.rs).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -p inspection   extra arguments go to `cargo test`
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (rust-toolchain.toml pins the version)"
ensure_rust_toolchain
ensure_tool psql postgresql-client
NATS_SERVER_BIN="$(ensure_nats_server)"
export NATS_SERVER_BIN

WORK="$(mktemp -d "${TMPDIR:-/tmp}/opd-test.XXXXXX")"
chmod 755 "$WORK"
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cleanup() {
    pg_stop "$WORK/pg"
    # Clusters of a test process that died without unwinding (the helper kills them on drop).
    pkill -f "shared/../nats/cluster.conf" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log "starting a throwaway PostgreSQL on port $PG_PORT"
pg_start "$WORK/pg" "$PG_PORT"
export OPD_TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:$PG_PORT/postgres"
# Build against the committed query data in .sqlx/: no database is needed to compile, and a
# query that no longer matches it fails the build (regenerate with scripts/sqlx-prepare.sh).
export SQLX_OFFLINE=true
unset DATABASE_URL

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
log "cargo test (nats-server $("$NATS_SERVER_BIN" --version | awk '{print $2}'), PostgreSQL ${POSTGRES_MAJOR})"
cargo test --workspace --all-features "$@" 2>&1 | tee "$WORK/cargo-test.log"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "cargo-test: %d passed, %d failed\n", passed, failed }' "$WORK/cargo-test.log"
