#!/usr/bin/env bash
# Runs the platform natively, without Docker, for curl and Postman:
# a throwaway PostgreSQL (port 5433), a three-node NATS cluster with JetStream (client ports
# 4222, 4223, 4224; TLS only, one nkey identity per service, credentials generated in
# .dev/credentials), the services on the book's ports and the waiting-room board on 9094
# (http://127.0.0.1:9094/opd/board/screen). State and logs live in .dev/.
#
#   scripts/dev.sh up               build, start everything, return once every service is ready
#   scripts/dev.sh down             stop everything (data is kept for the next `up`)
#   scripts/dev.sh clean            stop everything and delete .dev/ (databases, streams, logs)
#   scripts/dev.sh status           what runs, with pids and ports
#   scripts/dev.sh stop NAME        stop one piece: a service (registration, inspection, …),
#   scripts/dev.sh start NAME         a NATS node (nats-1, nats-2, nats-3) or postgres
#   scripts/dev.sh kill NAME        SIGKILL a service or a NATS node, as a crash would
#   scripts/dev.sh start NAME-2     a second replica of a service (port + 100, same database)
#   scripts/dev.sh logs NAME [-f]   show (or follow) a piece's log
#   scripts/dev.sh token ROLE...    print a bearer token for the APIs (registrar, clinician,
#                                   discharge, operator), valid 12 h: opd-nats token ROLE...
#   scripts/dev.sh start prometheus Prometheus (Debian's package) with the alerting rules on
#                                   http://127.0.0.1:9190, scraping every service and the NATS
#                                   exporter (opd-nats-exporter, on port 7777)
#   scripts/dev.sh start clinic     a second site (docs/architecture.md, "Sites"): the clinic's
#                                   NATS server (4225, its own JetStream domain, a leaf node of
#                                   the cluster), its stream, and its registration instance on
#                                   9095 with a database of its own; `stop clinic` stops them
#   scripts/dev.sh cut clinic       drop every packet of the clinic's link (nftables, needs
#   scripts/dev.sh heal clinic        root); `heal` lets them through again
#   scripts/dev.sh start legacy     the legacy leaf: plain NATS on 127.0.0.1:4229, no TLS, no
#                                   credentials, with read-only copies of the book's events
#
# OPD_DEV_DIR (default .dev) moves the state; OPD_DEV_PROFILE=release runs release builds
# (scripts/bench.sh uses both); OPD_DEV_PG_PORT moves PostgreSQL off 5433 (where the services
# expect it: for the scripts' own tests). OPD_DEV_CGROUPS, a cgroup v2 folder, starts each process in a
# cgroup of its own there, so that firewall rules can single it out (scripts/drills.sh).
# GOMAXPROCS sizes each NATS node's Go runtime; by default a third of the machine's cores, at
# least one, as the three nodes share them (see NODE_GOMAXPROCS below).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

DEV="${OPD_DEV_DIR:-$ROOT/.dev}"
PROFILE="${OPD_DEV_PROFILE:-debug}"
case "$PROFILE" in
    debug) PROFILE_FLAG="" ;;
    release) PROFILE_FLAG="--release" ;;
    *) die "OPD_DEV_PROFILE must be debug or release, not '$PROFILE'" ;;
esac
PG_PORT="${OPD_DEV_PG_PORT:-5433}"
SERVICES=(registration:9090 inspection:9091 treatment:9092 release:9093 board:9094)
NODES=(nats-1 nats-2 nats-3)

port_of_service() { # a replica NAME-2 listens 100 above its service
    local s base="${1%-2}" offset=0
    [ "$base" = "$1" ] || offset=100
    for s in "${SERVICES[@]}"; do if [ "${s%%:*}" = "$base" ]; then echo $(("${s##*:}" + offset)); fi; done
}
node_index() { echo "${1##nats-}"; }
is_service() { [ -n "$(port_of_service "$1")" ]; }
is_node() { [[ "$1" =~ ^nats-[123]$ ]]; }
pid_file() { echo "$DEV/run/$1.pid"; }
log_file() { echo "$DEV/logs/$1.log"; }

running() { # running NAME: is its process alive?
    local pid_path; pid_path="$(pid_file "$1")"
    [ -f "$pid_path" ] && alive "$(cat "$pid_path")"
}

# alive PID: the process exists and is not a zombie. Where nothing reaps orphans (a container
# without an init), a killed process stays a zombie that `kill -0` still finds.
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [ "$state" != Z ]
}

