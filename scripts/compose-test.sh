#!/usr/bin/env bash
# Proves docker-compose.yml on a machine without an image registry: builds local stand-ins for
# the images it names (ci/compose-standins/), starts the real compose file with an override that
# changes only the images, waits for health, runs the tutorial's commands in their compose form
# (scripts/lib/tutorial.py --compose docs/tutorial.md), stops one NATS container in the middle of registering a batch of patients,
# checks that every patient reached inspection exactly once, runs the Postman collection,
# schemathesis and the Swagger UI check against it (scripts/walkthroughs.sh), checks the
# observability profile (Prometheus scrapes every target and loads the alerting rules, the
# metrics show the traffic, every Grafana panel's query has data), and tears everything down
# (also on failure). The Debian base image is kept between runs, so a second
# run is quicker.
#
#   scripts/compose-test.sh
#   OPD_COMPOSE_KEEP=1 scripts/compose-test.sh   leave the platform running afterwards
#   OPD_COMPOSE_PROFILE=release scripts/compose-test.sh
#       build the binaries with the release profile (the default, dev, reuses what
#       scripts/test.sh already compiled; the real Dockerfile builds release)
#   OPD_COMPOSE_FROM_DOCKERFILE=1 scripts/compose-test.sh
#       build the services' image with the real Dockerfile (on stand-ins for its rust and
#       debian base images) instead of from host-built binaries: proves the Dockerfile too
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

STANDINS="$ROOT/ci/compose-standins"
BASE_IMAGE="opd-ci/debian-base:bookworm"
PROJECT="opdcomposetest"

docker info >/dev/null 2>&1 || die "no Docker daemon answers"
ensure_rust_toolchain
ensure_tool curl curl
ensure_tool debootstrap debootstrap
if command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    apt_install docker-compose
    COMPOSE=(docker-compose)
fi
COMPOSE+=(-p "$PROJECT" -f "$ROOT/docker-compose.yml" -f "$STANDINS/docker-compose.override.yml"
    --profile observability)
log "using $("${COMPOSE[0]}" version 2>/dev/null | head -1)"

