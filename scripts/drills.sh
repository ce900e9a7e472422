#!/usr/bin/env bash
# Failure drills: each walks hundreds of patients through the whole journey in parallel
# (drills/src/main.rs) while one fault is injected into the native platform of scripts/dev.sh,
# then checks that every journey completed exactly once, in the API (pending lists, histories)
# and underneath (each consuming service handled each event once and parked nothing; the stream
# holds each event once). One line per drill: patients, lost, duplicated, client errors,
# recovery time.
#
#   scripts/drills.sh               every drill and the self-check (about eight minutes)
#   scripts/drills.sh --quick       two of them, fewer patients (scripts/test.sh runs these)
#   scripts/drills.sh DRILL...      the named drills (names below, in `run_drill`)
#   scripts/drills.sh self-check    proves the checks can fail: a forged event is published
#                                   mid-batch, and the checks must report it
#
# It starts its own stack (state in target/drills/stack; it needs the book's ports free) and
# removes it, with every firewall rule and cgroup it made, when it ends. OPD_DRILL_PATIENTS and
# OPD_DRILL_RATE change the load; results go to target/drills/results.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

export OPD_DEV_DIR="$ROOT/target/drills/stack"
DEV=(scripts/dev.sh)
PG_DATA="$OPD_DEV_DIR/pg"
PG_PORT=5433
RESULTS="$ROOT/target/drills/results.jsonl"
PARTITION_CHAIN=OPD_DRILL_PARTITION

# The partition drill singles out one node's traffic by its cgroup (cgroup v2).
cgroup_root() {
    local mount
    mount="$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)"
    [ -n "$mount" ] && [ -w "$mount" ] && echo "$mount/opd-drills"
}

# --- faults, run by opd-drill through `scripts/drills.sh fault ...` ------------------------------

db_name() { echo "opd_$1"; }

sql() { pg_psql "$PG_DATA" "$PG_PORT" -Atc "$1"; }

# Closes a service's database to it: new connections are refused, open ones are ended.
db_close() {
    sql "alter database $(db_name "$1") allow_connections false"
    sql "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = '$(db_name "$1")'" >/dev/null
}

db_open() { sql "alter database $(db_name "$1") allow_connections true"; }

# A failover target that only reads: every write fails with SQLSTATE 25006.
db_read_only() {
    sql "alter database $(db_name "$1") set default_transaction_read_only = on"
    sql "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = '$(db_name "$1")'" >/dev/null
}

db_writable() {
    sql "alter database $(db_name "$1") reset default_transaction_read_only"
    sql "select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = '$(db_name "$1")'" >/dev/null
}

# probe_unavailable SERVICE PORT PATH [JSON]: while its database is away, the service answers
# 503 with a problem document (to a GET, or to a POST of JSON), and registration still answers.
# Writes the verdict for the checks.
probe_unavailable() {
    local service="$1" port="$2" path="$3" status type request=(--oauth2-bearer "$OPD_DRILL_TOKEN")
    [ -z "${4:-}" ] || request+=(-H 'content-type: application/json' -d "$4")
    sleep 1
    status="$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "${request[@]}" "http://127.0.0.1:$port$path")"
    type="${status#* }"; status="${status%% *}"
    if [ "$status" = 503 ] && [ "$type" = application/problem+json ] \
        && [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/opd/patient/)" = 200 ]; then
        echo ok >"$OPD_DEV_DIR/probe"
    else
        echo "$service answered $status $type during the outage" >"$OPD_DEV_DIR/probe"
    fi
}

# probe_paused SERVICE PORT: a few seconds after the pause, the service says its consumer is
# paused, and JetStream holds events back for it. Writes the verdict for the checks.
probe_paused() {
    local service="$1" port="$2" state pending
    sleep 3
    state="$(curl -s "http://127.0.0.1:$port/readyz" | python3 -c "
import json, sys
print(','.join(sorted(set(json.load(sys.stdin).get('consumers', {}).values()))))")"
    pending="$(consumer_pending "$service")"
    if [ "$state" = paused ] && [ "$pending" -gt 0 ]; then
        echo ok >"$OPD_DEV_DIR/probe"
    else
        echo "$service said its consumers were '$state' with $pending events held back" \
            >"$OPD_DEV_DIR/probe"
    fi
}

