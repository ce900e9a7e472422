#!/usr/bin/env bash
# The one test command. Installs what is missing (nats-server, PostgreSQL, newman,
# schemathesis, Chromium, Prometheus, cargo-deny, kubernetes-validate), starts a throwaway
# PostgreSQL server, checks the dependencies with cargo-deny (scripts/audit.sh), the alerting
# rules with promtool and the Kubernetes manifests offline (scripts/check-kubernetes.sh), runs
# cargo fmt --check, clippy with warnings as errors and the whole test suite, then starts the
# platform natively on the book's ports (scripts/dev.sh, in a throwaway directory) and runs what
# people learn it with against it: the tutorial's commands (docs/tutorial.md), the Swagger UI
# pages, the Postman collection and schemathesis (scripts/walkthroughs.sh), and the quick failure
# drills (scripts/drills.sh --quick); the tutorial and the Postman collection run a second time
# on a platform with 1,000 patients already waiting. Cleans up after itself, also on failure. The cargo tests
# start their own NATS servers (one node each, three where clustering is tested; see
# testing/src/nats.rs).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -p inspection   extra arguments go to `cargo test` (instead of --workspace),
#                                   and the walkthroughs are left out
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (rust-toolchain.toml pins the version)"
ensure_rust_toolchain
ensure_tool psql postgresql-client
# The link-cut tests drop packets for real (opd_testing::LinkCut): nftables, run as root.
ensure_tool nft nftables
NATS_SERVER_BIN="$(ensure_nats_server)"
export NATS_SERVER_BIN

