#!/usr/bin/env bash
# Proves that the scripts work in a clone that the `postgres` user cannot enter (root's home,
# a `mktemp -d` folder: mode 0700): the project's scripts copied into such a folder start
# PostgreSQL with scripts/dev.sh, provision the services' roles from postgres/ (handed over on
# standard input), and `dev.sh clean` removes the data again. Run by scripts/test.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

private="$(mktemp -d)"   # 0700
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
clone="$private/opd"
mkdir "$clone" && cp -r scripts postgres rust-toolchain.toml "$clone/"
cleanup() {
    OPD_DEV_PG_PORT="$port" "$clone/scripts/dev.sh" clean >/dev/null 2>&1 || true
    rm -rf "$private"
}
trap cleanup EXIT
passed=0 failed=0
verdict() { # verdict OK WHAT
    if [ "$1" = 0 ]; then passed=$((passed + 1)); log "private clone: $2"
    else failed=$((failed + 1)); log "private clone: FAILED: $2"; fi
}

log "PostgreSQL from a clone in $private (mode $(stat -c %a "$private"), as $(id -un))"
status=0
OPD_DEV_PG_PORT="$port" "$clone/scripts/dev.sh" start postgres >&2 || status=$?
role="$(PGPASSWORD=opd_registration_dev psql -X -At -h 127.0.0.1 -p "$port" -U opd_registration \
    -d opd_registration -c 'select current_user' 2>&1 || true)"
if [ "$status" = 0 ] && [ "$role" = opd_registration ]; then
    verdict 0 "dev.sh started PostgreSQL and provisioned the roles"
else
    verdict 1 "dev.sh start postgres exited $status; connecting as opd_registration said: $role"
fi

data="$(readlink -f "$clone/.dev/pg" 2>/dev/null || true)"
OPD_DEV_PG_PORT="$port" "$clone/scripts/dev.sh" clean >&2
if [ ! -e "$clone/.dev" ] && { [ -z "$data" ] || [ ! -e "$data" ]; }; then
    verdict 0 "dev.sh clean removed the data${data:+ ($data)}"
else
    verdict 1 "dev.sh clean left ${data:-$clone/.dev} behind"
fi
echo "private-clone: $passed passed, $failed failed"
[ "$failed" = 0 ]