# consumer_pending SERVICE: the most events any node says the service's durable consumer has not
# been given yet (a follower may lag behind the leader; either way above 0 means held back).
consumer_pending() {
    local i most=0 n
    for i in 1 2 3; do
        n="$(curl -fsS "http://127.0.0.1:$((8221 + i))/jsz?accounts=true&streams=true&consumers=true" 2>/dev/null | python3 -c "
import json, sys
print(max([c.get('num_pending', 0) for a in json.load(sys.stdin).get('account_details', [])
           for s in a.get('stream_detail', []) for c in s.get('consumer_detail') or []
           if c['name'].startswith('$1-')] or [0]))" 2>/dev/null || echo 0)"
        [ "$n" -gt "$most" ] && most="$n"
    done
    echo "$most"
}

# stream_field EXPRESSION: a field of the PATIENT stream, from the first node that reports it.
# Right after start-up, or while a node is down, a node may not list the stream yet: the others
# are asked, for up to 30 s.
stream_field() {
    local i
    for _ in $(seq 1 60); do
        for i in 1 2 3; do
            curl -fsS "http://127.0.0.1:$((8221 + i))/jsz?streams=true&config=true" 2>/dev/null \
                | python3 -c "
import json, sys
streams = [s for a in json.load(sys.stdin).get('account_details', []) for s in a.get('stream_detail', [])]
found = [s for s in streams if s['name'] == 'PATIENT']
if not found:
    sys.exit(1)
s = found[0]
print($1)" 2>/dev/null && return 0
        done
        sleep 0.5
    done
    echo "no NATS node reports the PATIENT stream" >&2
    return 1
}

stream_leader() { stream_field "s['cluster']['leader']"; }

# The node that is neither the stream's leader nor nats-1 (the default for most clients).
stream_follower() {
    local leader node
    leader="$(stream_leader)"
    for node in nats-3 nats-2 nats-1; do
        if [ "$node" != "$leader" ]; then echo "$node"; return; fi
    done
}

partition() { # partition NODE: cut a NATS node off from its peers and clients
    local node="$1" i; i="${node##nats-}"
    iptables -N "$PARTITION_CHAIN" 2>/dev/null || true
    iptables -C OUTPUT -j "$PARTITION_CHAIN" 2>/dev/null || iptables -I OUTPUT -j "$PARTITION_CHAIN"
    # Everything the node sends, and everything sent to its ports.
    iptables -A "$PARTITION_CHAIN" -p tcp -m cgroup --path "opd-drills/$node" -j DROP
    iptables -A "$PARTITION_CHAIN" -p tcp --dport $((6221 + i)) -j DROP
    iptables -A "$PARTITION_CHAIN" -p tcp --dport $((4221 + i)) -j DROP
}

heal_partitions() {
    iptables -D OUTPUT -j "$PARTITION_CHAIN" 2>/dev/null || true
    iptables -F "$PARTITION_CHAIN" 2>/dev/null || true
    iptables -X "$PARTITION_CHAIN" 2>/dev/null || true
}

