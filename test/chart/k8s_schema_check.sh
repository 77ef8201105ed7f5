#!/usr/bin/env bash
# Validates the chart as Helm renders it (default values and every optional object) and
# docs/examples against Kubernetes' structural schema (test/chart/k8s_schema.py with the part of
# client-go's schema those kinds need, test/chart/k8s-schema-1.36.yaml). First it shows that the
# checker rejects a manifest with known mistakes. (The real-cluster tier checks the same objects
# with a server-side dry run.)
# Usage: k8s_schema_check.sh HELM REPO_ROOT KUBE_VERSION
set -euo pipefail
helm=$1 root=$2 kube_version=$3
here="$root/test/chart"
check() { /usr/bin/python3 "$here/k8s_schema.py" "$here/k8s-schema-1.36.yaml" "$@"; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export HOME=$out
render() { "$helm" template efa "$root/deploy/helm/efa-dra-driver" --kube-version "$kube_version" "$@"; }
render > "$out/default.yaml"
render --set metrics.service.enabled=true --set stateDir=/var/lib/efa > "$out/options.yaml"
render --set hostNetwork=false --set updateStrategy.maxSurge=0 \
  --set updateStrategy.maxUnavailable=1 --set extraTolerations[0].key=dedicated \
  --set extraTolerations[0].operator=Exists --set imagePullSecrets[0].name=regcred \
  --set serviceAccount.annotations.a=b --set podAnnotations.c=d \
  --set nodeSelector.node\\.kubernetes\\.io/instance-type=p5.48xlarge > "$out/pod-network.yaml"
cat > "$out/broken.yaml" <<'EOF'
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: broken}
spec:
  minReadySecondz: 1
  revisionHistoryLimit: "ten"
  template:
    spec:
      containers: {name: c}
EOF
if broken=$(check "$out/broken.yaml"); then
  echo "FAIL: the checker accepted a DaemonSet with three mistakes:"; echo "$broken"; exit 1
fi
for mistake in "unknown field 'minReadySecondz'" "expected numeric" "containers: expected a list"; do
  if ! grep -qF "$mistake" <<<"$broken"; then
    echo "FAIL: the checker missed \"$mistake\":"; echo "$broken"; exit 1
  fi
done
check "$out/default.yaml" "$out/options.yaml" "$out/pod-network.yaml" \
  "$root"/docs/examples/*.yaml
