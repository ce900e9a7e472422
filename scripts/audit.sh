#!/usr/bin/env bash
# Checks the dependency graph with cargo-deny against deny.toml: known vulnerabilities and
# unmaintained crates (the RustSec advisory database), licenses, bans and sources. Part of
# scripts/test.sh.
#
# These machines cannot fetch the advisory database: it comes from the snapshot beside the
# repository (../shared/data, or OPD_ADVISORY_DB_SNAPSHOT), unpacked into target/advisory-dbs as
# the git repository cargo-deny expects, committed with the snapshot's own date so that its age
# is what cargo-deny judges.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

SNAPSHOT="${OPD_ADVISORY_DB_SNAPSHOT:-$ROOT/../shared/data/rustsec-advisory-db-2026-08-21.tar.gz}"
SNAPSHOT_DATE="2026-08-21T00:00:00Z"
# cargo-deny keeps a database in <db-path>/<last path segment of its URL>-<hash of the URL>;
# this is the name for https://github.com/rustsec/advisory-db (deny.toml's db-urls).
DB="$ROOT/target/advisory-dbs/advisory-db-3157b0e258782691"

ensure_cargo_tool cargo-deny cargo-deny "$CARGO_DENY_VERSION"
[ -f "$SNAPSHOT" ] || die "no advisory database snapshot at $SNAPSHOT"

if [ "$(cat "$DB/.opd-snapshot" 2>/dev/null)" != "$(basename "$SNAPSHOT")" ]; then
    log "unpacking the advisory database $(basename "$SNAPSHOT")"
    rm -rf "$DB" && mkdir -p "$DB"
    tar -xzf "$SNAPSHOT" -C "$DB" --strip-components=1
    (
        cd "$DB"
        git init -q
        git add -A
        GIT_AUTHOR_DATE="$SNAPSHOT_DATE" GIT_COMMITTER_DATE="$SNAPSHOT_DATE" \
            git -c user.name=opd -c user.email=opd@localhost commit -qm "RustSec snapshot"
    )
    basename "$SNAPSHOT" >"$DB/.opd-snapshot"
fi

log "cargo deny check (advisories from the $(basename "$SNAPSHOT") snapshot, licenses, bans, sources)"
# `cargo metadata` needs every crate of the lock file (all platforms) on disk when offline.
cargo fetch --locked --quiet
cargo deny --offline --locked check advisories licenses bans sources
echo "cargo-deny: 4 passed, 0 failed"
