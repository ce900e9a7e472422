#!/usr/bin/env bash
# Runs the clients people learn the platform with against a running stack on the book's ports
# (scripts/dev.sh up, or docker compose up), and prints one count line for each:
#
#   swagger-ui     every service's Swagger UI page, loaded in headless Chromium with no route to
#                  the internet, lists the service's operations
#   newman         the Postman collection (postman/), every assertion
#   schemathesis   hostile and valid requests generated from every service's /openapi.json, with
#                  all of schemathesis' checks (server errors, schema and status conformance,
#                  acceptance of valid and rejection of invalid data); the board's event stream,
#                  which never ends, is left to the board walkthrough and the tests
#   board          the waiting-room board in headless Chromium (scripts/lib/board-browser.py):
#                  a registration on screen within a second, a patient moving on, the board
#                  restarted under the open page; a screenshot in target/walkthroughs/board.png.
#                  Needs scripts/dev.sh's platform (it stops and starts the board)
#
#   scripts/walkthroughs.sh                       all four
#   scripts/walkthroughs.sh newman schemathesis   a choice
#   OPD_SCHEMATHESIS_EXAMPLES=500 scripts/walkthroughs.sh schemathesis   more examples per operation
#   OPD_SCHEMATHESIS_SEED=random scripts/walkthroughs.sh schemathesis     explore beyond CI's seed
#   OPD_WALKTHROUGH_SUFFIX=-busy scripts/walkthroughs.sh newman   count lines named newman-busy
#
# CI uses one fixed seed, so that a run is repeatable and a failure is the change's, not the
# dice's; exploring with other seeds (and more examples) is how new findings are made.
#
# Exits non-zero if any of them failed. Reports land in target/walkthroughs/.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

PORTS=(9090 9091 9092 9093 9094)
OUT="$ROOT/target/walkthroughs"
mkdir -p "$OUT"
if [ "$#" -eq 0 ]; then set -- swagger-ui newman schemathesis board; fi

ensure_tool curl curl
for port in "${PORTS[@]}"; do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" \
        || die "nothing ready on port $port: start the platform first (scripts/dev.sh up)"
done

status=0
report() { # report NAME PASSED FAILED
    echo "$1${OPD_WALKTHROUGH_SUFFIX:-}: $2 passed, $3 failed"
    [ "$3" = 0 ] || status=1
}

run_swagger_ui() {
    ensure_tool chromium chromium
    local passed=0 failed=0 port dom operations
    for port in "${PORTS[@]}"; do
        dom="$OUT/swagger-ui-$port.html"
        # No DNS for anything but this machine: the page must work from its embedded assets.
        timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
            --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
            --virtual-time-budget=15000 --dump-dom "http://127.0.0.1:$port/swagger-ui/" \
            >"$dom" 2>"$OUT/swagger-ui-$port.log" || true
        # Every path of the service's document must be shown as an operation on the page.
        operations="$(curl -fsS "http://127.0.0.1:$port/openapi.json" \
            | python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)["paths"]))')"
        local missing=""
        while read -r path; do
            grep -qF "data-path=\"$path\"" "$dom" || missing="$missing $path"
        done <<<"$operations"
        if [ -z "$missing" ] && grep -q 'class="opblock ' "$dom"; then
            passed=$((passed + 1))
            log "swagger-ui on port $port shows all $(wc -l <<<"$operations") paths"
        else
            failed=$((failed + 1))
            log "swagger-ui on port $port is missing:${missing:- every operation} (DOM in $dom)"
        fi
    done
    report swagger-ui "$passed" "$failed"
}

run_newman() {
    local newman summary
    if ! newman="$(ensure_newman)"; then
        echo "newman${OPD_WALKTHROUGH_SUFFIX:-}: skipped (newman is not on PATH, not beside the repository in $SHARED_DIR/tools, and npm could not install it)"
        return 0
    fi
    log "newman $("$newman" --version) on postman/opd.postman_collection.json"
    # A token per desk, as the collection's folders name them (postman/README.md).
    local tokens=() role
    for role in "${ALL_ROLES[@]}"; do
        tokens+=(--env-var "${role}_token=$(opd_token "$role" --subject "postman-$role")")
    done
    "$newman" run postman/opd.postman_collection.json -e postman/local.postman_environment.json \
        "${tokens[@]}" --reporters cli,json --reporter-json-export "$OUT/newman.json" --color off || true
    summary="$(python3 -c 'import json, sys
stats = json.load(open(sys.argv[1]))["run"]["stats"]
assertions, requests = stats["assertions"], stats["requests"]
failed = assertions["failed"] + requests["failed"]
print(assertions["total"] - assertions["failed"], failed)' "$OUT/newman.json")"
    report newman ${summary}
}

run_schemathesis() {
    local st port passed=0 failed=0 counts
    st="$(ensure_schemathesis)"
    # Every role, so that every operation is explored; its `ignored_auth` check sends each one
    # without the token too, and expects it refused.
    local token
    token="$(opd_token "${ALL_ROLES[@]}" --subject schemathesis)"
    for port in "${PORTS[@]}"; do
        log "schemathesis on http://127.0.0.1:$port/openapi.json"
        local seed=(--seed "${OPD_SCHEMATHESIS_SEED:-20261122}")
        [ "${OPD_SCHEMATHESIS_SEED:-}" = random ] && seed=()
        # An event stream answers 200 and never ends: no generated request can finish there.
        local endless=(--exclude-path /opd/board/events)
        (cd "$OUT" && "$st" run "http://127.0.0.1:$port/openapi.json" --checks all "${endless[@]}" \
            --header "Authorization: Bearer $token" --max-examples "${OPD_SCHEMATHESIS_EXAMPLES:-100}" --no-color "${seed[@]}" \
            --report junit --report-junit-path "$OUT/schemathesis-$port.xml") || true
        counts="$(python3 -c 'import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
total = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
print(total - bad, bad)' "$OUT/schemathesis-$port.xml")"
        passed=$((passed + ${counts% *}))
        failed=$((failed + ${counts#* }))
    done
    report schemathesis "$passed" "$failed"
}

run_board() {
    ensure_tool chromium chromium
    local venv counts
    venv="$(ensure_venv)"
    venv_install "websocket-client==${WEBSOCKET_CLIENT_VERSION}"
    "$venv/bin/python" scripts/lib/board-browser.py --dev-sh "$ROOT/scripts/dev.sh" \
        --token-command "$ROOT/scripts/dev.sh token" --screenshot "$OUT/board${OPD_WALKTHROUGH_SUFFIX:-}.png" \
        | tee "$OUT/board${OPD_WALKTHROUGH_SUFFIX:-}.log" || true
    counts="$(sed -n 's/^board: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$OUT/board${OPD_WALKTHROUGH_SUFFIX:-}.log")"
    report board "${counts% *}" "${counts#* }"
}

for what in "$@"; do
    case "$what" in
        swagger-ui) run_swagger_ui ;;
        newman) run_newman ;;
        schemathesis) run_schemathesis ;;
        board) run_board ;;
        *) die "unknown walkthrough '$what' (swagger-ui, newman, schemathesis, board)" ;;
    esac
done
exit "$status"