cmd_fault() {
    local what="$1"; shift
    case "$what" in
        kill-restart) "${DEV[@]}" kill "$1"; sleep "${2:-1}"; "${DEV[@]}" start "$1" ;;
        kill) "${DEV[@]}" kill "$1" ;;
        start) "${DEV[@]}" start "$1" ;;
        kill-leader) "${DEV[@]}" kill "$(stream_leader)" ;;
        kill-follower) "${DEV[@]}" kill "$(stream_follower)" ;;
        start-nodes) for node in nats-1 nats-2 nats-3; do "${DEV[@]}" start "$node"; done ;;
        stop-nodes) for node in nats-1 nats-2 nats-3; do "${DEV[@]}" stop "$node"; done ;;
        db-close) db_close "$1"; probe_unavailable "$@" ;;
        db-open) db_open "$1" ;;
        db-read-only)
            local known
            known="$(pg_psql "$PG_DATA" "$PG_PORT" -d "$(db_name "$1")" -Atc \
                "select patient_id from treatment_queue order by id desc limit 1")"
            db_read_only "$1"
            probe_unavailable "$@" "{\"id\":$known,\"time\":\"10:00\",\"test_name\":\"FBC\"}" ;;
        db-writable) db_writable "$1" ;;
        # The control plane: the operator pauses the service's durable consumer, then resumes.
        pause) target/debug/opd-nats control "$1" pause --for 10m >>"$OPD_DEV_DIR/logs/opd-nats.log" 2>&1
            probe_paused "$1" "$2" ;;
        resume) target/debug/opd-nats control "$1" resume >>"$OPD_DEV_DIR/logs/opd-nats.log" 2>&1 ;;
        partition) partition "$1" ;;
        heal) heal_partitions ;;
        # The clinic's link (docs/architecture.md, "Sites"): its packets dropped, then let through.
        cut-clinic) "${DEV[@]}" cut clinic ;;
        heal-clinic) "${DEV[@]}" heal clinic ;;
        # While the clinic is cut off, the hospital's stream leader dies and comes back (another
        # node takes the stream, and with it the source), and the clinic's server is killed with
        # registrations it had not synced to disk yet, and started again.
        cut-clinic-restart) "${DEV[@]}" cut clinic; sleep 5
            "${DEV[@]}" kill "$(stream_leader)"; sleep 2
            for node in nats-1 nats-2 nats-3; do "${DEV[@]}" start "$node"; done
            "${DEV[@]}" kill nats-clinic; "${DEV[@]}" start clinic ;;
        # An event no producer wrote: the stream gains one more than the journeys explain, and
        # inspection parks it (it has no event headers).
        forge) target/debug/opd-nats publish patient.register '{"id":1,"token":1}' ;;
        # A consumer whose inbox forgets sooner than the stream does (1 h against 30 days) must
        # say so, naming both settings, and go on consuming.
        short-inbox) "${DEV[@]}" kill inspection
            OPD_CONSUMER__INBOX_RETENTION=1h "${DEV[@]}" start inspection ;;
        # The stream's owner run again with other settings must not rewrite the live stream.
        rerun-stream) OPD_STREAM__MAX_AGE=1h target/debug/opd-nats stream \
            >>"$OPD_DEV_DIR/logs/opd-nats.log" 2>&1 ;;
        *) die "unknown fault '$what'" ;;
    esac
}

# --- checks ------------------------------------------------------------------------------------

counts() { # what every consuming service handled and parked, and what the stream holds
    local service
    for service in inspection treatment release; do
        printf '%s ' "$(pg_psql "$PG_DATA" "$PG_PORT" -d "$(db_name "$service")" -Atc \
            "select count(*) from processed_events")"
        printf '%s ' "$(pg_psql "$PG_DATA" "$PG_PORT" -d "$(db_name "$service")" -Atc \
            "select count(*) from dead_letters")"
    done
    stream_field "s['state']['messages']"
}

# check_counts BEFORE PATIENTS: exactly one event of each kind per patient, handled once,
# none parked. Waits up to 60 s for the last events to settle.
check_counts() {
    local before=($1) patients="$2" after expected stream
    for _ in $(seq 1 60); do
        after=($(counts))
        stream=$((after[6] - before[6]))
        # register, treatment, release, and admission or discharge.
        expected=$((4 * patients))
        if [ $((after[0] - before[0])) = "$patients" ] && [ $((after[2] - before[2])) = "$patients" ] \
            && [ $((after[4] - before[4])) = "$patients" ] && [ "$stream" = "$expected" ]; then
            break
        fi
        sleep 1
    done
    local problems=""
    [ $((after[0] - before[0])) = "$patients" ] || problems+=" inspection handled $((after[0] - before[0]));"
    [ $((after[2] - before[2])) = "$patients" ] || problems+=" treatment handled $((after[2] - before[2]));"
    [ $((after[4] - before[4])) = "$patients" ] || problems+=" release handled $((after[4] - before[4]));"
    local parked="$((after[1] - before[1]))/$((after[3] - before[3]))/$((after[5] - before[5]))"
    [ "$parked" = 0/0/0 ] || problems+=" dead letters parked $parked;"
    [ "$stream" = "$expected" ] || problems+=" the stream gained $stream events, not $expected;"
    [ -z "$problems" ] || { echo "expected $patients of each:$problems"; return 1; }
}