spawn() { # spawn NAME COMMAND...: start in the background, detached, logging to its file
    local name="$1"; shift
    mkdir -p "$DEV/run" "$DEV/logs"
    if [ -n "${OPD_DEV_CGROUPS:-}" ]; then
        mkdir -p "$OPD_DEV_CGROUPS/$name"
        set -- bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$OPD_DEV_CGROUPS/$name" "$@"
    fi
    setsid "$@" >>"$(log_file "$name")" 2>&1 < /dev/null &
    echo $! >"$(pid_file "$name")"
}

terminate() { # terminate NAME: SIGTERM, then SIGKILL after 20 s
    local name="$1" pid
    running "$name" || { rm -f "$(pid_file "$name")"; return 0; }
    pid="$(cat "$(pid_file "$name")")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$(pid_file "$name")"
    log "stopped $name"
}

wait_http() { # wait_http URL WHAT [SECONDS]
    local url="$1" what="$2" seconds="${3:-60}"
    for _ in $(seq 1 $((seconds * 5))); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    die "$what did not become ready ($url); see scripts/dev.sh logs"
}

# --- PostgreSQL -------------------------------------------------------------------------------

start_postgres() {
    if [ -f "$DEV/pg/postmaster.pid" ]; then return 0; fi
    local fresh=""; [ -f "$DEV/pg/PG_VERSION" ] || fresh=1
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    pg_start "$DEV/pg" "$PG_PORT"
    mkdir -p "$DEV/logs" && ln -sf "$DEV/pg/server.log" "$(log_file postgres)"
    if [ -n "$fresh" ]; then provision_databases; fi
}

# One database and one role per service (postgres/provision-service.sql, as compose does).
# Development passwords only (opd_<service>_dev), the same ones the services' default
# configuration uses. No role may connect to another's database.
provision_databases() {
    local entry name
    for entry in "${SERVICES[@]}"; do
        name="opd_${entry%%:*}"
        pg_psql "$DEV/pg" "$PG_PORT" -d postgres -v role="$name" -v password="${name}_dev" \
            -v database="$name" -f - <"$ROOT/postgres/provision-service.sql"
    done
}

# --- NATS -------------------------------------------------------------------------------------

# The development CA, the nodes' certificate and every identity's seed and client certificate,
# generated at the first `up` and kept (delete a file and run `up` again to rotate it).
CREDENTIALS="$DEV/credentials"

opd_nats() { # opd_nats ARGS...: the administrator's tool (opd-nats-admin)
    [ -x "$ROOT/target/$PROFILE/opd-nats" ] || build_services
    "$ROOT/target/$PROFILE/opd-nats" "$@"
}

ensure_credentials() {
    opd_nats credentials "$CREDENTIALS" | sed 's/^/    /'
}

# The settings that make a process connect as IDENTITY: its seed and the development CA.
# OPD_DEV_MUTUAL_TLS=true makes the nodes ask every client for a certificate, and gives each
# process its own.
identity_env() { # identity_env IDENTITY
    echo "OPD_NATS__NKEY_SEED_FILE=$CREDENTIALS/$1.nk" "OPD_NATS__TLS__CA_FILE=$CREDENTIALS/ca.pem" \
        "OPD_AUTH__JWKS_FILE=$CREDENTIALS/auth-jwks.json"
    if [ "${OPD_DEV_MUTUAL_TLS:-false}" = true ]; then
        echo "OPD_NATS__TLS__CERT_FILE=$CREDENTIALS/$1.pem" "OPD_NATS__TLS__KEY_FILE=$CREDENTIALS/$1-key.pem"
    fi
}

# The stream belongs to the administrator: the services' identities may not create it.
ensure_stream() {
    log "making sure of the PATIENT stream (as admin)"
    # shellcheck disable=SC2046 # identity_env prints separate assignments
    env $(identity_env admin) "$ROOT/target/$PROFILE/opd-nats" stream
}

# The three nodes share this machine's cores with PostgreSQL and the services, and Go gives each
# runtime as many processors as the machine has cores: on two cores, six runtime processors
# contend for two, every process waits for a core about twice as long at the tail, and the
# nodes spend more CPU per message (docs/benchmarks.md, "The nodes' Go runtimes sized to their
# share"). Each node gets a third of the cores, at least one; a GOMAXPROCS set by the caller
# wins. On Kubernetes a node's pod with a CPU limit is sized by Go from that limit.
NODE_GOMAXPROCS="${GOMAXPROCS:-$(( $(nproc) / 3 > 1 ? $(nproc) / 3 : 1 ))}"

