#!/usr/bin/env bash
# Installs the driver into the cluster up.sh started, the way users do: scripts/release.sh
# publishes a release (the image index for amd64 and arm64, and the chart) to the cluster's OCI
# registry, then `helm install` of that chart from the registry into kube-system; containerd
# pulls the image from the registry when the DaemonSet's pod starts. The chart values point the
# driver at the node's generated sysfs and /dev trees and at the kubelet and CDI directories of
# this cluster, and name the release's image explicitly (it is the packaged chart's default
# too, which the release-from-registry scenario checks), so that scenarios that upgrade with the
# work tree's chart keep running it; everything else is the chart's default.
#
#   install.sh [extra helm arguments...]
#
# EFA_DRA_E2E_RELEASE_VERSION (default 0.2.0-test) is the version published. The images are
# built from the working tree every time (podman's layer cache keeps the toolchain layers and,
# when the sources did not change, the build itself), so the cluster never runs a stale driver.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

start=$(date +%s)
HELM="$BIN/helm" "$repo_root/scripts/release.sh" "$REGISTRY" "$RELEASE_VERSION" | tee "$WORK/release.log"
log "release $RELEASE_VERSION published to $REGISTRY in $(( $(date +%s) - start )) s"

# The values a test cluster needs; the same list is what docs/testing.md shows.
cat > "$WORK/values-e2e.yaml" <<EOF
image:
  repository: ${IMAGE%:*}
  tag: ${IMAGE##*:}
kubeletDir: $WORK/kubelet
cdiRoot: $WORK/cdi
sysfsRoot: $(cat "$WORK/topology-dir")/sys
devRoot: $(cat "$WORK/topology-dir")/dev
logging:
  verbosity: 2
EOF
helm install efa-dra-driver "oci://$REGISTRY/charts/efa-dra-driver" --version "$RELEASE_VERSION" \
  --plain-http --namespace kube-system \
  -f "$WORK/values-e2e.yaml" --wait --timeout 180s "$@"
k -n kube-system rollout status ds/efa-dra-driver --timeout=60s
log "efa-dra-driver installed"
