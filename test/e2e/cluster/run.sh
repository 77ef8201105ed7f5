#!/usr/bin/env bash
# The real-cluster tier, end to end: builds the upstream components (cached) and the driver,
# starts the cluster, installs the driver with Helm, runs every scenario and stops the cluster.
# Prints one PASS/FAIL line per scenario and "N passed, N failed" last; exits 0 only when all
# passed. Needs root and Go >= 1.26; without them it exits 77 (CTest's skip code) saying why.
#
#   run.sh [--keep] [scenario ...]    --keep leaves the cluster running (down.sh stops it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)

keep=false
if [ "${1:-}" = --keep ]; then keep=true; shift; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "cluster tier skipped: needs root (network namespace, mknod, cgroups, containerd)"
  exit 77
fi
if ! command -v go > /dev/null || [ "$(printf '%s\n1.26\n' "$(go env GOVERSION | sed 's/^go//')" | sort -V | head -1)" != 1.26 ]; then
  echo "cluster tier skipped: needs Go >= 1.26 to build Kubernetes 1.36 (found: $(go version 2>/dev/null || echo none))"
  exit 77
fi

started=$(date +%s)
"$repo/scripts/install-deps.sh" --cluster
"$here/build-components.sh"
build_dir=${EFA_DRA_BUILD_DIR:-$repo/build}
if [ ! -f "$build_dir/CMakeCache.txt" ]; then cmake --preset default -S "$repo" > /dev/null; fi
cmake --build "$build_dir" --target make_node_tree > /dev/null

export EFA_DRA_E2E_BIN
EFA_DRA_E2E_BIN=$("$here/build-components.sh" --print-bin)
. "$here/lib.sh"
export EFA_DRA_E2E_WORK="$WORK" EFA_DRA_E2E_NETNS="$NETNS" EFA_DRA_E2E_NODE="$NODE_NAME" EFA_DRA_BUILD_DIR="$build_dir"
export EFA_DRA_E2E_REGISTRY="$REGISTRY" EFA_DRA_E2E_RELEASE_VERSION="$RELEASE_VERSION"

cleanup() {
  if $keep; then
    echo "cluster kept: $WORK/bin/kubectl get pods -A; stop it with $here/down.sh"
  else
    "$here/down.sh" > /dev/null || true
  fi
}
trap cleanup EXIT

"$here/up.sh"
"$here/install.sh"
status=0
/usr/bin/python3 "$here/scenarios.py" "$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- last lines of the driver and kubelet logs ($WORK/logs)"
  k -n kube-system logs -l app.kubernetes.io/name=efa-dra-driver --tail=40 2>&1 || true
  tail -n 40 "$WORK/logs/kubelet.log" || true
fi
echo "cluster tier: $(( $(date +%s) - started )) s in all"
exit "$status"