start_node() {
    local name="$1" i
    running "$name" && return 0
    i="$(node_index "$name")"
    mkdir -p "$DEV/nats/$name"
    log "starting $name (client port $((4221 + i)))"
    NATS_SERVER_NAME="$name" NATS_HOST=127.0.0.1 \
        NATS_CLIENT_PORT=$((4221 + i)) NATS_CLUSTER_HOST=127.0.0.1 NATS_CLUSTER_PORT=$((6221 + i)) NATS_MONITOR_PORT=$((8221 + i)) \
        NATS_LEAF_PORT=$((7421 + i)) \
        NATS_STORE_DIR="$DEV/nats/$name" \
        NATS_ROUTE_1=nats://127.0.0.1:6222 NATS_ROUTE_2=nats://127.0.0.1:6223 NATS_ROUTE_3=nats://127.0.0.1:6224 \
        NATS_TLS_CERT="$CREDENTIALS/server.pem" NATS_TLS_KEY="$CREDENTIALS/server-key.pem" \
        NATS_TLS_CA="$CREDENTIALS/ca.pem" NATS_TLS_VERIFY="${OPD_DEV_MUTUAL_TLS:-false}" \
        NATS_ROUTE_TLS_CERT="$CREDENTIALS/route.pem" NATS_ROUTE_TLS_KEY="$CREDENTIALS/route-key.pem" \
        NATS_ROUTE_TLS_CA="$CREDENTIALS/route-ca.pem" \
        spawn "$name" env GOMAXPROCS="$NODE_GOMAXPROCS" $(cat "$CREDENTIALS/nkeys.env") \
        "$NATS_SERVER_BIN" -c "$ROOT/nats/cluster.conf"
}

wait_node() {
    local i; i="$(node_index "$1")"
    wait_http "http://127.0.0.1:$((8221 + i))/healthz?js-server-only=true" "$1" 30
}

# --- services ---------------------------------------------------------------------------------

build_services() {
    log "building the services ($PROFILE)"
    # shellcheck disable=SC2086 # both are lists of arguments
    SQLX_OFFLINE=true cargo build --quiet $PROFILE_FLAG $SERVICE_PACKAGES -p opd-nats-admin
}

start_service() {
    local name="$1" port
    running "$name" && return 0
    port="$(port_of_service "$name")"
    [ -x "$ROOT/target/$PROFILE/${name%-2}" ] || build_services
    log "starting $name on port $port"
    # shellcheck disable=SC2046 # identity_env prints separate assignments
    OPD_HTTP__PORT="$port" OPD_LOG__FILTER="${OPD_LOG__FILTER:-info,sqlx=warn}" \
        spawn "$name" env $(identity_env "${name%-2}") "$ROOT/target/$PROFILE/${name%-2}"
}

wait_service() {
    wait_http "http://127.0.0.1:$(port_of_service "$1")/readyz" "$1" 90
}

# --- the clinic and the legacy leaf (optional) -------------------------------------------------

CLINIC_PORT=4225
CLINIC_MONITOR_PORT=8225
CLINIC_REGISTRATION_PORT=9095
LEGACY_PORT=4229
# The hospital nodes' leaf ports, which the clinic's and the legacy leaf's links connect to.
LEAF_URLS="NATS_HOSPITAL_LEAF_URL_1=tls://127.0.0.1:7422 NATS_HOSPITAL_LEAF_URL_2=tls://127.0.0.1:7423 NATS_HOSPITAL_LEAF_URL_3=tls://127.0.0.1:7424"

