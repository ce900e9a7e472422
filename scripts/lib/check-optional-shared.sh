#!/usr/bin/env bash
# Proves that ../shared (the material an offline machine keeps beside the repository) is
# optional: with it hidden (OPD_SHARED_DIR pointing at an empty folder), the audit and the
# newman install must either get what they need the normal way (network) or say exactly which
# step they skipped, never report a skipped step as passed. Run by scripts/test.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

hidden="$(mktemp -d)"
out="$(mktemp)"
trap 'rm -rf "$hidden" "$out"' EXIT
passed=0 failed=0
verdict() { # verdict OK WHAT
    if [ "$1" = 0 ]; then passed=$((passed + 1)); log "optional ../shared: $2"
    else failed=$((failed + 1)); log "optional ../shared: FAILED: $2"; cat "$out" >&2; fi
}

log "the audit with ../shared hidden"
status=0
OPD_SHARED_DIR="$hidden" OPD_ADVISORY_FETCH_SECONDS=60 scripts/audit.sh >"$out" 2>&1 || status=$?
if [ "$status" = 0 ] && tail -n1 "$out" | grep -qx 'cargo-deny: 4 passed, 0 failed'; then
    verdict 0 "the audit fetched the advisory database itself and checked everything"
elif [ "$status" = 0 ] && grep -q '^cargo-deny advisories: skipped (no snapshot at' "$out" \
        && tail -n1 "$out" | grep -qx 'cargo-deny: 3 passed, 0 failed'; then
    verdict 0 "the audit reported the advisories as skipped and checked licenses, bans, sources"
else
    verdict 1 "the audit neither checked the advisories nor reported them skipped (exit $status)"
fi

log "newman with ../shared hidden and none on PATH"
status=0
path_without_newman="$(tr ':' '\n' <<<"$PATH" | while read -r dir; do [ -x "$dir/newman" ] || printf '%s:' "$dir"; done)"
PATH="$path_without_newman" OPD_SHARED_DIR="$hidden" \
    bash -c 'source scripts/lib/common.sh && newman="$(ensure_newman)" && "$newman" --version' >"$out" 2>&1 || status=$?
if [ "$status" = 0 ] && tail -n1 "$out" | grep -qx "$NEWMAN_VERSION"; then
    verdict 0 "newman $NEWMAN_VERSION came from npm"
elif [ "$status" != 0 ] && grep -q "npm could not install newman@$NEWMAN_VERSION" "$out"; then
    verdict 0 "newman could not be had, and said so (the walkthroughs report it as skipped)"
else
    verdict 1 "ensure_newman neither gave newman $NEWMAN_VERSION nor said why not (exit $status)"
fi
echo "optional-shared: $passed passed, $failed failed"
[ "$failed" = 0 ]