WORK="$(mktemp -d "${TMPDIR:-/tmp}/opd-test.XXXXXX")"
chmod 755 "$WORK"
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The test helpers record each nats-server they start by pid here, and forget it when they stop
# it; whatever is left belongs to a test process that died without unwinding. Only those pids are
# stopped, so that other test runs on the machine keep their servers.
export OPD_TEST_PIDS_DIR="$WORK/pids"
cleanup() {
    if [ -d "$WORK/stack" ]; then OPD_DEV_DIR="$WORK/stack" "$ROOT/scripts/dev.sh" down >/dev/null 2>&1 || true; fi
    pg_stop "$WORK/pg"
    local file pid
    for file in "$OPD_TEST_PIDS_DIR"/*; do
        [ -e "$file" ] || continue
        pid="$(basename "$file")"
        # A recorded pid that has since been reused by another program is left alone.
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nats-server ]; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
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

log "no test code in the services' binaries"
# shellcheck disable=SC2086 # SERVICE_PACKAGES is a list of arguments
# (reqwest is no longer a sign of it: the OTLP span exporter sends with it.)
leaked="$(cargo tree $SERVICE_PACKAGES -e normal,build --prefix none --target all \
    | grep -E '^opd-testing ' | sort -u || true)"
[ -z "$leaked" ] || die "a service build depends on test support: $leaked"

log "cargo machete (every crate uses every dependency it lists)"
ensure_cargo_tool cargo-machete cargo-machete "$CARGO_MACHETE_VERSION"
cargo machete

# Advisories (from a RustSec snapshot beside the repository, else fetched, else reported as
# skipped), licenses, bans, sources; then the proof that ../shared is optional.
scripts/audit.sh
scripts/lib/check-optional-shared.sh
# The scripts in a clone the postgres user cannot enter (a 0700 folder).
scripts/lib/check-private-clone.sh

log "promtool: the alerting rules and their unit tests (observability/prometheus)"
ensure_prometheus
promtool check config observability/prometheus/prometheus-native.yml
promtool check config observability/prometheus/prometheus-compose.yml
(cd observability/prometheus && promtool test rules alerts.test.yml)
echo "promtool: 3 passed, 0 failed"

# Grafana cannot run here: its provisioning and dashboard JSON are checked as Grafana reads them
# (scripts/compose-test.sh also runs every panel query against the compose stack's Prometheus).
log "the Grafana dashboards (observability/grafana)"
venv_install "PyYAML==${PYYAML_VERSION}"
"$(ensure_venv)/bin/python" scripts/lib/check-dashboards.py "$ROOT"
echo "dashboards: 1 passed, 0 failed"

# What the documents name exists: alerts, links and anchors, repository paths (the settings
# table and the metric names are checked by cargo tests in shared/).
log "the documents against the repository (scripts/lib/check-docs.py)"
"$(ensure_venv)/bin/python" scripts/lib/check-docs.py "$ROOT"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The walkthroughs need the book's ports: fail now, not after the cargo tests.
walkthroughs=""
if [ "$#" -eq 0 ]; then
    walkthroughs=1
    for port in 9090 9091 9092 9093 4222 4223 4224 6222 6223 6224 8222 8223 8224 5433; do
        if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port is in use, and the walkthroughs run the platform on the book's ports (is scripts/dev.sh up or docker compose running? stop it first)"
        fi
    done
fi

log "cargo test (nats-server $("$NATS_SERVER_BIN" --version | awk '{print $2}'), PostgreSQL ${POSTGRES_MAJOR})"
started=$SECONDS
# Arguments choose what to test (`-p inspection`); without any, the whole workspace.
if [ "$#" -eq 0 ]; then set -- --workspace; fi
cargo test --all-features "$@" 2>&1 | tee "$WORK/cargo-test.log"
log "cargo test took $((SECONDS - started)) s (build included)"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6 }
     END { printf "cargo-test: %d passed, %d failed\n", passed, failed }' "$WORK/cargo-test.log"

# The break-in tests must fail when a permission is widened (nats/auth.conf, on a copy).
if [ "$1" = --workspace ]; then scripts/widened-permissions.sh; fi

# Kubernetes: both overlays rendered, validated, their NATS configuration tested and their
# cross-references checked, offline (docs/kubernetes.md). After the tests: the opd-nats it
# builds is the one scripts/dev.sh builds for the walkthroughs below.
scripts/check-kubernetes.sh

if [ -n "$walkthroughs" ]; then
    export OPD_DEV_DIR="$WORK/stack"
    walked=0
    # What the walkthroughs print goes to a file too: on a failure the logs below come first and
    # the failing steps last, so that the tail of the output (all a CI summary keeps) shows them.
    walk_log="$WORK/walkthroughs.log"
    show_logs() {
        for name in registration inspection treatment release board nats-1 nats-2 nats-3; do
            log "last lines of $name's log"
            tail -n 40 "$OPD_DEV_DIR/logs/$name.log" || true
        done
        log "what failed (printed above in full)"
        grep -E -A 12 '^FAIL ' "$walk_log" | head -n 60 || true
        grep -E ': [0-9]+ passed, [1-9][0-9]* failed$' "$walk_log" || true
    }
    started=$SECONDS
    log "walkthroughs: starting the platform natively (scripts/dev.sh, state in $OPD_DEV_DIR)"
    scripts/dev.sh up
    # The tutorial first: it expects a fresh platform (patient 200 gets token 1).
    log "walkthroughs: the tutorial's commands (docs/tutorial.md)"
    python3 scripts/lib/tutorial.py docs/tutorial.md 2>&1 | tee -a "$walk_log" || walked=1
    scripts/walkthroughs.sh swagger-ui newman schemathesis board 2>&1 | tee -a "$walk_log" || walked=1
    [ "$walked" = 0 ] || { show_logs; die "a walkthrough failed (see above)"; }

    # Again on a busy platform: a fresh one where a thousand patients wait before the reader's.
    log "walkthroughs on a busy platform: a fresh one, with 1,000 patients waiting first"
    scripts/dev.sh clean >/dev/null 2>&1
    scripts/dev.sh up >/dev/null
    OPD_TOKEN="$(opd_token registrar clinician --subject seed)" \
        python3 scripts/lib/seed-waiting.py 1000 2>&1 | tee -a "$walk_log" || walked=1
    python3 scripts/lib/tutorial.py --busy docs/tutorial.md 2>&1 | tee -a "$walk_log" || walked=1
    OPD_WALKTHROUGH_SUFFIX=-busy scripts/walkthroughs.sh newman board 2>&1 | tee -a "$walk_log" || walked=1
    [ "$walked" = 0 ] || { show_logs; die "a walkthrough on the busy platform failed (see above)"; }
    log "walkthroughs took $((SECONDS - started)) s"
    scripts/dev.sh down >/dev/null 2>&1
    unset OPD_DEV_DIR

    # The quick drills start their own stack on the same ports (scripts/drills.sh).
    started=$SECONDS
    log "quick drills: a consumer and the stream leader killed mid-batch, a consumer paused, the clinic's link cut (scripts/drills.sh --quick)"
    scripts/drills.sh --quick
    log "quick drills took $((SECONDS - started)) s"
fi