start_clinic() {
    NATS_SERVER_BIN="$(ensure_nats_server)"
    [ -x "$ROOT/target/$PROFILE/registration" ] || build_services
    if ! running nats-clinic; then
        mkdir -p "$DEV/nats/nats-clinic"
        log "starting nats-clinic (client port $CLINIC_PORT, site clinic)"
        # shellcheck disable=SC2046,SC2086 # lists of assignments
        NATS_SERVER_NAME=nats-clinic NATS_HOST=127.0.0.1 NATS_CLIENT_PORT=$CLINIC_PORT \
            NATS_MONITOR_PORT=$CLINIC_MONITOR_PORT NATS_STORE_DIR="$DEV/nats/nats-clinic" \
            NATS_SITE=clinic \
            NATS_TLS_CERT="$CREDENTIALS/server.pem" NATS_TLS_KEY="$CREDENTIALS/server-key.pem" \
            NATS_TLS_CA="$CREDENTIALS/ca.pem" NATS_TLS_VERIFY="${OPD_DEV_MUTUAL_TLS:-false}" \
            NATS_SITE_LINK_SEED="$(tr -d '\n' <"$CREDENTIALS/clinic.nk")" \
            NATS_SITE_LINK_CERT="$CREDENTIALS/clinic.pem" NATS_SITE_LINK_KEY="$CREDENTIALS/clinic-key.pem" \
            spawn nats-clinic env $(cat "$CREDENTIALS/nkeys.env") $LEAF_URLS \
            "$NATS_SERVER_BIN" -c "$ROOT/nats/site.conf"
        wait_http "http://127.0.0.1:$CLINIC_MONITOR_PORT/healthz" nats-clinic 30
    fi
    log "making sure of the clinic's stream, and of its place among the hospital's sources"
    # shellcheck disable=SC2046 # identity_env prints separate assignments
    env $(identity_env admin) OPD_NATS__SERVERS="nats://127.0.0.1:$CLINIC_PORT" \
        "$ROOT/target/$PROFILE/opd-nats" site-stream
    # shellcheck disable=SC2046
    env $(identity_env admin) "$ROOT/target/$PROFILE/opd-nats" link-site clinic
    if ! pg_psql "$DEV/pg" "$PG_PORT" -d postgres -tAc \
        "select 1 from pg_database where datname = 'opd_registration_clinic'" | grep -q 1; then
        pg_psql "$DEV/pg" "$PG_PORT" -d postgres -v role=opd_registration_clinic \
            -v password=opd_registration_clinic_dev -v database=opd_registration_clinic \
            -f - <"$ROOT/postgres/provision-service.sql"
    fi
    if ! running registration-clinic; then
        log "starting registration-clinic on port $CLINIC_REGISTRATION_PORT (site clinic)"
        # shellcheck disable=SC2046 # identity_env prints separate assignments
        OPD_HTTP__PORT=$CLINIC_REGISTRATION_PORT OPD_SITE=clinic \
            OPD_NATS__SERVERS="nats://127.0.0.1:$CLINIC_PORT" \
            OPD_DATABASE__URL="postgres://opd_registration_clinic:opd_registration_clinic_dev@127.0.0.1:$PG_PORT/opd_registration_clinic" \
            OPD_LOG__FILTER="${OPD_LOG__FILTER:-info,sqlx=warn}" \
            spawn registration-clinic env $(identity_env registration) "$ROOT/target/$PROFILE/registration"
    fi
    wait_http "http://127.0.0.1:$CLINIC_REGISTRATION_PORT/readyz" registration-clinic 90
}

start_legacy() {
    NATS_SERVER_BIN="$(ensure_nats_server)"
    running legacy && return 0
    log "starting legacy (plain NATS on 127.0.0.1:$LEGACY_PORT, read-only copies of the book's events)"
    # shellcheck disable=SC2086 # a list of assignments
    NATS_SERVER_NAME=legacy NATS_CLIENT_PORT=$LEGACY_PORT NATS_TLS_CA="$CREDENTIALS/ca.pem" \
        NATS_LEGACY_LINK_SEED="$(tr -d '\n' <"$CREDENTIALS/legacy.nk")" \
        NATS_LEGACY_LINK_CERT="$CREDENTIALS/legacy.pem" NATS_LEGACY_LINK_KEY="$CREDENTIALS/legacy-key.pem" \
        spawn legacy env $LEAF_URLS "$NATS_SERVER_BIN" -c "$ROOT/nats/legacy.conf"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$LEGACY_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    die "legacy did not start; see scripts/dev.sh logs legacy"
}

# cut clinic / heal clinic: drops every packet to and from the hospital's leaf ports (7422-7424),
# which only the leaves' links use: the clinic goes on alone, as if its line were down.
LINK_TABLE=opd_dev_clinic_link
cmd_cut() {
    [ "${1:-}" = clinic ] || die "cut takes: clinic"
    ensure_tool nft nftables
    as_root nft -f - <<NFT
table inet $LINK_TABLE {
  chain out {
    type filter hook output priority 0; policy accept;
    tcp dport { 7422, 7423, 7424 } drop
    tcp sport { 7422, 7423, 7424 } drop
  }
}
NFT
    log "the clinic's link is cut (its packets are dropped); scripts/dev.sh heal clinic restores it"
}