for port in 4222 4223 4224 8222 8223 8224 9090 9091 9092 9093 9190 3000; do
    if (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is in use (is scripts/dev.sh up running? stop it with scripts/dev.sh down)"
    fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/opd-compose.XXXXXX")"
cleanup() {
    local status=$?
    if [ "$status" != 0 ]; then
        log "failed; state of the platform:"
        "${COMPOSE[@]}" ps || true
        "${COMPOSE[@]}" logs --tail=40 || true
    fi
    if [ -z "${OPD_COMPOSE_KEEP:-}" ]; then
        log "tearing down (down -v)"
        "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# --- stand-in images --------------------------------------------------------------------------

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "reusing $BASE_IMAGE"
else
    log "building $BASE_IMAGE with debootstrap (once; later runs reuse it)"
    debootstrap --variant=minbase --include=ca-certificates,curl,wget \
        bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    tar -C "$WORK/rootfs" -c . | docker import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

log "building opd-ci/nats:${NATS_SERVER_VERSION}"
mkdir -p "$WORK/nats"
cp "$(ensure_nats_server)" "$WORK/nats/nats-server"
docker build -q -f "$STANDINS/nats.Dockerfile" -t "opd-ci/nats:${NATS_SERVER_VERSION}" "$WORK/nats" >/dev/null

log "building opd-ci/postgres:${POSTGRES_MAJOR}"
docker build -q -f "$STANDINS/postgres.Dockerfile" -t "opd-ci/postgres:${POSTGRES_MAJOR}" "$STANDINS" >/dev/null

log "building opd-ci/prometheus:bookworm"
docker build -q -f "$STANDINS/prometheus.Dockerfile" -t opd-ci/prometheus:bookworm "$STANDINS" >/dev/null

if [ -n "${OPD_COMPOSE_FROM_DOCKERFILE:-}" ]; then
    RUST_VERSION="$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)"
    log "building opd-ci/rust:${RUST_VERSION} from the host's toolchain"
    mkdir -p "$WORK/rust"
    cp -a "$(rustc --print sysroot)/." "$WORK/rust/rust"
    rm -rf "$WORK/rust/rust/share/doc" "$WORK/rust/rust/lib/rustlib/src"
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rust/"
    docker build -q -f "$STANDINS/rust.Dockerfile" -t "opd-ci/rust:${RUST_VERSION}" "$WORK/rust" >/dev/null
    rm -rf "$WORK/rust"
    log "building opd-ci/platform:local with the real Dockerfile (takes a while the first time)"
    docker build -q -f "$ROOT/Dockerfile" -t opd-ci/platform:local \
        --build-arg "RUST_IMAGE=opd-ci/rust:${RUST_VERSION}" \
        --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" "$ROOT" >/dev/null
else
    PROFILE="${OPD_COMPOSE_PROFILE:-dev}"
    log "building the services on the host ($PROFILE profile) and opd-ci/platform:local"
    SQLX_OFFLINE=true cargo build --profile "$PROFILE" --locked $SERVICE_PACKAGES \
        -p opd-nats-exporter -p opd-nats-admin --quiet
    TARGET_DIR="target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
    mkdir -p "$WORK/platform/bin"
    for service in registration inspection treatment release board opd-nats-exporter opd-nats; do
        cp "$TARGET_DIR/$service" "$WORK/platform/bin/"
    done
    docker build -q -f "$STANDINS/platform.Dockerfile" -t opd-ci/platform:local "$WORK/platform" >/dev/null
fi

# --- the platform -----------------------------------------------------------------------------

# Every service of the file and of the observability profile but Grafana, which has no
# stand-in (its provisioning is checked below without it), and the operator's tool, which runs
# on demand (the tutorial runs it).
# The clinic profile's services are started later, on their own (docker-compose v1 lists them
# whatever the profile).
mapfile -t SERVICES < <("${COMPOSE[@]}" config --services \
    | grep -vxE 'grafana|opd-nats|nats-clinic|clinic-setup|registration-clinic(-db)?')
log "docker-compose --profile observability up (${#SERVICES[@]} services; not grafana)"
"${COMPOSE[@]}" up -d --no-build "${SERVICES[@]}"

wait_ready() { # wait_ready PORT NAME
    for _ in $(seq 1 180); do
        curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0
        sleep 1
    done
    die "$2 did not become ready on port $1"
}
for entry in registration:9090 inspection:9091 treatment:9092 release:9093 board:9094; do
    wait_ready "${entry##*:}" "${entry%%:*}"
done
log "all five services are ready"

# --- the tutorial, the Docker way --------------------------------------------------------------

FAILURES=0
# Bearer tokens come from the compose file's opd-nats container, which holds the issuer's key
# (opd_token in scripts/lib/common.sh, for the walkthroughs too).
OPD_TOKEN_COMMAND="$(printf '%q ' "${COMPOSE[@]}") run --rm opd-nats token"
export OPD_TOKEN_COMMAND
REGISTRAR_TOKEN="$(opd_token registrar --subject compose-test)"
export REGISTRAR_TOKEN
CLINICIAN_TOKEN="$(opd_token clinician --subject compose-test)"
export CLINICIAN_TOKEN
# Every command of docs/tutorial.md in its compose form (the operator's tool in its container,
# parts stopped and started with compose), compared with what the page shows. `docker compose`
# in the page means this project, its files and whichever compose this machine has.
log "the tutorial's commands, the Docker way (docs/tutorial.md)"
OPD_TUTORIAL_COMPOSE="$(printf '%q ' "${COMPOSE[@]}")" python3 scripts/lib/tutorial.py --compose \
    docs/tutorial.md || FAILURES=$((FAILURES + 1))

# --- a NATS node fails mid-batch --------------------------------------------------------------

FAILURES_BEFORE_FAILOVER="$FAILURES"
log "registering 40 patients, stopping nats-2 after the 20th"
for id in $(seq 1001 1040); do
    status="$(curl -s -o /dev/null -w '%{http_code}' --oauth2-bearer "$REGISTRAR_TOKEN" \
        "http://localhost:9090/opd/patient/register" \
        --json "{\"id\":$id,\"full_name\":\"patient $id\"}")"
    [ "$status" = 201 ] || { echo "  FAIL  registration of $id answered $status"; FAILURES=$((FAILURES + 1)); }
    if [ "$id" = 1020 ]; then "${COMPOSE[@]}" stop nats-2 >/dev/null 2>&1; log "nats-2 stopped"; fi
done

log "waiting for every patient on inspection's pending list"
python3 - <<'PY' || FAILURES=$((FAILURES + 1))
import collections, json, os, sys, time, urllib.request

PENDING = urllib.request.Request("http://localhost:9091/opd/inspection/pending",
                                 headers={"Authorization": f"Bearer {os.environ['CLINICIAN_TOKEN']}"})

expected = set(range(1001, 1041))
deadline = time.time() + 90
counts = {}
while time.time() < deadline:
    with urllib.request.urlopen(PENDING) as response:
        pending = json.load(response)
    counts = collections.Counter(entry["id"] for entry in pending if entry["id"] in expected)
    if set(counts) == expected:
        break
    time.sleep(0.5)
time.sleep(2)  # anything applied twice would show up now
with urllib.request.urlopen(PENDING) as response:
    counts = collections.Counter(entry["id"] for entry in json.load(response) if entry["id"] in expected)
missing = sorted(expected - set(counts))
repeated = sorted(i for i, n in counts.items() if n > 1)
if missing or repeated:
    print(f"  FAIL  missing {missing}, more than once {repeated}")
    sys.exit(1)
print("  ok    all 40 patients reached inspection exactly once")
PY
if [ "$FAILURES" = "$FAILURES_BEFORE_FAILOVER" ]; then
    echo "  ok    40 registrations across the loss of nats-2, each at inspection once" >> "$WORK/checks.log"
fi

"${COMPOSE[@]}" start nats-2 >/dev/null 2>&1
log "nats-2 started again"

# Docker must not kill a service before its own shutdown grace is over.
python3 - "$("${COMPOSE[@]}" config)" <<'PY' >> "$WORK/checks.log" || FAILURES=$((FAILURES + 1))
import re, sys
config = sys.argv[1]
def seconds(text):
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", text))
graces = [seconds(g) for g in re.findall(r"OPD_HTTP__SHUTDOWN_GRACE: '?([0-9hms]+)", config)]
stops = [seconds(g) for g in re.findall(r"stop_grace_period: '?([0-9hms]+)", config)]
# Five services (registration, inspection, treatment, release and the board), and the clinic's
# registration where the compose version lists the clinic profile's services too.
if len(graces) < 5 or len(stops) < len(graces) or min(stops) <= max(graces):
    print(f"  FAIL  stop_grace_period {stops} must exceed every shutdown grace {graces}")
    sys.exit(1)
print(f"  ok    stop_grace_period {min(stops)} s exceeds the services' shutdown grace {max(graces)} s")
PY

# --- least privilege ----------------------------------------------------------------------------

log "least privilege: containers, published ports, database roles"
# fact TITLE COMMAND...: a check that passes when COMMAND succeeds.
fact() {
    local title="$1"; shift
    if "$@"; then
        printf '  ok    %s\n' "$title" | tee -a "$WORK/checks.log"
    else
        printf '  FAIL  %s\n' "$title"
        FAILURES=$((FAILURES + 1))
    fi
}
# shellcheck disable=SC2046 # one container id per word
mapfile -t CONTAINERS < <(docker inspect --format \
    '{{index .Config.Labels "com.docker.compose.service"}} {{.HostConfig.ReadonlyRootfs}} {{.Config.User}}' \
    $("${COMPOSE[@]}" ps -q))
writable="$(printf '%s\n' "${CONTAINERS[@]}" | awk '$2 != "true" { print $1 }' | xargs)"
fact "every container's root filesystem is read-only (${#CONTAINERS[@]} containers)" \
    test -z "$writable" -a "${#CONTAINERS[@]}" -ge 14
as_root="$(printf '%s\n' "${CONTAINERS[@]}" \
    | awk '$1 ~ /^(registration|inspection|treatment|release|board|nats-exporter|prometheus)$/ && ($3 == "" || $3 == "root" || $3 == "0") { print $1 }' | xargs)"
fact "the services, the exporter and Prometheus run as a user other than root" test -z "$as_root"
exposed="$(docker inspect --format '{{range $port, $bindings := .NetworkSettings.Ports}}{{if eq $port "8222/tcp"}}{{range $bindings}}{{.HostIp}} {{end}}{{end}}{{end}}' \
    $("${COMPOSE[@]}" ps -q nats-1 nats-2 nats-3) | xargs)"
fact "the NATS monitoring ports are published on 127.0.0.1 only ($exposed)" \
    test "$exposed" = "127.0.0.1 127.0.0.1 127.0.0.1"
exposed="$(docker inspect --format '{{range $port, $bindings := .NetworkSettings.Ports}}{{if eq $port "9090/tcp" "9091/tcp" "9092/tcp" "9093/tcp" "9094/tcp"}}{{range $bindings}}{{.HostIp}} {{end}}{{end}}{{end}}' \
    $("${COMPOSE[@]}" ps -q registration inspection treatment release board) | xargs)"
fact "the services' ports are published on 127.0.0.1 only ($exposed)" \
    test "$exposed" = "127.0.0.1 127.0.0.1 127.0.0.1 127.0.0.1 127.0.0.1"
for service in registration inspection treatment release board; do
    rights="$("${COMPOSE[@]}" exec -T "$service-db" psql -X -tA -U postgres -d postgres -c \
        "select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = 'opd_$service'")"
    fact "opd_$service is no superuser and cannot create roles or databases ($rights)" \
        test "$rights" = "f|f|f"
done
# The passwords the `secrets` service generated for each service's role.
password_of() { "${COMPOSE[@]}" exec -T "$1-db" cat /run/opd-secrets/db-password; }
passwords="$(for service in registration inspection treatment release board; do password_of "$service"; echo; done)"
distinct="$(printf '%s\n' "$passwords" | awk 'length($0) >= 30' | sort -u | wc -l)"
fact "each database role has a generated password of its own ($distinct distinct, 30+ characters)" \
    test "$distinct" = 5
fact "docker-compose.yml writes no database password" \
    bash -c "! grep -Eq '(POSTGRES_PASSWORD|OPD_DB_PASSWORD):|postgres://[^@ ]*:[^@ ]*@' docker-compose.yml"
# connects AS HOST DATABASE: whether the role opd_AS (with its password) can open DATABASE on
# HOST, tried from inside HOST's container.
connects() {
    "${COMPOSE[@]}" exec -T -e PGPASSWORD="$(password_of "$1")" "$2" \
        psql -X -tA -h "$2" -U "opd_$1" -d "$3" -c "select 1" >/dev/null 2>&1
}
refused() { ! connects "$@"; }
fact "registration's role opens its own database" connects registration registration-db opd_registration
fact "registration's role cannot open inspection's database" \
    refused registration inspection-db opd_inspection
fact "registration's role cannot open the server's postgres database" \
    refused registration registration-db postgres
# NATS: TLS only, and each service holds its own identity and nothing more.
nats_greeting() { exec 3<>/dev/tcp/127.0.0.1/4222 && timeout 2 head -c 400 <&3; }
fact "the NATS client port requires TLS before anything else" \
    bash -c "$(declare -f nats_greeting); nats_greeting | grep -q '\"tls_required\":true'"
for service in registration inspection treatment release board; do
    held="$("${COMPOSE[@]}" exec -T "$service" ls /run/opd-nats | xargs)"
    seed="$("${COMPOSE[@]}" exec -T "$service" stat -c '%a %u' /run/opd-nats/seed.nk)"
    fact "$service holds its own NATS seed (mode/uid $seed), the token issuer's public keys and no other credential ($held)" \
        test "$held" = "auth-jwks.json ca.pem seed.nk" -a "$seed" = "400 10001"
done
# The routes: on a network of their own, which no service is on (and a service's certificate
# would not open one anyway: e2e/tests/security.rs).
reaches() { "${COMPOSE[@]}" exec -T "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; }
fact "registration reaches a NATS node's client port" reaches registration nats-1 4222
unreachable() { ! reaches "$@"; }
fact "registration cannot reach a NATS node's route port" unreachable registration nats-1 6222
fact "registration cannot reach the routes' network" unreachable registration nats-1.routes 6222
fact "docker-compose.yml writes no NATS seed or private key" \
    bash -c "! grep -Eq 'SU[A-Z2-7]{50,}|BEGIN (EC |RSA )?PRIVATE KEY' docker-compose.yml"

# --- the observability profile ----------------------------------------------------------------

log "observability: Prometheus's targets, rules and figures, and the Grafana dashboards"
PROMETHEUS=http://127.0.0.1:9190
python3 - "$PROMETHEUS" "$(grep -c -- '- alert:' observability/prometheus/alerts.yml)" \
    <<'PY' | tee -a "$WORK/checks.log" || FAILURES=$((FAILURES + 1))
import json, sys, time, urllib.parse, urllib.request

prometheus, rules_in_file = sys.argv[1], int(sys.argv[2])
def get(path, **query):
    url = f"{prometheus}{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]
def value(expr):
    result = get("/api/v1/query", query=expr)["result"]
    return float(result[0]["value"][1]) if result else None

failed = 0
def check(ok, title, why):
    global failed
    print(f"  ok    {title}" if ok else f"  FAIL  {title}: {why}")
    failed += not ok

# Every target answered its latest scrape: five services and the NATS exporter. nats-2 was
# stopped and started again above, so the exporter's figures may need a scrape to settle.
wanted = {"registration:9090", "inspection:9091", "treatment:9092", "release:9093", "board:9094",
          "nats-exporter:7777"}
deadline, health = time.time() + 90, {}
while time.time() < deadline:
    targets = get("/api/v1/targets")["activeTargets"]
    health = {t["labels"]["instance"]: t["health"] for t in targets}
    if set(health) == wanted and set(health.values()) == {"up"} and value("min(nats_server_up)") == 1:
        break
    time.sleep(2)
check(set(health) == wanted and set(health.values()) == {"up"},
      "Prometheus scrapes every service and the NATS exporter", health)
check(value("min(nats_server_up)") == 1, "the exporter reaches all three NATS nodes",
      value("min(nats_server_up)"))
rules = [r for group in get("/api/v1/rules")["groups"] for r in group["rules"] if r["type"] == "alerting"]
check(len(rules) == rules_in_file, f"Prometheus loaded the {rules_in_file} alerting rules", len(rules))
# The traffic above shows in the figures: the 47 registrations' events (the tutorial's seven,
# the batch's 40) published, and applied at inspection (whose counters started again when the
# tutorial restarted it: four of the tutorial's came after that, and the batch), and nothing
# left waiting once the consumers caught up.
published = value('sum(opd_outbox_published_total{service="registration"})') or 0
check(published >= 47, "registration's relay published every registration event", published)
applied = value('sum(opd_consumer_messages_total{service="inspection",outcome="applied"})') or 0
check(applied >= 44, "inspection applied every registration event since it started", applied)
deadline = time.time() + 60
while time.time() < deadline and value("sum(nats_consumer_pending)") != 0:
    time.sleep(2)
check(value("sum(nats_consumer_pending)") == 0, "no durable has events waiting (JetStream's view)",
      value("sum(nats_consumer_pending)"))
check(value("sum(opd_outbox_unpublished)") == 0, "no outbox has events waiting",
      value("sum(opd_outbox_unpublished)"))
sys.exit(1 if failed else 0)
PY
venv_install "PyYAML==${PYYAML_VERSION}"
"$(ensure_venv)/bin/python" scripts/lib/check-dashboards.py "$ROOT" --prometheus "$PROMETHEUS" \
    | tee -a "$WORK/checks.log" || FAILURES=$((FAILURES + 1))

# The Postman collection, schemathesis and the Swagger UI pages against the compose stack (they
# print their own count lines, which CI adds up).
log "walkthroughs against the compose stack"
scripts/walkthroughs.sh swagger-ui newman schemathesis || FAILURES=$((FAILURES + 1))

# --- the clinic profile: a second site ------------------------------------------------------------

log "the clinic profile: a clinic's server joined as a leaf node, its link cut and healed"
"${COMPOSE[@]}" --profile clinic up -d --no-build registration-clinic
wait_ready 9095 registration-clinic
CLINIC_NATS="$("${COMPOSE[@]}" ps -q nats-clinic)"
SITES_NETWORK="$(docker inspect --format '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' \
    "$CLINIC_NATS" | tr ' ' '\n' | grep -E '_sites$')"
python3 - "$CLINIC_NATS" "$SITES_NETWORK" <<'PY' >> "$WORK/checks.log" || FAILURES=$((FAILURES + 1))
import json, os, subprocess, sys, time, urllib.request
container, network = sys.argv[1], sys.argv[2]
def call(method, url, token, body=None):
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {os.environ[token]}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)
def register(patient):
    started = time.time()
    answer = call("POST", "http://127.0.0.1:9095/opd/patient/register", "REGISTRAR_TOKEN",
                  {"id": patient, "full_name": f"clinic patient {patient}"})
    return answer, time.time() - started
def at_hospital(patient):
    return call("GET", f"http://127.0.0.1:9091/opd/inspection/pending?patient={patient}", "CLINICIAN_TOKEN")
def arrives(patient, within):
    deadline = time.time() + within
    while time.time() < deadline:
        if at_hospital(patient):
            return True
        time.sleep(0.5)
    return False
failed = False
def check(ok, what, detail=""):
    global failed
    print(f"  {'ok  ' if ok else 'FAIL'}  {what}" + ("" if ok else f": {detail}"))
    failed |= not ok
base = 880000 + int(time.time()) % 10000 * 10
answer, _ = register(base)
check(answer.get("site") == "clinic", "the clinic's registration gives a clinic token", answer)
check(arrives(base, 60), "a clinic registration reaches the hospital's inspection queue")
subprocess.run(["docker", "network", "disconnect", network, container], check=True)
answer, took = register(base + 1)
check(answer.get("site") == "clinic" and took < 1, f"cut off, the clinic still registers at once ({took:.2f} s)", answer)
time.sleep(3)
check(not at_hospital(base + 1), "nothing crosses the cut link")
subprocess.run(["docker", "network", "connect", network, container], check=True)
check(arrives(base + 1, 90), "the link back, the registration made meanwhile reaches the hospital")
queue = at_hospital(base + 1)
check(queue == [{"id": base + 1, "token": answer["token"], "site": "clinic"}], "once, with its clinic token", queue)
sys.exit(1 if failed else 0)
PY

PASSED="$(grep -c '^  ok ' "$WORK/checks.log" || true)"
if [ "$FAILURES" != 0 ]; then
    echo "compose-test: $PASSED passed, $FAILURES failed"
    die "$FAILURES check(s) failed"
fi
log "compose test passed"
echo "compose-test: $PASSED passed, 0 failed"
