#!/usr/bin/env bash
# Installs the driver into the cluster up.sh started, the way users do: the image built by the
# project's own scripts/build-image.sh, imported into the node's containerd (there is no
# registry to pull from), then `helm install` of deploy/helm/efa-dra-driver into kube-system.
# The chart values point the driver at the node's generated sysfs and /dev trees and at the
# kubelet and CDI directories of this cluster; everything else is the chart's default.
#
#   install.sh [extra helm arguments...]
#
# EFA_DRA_E2E_IMAGE (default localhost/efa-dra-driver:e2e) names the image. It is built from
# the working tree every time (podman's layer cache keeps the toolchain layers), so the cluster
# never runs a stale driver; EFA_DRA_E2E_REUSE_IMAGE=1 takes an existing image of that name.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

image=${EFA_DRA_E2E_IMAGE:-localhost/efa-dra-driver:e2e}
if [ "${EFA_DRA_E2E_REUSE_IMAGE:-0}" != 1 ] || ! podman image exists "$image"; then
  start=$(date +%s)
  "$repo_root/scripts/build-image.sh" "$image"
  log "image $image built in $(( $(date +%s) - start )) s"
fi
podman save --format docker-archive "$image" 2>/dev/null | ctr images import - > /dev/null
log "image $image imported into the node's containerd"

# The values a test cluster needs; the same list is what docs/testing.md shows.
cat > "$WORK/values-e2e.yaml" <<EOF
image:
  repository: ${image%:*}
  tag: ${image##*:}
kubeletDir: $WORK/kubelet
cdiRoot: $WORK/cdi
sysfsRoot: $(cat "$WORK/topology-dir")/sys
devRoot: $(cat "$WORK/topology-dir")/dev
logging:
  verbosity: 2
EOF
helm install efa-dra-driver "$repo_root/deploy/helm/efa-dra-driver" --namespace kube-system \
  -f "$WORK/values-e2e.yaml" --wait --timeout 180s "$@"
k -n kube-system rollout status ds/efa-dra-driver --timeout=60s
log "efa-dra-driver installed"