# --- drills --------------------------------------------------------------------------------------

PATIENTS="${OPD_DRILL_PATIENTS:-300}"
RATE="${OPD_DRILL_RATE:-25}"
NEXT_ID="$(( $(date +%s) % 100000 * 10000 + 1 ))"
FAILED=()

# drill NAME [opd-drill flags...]: one run, its checks, its line.
drill() {
    local name="$1"; shift
    local first="$NEXT_ID" before verdict="ok"
    NEXT_ID=$((NEXT_ID + PATIENTS))
    rm -f "$OPD_DEV_DIR/probe"
    before="$(counts)"
    if ! target/debug/opd-drill --name "$name" --first-id "$first" --patients "$PATIENTS" \
        --rate "$RATE" --fault-after $((PATIENTS / 3)) --report "$RESULTS" "$@"; then
        verdict="the drill lost or repeated patients"
    fi
    heal_partitions
    "${DEV[@]}" heal clinic >/dev/null 2>&1 || true
    if ! problem="$(check_counts "$before" "$PATIENTS")"; then verdict="$problem"; fi
    if [ -f "$OPD_DEV_DIR/probe" ] && [ "$(cat "$OPD_DEV_DIR/probe")" != ok ]; then
        verdict="$(cat "$OPD_DEV_DIR/probe")"
    fi
    if [ "$verdict" != ok ]; then
        FAILED+=("$name: $verdict")
        log "$name FAILED: $verdict"
    fi
}

fault() { echo "scripts/drills.sh fault $* >/dev/null"; }

run_drill() {
    case "$1" in
        kill-registration | kill-inspection | kill-treatment | kill-release)
            drill "$1" --fault "$(fault kill-restart "${1#kill-}" 1)" ;;
        kill-nats-node)
            drill "$1" --fault "$(fault kill-follower)" --heal-after 10 --heal "$(fault start-nodes)" ;;
        kill-stream-leader)
            drill "$1" --fault "$(fault kill-leader)" --heal-after 10 --heal "$(fault start-nodes)" ;;
        kill-one-of-two-replicas)
            "${DEV[@]}" start inspection-2
            OPD_DRILL_INSPECTION_URL=http://127.0.0.1:9191 \
                drill "$1" --fault "$(fault kill inspection)" --heal-after 5 --heal "$(fault start inspection)"
            "${DEV[@]}" stop inspection-2 ;;
        database-down)
            drill "$1" --fault "$(fault db-close treatment 9092 /opd/treatment/pending)" \
                --heal-after 30 --heal "$(fault db-open treatment)" ;;
        database-read-only)
            drill "$1" --fault "$(fault db-read-only treatment 9092 /opd/treatment/tests)" \
                --heal-after 30 --heal "$(fault db-writable treatment)" ;;
        nats-partition)
            [ -n "$(cgroup_root)" ] || { FAILED+=("$1: no writable cgroup v2 here"); return; }
            drill "$1" --fault "$(fault partition "$(stream_leader)")" --heal-after 30 \
                --heal "$(fault heal)" ;;
        pause-consumer)
            drill "$1" --fault "$(fault pause inspection 9091)" --heal-after 15 \
                --heal "$(fault resume inspection)" ;;
        clinic-link-cut)
            # Patients register at the clinic (9095) and are seen at the hospital.
            "${DEV[@]}" start clinic >/dev/null
            OPD_DRILL_REGISTRATION_URL=http://127.0.0.1:9095 drill "$1" \
                --fault "$(fault cut-clinic)" --heal-after 30 --heal "$(fault heal-clinic)" ;;
        clinic-cut-restarts)
            "${DEV[@]}" start clinic >/dev/null
            OPD_DRILL_REGISTRATION_URL=http://127.0.0.1:9095 drill "$1" \
                --fault "$(fault cut-clinic-restart)" --heal-after 10 --heal "$(fault heal-clinic)" ;;
        nats-cluster-restart)
            drill "$1" --fault "$(fault stop-nodes)" --heal-after 5 --heal "$(fault start-nodes)" ;;
        stream-settings)
            drill "$1" --fault "$(fault short-inbox)" --heal "$(fault rerun-stream)"
            local max_age
            max_age="$(stream_field "s['config']['max_age']")"
            if [ "$max_age" != 2592000000000000 ]; then
                FAILED+=("$1: the stream's max_age became ${max_age} ns")
            elif ! grep 'alert="stream-settings"' "$OPD_DEV_DIR/logs/inspection.log" \
                | grep -q 'consumer.inbox_retention (3600s).*max_age'; then
                FAILED+=("$1: inspection did not report its inbox shorter than the stream's max_age")
            elif ! grep -q 'alert="stream-drift"' "$OPD_DEV_DIR/logs/opd-nats.log"; then
                FAILED+=("$1: opd-nats stream did not report the difference it left alone")
            fi ;;
        self-check)
            local failed_before="${#FAILED[@]}"
            drill "$1" --fault "$(fault forge)"
            if [ "${#FAILED[@]}" = "$failed_before" ]; then
                FAILED+=("$1: the checks missed a forged event")
            else
                log "self-check: the checks caught the forged event, as they must"
                unset 'FAILED[-1]'
            fi ;;
        *) die "unknown drill '$1'" ;;
    esac
}