cmd_heal() {
    [ "${1:-}" = clinic ] || die "heal takes: clinic"
    as_root nft delete table inet "$LINK_TABLE" 2>/dev/null || true
    log "the clinic's link is healed"
}

# --- Prometheus (optional) --------------------------------------------------------------------

PROMETHEUS_PORT=9190
EXPORTER_PORT=7777

start_prometheus() {
    running prometheus && return 0
    ensure_prometheus
    # The NATS nodes' own figures (stream, consumer lag, replicas) come through the exporter.
    if ! running nats-exporter; then
        SQLX_OFFLINE=true cargo build --quiet $PROFILE_FLAG -p opd-nats-exporter
        log "starting nats-exporter on port $EXPORTER_PORT"
        OPD_NATS_EXPORTER_LISTEN="127.0.0.1:$EXPORTER_PORT" \
            spawn nats-exporter "$ROOT/target/$PROFILE/opd-nats-exporter"
        wait_http "http://127.0.0.1:$EXPORTER_PORT/healthz" nats-exporter 30
    fi
    # The configuration and the rules side by side, as Prometheus resolves rule files relative
    # to its configuration file.
    mkdir -p "$DEV/prometheus/data"
    cp "$ROOT/observability/prometheus/prometheus-native.yml" "$DEV/prometheus/prometheus.yml"
    cp "$ROOT/observability/prometheus/alerts.yml" "$DEV/prometheus/alerts.yml"
    log "starting prometheus on port $PROMETHEUS_PORT"
    spawn prometheus prometheus --config.file="$DEV/prometheus/prometheus.yml" \
        --storage.tsdb.path="$DEV/prometheus/data" \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
    wait_http "http://127.0.0.1:$PROMETHEUS_PORT/-/ready" prometheus 30
}

# --- commands ---------------------------------------------------------------------------------

cmd_up() {
    ensure_rust_toolchain
    ensure_tool curl curl
    ensure_tool psql postgresql-client
    NATS_SERVER_BIN="$(ensure_nats_server)"
    build_services
    ensure_credentials
    start_postgres
    local node entry
    for node in "${NODES[@]}"; do start_node "$node"; done
    for node in "${NODES[@]}"; do wait_node "$node"; done
    ensure_stream
    for entry in "${SERVICES[@]}"; do start_service "${entry%%:*}"; done
    for entry in "${SERVICES[@]}"; do wait_service "${entry%%:*}"; done
    log "the platform is up:"
    cmd_status
}

cmd_down() {
    local entry node
    for entry in "${SERVICES[@]}"; do terminate "${entry%%:*}-2"; terminate "${entry%%:*}"; done
    for node in "${NODES[@]}"; do terminate "$node"; done
    terminate prometheus
    terminate nats-exporter
    terminate registration-clinic
    terminate nats-clinic
    terminate legacy
    # A cut link outlives nothing it was cut for (only root can have made it).
    if [ "$(id -u)" = 0 ]; then nft delete table inet "$LINK_TABLE" 2>/dev/null || true; fi
    if [ -f "$DEV/pg/postmaster.pid" ]; then pg_stop "$DEV/pg"; log "stopped postgres"; fi
}

cmd_clean() {
    cmd_down
    pg_forget "$DEV/pg"
    rm -rf "$DEV"
    log "removed .dev/"
}

