#!/usr/bin/env bash
# Checks the dependency graph with cargo-deny against deny.toml: known vulnerabilities and
# unmaintained crates (the RustSec advisory database), licenses, bans and sources. Part of
# scripts/test.sh.
#
# The advisory database comes from the first of these that works:
#   1. a snapshot tarball: OPD_ADVISORY_DB_SNAPSHOT, or the one an offline machine may keep
#      beside the repository (../shared/data, see OPD_SHARED_DIR in scripts/lib/common.sh),
#      unpacked into target/advisory-dbs as the git repository cargo-deny expects and committed
#      with the snapshot's own date, so that its age is what cargo-deny judges;
#   2. cargo-deny's own fetch of the database (network);
#   3. neither: licenses, bans and sources are still checked, and the advisories are reported
#      as skipped, with the reason (never as passed).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

SNAPSHOT="${OPD_ADVISORY_DB_SNAPSHOT:-$SHARED_DIR/data/rustsec-advisory-db-2026-08-21.tar.gz}"
SNAPSHOT_DATE="2026-08-21T00:00:00Z"
# cargo-deny keeps a database in <db-path>/<last path segment of its URL>-<hash of the URL>;
# this is the name for https://github.com/rustsec/advisory-db (deny.toml's db-urls).
DB="$ROOT/target/advisory-dbs/advisory-db-3157b0e258782691"
# How long cargo-deny may try to fetch the database before the advisories count as skipped.
FETCH_SECONDS="${OPD_ADVISORY_FETCH_SECONDS:-180}"

ensure_cargo_tool cargo-deny cargo-deny "$CARGO_DENY_VERSION"
# `cargo metadata` needs every crate of the lock file (all platforms) on disk when offline.
cargo fetch --locked --quiet

unpack_snapshot() {
    [ "$(cat "$DB/.opd-snapshot" 2>/dev/null)" = "$(basename "$SNAPSHOT")" ] && return 0
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
}

if [ -f "$SNAPSHOT" ]; then
    unpack_snapshot
    log "cargo deny check (advisories from the $(basename "$SNAPSHOT") snapshot, licenses, bans, sources)"
    cargo deny --offline --locked check advisories licenses bans sources
    echo "cargo-deny: 4 passed, 0 failed"
    exit 0
fi

# A database unpacked from a snapshot has no remote to fetch from: fetch a fresh one instead.
[ -f "$DB/.opd-snapshot" ] && rm -rf "$DB"
log "no advisory database snapshot at $SNAPSHOT: fetching the RustSec database (cargo deny fetch db)"
status=0
timeout "$FETCH_SECONDS" cargo deny --locked fetch db || status=$?
if [ "$status" = 0 ]; then
    log "cargo deny check (advisories from the fetched database, licenses, bans, sources)"
    cargo deny --offline --locked check advisories licenses bans sources
    echo "cargo-deny: 4 passed, 0 failed"
else
    log "cargo deny check (licenses, bans, sources; the advisories are skipped)"
    cargo deny --offline --locked check licenses bans sources
    echo "cargo-deny advisories: skipped (no snapshot at $SNAPSHOT, and fetching the RustSec database failed with exit $status)"
    echo "cargo-deny: 3 passed, 0 failed"
fi
