#!/usr/bin/env bash
# The offline proof of deploy/kubernetes (docs/kubernetes.md): renders both overlays with
# kubectl's kustomize, on a copy of the folder with freshly generated development credentials,
# validates them against the Kubernetes schemas (kubernetes-validate, pinned), runs the NATS
# nodes' configuration through nats-server -t, checks every cross-reference, and breaks a copy
# on purpose to show each check catches what it is for (scripts/lib/check-kubernetes.py).
# Ends with the line `kubernetes: N passed, N failed`; without kubectl it says it skipped.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
cd "$ROOT"

KUBERNETES_VALIDATE_VERSION="1.37.0"

if ! command -v kubectl >/dev/null 2>&1; then
    echo "kubernetes: skipped (kubectl is not installed: nothing renders the overlays)"
    exit 0
fi
log "the Kubernetes manifests (deploy/kubernetes), offline"
NATS_SERVER_BIN="${NATS_SERVER_BIN:-$(ensure_nats_server)}"
export NATS_SERVER_BIN
venv_install "PyYAML==${PYYAML_VERSION}"
venv_install "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
SQLX_OFFLINE=true cargo build --quiet -p opd-nats-admin

copy="$(mktemp -d "${TMPDIR:-/tmp}/opd-k8s.XXXXXX")"
trap 'rm -rf "$copy"' EXIT
cp -r deploy/kubernetes "$copy/"
rm -rf "$copy/kubernetes/secrets/generated"
OPD_NATS_BIN="$ROOT/target/debug/opd-nats" OPD_K8S_SECRETS_DIR="$copy/kubernetes/secrets/generated" \
    deploy/kubernetes/make-secrets.sh >/dev/null
"$(ensure_venv)/bin/python" scripts/lib/check-kubernetes.py "$ROOT" "$copy/kubernetes"