cmd_status() {
    local entry name
    printf '%-14s %-9s %-8s %s\n' NAME STATE PID ADDRESS
    if [ -f "$DEV/pg/postmaster.pid" ]; then
        printf '%-14s %-9s %-8s %s\n' postgres running "$(head -1 "$DEV/pg/postmaster.pid")" "127.0.0.1:$PG_PORT"
    else
        printf '%-14s %-9s %-8s %s\n' postgres stopped - "127.0.0.1:$PG_PORT"
    fi
    for name in "${NODES[@]}"; do
        local i; i="$(node_index "$name")"
        status_line "$name" "nats://127.0.0.1:$((4221 + i)) (monitoring http://127.0.0.1:$((8221 + i)))"
    done
    for entry in "${SERVICES[@]}"; do
        status_line "${entry%%:*}" "http://127.0.0.1:${entry##*:}"
    done
    if running nats-clinic; then
        status_line nats-clinic "nats://127.0.0.1:$CLINIC_PORT (monitoring http://127.0.0.1:$CLINIC_MONITOR_PORT)"
    fi
    if running registration-clinic; then status_line registration-clinic "http://127.0.0.1:$CLINIC_REGISTRATION_PORT"; fi
    if running legacy; then status_line legacy "nats://127.0.0.1:$LEGACY_PORT (plain, read-only)"; fi
    if running prometheus; then status_line prometheus "http://127.0.0.1:$PROMETHEUS_PORT"; fi
    if running nats-exporter; then status_line nats-exporter "http://127.0.0.1:$EXPORTER_PORT/metrics"; fi
}

status_line() {
    if running "$1"; then
        printf '%-14s %-9s %-8s %s\n' "$1" running "$(cat "$(pid_file "$1")")" "$2"
    else
        printf '%-14s %-9s %-8s %s\n' "$1" stopped - "$2"
    fi
}

cmd_stop() {
    local name="${1:-}"
    if is_service "$name" || is_node "$name"; then terminate "$name"
    elif [ "$name" = postgres ]; then pg_stop "$DEV/pg"; log "stopped postgres"
    elif [ "$name" = prometheus ]; then terminate prometheus; terminate nats-exporter
    elif [ "$name" = clinic ]; then terminate registration-clinic; terminate nats-clinic
    elif [ "$name" = nats-clinic ] || [ "$name" = registration-clinic ] || [ "$name" = legacy ]; then
        terminate "$name"
    else die "unknown name '$name' (services: ${SERVICES[*]%%:*}; nodes: ${NODES[*]}; postgres)"
    fi
}

# kill NAME: SIGKILL, no chance to clean up, as a crash or an OOM kill would do (for drills and
# the tutorial).
cmd_kill() {
    local name="${1:-}" pid
    is_service "$name" || is_node "$name" || [ "$name" = nats-clinic ] \
        || die "kill takes a service, a NATS node or nats-clinic, not '$name'"
    running "$name" || { log "$name is not running"; return 0; }
    pid="$(cat "$(pid_file "$name")")"
    kill -9 "$pid"
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    rm -f "$(pid_file "$name")"
    log "killed $name (SIGKILL)"
}

cmd_start() {
    local name="${1:-}"
    if is_service "$name"; then start_service "$name"; wait_service "$name"
    elif is_node "$name"; then NATS_SERVER_BIN="$(ensure_nats_server)"; start_node "$name"; wait_node "$name"
    elif [ "$name" = postgres ]; then start_postgres
    elif [ "$name" = prometheus ]; then start_prometheus
    elif [ "$name" = clinic ]; then start_clinic
    elif [ "$name" = legacy ]; then start_legacy
    else die "unknown name '$name' (services: ${SERVICES[*]%%:*}; nodes: ${NODES[*]}; postgres)"
    fi
}

# token ROLE... [--subject NAME] [--ttl DURATION]: a development bearer token, signed with the
# issuer key generated beside the NATS credentials (the services trust its auth-jwks.json).
cmd_token() {
    [ -e "$CREDENTIALS/auth-issuer-key.pem" ] || die "no credentials in $CREDENTIALS yet: run scripts/dev.sh up first"
    [ -x "$ROOT/target/$PROFILE/opd-nats" ] || build_services
    OPD_AUTH__ISSUER_KEY_FILE="$CREDENTIALS/auth-issuer-key.pem" "$ROOT/target/$PROFILE/opd-nats" token "$@"
}

cmd_logs() {
    local name="${1:-}" file
    file="$(log_file "$name")"
    [ -e "$file" ] || die "no log for '$name' in $DEV/logs"
    if [ "${2:-}" = "-f" ]; then tail -n 100 -F "$file"; else tail -n 200 "$file"; fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    clean) cmd_clean ;;
    status) cmd_status ;;
    stop) cmd_stop "${2:-}" ;;
    start) cmd_start "${2:-}" ;;
    kill) cmd_kill "${2:-}" ;;
    logs) cmd_logs "${2:-}" "${3:-}" ;;
    token) shift; cmd_token "$@" ;;
    cut) cmd_cut "${2:-}" ;;
    heal) cmd_heal "${2:-}" ;;
    *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
