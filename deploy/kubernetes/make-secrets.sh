#!/usr/bin/env bash
# Generates the NATS credentials the Kubernetes overlays turn into Secrets (secrets/generated/,
# ignored by git): a CA, the nodes' certificate, valid for the pods' names in NAMESPACE, and an
# nkey seed and client certificate for every identity. Files that exist are kept: put your own
# CA (ca.pem, ca-key.pem) there first to have it sign everything, or delete a file and run this
# again to rotate it (docs/security.md).
#
#   deploy/kubernetes/make-secrets.sh            for the namespace opd
#   deploy/kubernetes/make-secrets.sh NAMESPACE  for another one (set it in the overlay too)
#
# Needs Rust: it builds the administrator's tool, opd-nats (nats-admin/), unless OPD_NATS_BIN
# names one. OPD_K8S_SECRETS_DIR writes elsewhere (scripts/check-kubernetes.sh uses a copy).
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib/common.sh"

namespace="${1:-opd}"
out="${OPD_K8S_SECRETS_DIR:-$ROOT/deploy/kubernetes/secrets/generated}"
opd_nats="${OPD_NATS_BIN:-$ROOT/target/release/opd-nats}"
if [ ! -x "$opd_nats" ]; then
    ensure_rust_toolchain
    log "building opd-nats (release)"
    (cd "$ROOT" && SQLX_OFFLINE=true cargo build --quiet --release -p opd-nats-admin)
fi
args=()
# The names the services and the other nodes reach a node by (nats/statefulset.yaml), short
# and qualified, and the client Service's.
for suffix in "" ".$namespace.svc" ".$namespace.svc.cluster.local"; do
    args+=(--server-name "*.opd-nats-headless$suffix" --server-name "opd-nats$suffix")
done
"$opd_nats" credentials "$out" "${args[@]}"