ALL=(kill-registration kill-inspection kill-treatment kill-release kill-nats-node
     kill-stream-leader kill-one-of-two-replicas database-down database-read-only nats-partition
     nats-cluster-restart pause-consumer clinic-link-cut clinic-cut-restarts self-check
     stream-settings)
QUICK=(kill-inspection kill-stream-leader pause-consumer clinic-link-cut)

cleanup() {
    heal_partitions
    "${DEV[@]}" heal clinic >/dev/null 2>&1 || true
    "${DEV[@]}" clean >/dev/null 2>&1 || true
    local root; root="$(cgroup_root || true)"
    if [ -n "$root" ] && [ -d "$root" ]; then
        find "$root" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
        rmdir "$root" 2>/dev/null || true
    fi
}

main() {
    local drills=("$@")
    if [ "${drills[0]:-}" = --quick ]; then
        drills=("${QUICK[@]}")
        PATIENTS="${OPD_DRILL_PATIENTS:-150}"
    elif [ "${#drills[@]}" = 0 ]; then
        drills=("${ALL[@]}")
    fi
    ensure_tool iptables iptables
    ensure_tool nft nftables
    ensure_tool curl curl
    log "building opd-drill and the services"
    SQLX_OFFLINE=true cargo build --quiet -p opd-drills --bin opd-drill -p opd-nats-admin
    trap cleanup EXIT
    cleanup
    mkdir -p "$(dirname "$RESULTS")" && : >"$RESULTS"
    local root; root="$(cgroup_root || true)"
    if [ -n "$root" ]; then export OPD_DEV_CGROUPS="$root"; fi
    "${DEV[@]}" up >/dev/null
    # The journey's bearer token (opd-drill and the probes below send it).
    OPD_DRILL_TOKEN="$("${DEV[@]}" token registrar clinician discharge --subject drills)"
    export OPD_DRILL_TOKEN
    local name started=$SECONDS
    for name in "${drills[@]}"; do
        log "drill $name ($PATIENTS patients at $RATE/s)"
        run_drill "$name"
    done
    log "drills took $((SECONDS - started)) s"
    local failed="${#FAILED[@]}"
    printf 'drills: %d passed, %d failed\n' $(( ${#drills[@]} - failed )) "$failed"
    if [ "$failed" != 0 ]; then
        printf '  %s\n' "${FAILED[@]}"
        exit 1
    fi
}

if [ "${1:-}" = fault ]; then shift; cmd_fault "$@"; else main "$@"; fi
